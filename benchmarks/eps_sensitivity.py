"""Velocity-error sensitivity of deterministic and stochastic sampling (MATH.md section 7).

For each case with an exact velocity (heat on gmm8, pme on a relaxing Barenblatt), the exact field
plus a smooth seeded error of relative L2(rho_t) size eps (network ``perturbed``) is sampled by heun
(alpha = 0, the probability-flow ODE) and em at alpha = 0.5 and 1, at a fixed large NFE so that
discretisation error is negligible. Reported per (sampler, eps):

* ``energy``: energy distance to a fresh exact sample of the data (n_ref points), and ``excess``:
  energy minus the real-vs-real floor (a second fresh sample of n points against the same
  reference; the estimator is unbiased, so the floor is about 0 up to its noise);
* ``shift``: the energy distance between the same sampler's outputs at eps and at eps = 0. Every eps
  uses the same prior draws and noise (common random numbers), so sample i at eps and sample i at 0
  form a pair; pairs are independent, and leaving the pairs (i, i) out of the cross term makes this
  an unbiased estimate of ED(law at eps, law at 0) with a far smaller variance than the excess
  (whose noise is linear in eps). With negligible discretisation error, law at 0 = the data law;
* the slope of log shift (and of log excess) against log eps, fitted over eps <= --fit-max (before
  saturation), and the ratio ODE / SDE of the shift at each eps (how much more sensitive heun is);
* ``eps_measured``: the velocity_error metric of the perturbed field (checks that eps is what it says).

    python benchmarks/eps_sensitivity.py --out bench-out/eps [--n 2000] [--nfe 500] [--cases heat,pme]

Writes OUT/eps_sensitivity.json and prints the tables.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import Tensor

from zoo.contracts import EvalContext
from zoo.io import write_json
from zoo.registry import get_registry
from zoo.sampling import generate
from zoo_metrics.common import sq_dists
from zoo_metrics.distances import energy_distance

CASES = {"heat": ("heat", "gmm8"), "pme": ("pme", "barenblatt")}
SAMPLERS = ("heun", "em:alpha=0.5", "em:alpha=1")
EPS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)


def fresh(dataset, n: int, seed: int) -> torch.Tensor:
    """n new exact draws (n, *shape) of the data law (the data set's train split at another seed)."""
    return dataclasses.replace(dataset, seed=seed, n_train=n).train()


def paired_energy(x: Tensor, y: Tensor) -> float:
    """Energy distance of paired samples x, y (n, d): cross term over the pairs i != j only."""
    x, y = x.double(), y.double()
    n = len(x)
    cross = sq_dists(x, y).sqrt()
    within = lambda z: sq_dists(z, z).sqrt().sum() / (n * (n - 1))  # noqa: E731
    return float(2 * (cross.sum() - cross.diagonal().sum()) / (n * (n - 1)) - within(x) - within(y))


def slope(eps: list[float], err: list[float]) -> float:
    """Least-squares slope of log err against log eps over the points with eps > 0 and err > 0."""
    pts = [(math.log(e), math.log(v)) for e, v in zip(eps, err) if e > 0 and v > 0]
    if len(pts) < 2:
        return math.nan
    mx, my = (sum(p[i] for p in pts) / len(pts) for i in (0, 1))
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


def run_case(case: str, args: argparse.Namespace) -> dict:
    registry = get_registry()
    law_spec, data_spec = CASES[case]
    law, dataset = registry.create("law", law_spec), registry.create("dataset", data_spec)
    reference = fresh(dataset, args.n_ref, 1001)
    floor = energy_distance(fresh(dataset, args.n, 1002), reference)
    velocity_error = registry.create("metric", "velocity_error")
    rows, base = [], {}
    for eps in args.eps:
        network = registry.create("network", f"perturbed:eps={eps}:seed={args.error_seed}:error={args.error}")
        field = network.field(law, dataset)
        ctx = EvalContext(dataset=dataset, train=dataset.train(), reference=reference, law=law, field=field)
        measured = velocity_error.compute(reference, ctx)["velocity_error"]
        for sampler_spec in SAMPLERS:
            sampler = registry.create("sampler", sampler_spec)
            start = time.perf_counter()
            out = generate(law, field, sampler, n=args.n, nfe=args.nfe, shape=dataset.shape, seed=args.seed)
            energy = energy_distance(out.samples, reference)
            base.setdefault(sampler_spec, out.samples)  # eps = 0 comes first
            rows.append({"eps": eps, "eps_measured": measured, "sampler": sampler_spec, "spec": sampler.spec,
                         "nfe": out.nfe, "energy": energy, "excess": energy - floor,
                         "shift": paired_energy(out.samples, base[sampler_spec]),
                         "seconds": time.perf_counter() - start})
            print(f"  {case} eps={eps:<5g} {sampler_spec:<13} energy {energy:.3e}  ({rows[-1]['seconds']:.0f} s)",
                  flush=True)
    summary = {}
    for sampler_spec in SAMPLERS:
        mine = [r for r in rows if r["sampler"] == sampler_spec and r["eps"] <= args.fit_max]
        summary[sampler_spec] = {"slope_shift": slope([r["eps"] for r in mine], [r["shift"] for r in mine]),
                                 "slope_excess": slope([r["eps"] for r in mine], [r["excess"] for r in mine])}
    return {"law": law.spec, "dataset": dataset.spec, "floor": floor, "rows": rows, "fit": summary}


def print_case(case: str, result: dict) -> None:
    rows, fit = result["rows"], result["fit"]
    specs = list(dict.fromkeys(r["sampler"] for r in rows))
    print(f"\n{case}: {result['law']}  on  {result['dataset']}  (floor {result['floor']:+.1e})")
    print(f"{'eps':>6}{'measured':>10}" + "".join(f"{s:>26}" for s in specs)
          + "".join(f"{'ODE/' + s.split('=')[-1]:>10}" for s in specs[1:]))
    print(f"{'':>16}" + f"{'excess       shift':>26}" * len(specs))
    for eps in dict.fromkeys(r["eps"] for r in rows):
        line = [r for r in rows if r["eps"] == eps]
        ratios = [line[0]["shift"] / r["shift"] if r["shift"] > 0 and eps > 0 else math.nan for r in line[1:]]
        print(f"{eps:>6g}{line[0]['eps_measured']:>10.3f}"
              + "".join(f"{r['excess']:>14.2e}{r['shift']:>12.2e}" for r in line)
              + "".join(f"{q:>10.1f}" for q in ratios))
    print("slope of log shift vs log eps:  " + ", ".join(f"{s} {v['slope_shift']:.2f}" for s, v in fit.items())
          + "\nslope of log excess vs log eps: " + ", ".join(f"{s} {v['slope_excess']:.2f}" for s, v in fit.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder (eps_sensitivity.json goes there)")
    parser.add_argument("--cases", default="heat,pme", help="comma-separated: heat (gmm8), pme (barenblatt)")
    parser.add_argument("--eps", default=",".join(map(str, EPS)), help="comma-separated relative errors")
    parser.add_argument("--n", type=int, default=2000, help="generated samples per run")
    parser.add_argument("--n-ref", type=int, default=4000, help="fresh reference samples")
    parser.add_argument("--nfe", type=int, default=500, help="NFE per sample, every sampler")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (the same for every eps)")
    parser.add_argument("--error-seed", type=int, default=0, help="which smooth error")
    parser.add_argument("--error", default="gradient", help="error kind: gradient or vector")
    parser.add_argument("--fit-max", type=float, default=0.1, help="largest eps in the slope fits")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (small kernels: 1 is fastest)")
    args = parser.parse_args()
    args.eps = sorted({0.0, *(float(e) for e in args.eps.split(","))})  # eps = 0: the base of the shifts
    torch.set_num_threads(args.threads)
    results = {"args": vars(args)}
    for case in args.cases.split(","):
        results[case] = run_case(case, args)
        print_case(case, results[case])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eps_sensitivity.json", results)
    print(f"\nwrote {out / 'eps_sensitivity.json'}")


if __name__ == "__main__":
    main()
