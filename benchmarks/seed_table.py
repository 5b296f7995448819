"""FID mean +- standard deviation over seeds per law x sampler x NFE budget of a bench folder, with
the memorisation flag (zoo.report.memorising) of every row: the table of
benchmarks/pme_mckean_digits.md.

    python benchmarks/seed_table.py bench-pme-digits [--metric fid]
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from zoo.report import memorising


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--metric", default="fid")
    args = parser.parse_args()
    rows = json.loads((args.folder / "results.json").read_text())
    cells: dict[tuple, list[float]] = defaultdict(list)
    flagged: dict[tuple, int] = defaultdict(int)
    budgets = sorted({r["nfe_budget"] for r in rows if r.get("nfe_budget")})
    for r in rows:
        if r.get("status") != "ok" or r["network"].startswith(("empirical", "exact")):
            continue
        key = (r["law"], r["sampler"].split(":")[0], r["alpha"])
        value = r["metrics"].get(args.metric)
        if value is not None:
            cells[key + (r["nfe_budget"],)].append(value)
        flagged[key] += memorising(r["metrics"])
    print("| law | sampler | alpha | " + " | ".join(f"{args.metric} @{b} NFE" for b in budgets) + " | rows flagged MEMORISING |")
    print("|---|---|---|" + "---|" * len(budgets) + "---|")
    for key in sorted(flagged):
        law, sampler, alpha = key
        parts = []
        for b in budgets:
            v = cells.get(key + (b,), [])
            parts.append(f"{np.mean(v):.2f} +- {np.std(v, ddof=1):.2f} ({len(v)})" if len(v) > 1 else
                         (f"{v[0]:.2f} (1)" if v else "-"))
        print(f"| {law} | {sampler} | {alpha:g} | " + " | ".join(parts) + f" | {flagged[key]} |")


if __name__ == "__main__":
    main()
