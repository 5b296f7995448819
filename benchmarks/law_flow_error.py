"""Flow error against NFE for every deterministic sampler and grid on heat, ve, vp (cosine) and rf,
on gmm8 with the exact fields (issue 13): how far each sample lands from the exact flow map of its
own prior draw at t = 0 (the data law: every sampler ends there with its final step), RMS over
samples, the map computed by rk45 at rtol = atol = 1e-9 from T straight to t = 0, float64.

    python benchmarks/law_flow_error.py --out benchmarks/law_flow_error.md   # ~10 CPU minutes
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from zoo.registry import get_registry
from sampler_end_points import exact_end, report  # benchmarks/, on the path when this script runs
from zoo.sampling import generate, prior_samples

LAWS = ("heat", "ve", "vp:schedule=cosine", "rf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--nfe", default="5,10,20,50")
    parser.add_argument("--grids", default="geometric,edm")
    parser.add_argument("--laws", default=",".join(LAWS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    dataset = registry.create("dataset", "gmm8")
    budgets = [int(v) for v in args.nfe.split(",")]
    samplers = [name for name in registry.names("sampler")
                if not registry.create("sampler", name).stochastic and not registry.create("sampler", name).adaptive]
    lines = [f"# Flow error against NFE on gmm8 with exact fields (n = {args.n})", "",
             "Flow error: RMS over samples of |sample - exact flow map of the same prior draw| at t = 0;",
             "the map is rk45 at rtol = atol = 1e-9 from T straight to t = 0, float64, from the same draws (seed 0).",
             "Cells: flow error (NFE counted, where it differs from the budget; `refused`: below the sampler's",
             "documented minimum). Reproduce: `python benchmarks/law_flow_error.py --out benchmarks/law_flow_error.md`.", ""]
    start = time.perf_counter()
    for law_spec in args.laws.split(","):
        law = registry.create("law", law_spec)
        field = law.exact_field(dataset.exact)
        run = lambda spec, nfe: generate(law, field, registry.create("sampler", spec), n=args.n, nfe=nfe,  # noqa: E731
                                         shape=(2,), seed=0)
        x = prior_samples(law, (2,), 0, range(args.n)).double()
        end, check = exact_end(law, field, x), exact_end(law, field, x, tol=1e-7)
        ref_err = (check - end).square().sum(1).mean().sqrt().item()
        lines += [f"## {law.spec}", "",
                  f"reference: rk45 at 1e-7 is {ref_err:.1e} from it", "",
                  "| sampler | grid | " + " | ".join(f"NFE {b}" for b in budgets) + " |",
                  "|---|---|" + "---|" * len(budgets)]
        for name in samplers:
            for grid in args.grids.split(","):
                spec = f"{name}:grid={grid}"
                sampler = registry.create("sampler", spec)
                if sampler.unsupported(law) is not None:
                    continue
                cells = []
                for nfe in budgets:
                    try:
                        got = run(spec, nfe)
                    except Exception as exc:  # a refusal or a blow-up is a result too
                        cells.append("refused" if "needs at least" in str(exc) else f"failed: {str(exc)[:40]}")
                        continue
                    err = (got.samples - end).square().sum(1).mean().sqrt().item()
                    cells.append(f"{err:.3g}" + ("" if got.nfe == nfe else f" ({got.nfe})"))
                lines.append(f"| {name} | {grid} | " + " | ".join(cells) + " |")
        lines.append("")
        print("\n".join(lines[-(len(samplers) * 2 + 6):]), flush=True)
    report(lines, start, args.out)


if __name__ == "__main__":
    main()
