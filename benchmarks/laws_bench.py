"""Summarise `zoo bench` folders by law: for each law (trained network rows only), the primary
metric of each sampler at each NFE, best alpha for stochastic samplers, and the velocity error.

    python benchmarks/laws_bench.py BENCH_DIR [BENCH_DIR ...] [--metric fid|energy] [--network mlp]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--metric", default="energy")
    parser.add_argument("--network", default="mlp")
    args = parser.parse_args()
    rows = [r for d in args.dirs for r in json.loads((d / "results.json").read_text())
            if r["status"] == "ok" and r["network"].split(":")[0] == args.network]
    cells: dict[tuple[str, str], dict[int, tuple[float, float]]] = defaultdict(dict)
    nfes, velocity = set(), {}
    for r in rows:
        law, sampler = r["law"], r["sampler"].split(":")[0]
        budget = r["nfe_budget"]
        value = r["metrics"][args.metric]
        nfes.add(budget)
        best = cells[law, sampler].get(budget)
        if best is None or value < best[0]:
            cells[law, sampler][budget] = (value, r["alpha"])
        if "velocity_error" in r["metrics"]:
            velocity[law] = r["metrics"]["velocity_error"]
    order = sorted(n for n in nfes if n is not None) + ([None] if None in nfes else [])
    print("| law | velocity_error | sampler | " + " | ".join(f"NFE {n}" if n else "adaptive" for n in order) + " |")
    print("|---|---|---|" + "---|" * len(order))
    for (law, sampler), by_nfe in sorted(cells.items()):
        short = ":".join([law.split(":")[0]] + [p for p in law.split(":")[1:] if p.startswith(("schedule=", "route="))])
        values = [by_nfe.get(n) for n in order]
        text = [("" if v is None else f"{v[0]:.4g}" + (f" (a={v[1]:g})" if v[1] else "")) for v in values]
        eps = f"{velocity[law]:.3g}" if law in velocity else "-"
        print(f"| {short} | {eps} | {sampler} | " + " | ".join(text) + " |")


if __name__ == "__main__":
    main()
