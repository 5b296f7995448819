"""Ctrl-C during a bench: it acts within seconds at every stage (training, sampling, metrics),
says what it does, loses nothing finished, and --resume completes the sweep (with exit status 1:
the bench includes a sampler that overspends its NFE budget, whose rows fail while the others
are kept).

Each stage is found through the line a run writes to its log when it enters the stage. The
training stage gets the terminal's Ctrl-C (SIGINT to the whole process group, workers included);
the sampling stage a `kill -INT` of the bench alone, which must stop its worker too.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

LIMIT = 5.0  # seconds from SIGINT to exit

SUITE = """[overrides]
steps = 2000  # long enough that an idle machine is still training when Ctrl-C comes
batch_size = 64
checkpoint_every = 100000
n = 600
nfe = [150]
alpha = [1.0]
"""


OVERSPENDS = """
from dataclasses import dataclass
from typing import ClassVar
import zoo
from zoo.contracts import Sampler

@dataclass(frozen=True)
class Overspends(Sampler):
    name: ClassVar[str] = "overspends"

    def steps_for(self, nfe):
        return max(1, nfe // 2)

    def sample(self, process, x, grid, noise):  # three NFE per step, two budgeted
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            process.ode_drift(x, t)
            x = x + (t - t_next) * process.ode_drift(process.ode_drift(x, t), t)
        return x

@zoo.hookimpl
def zoo_register_samplers(register):
    register(Overspends)
"""


def _start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from zoo.cli import main; main()", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _logs(out: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (out / "runs").glob("*/log")} if (out / "runs").exists() else {}


def _wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the bench ended before {what}: {proc.stderr.read()[-2000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _interrupt(proc: subprocess.Popen, group: bool) -> tuple[float, str]:
    """SIGINT (to the process group, as a terminal sends it, or to the bench alone); returns the
    seconds until it exited and its stderr."""
    start = time.time()
    if group:
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return time.time() - start, err


def _running(out: Path, stage: str, before: dict[str, str]) -> bool:
    """A run without a result whose last log line is ``stage``, written after ``before`` (the logs
    when this bench started: a run an earlier bench left in that stage must not count, or the
    signal lands while the new bench is still starting Python, before zoo handles it)."""
    return any(log != before.get(run) and log.rstrip().endswith(f"stage {stage}")
               and not (out / "runs" / run / "metrics.json").exists()
               for run, log in _logs(out).items())


def _ok_rows(out: Path) -> list[dict]:
    path = out / "results.json"
    return [r for r in json.loads(path.read_text()) if r["status"] == "ok"] if path.exists() else []


def test_ctrl_c_at_three_stages_then_resume(tmp_path: Path) -> None:
    (tmp_path / "suite.toml").write_text(SUITE)
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "overspends.py").write_text(OVERSPENDS)
    out = tmp_path / "out"
    args = ["--plugins-dir", str(tmp_path / "plugins"), "bench",
            "--plugins", "heat,mlp:width=32:depth=2,euler,overspends,distances", "--dataset", "gmm8:n_train=200:n_test=500",
            "--budget", "smoke", "--suite", str(tmp_path / "suite.toml"), "--executor", "local:workers=1",
            "--out", str(out), "--no-report"]

    # 1. training, Ctrl-C from the terminal: the step in progress is finished and checkpointed
    proc = _start(args)
    _wait_for(proc, lambda: _running(out, "training", {}), "training")
    train = next(run for run, log in _logs(out).items() if "stage training" in log)
    _wait_for(proc, (out / "runs" / train / "log.jsonl").exists, "the training loop")  # made just before it
    time.sleep(0.3)
    seconds, err = _interrupt(proc, group=True)
    assert proc.returncode == 130 and seconds < LIMIT, (seconds, err)
    assert "interrupted: saving checkpoint at step" in err and "the same command with --resume continues" in err, err
    step = torch.load(out / "runs" / train / "checkpoint.pt", weights_only=True)["step"]
    assert 0 < step < 2000  # checkpoint_every is larger than the run: only Ctrl-C saved it
    assert len(json.loads((out / "floors.json").read_text())) == 1  # the floors finished before: kept

    # 2. sampling, `kill -INT` of the bench alone, after the first row finished
    before = _logs(out)
    proc = _start([*args, "--resume"])
    _wait_for(proc, lambda: _ok_rows(out) and _running(out, "sampling", before), "the second row's sampling")
    seconds, err = _interrupt(proc, group=False)
    assert proc.returncode == 130 and seconds < LIMIT, (seconds, err)
    assert "stopped while sampling" in err
    stamps = {r["run"]: (out / "runs" / r["run"] / "samples.npz").stat().st_mtime_ns for r in _ok_rows(out)}
    assert stamps
    trained = torch.load(out / "runs" / train / "checkpoint.pt", weights_only=True)
    assert trained["step"] == 2000 and len(trained["losses"]) == 2000  # resumed from the Ctrl-C checkpoint

    # 3. metrics (a few ms on an idle machine: the signal may land in the next run or between runs; retry)
    for _ in range(3):
        before = _logs(out)
        proc = _start([*args, "--resume"])
        _wait_for(proc, lambda: _running(out, "evaluating metrics", before), "metrics")
        seconds, err = _interrupt(proc, group=True)
        assert proc.returncode == 130 and seconds < LIMIT, (seconds, err)
        if "stopped while evaluating metrics" in err:
            break
        assert "runs finished and saved in" in err, err
    else:
        raise AssertionError(f"three Ctrl-C never landed in the metrics: {err}")

    # --resume completes; nothing finished was redone; the overspending rows failed: exit status 1
    done = subprocess.run([sys.executable, "-c", "from zoo.cli import main; main()", *args, "--resume"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "zoo: 3 of 6 runs failed" in done.stderr, done.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    status = {(r["network"].split(":")[0], r["sampler"].split(":")[0]): r["status"] for r in rows}
    assert status == {(net, sampler): "ok" if sampler == "euler" else "failed"
                      for net in ("mlp", "exact", "empirical") for sampler in ("euler", "overspends")}
    assert all("spent 223 NFE per sample, over its budget of 150" in r["error"] for r in rows if r["status"] != "ok"), rows
    assert {run: (out / "runs" / run / "samples.npz").stat().st_mtime_ns for run in stamps} == stamps
    assert torch.load(out / "runs" / train / "checkpoint.pt", weights_only=True)["step"] == 2000
