"""Wall time of one toy bench on several executors, as ratios to ``local:workers=1`` in the same run.

    python benchmarks/executor_scaling.py [--budget smoke] [--plugins heat] [--executor SPEC ...]

Default engines: ``local:workers=1`` (the baseline; one process, torch threads = every core),
``local:workers=2`` (two processes of cores/2 threads each) and, when Ray is installed,
``ray:num_cpus=2`` (a local Ray cluster on loopback, one CPU and one thread per run).
Each engine runs the same sweep (``zoo bench``'s defaults, heat and pme on gmm8, or the
``--plugins`` given) into its own folder. Results rows are compared between engines that give
each run the same number of torch threads (metrics summed over threads may differ in the last
bits between thread counts).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

DEFAULT = ["local:workers=1", "local:workers=2", "ray:num_cpus=2"]


def threads_per_run(spec: str, cores: int) -> int:
    """Torch threads each run gets: local gives cores / workers, ray gives cpus_per_job."""
    from zoo.registry import get_registry

    engine = get_registry().create("executor", spec)
    if engine.name == "local":
        return max(1, cores // engine.size)
    return getattr(engine, "cpus_per_job", 1)


def main() -> None:
    from zoo.bench import VOLATILE, budget, make_sweep, run_bench
    from zoo.registry import get_registry
    from zoo.spec import split_list

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--plugins", default="", help="comma-separated SPECs, as zoo bench --plugins")
    parser.add_argument("--executor", action="append", help="an executor SPEC (repeatable)")
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    args = parser.parse_args()
    engines = args.executor or [e for e in DEFAULT if not e.startswith("ray") or importlib.util.find_spec("ray")]
    out = Path(args.out or tempfile.mkdtemp(prefix="zoo-scaling-"))
    sweep = make_sweep(split_list([args.plugins]), [], budget(args.budget), "cpu")
    cores = os.cpu_count() or 1

    timings: dict[str, float] = {}
    rows: dict[str, list[dict]] = {}
    for spec in engines:
        engine = get_registry().create("executor", spec)
        folder = out / spec.replace(":", "_").replace("=", "-")
        start = time.perf_counter()
        result = run_bench(sweep, folder, engine, progress=False, echo=lambda m: None)
        timings[spec] = time.perf_counter() - start  # a Ray engine's includes starting its cluster
        rows[spec] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in result]
        failed = sum(r["status"] != "ok" for r in result)
        print(f"{spec:<24} {timings[spec]:7.1f} s  {len(result)} rows, {failed} failed", flush=True)

    base = engines[0]
    print(f"\n{cores} cores, budget {args.budget}, plugins {args.plugins or 'defaults'}, {len(rows[base])} rows; "
          f"speed-up = {base} time / engine time")
    print(f"{'engine':<24} {'threads':>7} {'seconds':>8} {'speed-up':>8}  rows equal to")
    for spec in engines:
        threads = threads_per_run(spec, cores)
        same = [other for other in engines if other != spec and threads_per_run(other, cores) == threads]
        equal = [other for other in same if rows[other] == rows[spec]]
        differ = [other for other in same if rows[other] != rows[spec]]
        verdict = ", ".join(equal) + (f" (DIFFERENT from {', '.join(differ)})" if differ else "")
        print(f"{spec:<24} {threads:>7} {timings[spec]:8.1f} {timings[base] / timings[spec]:8.2f}  {verdict or '-'}")
    (out / "scaling.json").write_text(json.dumps({"budget": args.budget, "plugins": args.plugins, "cores": cores,
                                                  "seconds": timings}, indent=2))
    print(f"runs in {out}")


if __name__ == "__main__":
    main()
