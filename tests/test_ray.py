"""The ``ray`` executor on real local Ray clusters bound to loopback.

One cluster is started by the executor itself (``ray`` with no address); another by
``ray start --head`` in a subprocess, joined by address, runs a small bench whose rows must
equal the ``local`` executor's. Every Ray process started here is stopped by its process group.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from zoo.errors import ZooError
from zoo.registry import get_registry

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install zoo[ray])")

TINY_SUITE = """\
plugins = ["heat", "mlp:width=32:depth=2", "euler", "distances"]
datasets = ["gmm8:n_train=500:n_test=200"]
budget = "smoke"
device = "cpu"
[overrides]
steps = 20
n = 32
nfe = [4]
"""


def seeded_fit(job: dict) -> dict:
    """A job as the bench runs them: reseed from the spec, fit a tiny model, return small numbers."""
    if job["seed"] < 0:
        raise ValueError("negative seed")
    torch.manual_seed(job["seed"])
    x = torch.randn(64, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(64)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(20):
        opt.zero_grad()
        loss = (model(x).squeeze(1) - y).pow(2).mean()
        loss.backward()
        opt.step()
    return {"loss": loss.item(), "pid": os.getpid(), "threads": torch.get_num_threads(),
            "mark": os.environ.get("ZOO_TEST_MARK")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(address: str, seconds: float = 90) -> None:
    host, port = address.split(":")
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_missing_ray_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` sees without the extra
    with pytest.raises(ZooError, match=r"pip install zoo\[ray\]"):
        get_registry().create("executor", "ray")


@needs_ray
def test_bad_options_fail_at_once(tmp_path):
    registry = get_registry()
    with pytest.raises(ZooError, match="HOST:PORT"):
        registry.create("executor", "ray:address=nowhere")
    with pytest.raises(ZooError, match="cpus_per_job"):
        registry.create("executor", "ray:cpus_per_job=0")
    (tmp_path / "env.json").write_text("[1, 2]")
    with pytest.raises(ZooError, match="JSON object"):
        registry.create("executor", f"ray:runtime_env={tmp_path / 'env.json'}")


@needs_ray
def test_unreachable_address_fails_fast_in_one_line(tmp_path, capsys):
    from zoo.cli import main

    port = free_port()  # nothing listens there
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--plugins", "heat,euler", "--budget", "smoke", "--no-report",
              "--executor", f"ray:address=127.0.0.1:{port}:timeout=2", "--out", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert time.perf_counter() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"zoo: cannot reach the Ray cluster at 127.0.0.1:{port}")


@needs_ray
def test_local_cluster_runs_each_job_in_a_fresh_reseeded_process(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # Ray sets it in this process: undo after
    # the workers import this module by name: put its folder on their path, through the runtime_env option
    top = Path(__file__).parents[__name__.count(".")]
    env = tmp_path / "env.json"
    env.write_text(json.dumps({"env_vars": {"PYTHONPATH": str(top), "ZOO_TEST_MARK": "from-runtime-env"}}))
    executor = get_registry().create("executor", f"ray:num_cpus=2:fresh_workers=true:runtime_env={env}")
    jobs = [{"seed": s} for s in (3, 1, 4, -1)]

    import ray

    results = []
    for job, result in executor.map(seeded_fit, jobs):
        assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1"  # the node's servers bind loopback only
        results.append((job, result))
    assert not ray.is_initialized()  # the executor stopped the cluster it started
    assert sorted(j["seed"] for j, _ in results) == sorted(j["seed"] for j in jobs)
    ok = [(job, r) for job, r in results if "loss" in r]
    failed = [r for job, r in results if job["seed"] < 0]
    assert len(ok) == 3 and len(failed) == 1
    assert failed[0]["status"] == "failed" and "negative seed" in failed[0]["error"]
    for job, r in ok:
        assert r["loss"] == seeded_fit(job)["loss"]  # bitwise: the same numbers as a plain loop
        assert r["threads"] == 1 and r["mark"] == "from-runtime-env"
        assert r["pid"] != os.getpid()
    assert len({r["pid"] for _, r in ok}) == 3  # fresh_workers: never a reused worker


@pytest.fixture
def ray_head():
    """``ray start --head`` on loopback with its own token, temp dir and port; yields (address, env)."""
    port = free_port()
    temp = tempfile.mkdtemp(prefix="zray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    token = Path(temp) / "token"
    token.write_text(secrets.token_hex(32))
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node address 127.0.0.1: bind loopback only
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token), "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield f"127.0.0.1:{port}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(3)
        except subprocess.TimeoutExpired:
            pass
        os.killpg(head.pid, signal.SIGKILL)  # the raylet and GCS can outlive a SIGTERM
        head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def differences(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}/{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def bench(executor: str, out: Path, suite: Path, env: dict) -> list[dict]:
    args = ["bench", "--suite", str(suite), "--executor", executor, "--out", str(out), "--no-report"]
    done = subprocess.run([sys.executable, "-c", f"from zoo.cli import main; main({args!r})"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((out / "results.json").read_text())
    assert rows and all(r["status"] == "ok" for r in rows)
    return [{k: v for k, v in r.items() if k != "timing"} for r in rows]


@needs_ray
def test_bench_rows_on_a_ray_cluster_equal_the_local_executors(tmp_path, ray_head):
    address, env = ray_head
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY_SUITE)
    # one torch thread per run on both engines: metrics summed over threads differ in the last bits otherwise
    local = bench("local:workers=2", tmp_path / "local", suite, env)  # the head starts meanwhile
    wait_listening(address)
    on_ray = bench(f"ray:address={address}:cpus_per_job=1", tmp_path / "ray", suite, env)
    assert not differences(local, on_ray), differences(local, on_ray)
    assert {r["network"].split(":")[0] for r in on_ray} >= {"mlp", "exact"}
    assert all(r["nfe"] == 4 for r in on_ray)
