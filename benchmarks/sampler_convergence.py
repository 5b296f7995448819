"""Error against NFE for every sampler, with the exact field of gmm8 (heat law).

Deterministic samplers: RMS distance at t_min to a tight rk45 solve (rtol = atol = 1e-10) of the
same prior points, and the measured order log(e_K / e_2K) / log(NFE_2K / NFE_K) between
consecutive budgets (Euler 1, Heun 2, DPM-Solver++ 2M 2, 3M 3). rk45 is swept over its tolerance.
Stochastic samplers: energy distance to fresh data, in units of the real-vs-real floor measured
the same way (1 = as good as a second real sample).

    python benchmarks/sampler_convergence.py [--n 200] [--grid geometric] [--threads 1]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from zoo.contracts import GaussianMixture, Noise
from zoo.sampling import generate
from zoo_laws.heat import Heat
from zoo_samplers import RK45, DPMSolverPP, Euler, EulerMaruyama, Heun, PredictorCorrector

BUDGETS = (5, 10, 20, 40, 80, 160, 320)
STOCHASTIC_BUDGETS = (25, 50, 100, 200, 400)


def gmm8(dtype: torch.dtype = torch.float64, std: float = 0.1) -> GaussianMixture:
    angle = torch.arange(8, dtype=dtype) * 2 * math.pi / 8
    means = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return GaussianMixture(torch.full((8,), 1 / 8, dtype=dtype), means, std**2 * torch.eye(2, dtype=dtype).repeat(8, 1, 1))


def draw(n: int, seed: int, std: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    means = gmm8(torch.float32, std).means
    return means[torch.randint(8, (n,), generator=g)] + std * torch.randn(n, 2, generator=g)


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    return (2 * torch.cdist(a, b).mean() - torch.cdist(a, a).mean() - torch.cdist(b, b).mean()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="prior points for the deterministic errors")
    parser.add_argument("--n-stochastic", type=int, default=2000, help="samples for the energy distances")
    parser.add_argument("--grid", default="geometric", help="time grid of every sampler")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    law = Heat()
    field = law.exact_field(gmm8())
    process = law.reverse(field)
    x = torch.randn(args.n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    noise = Noise(0, range(args.n), (2,), dtype=torch.float64)
    reference = RK45(rtol=1e-10, atol=1e-10).sample(process, x, law.time_grid(1), noise)

    def solve(sampler, nfe: int) -> tuple[float, int, float]:
        field.nfe, start = 0, time.perf_counter()
        y = sampler.sample(process, x, law.time_grid(sampler.steps_for(nfe), sampler.grid), noise)
        seconds = time.perf_counter() - start
        return (y - reference).norm(dim=1).square().mean().sqrt().item(), field.nfe, seconds

    print(f"heat law T={law.T} t_min={law.t_min}, gmm8 (std 0.1, radius 2), grid={args.grid}, n={args.n}, float64")
    print("reference: rk45 rtol=atol=1e-10\n")
    print(f"{'sampler':<22}{'NFE':>6}{'RMS error':>12}{'order':>8}{'seconds':>9}")
    samplers = [Euler(grid=args.grid), Heun(grid=args.grid), DPMSolverPP(order=2, grid=args.grid),
                DPMSolverPP(order=3, grid=args.grid)]
    for sampler in samplers:
        label = sampler.name + (f" {sampler.order}M" if isinstance(sampler, DPMSolverPP) else "")
        previous = None
        for budget in BUDGETS:
            err, nfe, seconds = solve(sampler, budget)
            order = "" if previous is None else f"{math.log(previous[0] / err) / math.log(nfe / previous[1]):.2f}"
            print(f"{label:<22}{nfe:>6}{err:>12.3e}{order:>8}{seconds:>9.2f}")
            previous = (err, nfe)
        print()
    for tol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
        err, nfe, seconds = solve(RK45(rtol=tol, atol=tol), 1)
        print(f"{f'rk45 tol={tol:g}':<22}{nfe:>6}{err:>12.3e}{'':>8}{seconds:>9.2f}")

    n = args.n_stochastic
    real = draw(n, 1)
    floor = sum(energy_distance(draw(n, 10 + 2 * s), draw(n, 11 + 2 * s)) for s in range(4)) / 4
    print(f"\nstochastic: energy distance to {n} fresh points / real-vs-real floor ({floor:.2e})")
    print(f"{'sampler':<34}" + "".join(f"{'NFE ' + str(b):>10}" for b in STOCHASTIC_BUDGETS))
    stochastic = [Heun(grid=args.grid), EulerMaruyama(alpha=0.5, grid=args.grid), EulerMaruyama(alpha=1.0, grid=args.grid),
                  EulerMaruyama(alpha=1.0, schedule="linear", grid=args.grid), PredictorCorrector(grid=args.grid)]
    for sampler in stochastic:
        row = [energy_distance(generate(law, field, sampler, n=n, nfe=b, shape=(2,), seed=2).samples, real) / floor
               for b in STOCHASTIC_BUDGETS]
        label = sampler.spec.replace(f":grid={args.grid}", "")
        print(f"{label:<34}" + "".join(f"{r:>10.2f}" for r in row))


if __name__ == "__main__":
    main()
