"""Wall time of `zoo bench --plugins pme,heat --budget small` (issue 4: under 15 minutes on 2 CPU cores).

    python benchmarks/bench_small.py [--out DIR] [-- extra zoo bench options]

Runs the bench as a user would (a subprocess of the `zoo` CLI, default executor), then prints the
wall time, its ratio to the 15-minute target, the CPU time, the time spent per job kind (from each run's
metrics.json) and the row counts, and writes them to benchmarks/bench_small.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

TARGET_S = 15 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="bench folder (default: a fresh temporary one)")
    parser.add_argument("extra", nargs="*", help="more zoo bench options")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="zoo-bench-small-")) / "bench"
    cmd = [sys.executable, "-c", "from zoo.cli import main; main()", "bench", "--plugins", "pme,heat",
           "--budget", "small", "--out", str(out), *args.extra]
    load = os.getloadavg()[0]
    start = time.perf_counter()
    done = subprocess.run(cmd)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the bench and its (waited-for) workers
    if done.returncode != 0:
        sys.exit(f"zoo bench failed with status {done.returncode}")
    rows = json.loads((out / "results.json").read_text())
    per_kind: dict[str, float] = defaultdict(float)
    for run in (out / "runs").iterdir():
        spec = json.loads((run / "spec.json").read_text())
        per_kind[spec["kind"]] += json.loads((run / "metrics.json").read_text())["timing"]["seconds"]
    figure = {
        "command": "zoo bench --plugins pme,heat --budget small " + " ".join(args.extra),
        "wall_s": round(wall, 1),
        "ratio_to_15_min_target": round(wall / TARGET_S, 3),
        # wall time depends on what else runs: CPU time and the load average say how much did
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "load_average_before": round(load, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "seconds_per_job_kind": {k: round(v, 1) for k, v in sorted(per_kind.items())},
        "rows": len(rows),
        "rows_ok": sum(r["status"] == "ok" for r in rows),
        "rows_memorising": sum(bool(r["memorising"]) for r in rows),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(figure, indent=2))
    (Path(__file__).parent / "bench_small.json").write_text(json.dumps(figure, indent=2) + "\n")


if __name__ == "__main__":
    main()
