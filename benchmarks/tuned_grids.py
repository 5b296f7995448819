"""Tuned time grids against the exact end point (issue 12): flow error to t = 0 on gmm8 with the
exact field, each sampler on the geometric grid and on the grid `zoo tune` searches for it at the
same NFE (zoo.tuning.search with its defaults: 256 search draws of seed 1000, at most 400
evaluations, reference rk45 at 1e-7 to t_min then the law's final step to t = 0; with
`final=denoise` the grid's end and dpmpp's `reach` are fitted too).

Flow error: RMS over n held-out samples (prior draws of seed 0, never seen by the search) of
|sample - exact flow map of the same prior draw at t = 0| (the map: rk45 at rtol = atol = 1e-9
from T straight to t = 0, float64), as in benchmarks/sampler_end_points.py.

    python benchmarks/tuned_grids.py --out benchmarks/tuned_grids.md   # ~10 CPU minutes
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zoo import tuning
from zoo.registry import get_registry
from sampler_end_points import exact_end, report  # benchmarks/, on the path when this script runs
from zoo.sampling import generate, prior_samples

LAWS = ("heat", "ve", "vp:schedule=cosine", "rf")
SAMPLERS = ("dpmpp", "dpmpp:final=none", "dpmpp:final=denoise", "dpmpp:order=3", "unipc", "unipc:order=3", "unipc:variant=bh2", "ipndm",
            "ipndm:history=4", "dpmpp2s")
FEW = ("dpmpp", "dpmpp:final=none", "dpmpp:final=denoise", "unipc:variant=bh2", "ipndm")  # on the laws after the first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--nfe", default="5,10,20")
    parser.add_argument("--laws", default=",".join(LAWS))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--grids", type=Path, default=None, help="also write the tuned grids here (JSON)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    budgets = [int(v) for v in args.nfe.split(",")]
    head = ["| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    lines = [f"# Tuned time grids against the exact end point (gmm8, exact field, n = {args.n} held out)", "",
             __doc__.split("\n\n")[0].replace("\n", " ").strip(), "",
             __doc__.split("\n\n")[1].replace("\n", " ").strip(), "",
             "Reproduce: `python benchmarks/tuned_grids.py --out benchmarks/tuned_grids.md`.",
             "Cells: flow error on the geometric grid -> on the tuned grid (search seconds, one CPU thread).", ""]
    start = time.perf_counter()
    dataset = registry.create("dataset", "gmm8")
    stored: dict[str, dict] = {}
    best: dict[tuple[str, int], tuple[float, str]] = {}
    for i, law_spec in enumerate(args.laws.split(",")):
        law = registry.create("law", law_spec)
        field = law.exact_field(dataset.exact)
        x = prior_samples(law, (2,), 0, range(args.n)).double()
        end = exact_end(law, field, x)

        def error(sampler, nfe: int, times=None) -> float:
            y = generate(law, field, sampler, n=args.n, nfe=nfe, shape=(2,), seed=0, times=times).samples
            return (y - end).square().sum(1).mean().sqrt().item()

        lines += [f"## {law_spec}", ""] + head
        for spec in SAMPLERS if i == 0 else FEW:
            sampler = registry.create("sampler", spec)
            cells = []
            for nfe in budgets:
                try:
                    geo = error(sampler, nfe)
                    entry = tuning.search(law, field, sampler, nfe, (2,))
                    tuned = error(tuning.with_options(sampler, entry), nfe, entry["times"])
                except Exception as exc:  # a refusal is a result too
                    cells.append("refused" if "needs at least" in str(exc) else f"failed: {str(exc)[:40]}")
                    continue
                stored[tuning.grid_key(law.spec, "exact", dataset.spec, sampler, nfe)] = entry
                cells.append(f"{geo:.3g} -> **{tuned:.3g}** ({entry['search']['seconds']:.0f} s)")
                if tuned < best.get((law_spec, nfe), (float("inf"), ""))[0]:
                    fitted = "".join(f", {k} = {v:.4g}" for k, v in entry.get("options", {}).items())
                    best[law_spec, nfe] = (tuned, f"{spec}: {', '.join(f'{t:.4g}' for t in entry['times'])}{fitted}")
            lines.append(f"| {spec} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
        lines.append("")
    lines += ["## The best tuned grid per law and NFE (its times, T first)", ""]
    lines += [f"- {law_spec}, NFE {nfe}: {err:.3g} with {what}" for (law_spec, nfe), (err, what) in best.items()]
    lines.append("")
    if args.grids:
        args.grids.write_text(json.dumps({"grids": stored}, indent=2, sort_keys=True) + "\n")
    report(lines, start, args.out)


if __name__ == "__main__":
    main()
