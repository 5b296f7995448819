"""Blob velocity step (zoo.blob.velocity) against a roofline measured in the same run.

The roofline is the work over all N^2 pairs that the method cannot avoid, each op timed in its
most favourable form on this machine: the exponent as one GEMM of (N, d+2) by (d+2, N), the
elementwise exp of N^2 float32 values, and the product of the N x N kernel with (N, d+1).
The blob method needs the density rho~ before the bracket [G'(rho~_i) + G'(rho~_j)], so with
O(N x chunk) memory it makes two such passes: 50 % is its ceiling against this roofline.
Also times the forward flow of all 1797 digits (d = 64, m = 1 + 2/64) to t = T, with the pme law's
own flow options (the calibrated scaled width in high d, Runge-Kutta-Chebyshev steps), and prints
its final second moment beside the Barenblatt's.

    python benchmarks/blob_step.py [--flow-t-end 5.0] [--skip-flow] [--threads N]
"""
from __future__ import annotations

import argparse
import resource
import threading
import time

import torch

from zoo.blob import PowerEnergy, default_eps, flow, velocity
from zoo_laws.pme import PME, barenblatt_second_moment

CHUNK_BYTES = 1 << 26


def best_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def roofline(n: int, d: int) -> dict[str, float]:
    """Seconds of the unavoidable N^2 work, each op at its best block size (64 rows to 64 MiB)."""
    g = torch.Generator().manual_seed(0)
    v = torch.randn(n, d + 1, generator=g)
    b = torch.randn(d + 2, n, generator=g) * 0.1
    best = {"exponent_gemm": float("inf"), "exp": float("inf"), "product_gemm": float("inf")}
    for rows in sorted({min(n, r) for r in (64, 256, 1024, max(256, CHUNK_BYTES // (4 * n)))}):
        a = torch.randn(rows, d + 2, generator=g)
        block = torch.empty(rows, n)
        reps = n / rows
        best["exponent_gemm"] = min(best["exponent_gemm"], best_of(lambda: torch.mm(a, b, out=block)) * reps)
        best["exp"] = min(best["exp"], best_of(lambda: torch.exp(block, out=block)) * reps)
        best["product_gemm"] = min(best["product_gemm"], best_of(lambda: torch.mm(block, v)) * reps,
                                   best_of(lambda: torch.mm(v.t(), block.t())) * reps)
    return {**best, "total": sum(best.values())}


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_growth_mib(fn) -> float:
    """Peak resident memory above the starting level while fn runs (sampled every millisecond)."""
    base, peak, done = rss_mib(), [0.0], threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mib() - base)
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        fn()
    finally:
        done.set()
        watcher.join()
    return peak[0]


def digits() -> torch.Tensor:
    """All 1797 digits, flattened to (1797, 64) and scaled to [-1, 1] like the digits data set."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().data).double() / 8.0 - 1.0


def bench_step(name: str, x: torch.Tensor, m: float) -> None:
    n, d = x.shape
    eps = default_eps(x)
    step = best_of(lambda: velocity(x, PowerEnergy(m), eps))
    grown = peak_growth_mib(lambda: velocity(x, PowerEnergy(m), eps))
    roof = roofline(n, d)
    print(f"{name}: N={n} d={d} m={m:.4g} eps={eps:.3g}: step {step:.3f} s, peak RSS growth {grown:.0f} MiB "
          f"(an N x N float32 matrix would be {4 * n * n / 2**20:.0f} MiB)")
    print(f"  roofline {roof['total']:.3f} s (exponent GEMM {roof['exponent_gemm']:.3f}, exp {roof['exp']:.3f}, "
          f"product GEMM {roof['product_gemm']:.3f}): {100 * roof['total'] / step:.0f} % of roofline "
          f"({100 * 2 * roof['total'] / step:.0f} % of the two-pass ceiling)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flow-t-end", type=float, default=5.0)
    parser.add_argument("--skip-flow", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    g = torch.Generator().manual_seed(0)
    bench_step("gaussian blob", torch.randn(10_000, 2, generator=g, dtype=torch.float64), 2.0)
    x = digits()
    bench_step("digits", x, 1 + 2 / 64)
    if not args.skip_flow:
        law = PME()
        steps = [0]
        start = time.perf_counter()
        options = law.flow_options(x, torch.Generator().manual_seed(0))
        times = torch.tensor([0.0, args.flow_t_end], dtype=torch.float64)
        last = list(flow(x, law.energy(64), times, progress=lambda t: steps.__setitem__(0, steps[0] + 1),
                         **options))[-1]
        took = time.perf_counter() - start
        print(f"digits forward flow to t = {args.flow_t_end:g} (calibration included): {took:.1f} s, {steps[0]} steps; "
              f"final mean |x|^2 = {float(last.x.square().sum(1).mean()):.2f} "
              f"(stationary Barenblatt: {barenblatt_second_moment(64, law.exponent(64)):.2f})")


if __name__ == "__main__":
    main()
