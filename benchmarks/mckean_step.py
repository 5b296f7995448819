"""One McKean-Vlasov step (zoo.mckean) against a roofline measured in the same run (issue 11).

A step is the calibrated kNN density of the N particles (Kozachenko-Leonenko: each particle's
distance to its k-th nearest other one, rows in chunks, memory O(N x chunk)), the noise D it sets,
and the exact Ornstein-Uhlenbeck move. The work it cannot avoid is over all N^2 pairs, float64 as
the route computes: the Gram matrix as GEMMs of (chunk, d) by (d, N), and one pass over the N^2
squared distances to pick each row's k smallest. The roofline times each in its most favourable
form on this machine (the GEMM at its best block size; the pass as one elementwise op over a
block), so 100 % is out of reach for topk, which reads its row more than once.

    python benchmarks/mckean_step.py [--threads 1,2] [--n 4000] [--dims 8,64]
"""
from __future__ import annotations

import argparse

import torch

from blob_step import best_of  # benchmarks/, on the path when this script runs
from zoo import mckean
from zoo_laws.pme import PME


def roofline(n: int, d: int) -> dict[str, float]:
    """Seconds of the unavoidable N^2 work in float64, each op at its best block of rows."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    best = {"gram_gemm": float("inf"), "pass": float("inf")}
    for rows in sorted({min(n, r) for r in (256, 1024, 4096)}):
        block = torch.empty(rows, n, dtype=torch.float64)
        reps = n / rows
        best["gram_gemm"] = min(best["gram_gemm"], best_of(lambda: torch.mm(x[:rows], x.T, out=block)) * reps)
        best["pass"] = min(best["pass"], best_of(lambda: block.clamp_min_(0.0)) * reps)
    return {**best, "total": sum(best.values())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--dims", default="8,64")
    args = parser.parse_args()
    print("| case | threads | kNN density | step | roofline | density share | step share |")
    print("|---|---|---|---|---|---|---|")
    for d in (int(v) for v in args.dims.split(",")):
        law = PME()
        g = torch.Generator().manual_seed(1)
        estimate = law.density_estimate(args.n, (d,), g)
        x = law.prior(args.n, (d,), g).double()
        energy = law.energy(d)
        one_step = torch.tensor([mckean.MIN_DT], dtype=torch.float64)  # the flow's first step is MIN_DT

        def step() -> None:
            for _ in mckean.flow(x, energy, one_step, estimate, g):
                pass

        for threads in (int(v) for v in args.threads.split(",")):
            torch.set_num_threads(threads)
            density = best_of(lambda: mckean.knn_log_density(x, law.neighbours))
            # flow() estimates the density at the start and after the move: two densities, one move
            moved = best_of(step) - density
            roof = roofline(args.n, d)["total"]
            print(f"| N = {args.n}, d = {d} | {threads} | {density:.3f} s | {moved:.3f} s | {roof:.3f} s | "
                  f"{100 * roof / density:.0f} % | {100 * roof / moved:.0f} % |", flush=True)


if __name__ == "__main__":
    main()
