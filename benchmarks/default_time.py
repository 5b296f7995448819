"""Wall time of the README's default job on 2 busy CPU cores.

    python benchmarks/default_time.py [--cores 0,1] [--busy 2] [-- zoo bench ...]

Runs the default job (`zoo bench --out TMP`, or the command after `--`) pinned to ``--cores``
while ``--busy`` processes spin on the same cores (the "busy 2-core machine" the README speaks
of), and prints the wall time, the CPU time of the job and its workers, the plan and estimate the
bench printed first, the seconds per job kind (from each run's metrics.json) and the load average
before and after (other work on the machine slows the job beyond the spinners). Nothing is written outside
a temporary folder unless --keep DIR is given.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

SPIN = "while True: pass"


def pinned(cores: set[int]):
    return lambda: os.sched_setaffinity(0, cores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cores", default="0,1", help="CPU cores to pin the job and the load to")
    parser.add_argument("--busy", type=int, default=2, help="processes spinning on those cores meanwhile")
    parser.add_argument("--keep", default=None, help="bench folder to keep (default: a temporary one)")
    parser.add_argument("command", nargs="*", help="the job (default: zoo bench --out DIR)")
    args = parser.parse_args()
    cores = {int(c) for c in args.cores.split(",")}
    folder = Path(args.keep or tempfile.mkdtemp(prefix="zoo-default-time-")) / "bench-out"
    command = args.command or ["zoo", "bench", "--out", str(folder)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    load_before = os.getloadavg()
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN], preexec_fn=pinned(cores)) for _ in range(args.busy)]
    try:
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        job = subprocess.run(command, preexec_fn=pinned(cores), env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the job and its workers (the spinners still run)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    if job.returncode != 0:
        sys.exit(f"the job failed ({job.returncode}): {job.stderr[-2000:]}")
    seconds: dict[str, list[float]] = defaultdict(list)
    for run in (folder / "runs").glob("*"):
        spec = json.loads((run / "spec.json").read_text())
        kind = spec["kind"] + (f" {spec['law'].split(':')[0]}" if spec["kind"] == "train" else "")
        if spec["kind"] == "sample":
            kind += f" {spec['network'].split(':')[0]}"
        seconds[kind].append(json.loads((run / "metrics.json").read_text())["timing"]["seconds"])
    plan = next((line for line in job.stderr.splitlines() if line.startswith("plan:")), "no plan line")
    report = {"command": " ".join(command), "cores": sorted(cores), "busy": args.busy, "wall_s": round(wall, 1),
              "cpu_s": round(cpu, 1),
              "plan": plan, "load_before": [round(x, 2) for x in load_before],
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "job_seconds": {k: {"runs": len(v), "sum": round(sum(v), 1), "max": round(max(v), 1)}
                              for k, v in sorted(seconds.items())}}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
