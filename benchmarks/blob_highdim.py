"""Convergence in N of the blob flow (zoo.blob.flow) against the relaxing Barenblatt (MATH.md 4, 5).

Start: N independent exact draws of the Barenblatt scaled by h0 (barenblatt_sample, h = h0); flow
to t = 2 with ``--widths`` among
  ``scale``: the scaled width e = c s(x), c from calibrate_scale on N other stationary draws (per N);
  ``fixed``: the fixed width default_eps(x0) (the flow's default);
  ``fixed_end``: the fixed width default_eps(x0 / h0), the spacing of the law the flow relaxes to;
  ``follow``: the flow's default since commit 23245a2, default_eps re-measured after every step;
  ``sde=C``: not the blob flow but McKean-Vlasov particles of the PME with the blob's density
  estimate at width C s(x) (:func:`sde`), to test whether the d = 8 shell is the blob energy's;
  ``sde``: the same with C from :func:`calibrate_sde` (per N, on N other stationary draws).
Per (d, m, N, seed, width):

* ``m2``: max over t in TIMES of |M2(particles) / M2_exact(t) - 1| (M2 = mean |x|^2);
  ``m2_moll``: the same for the mollified density phi_e * mu_N, M2 = M2(particles) + d e^2;
* ``ks_t``: KS statistic of |X|^2 / (h(t) R)^2 against Beta(d/2, 1/(m-1) + 1) at t = 0, 0.5, 2
  (t = 0: the draws themselves, the sampling-noise baseline); ``ksm_t``: the same for one draw of
  the mollified density per particle (x_i + e z_i);
* ``crit``: the 5 % critical value 1.36 / sqrt(N); ``c``, ``eps``: the widths; ``evals``: velocity
  evaluations of the flow; ``wall``: seconds of the flow (``cal``: of the calibration).

Then per (d, width) the least-squares slopes of log m2 and log ks_2 against log N (seeds averaged),
and the extrapolated N at which ks_2 = crit (only if the slope is below -1/2) and m2 = 1 %.

    python benchmarks/blob_highdim.py --out bench-out/blob_highdim [--cases 8,2,4] \
        [--n 500,1000,2000,4000] [--seeds 0] [--widths scale,fixed] [--threads 1]

Appends one JSON line per run to OUT/runs.jsonl (a rerun skips the runs already there) and
prints the tables in Markdown.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Iterator

import torch
from scipy.stats import kstest

from zoo.blob import PowerEnergy, calibrate_scale, default_eps, flow, rms_radius, velocity
from zoo_laws.pme import barenblatt_radius, barenblatt_sample, barenblatt_second_moment, relaxing_h

TIMES = (0.05, 0.2, 0.5, 1.0, 2.0)
KS_TIMES = (0.0, 0.5, 2.0)
H0 = 0.5
CASES = {2: 2.0, 4: 1.5, 8: 1.25}  # d -> m (d = 4, 8: m = 1 + 2/d)


class Counted(PowerEnergy):
    """PowerEnergy that counts velocity evaluations (log_weight runs once per evaluation)."""

    calls = 0

    def log_weight(self, log_rho):
        Counted.calls += 1
        return super().log_weight(log_rho)


def ks(x: torch.Tensor, d: int, m: float, h: float) -> float:
    """KS statistic of |x|^2 / (h R)^2 (x (N, d)) against the exact Beta(d/2, k + 1)."""
    s = (x.square().sum(1) / (h * barenblatt_radius(d, m)) ** 2).numpy()
    return float(kstest(s, "beta", args=(d / 2, 1 / (m - 1) + 1)).statistic)


def sde(x0: torch.Tensor, m: float, times: tuple[float, ...], c: float, seed: int,
        dt: float = 0.01, dt0: float = 0.002) -> Iterator[tuple[float, torch.Tensor, float]]:
    """McKean-Vlasov particles of the PME (not zoo.blob's method; the comparison for the shell):
    dX = -X dt + sqrt(2 rho~(X)^(m-1)) dW, whose Fokker-Planck equation is the PME
    d/dt rho = Lap rho^m + div(rho x) (MATH.md section 2), with rho~ the blob's mollified
    density at the particles (width e = c s(x), self-pair included). Exact Ornstein-Uhlenbeck
    step for the frozen diffusivity; steps dt0 before t = 0.05 (densities are largest there)."""
    x, t, energy = x0.clone(), 0.0, PowerEnergy(m)
    noise = torch.Generator().manual_seed(seed + 3000)
    for target in times:
        while t < target - 1e-12:
            step = min(dt if t >= 0.05 - 1e-12 else dt0, target - t)
            _, log_rho = velocity(x, energy, c * rms_radius(x))
            Counted.calls += 1
            decay = math.exp(-step)
            spread = torch.exp(0.5 * (m - 1) * log_rho) * math.sqrt(1 - decay * decay)
            x = decay * x + spread[:, None] * torch.randn(x.shape, generator=noise, dtype=x.dtype)
            t = target if target - t - step < 1e-12 else t + step
        yield t, x, c * rms_radius(x)


def calibrate_sde(x_inf: torch.Tensor, m: float, seed: int, relax: float = 1.0) -> float:
    """The c of :func:`sde` for which stationary draws x_inf (N, d) keep their second moment over
    time ``relax``: secant steps on c from the blob's rule of thumb c ~ N^(-1/8) (same noise for
    every c, so the excess is smooth in c)."""
    target = float(x_inf.square().sum(1).mean())

    def excess(c: float) -> float:
        *_, (_, x, _) = sde(x_inf, m, (relax,), c, seed)
        return float(x.square().sum(1).mean()) / target - 1

    c0 = 0.27 * (len(x_inf) / 1000) ** (-1 / 8)
    c1 = 1.1 * c0
    f0, f1 = excess(c0), excess(c1)
    for _ in range(4):
        if abs(f1) < 2e-3 or f1 == f0:
            break
        c0, c1, f0 = c1, c1 - f1 * (c1 - c0) / (f1 - f0), f1
        f1 = excess(c1)
    return c1


def run(d: int, m: float, n: int, seed: int, width: str, max_dt: float = 0.05) -> dict:
    """One flow from N independent draws scaled by H0 (width: see the module docstring)."""
    x0 = barenblatt_sample(n, d, m, torch.Generator().manual_seed(seed), h=H0)
    energy = Counted(m)
    start = time.perf_counter()
    c = eps = None
    if width == "scale":  # calibrated on draws independent of x0
        c = calibrate_scale(barenblatt_sample(n, d, m, torch.Generator().manual_seed(seed + 1000)), energy)
    elif width == "fixed":
        eps = default_eps(x0)
    elif width == "follow":  # eps = None: the flow re-measures default_eps after every step
        pass
    elif width == "fixed_end":  # the spacing of the stationary law the flow relaxes to (x0 / h0)
        eps = default_eps(x0 / H0)
    elif width == "sde":
        c = calibrate_sde(barenblatt_sample(n, d, m, torch.Generator().manual_seed(seed + 1000)), m, seed + 1000)
    else:
        c = float(width.split("=")[1])
    cal = time.perf_counter() - start
    Counted.calls = 0
    start = time.perf_counter()
    times = (0.0,) + TIMES
    if width.startswith("sde"):
        snaps = sde(x0, m, times, c, seed)
    else:
        snaps = ((s.t, s.x, s.eps) for s in
                 flow(x0, energy, torch.tensor(times, dtype=torch.float64), scale=c, eps=eps, max_dt=max_dt))
    row = {"d": d, "m": m, "n": n, "seed": seed, "width": width, "c": c, "cal": cal,
           "max_dt": max_dt, "crit": 1.36 / math.sqrt(n), "m2_t": {}, "m2_moll_t": {}}
    noise = torch.Generator().manual_seed(seed + 2000)
    for t, x, e in snaps:
        h = float(relaxing_h(torch.tensor(t, dtype=torch.float64), H0, d, m))
        exact, m2 = barenblatt_second_moment(d, m, h), float(x.square().sum(1).mean())
        if t > 0:
            row["m2_t"][f"{t:g}"] = m2 / exact - 1
            row["m2_moll_t"][f"{t:g}"] = (m2 + d * e * e) / exact - 1
        if t in KS_TIMES:
            row[f"ks_{t:g}"] = ks(x, d, m, h)
            y = x + e * torch.randn(x.shape, generator=noise, dtype=x.dtype)
            row[f"ksm_{t:g}"] = ks(y, d, m, h)
    row.update(wall=time.perf_counter() - start, evals=Counted.calls, eps=e,
               m2=max(abs(v) for v in row["m2_t"].values()),
               m2_moll=max(abs(v) for v in row["m2_moll_t"].values()))
    return row


def fit(ns: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares log y = a + s log n: returns (s, a)."""
    lx, ly = [math.log(v) for v in ns], [math.log(v) for v in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    s = sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)
    return s, my - s * mx


def report(rows: list[dict]) -> None:
    print("| d | m | width | N | seeds | c | e | max M2 err | max M2 err moll. | KS t=0 | KS t=0.5 | KS t=2 "
          "| KS moll. t=2 | crit | evals | flow s | calib. s |")
    print("|" + "---|" * 17)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["d"], r["width"], r["n"]), []).append(r)
    mean = lambda g, k: sum(r[k] for r in g) / len(g)  # noqa: E731
    for (d, width, n), g in sorted(groups.items()):
        c = f"{mean(g, 'c'):.3f}" if g[0]["c"] else "-"
        print(f"| {d} | {g[0]['m']:g} | {width} | {n} | {len(g)} | {c} | {mean(g, 'eps'):.3f} "
              f"| {100 * mean(g, 'm2'):.2f} % | {100 * mean(g, 'm2_moll'):.2f} % | {mean(g, 'ks_0'):.3f} "
              f"| {mean(g, 'ks_0.5'):.3f} | {mean(g, 'ks_2'):.3f} | {mean(g, 'ksm_2'):.3f} | {g[0]['crit']:.3f} "
              f"| {mean(g, 'evals'):.0f} | {mean(g, 'wall'):.1f} | {mean(g, 'cal'):.1f} |")
    print("\n| d | width | quantity | slope in N | value at N | extrapolated N |")
    print("|---|---|---|---|---|---|")
    for d, width in sorted({(d, w) for d, w, _ in groups}):
        ns = sorted(n for dd, w, n in groups if (dd, w) == (d, width))
        if len(ns) < 2:
            continue
        # goals g0 N^q: 1 % for M2, the critical value 1.36 N^(-1/2) for KS
        for key, g0, q in (("m2", 0.01, 0.0), ("m2_moll", 0.01, 0.0), ("ks_2", 1.36, -0.5), ("ksm_2", 1.36, -0.5)):
            if key == "m2_moll" and not width.startswith("fixed"):
                continue
            ys = [mean(groups[(d, width, n)], key) for n in ns]
            s, a = fit(ns, ys)
            if all(y <= g0 * n**q for y, n in zip(ys, ns)):
                target = "already"
            elif s < q:  # a + s log N = log g0 + q log N
                reach = math.exp((math.log(g0) - a) / (s - q))
                target = f"{reach:.2g}" if reach < 1e15 else "> 1e15"
            else:
                target = "never (slope >= goal's)"
            print(f"| {d} | {width} | {key} | {s:+.2f} | " + ", ".join(f"{y:.3g}" for y in ys)
                  + f" at N = {', '.join(map(str, ns))} | {target} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-out/blob_highdim"))
    parser.add_argument("--cases", default="8,2", help="dimensions d (m = 2 at d = 2, 1 + 2/d otherwise)")
    parser.add_argument("--n", default="500,1000,2000,4000")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--widths", default="scale,fixed")
    parser.add_argument("--max-dt", type=float, default=0.05, help="flow's max_dt (its default 0.05)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["d"], r["n"], r["seed"], r["width"], r["max_dt"]) for r in rows}
    if not args.report_only:
        for d in map(int, args.cases.split(",")):
            for n in map(int, args.n.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    for width in args.widths.split(","):
                        if (d, n, seed, width, args.max_dt) in done:
                            continue
                        row = run(d, CASES[d], n, seed, width, args.max_dt)
                        rows.append(row)
                        with log.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(f"d={d} N={n} seed={seed} {width}: M2 {100 * row['m2']:.2f} % "
                              f"(moll. {100 * row['m2_moll']:.2f} %), KS(2) {row['ks_2']:.3f} "
                              f"(crit {row['crit']:.3f}), {row['evals']} evals, {row['wall']:.0f} s "
                              f"+ calib. {row['cal']:.0f} s", flush=True)
    report(rows)


if __name__ == "__main__":
    main()
