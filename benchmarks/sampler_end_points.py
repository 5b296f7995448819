"""Samplers against the exact end point (issue 12): flow error to t = 0 against NFE on gmm8 for
every deterministic sampler and law with exact fields, and the second moment the reverse flow
returns on the PME's stiff start (barenblatt h0 = 0.3, d = 2 and 8).

Flow error: RMS over samples of |sample - exact flow map of the same prior draw at t = 0| (the map:
rk45 at rtol = atol = 1e-9 from T straight to t = 0, float64); mode std: the RMS distance of each
sample to its nearest mode per coordinate (the data's is 0.100). PME: the exact flow map is the
dilation x h0 / h(T) (MATH.md section 4), so E|y|^2 / E|x h0 / h(T)|^2 - 1 over the same draws
has no sampling noise.

    python benchmarks/sampler_end_points.py --out benchmarks/sampler_end_points.md   # ~6 CPU minutes
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from zoo.registry import get_registry
from zoo.sampling import generate, prior_samples
from zoo_laws.pme import relaxing_h
from zoo_samplers import RK45

LAWS = ("heat", "ve", "vp:schedule=cosine", "rf")
SAMPLERS = ("euler", "heun", "dpmpp:final=none", "dpmpp:final=denoise", "dpmpp", "dpmpp:order=3",
            "unipc", "unipc:variant=bh2", "unipc:order=3", "dpmpp2s", "ddim", "lms", "ipndm", "ipndm:history=4",
            "edm", "edm:grid=geometric", "euler_a", "dpmpp_sde", "edm:churn=40:s_tmin=0.05:s_tmax=50:s_noise=1.003")
PME_SAMPLERS = ("euler", "heun", "em:alpha=0.5", "dpmpp:final=none", "dpmpp:final=heun", "dpmpp", "dpmpp:order=3",
                "unipc", "unipc:order=3", "dpmpp2s", "lms", "ipndm")


def exact_end(law, field, x: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """The exact flow map of prior draws x (n, d) float64 to t = 0: rk45 at rtol = atol = tol from T
    straight to 0, float64, returned float32 (what every flow error here is measured against)."""
    ends = torch.tensor([law.T, 0.0], dtype=torch.float64)
    return RK45(rtol=tol, atol=tol).sample(law.reverse(field), x, ends, None).float()


def report(lines: list[str], start: float, out: Path | None) -> None:
    """Close a benchmark's markdown with its run time, write it to ``out`` and print it."""
    text = "\n".join([*lines, f"Measured in {time.perf_counter() - start:.0f} s on one CPU thread."]) + "\n"
    if out:
        out.write_text(text)
    print(text)


def cell(run, spec: str, nfe: int, score) -> str:
    try:
        got = run(spec, nfe)
    except Exception as exc:  # a refusal is a result too
        return "refused" if "needs at least" in str(exc) else f"failed: {str(exc)[:30]}"
    return score(got.samples) + ("" if got.nfe == nfe else f" ({got.nfe})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--nfe", default="5,10,20,50")
    parser.add_argument("--laws", default=",".join(LAWS))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    budgets = [int(v) for v in args.nfe.split(",")]
    head = ["| sampler | " + " | ".join(f"NFE {b}" for b in budgets) + " |", "|---|" + "---|" * len(budgets)]
    lines = [f"# Samplers against the exact end point (n = {args.n}, geometric grids, float32 samples)", "",
             __doc__.split("\n\n")[1].replace("\n", " ").strip(), "",
             "Reproduce: `python benchmarks/sampler_end_points.py --out benchmarks/sampler_end_points.md`.",
             "Cells: flow error / mode std (NFE counted, where it differs from the budget); `refused`: below the",
             "sampler's documented minimum (heun, edm: 9 NFE of steps, and 1 for the final step). euler_a, edm with churn",
             "are stochastic: their flow error measures their noise, not their accuracy; read their mode std.", ""]
    start = time.perf_counter()
    dataset = registry.create("dataset", "gmm8")
    means = dataset.exact.means.float()
    for law_spec in filter(None, args.laws.split(",")):
        law = registry.create("law", law_spec)
        field = law.exact_field(dataset.exact)
        x = prior_samples(law, (2,), 0, range(args.n)).double()
        end = exact_end(law, field, x)

        def score(y: torch.Tensor) -> str:
            near = torch.cdist(y, means).argmin(1)
            return f"{(y - end).square().sum(1).mean().sqrt().item():.3g} / {(y - means[near]).std().item():.3f}"

        run = lambda spec, nfe: generate(law, field, registry.create("sampler", spec), n=args.n, nfe=nfe,  # noqa: E731
                                         shape=(2,), seed=0)
        lines += [f"## {law_spec} (the exact end point's mode std: {score(end).split(' / ')[1]})", ""] + head
        for spec in SAMPLERS:
            lines.append(f"| {spec} | " + " | ".join(cell(run, spec, b, score) for b in budgets) + " |")
        lines.append("")
        print("\n".join(lines[-len(SAMPLERS) - 5:]), flush=True)

    lines += ["## pme on barenblatt:h0=0.3 (exact field): E|x|^2 error against the exact flow map, in %", "",
              "The law's default t_min = 1e-3 (training and sampling end there, so a learned field is never",
              "evaluated below its training range), where the start has already spread E|x|^2 by 22 %, then",
              "the final step: `source` by default on pme (2 NFE, exact for point masses and for a Barenblatt;",
              "zoo.contracts.source_final); `final=heun` and `final=none` for comparison.", ""]
    for dim, m in ((2, 2.0), (8, 1.25)):
        data = registry.create("dataset", f"barenblatt:h0=0.3:dim={dim}:m={m}")
        for law_spec in (f"pme:m={m}",):
            law = registry.create("law", law_spec)
            field = law.exact_field(data.exact)
            x = prior_samples(law, (dim,), 0, range(args.n)).double()
            h_end = float(relaxing_h(torch.tensor(law.T, dtype=torch.float64), 0.3, dim, m))
            want = (x * 0.3 / h_end).square().sum(1).mean().item()
            run = lambda spec, nfe: generate(law, field, registry.create("sampler", spec), n=args.n, nfe=nfe,  # noqa: E731
                                             shape=(dim,), seed=0)
            score = lambda y: f"{100 * (y.double().square().sum(1).mean().item() / want - 1):+.2f}"  # noqa: E731
            lines += [f"### d = {dim}, m = {m}, grid end {law.t_min:g}", ""] + head
            for spec in PME_SAMPLERS:
                lines.append(f"| {spec} | " + " | ".join(cell(run, spec, b, score) for b in budgets) + " |")
            lines.append("")
            print("\n".join(lines[-len(PME_SAMPLERS) - 4:]), flush=True)
    report(lines, start, args.out)


if __name__ == "__main__":
    main()
