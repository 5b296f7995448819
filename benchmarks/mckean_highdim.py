"""Convergence in N of the McKean-Vlasov particle route (zoo.mckean) against the relaxing
Barenblatt (MATH.md sections 4, 8), in every dimension from 2 to 64: what ``pme`` trains on
with ``route=mckean`` (the default above dimension 2).

Start: N independent exact draws of the Barenblatt scaled by h0 = 0.5 (m = 1 + 2/d); the kNN
density is calibrated as the law does it (``PME.density_estimate``: N other stationary draws,
moments from 100 000 more); flow to t = 2. Per (d, N, seed):

* ``m2``: max over the snapshot times of |M2(particles) / M2_exact(t) - 1|, M2 = mean |x|^2;
* ``ks``: max over the snapshot times of the KS statistic of |X|^2 / (h(t) R)^2 against
  Beta(d/2, 1/(m-1) + 1) (the radius law); ``crit``: the 5 % critical value 1.358 / sqrt(N);
* ``delta``, ``beta``: the calibration; ``wall``: seconds of calibration and flow.

    python benchmarks/mckean_highdim.py --out bench-out/mckean_highdim [--dims 2,4,8,16,32,64] \
        [--n 1000,2000,4000] [--seeds 0,1]

Appends one JSON line per run to OUT/runs.jsonl (a rerun skips the runs already there) and
prints the table in Markdown. Run with OMP_NUM_THREADS=1 next to other work.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import betainc
from scipy.stats import kstest

from zoo import mckean
from zoo.contracts import seeded_generator
from zoo_laws.pme import PME, barenblatt_radius, barenblatt_sample, barenblatt_second_moment, default_m, relaxing_h

TIMES = (0.01, 0.03, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0)
H0 = 0.5


def run(dim: int, n: int, seed: int) -> dict:
    m = default_m(dim)
    law = PME()
    generator = seeded_generator(seed, dim)
    start = time.perf_counter()
    estimate = law.density_estimate(n, (dim,), generator)
    x0 = barenblatt_sample(n, dim, m, generator, h=H0)
    radius, k = barenblatt_radius(dim, m), 1.0 / (m - 1.0)
    m2 = ks = 0.0
    times = torch.tensor(TIMES, dtype=torch.float64)
    for snap in mckean.flow(x0, law.energy(dim), times, estimate, generator):
        h = float(relaxing_h(torch.tensor(snap.t, dtype=torch.float64), H0, dim, m))
        sq = snap.x.double().square().sum(1)
        m2 = max(m2, abs(float(sq.mean()) / barenblatt_second_moment(dim, m, h) - 1.0))
        u = betainc(dim / 2, k + 1, np.clip(sq.numpy() / (h * radius) ** 2, 0.0, 1.0))
        ks = max(ks, float(kstest(u, "uniform").statistic))
    return {"d": dim, "m": m, "n": n, "seed": seed, "m2": m2, "ks": ks, "crit": 1.358 / math.sqrt(n),
            "delta": estimate.delta, "beta": estimate.beta, "wall": time.perf_counter() - start}


def table(rows: list[dict]) -> str:
    lines = ["| d | N | seeds | max M2 error | max KS | KS / crit | wall (s) |", "|---|---|---|---|---|---|---|"]
    keys = sorted({(r["d"], r["n"]) for r in rows})
    for d, n in keys:
        some = [r for r in rows if (r["d"], r["n"]) == (d, n)]
        m2 = max(r["m2"] for r in some)
        ks = max(r["ks"] for r in some)
        lines.append(f"| {d} | {n} | {len(some)} | {100 * m2:.2f} % | {ks:.3f} | {ks / some[0]['crit']:.2f} | "
                     f"{sum(r['wall'] for r in some) / len(some):.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--dims", default="2,4,8,16,32,64")
    parser.add_argument("--n", default="1000,2000,4000")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "runs.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    done = {(r["d"], r["n"], r["seed"]) for r in rows}
    for dim in map(int, args.dims.split(",")):
        for n in map(int, args.n.split(",")):
            for seed in map(int, args.seeds.split(",")):
                if (dim, n, seed) in done:
                    continue
                row = run(dim, n, seed)
                rows.append(row)
                with path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"d={dim} N={n} seed={seed}: M2 {100 * row['m2']:.2f} %, KS {row['ks']:.3f} "
                      f"(crit {row['crit']:.3f}), {row['wall']:.0f} s", flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
