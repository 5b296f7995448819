"""zoo bench: the sweep, the local executor, results.json, resume after SIGKILL, bad input.

The end-to-end runs use the smoke budget on a small gmm8 (1000 train points): real training,
real sampling, real metrics.
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

import pytest

from zoo.bench import budget, load_suite, make_row, make_sweep, plan, prepare_out
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.report import write_report

DATA = "gmm8:n_train=1000:n_test=500"


def zoo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from zoo.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout)


def _rows(path: Path) -> list[dict]:
    """results.json must parse whenever it exists: it is only ever replaced atomically."""
    return json.loads(path.read_text()) if path.exists() else []


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[Path, dict, dict, subprocess.CompletedProcess]:
    """The smoke bench of heat on gmm8, SIGKILLed once two rows are finished, then resumed.
    The MLP is 64 wide instead of the default 256: every code path is the same, and its training
    and the velocity error of its rows (an evaluation at 33 times) cost a tenth.

    Returns the output folder, the finished rows at the kill, the mtimes of their samples and the
    resumed run."""
    out = tmp_path_factory.mktemp("bench") / "out"
    args = ["bench", "--plugins", "heat,mlp:width=64", "--budget", "smoke", "--dataset", DATA, "--out", str(out)]
    cmd = [sys.executable, "-c", "from zoo.cli import main; main()", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    try:
        while time.time() < deadline and len([r for r in _rows(out / "results.json") if r["status"] == "ok"]) < 2:
            assert proc.poll() is None, "the bench ended before it could be killed"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the bench and its worker processes
        proc.wait()
    before = {r["run"]: r for r in _rows(out / "results.json") if r["status"] == "ok"}
    stamps = {run: (out / "runs" / run / "samples.npz").stat().st_mtime_ns for run in before}
    resumed = zoo(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    return out, before, stamps, resumed


def test_plan_is_content_hashed_and_follows_the_grids() -> None:
    sweep = make_sweep(["heat"], [DATA], budget("smoke"))
    jobs = plan(sweep)
    assert jobs == plan(sweep) and len({j["id"] for j in jobs}) == len(jobs)
    samples = [j["spec"] for j in jobs if j["spec"]["kind"] == "sample"]
    assert {j["spec"]["kind"] for j in jobs} == {"floors", "train", "sample"}
    registry = get_registry()
    for spec in samples:
        sampler = registry.create("sampler", spec["sampler"])
        assert spec["alpha"] == (float(sampler.alpha) if sampler.stochastic else 0.0)
    # an adaptive solver ignores the NFE budget: it runs once per field, fixed-step ones once per NFE
    per_sampler = {}
    for spec in samples:
        per_sampler.setdefault((spec["network"], spec["sampler"]), set()).add(spec["nfe"])
    assert {len(v) for k, v in per_sampler.items() if k[1].startswith("rk45")} == {1}
    assert {len(v) for k, v in per_sampler.items() if k[1].startswith("euler")} == {2}


def _samples(sweep) -> list[dict]:
    return [j for j in plan(sweep) if j["spec"]["kind"] == "sample"]


def _alphas(jobs: list[dict], name: str) -> set[float]:
    return {j["spec"]["alpha"] for j in jobs if j["spec"]["sampler"].split(":")[0] == name}


def test_alpha_zero_twin_of_a_deterministic_sampler_is_left_out() -> None:
    b = budget("smoke").replace(alpha=[0.0, 1.0])
    notes: list[str] = []
    sweep = make_sweep(["heat"], [DATA], b, notes=notes)
    jobs = _samples(sweep)
    em0, euler = "em:alpha=0.0:grid=geometric:final=auto:schedule=const", "euler:grid=geometric:final=auto"
    assert _alphas(jobs, "em") == {1.0}  # em at alpha = 0 is euler, step for step
    assert _alphas(jobs, "pc") == {0.0, 1.0}  # pc at alpha = 0 still runs its Langevin corrector
    ea0, ddim = "euler_a:alpha=0.0:grid=geometric:final=auto", "ddim:grid=geometric:final=auto:eta=0.0"
    assert _alphas(jobs, "euler_a") == {1.0}  # euler_a at alpha = 0 is ddim
    sde0, dpmpp = "dpmpp_sde:alpha=0.0:grid=geometric:final=auto", "dpmpp:order=2:grid=geometric:final=auto:reach=0.0"
    assert _alphas(jobs, "dpmpp_sde") == {1.0}  # dpmpp_sde at alpha = 0 is dpmpp
    assert sorted(notes) == sorted([f"{em0} gives exactly the samples of {euler}: left out (the {euler} rows stand for it)",
                                    f"{ea0} gives exactly the samples of {ddim}: left out (the {ddim} rows stand for it)",
                                    f"{sde0} gives exactly the samples of {dpmpp}: left out (the {dpmpp} rows stand for it)"])
    rows = [make_row(j, {"status": "ok", "nfe": 5, "metrics": {}}, sweep, {}) for j in jobs]
    assert {r["sampler"] for r in rows if r["protocol"].get("stands_for") == [em0]} == {euler}
    assert {r["sampler"] for r in rows if r["protocol"].get("stands_for") == [ea0]} == {ddim}
    assert {r["sampler"] for r in rows if r["protocol"].get("stands_for") == [sde0]} == {dpmpp}
    assert all("stands_for" not in r["protocol"] for r in rows if r["sampler"] not in (euler, ddim, dpmpp))
    # em named without alpha is swept over the grid; without euler in the bench its alpha = 0 stays
    assert _alphas(_samples(make_sweep(["heat", "em"], [DATA], b)), "em") == {0.0, 1.0}
    # named with alpha = 0 it runs as asked, beside euler
    notes.clear()
    named = _samples(make_sweep(["heat", "em:alpha=0", "euler"], [DATA], b, notes=notes))
    assert _alphas(named, "em") == {0.0} and _alphas(named, "euler") == {0.0} and notes == []


def test_adaptive_sampler_runs_once_per_tolerance_without_an_nfe_budget() -> None:
    sweep = make_sweep(["heat", "rk45:rtol=1e-2:atol=1e-2", "rk45:rtol=1e-3:atol=1e-3", "euler"], [DATA],
                       budget("smoke"))
    jobs = _samples(sweep)
    rk45 = [j["spec"] for j in jobs if j["spec"]["sampler"].startswith("rk45")]
    per_field = {(s["network"], s["law"], s["seed"]) for s in rk45}
    assert len(rk45) == 2 * len(per_field) and {s["nfe"] for s in rk45} == {None}
    assert {j["spec"]["nfe"] for j in jobs if j["spec"]["sampler"].startswith("euler")} == {5, 10}
    row = make_row(next(j for j in jobs if j["spec"]["sampler"].startswith("rk45")),
                   {"status": "ok", "nfe": 43, "metrics": {}}, sweep, {})
    assert row["nfe_budget"] is None and row["nfe"] == 43


def test_smoke_bench_end_to_end(smoke) -> None:
    smoke = smoke[0]
    rows = json.loads((smoke / "results.json").read_text())
    registry = get_registry()
    heat = registry.create("law", "heat")
    compatible = {n for n in registry.names("sampler") if registry.create("sampler", n).supports(heat)}
    failed = [(r["sampler"], r["error"]) for r in rows if r["status"] != "ok"]
    assert not failed, failed
    by_network = {}
    for r in rows:
        by_network.setdefault(r["network"].split(":")[0], set()).add(r["sampler"].split(":")[0])
    assert set(by_network) == {"mlp", "exact", "empirical"}
    assert all(samplers == compatible for samplers in by_network.values()), by_network
    applicable = {"w2", "energy", "memorization_ratio", "memorization_ratio_floor", "nn_z", "modes_captured",
                  "coverage", "vendi"}
    for r in rows:
        assert applicable <= set(r["metrics"]), sorted(r["metrics"])
        assert r["nfe"] >= 1 and r["protocol"]["n_generated"] == 200
        assert (r["nfe_budget"] is None) == r["sampler"].startswith("rk45")  # adaptive: no budget, counted NFE
        for key in ("time_grid", "training_steps", "ema", "device", "versions", "reference_split"):
            assert key in r["protocol"]
        assert (smoke / "runs" / r["run"] / "samples.npz").exists()
    trained = [r for r in rows if r["network"].startswith("mlp")]
    assert "velocity_error" in trained[0]["metrics"] and trained[0]["protocol"]["training_steps"] == 100
    assert not any(r["memorising"] for r in trained)
    empirical = [r for r in rows if r["network"] == "empirical"]
    flagged = [r for r in empirical if r["memorising"]]
    # every stochastic sampler lands on training points; so do the ODE solvers given enough steps
    assert len(flagged) >= len(empirical) / 2, [(r["sampler"], r["nfe"], r["metrics"]["memorization_ratio"])
                                                 for r in empirical]
    floors = json.loads((smoke / "floors.json").read_text())
    assert floors[rows[0]["dataset"]]["n"] == 200 and "w2" in floors[rows[0]["dataset"]]
    for name in ("leaderboard.md", "leaderboard.html", "results.csv"):
        assert (smoke / name).stat().st_size > 0


def test_sigkill_then_resume_keeps_finished_runs(smoke) -> None:
    out, before, stamps, resumed = smoke
    assert len(before) >= 2 and "resuming" in resumed.stderr
    after = {r["run"]: r for r in _rows(out / "results.json")}
    assert len(after) > len(before) and all(r["status"] == "ok" for r in after.values())
    for run, row in before.items():
        assert after[run]["metrics"] == row["metrics"]
        assert (out / "runs" / run / "samples.npz").stat().st_mtime_ns == stamps[run]
        assert (out / "runs" / run / "log").read_text().count("start") == 1  # not recomputed
    trainings = {r["training"] for r in after.values() if r["training"]}
    assert len(trainings) == 1  # finished before the kill: the resumed bench did not train again
    assert (out / "runs" / trainings.pop() / "log").read_text().count("start") == 1


def _cli(*args: str, capsys) -> tuple[int, str]:
    from zoo.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    return exit_.value.code, capsys.readouterr().err.strip()


def test_bad_input_is_one_line_and_nonzero(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "o")
    code, err = _cli("bench", "--plugins", "heat,nosuch", "--budget", "smoke", "--out", out, capsys=capsys)
    assert code != 0 and err.count("\n") == 0 and "unknown plugin 'nosuch'" in err and "euler" in err
    code, err = _cli("bench", "--dataset", "nosuch", "--budget", "smoke", "--out", out, capsys=capsys)
    assert code != 0 and err.count("\n") == 0 and "gmm8" in err
    code, err = _cli("bench", "--budget", "huge", "--out", out, capsys=capsys)
    assert code != 0 and "smoke" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _cli("bench", "--plugins", "heat", "--budget", "smoke", "--out", str(blocker / "sub"), capsys=capsys)
    assert code != 0 and err.count("\n") == 0 and "cannot write" in err


def test_sampler_that_does_not_support_a_law(capsys, tmp_path: Path) -> None:
    registry = get_registry()
    pairs = [(law, sampler) for law in registry.names("law") for sampler in registry.names("sampler")
             if not registry.create("sampler", sampler).supports(registry.create("law", law))]
    if not pairs:
        pytest.skip("every registered sampler supports every registered law")
    law, sampler = pairs[0]
    code, err = _cli("bench", "--plugins", f"{law},{sampler}", "--budget", "smoke", "--out", str(tmp_path / "o"),
                     capsys=capsys)
    assert code != 0 and err.count("\n") == 0 and f"does not support law {law!r}" in err


def test_resume_of_another_sweep_and_overwrite_are_refused(tmp_path: Path, capsys) -> None:
    out = tmp_path / "o"
    out.mkdir()
    prepare_out(out, make_sweep(["heat", "euler"], [DATA], budget("smoke")), resume=False)
    code, err = _cli("bench", "--plugins", "heat,heun", "--budget", "smoke", "--dataset", DATA, "--out", str(out),
                     "--resume", capsys=capsys)
    assert code != 0 and err.count("\n") == 0 and "different sweep" in err
    code, err = _cli("bench", "--plugins", "heat,euler", "--budget", "smoke", "--dataset", DATA, "--out", str(out),
                     capsys=capsys)
    assert code != 0 and "--resume" in err


def test_budget_overrides_are_checked() -> None:
    assert budget("smoke").replace(nfe=[3, 4]).nfe == (3, 4)
    with pytest.raises(ZooError, match="unknown budget field"):
        budget("smoke").replace(nfes=[3])
    with pytest.raises(ZooError, match="reference"):
        budget("smoke").replace(reference="val")


@pytest.mark.parametrize("name", ["toy", "digits", "cifar10"])
def test_shipped_suites_make_sweeps(name: str) -> None:
    suite = load_suite(Path(__file__).parent.parent / "benchmarks" / "suites" / f"{name}.toml")
    registry = get_registry()
    missing = [d for d in suite["datasets"] if d.split(":")[0] not in registry.names("dataset")]
    if missing:
        pytest.skip(f"data set plugin {missing[0]!r} is not installed")
    b = budget(suite["budget"]).replace(**suite.get("overrides", {}))
    if name == "cifar10":
        assert (b.n, b.reference) == (50000, "train")  # the published protocol: 50k vs train statistics
    try:
        sweep = make_sweep(suite["plugins"], suite["datasets"], b)
    except ZooError as exc:  # CIFAR-10 needs the user's data and Inception weights, never downloaded
        if name == "cifar10" and ("not found" in str(exc) or "root" in str(exc)):
            pytest.skip(str(exc))
        raise
    assert sweep.laws and plan(sweep)


def test_bad_suite_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('plugins = ["heat"]\nbugdet = "small"\n')
    with pytest.raises(ZooError, match="unknown key 'bugdet'"):
        load_suite(path)


def test_report_of_the_bench_folder(smoke, tmp_path: Path) -> None:
    out = smoke[0]
    write_report([out], tmp_path)
    page = (tmp_path / "leaderboard.html").read_text()
    assert "<script src" not in page and "<link" not in page and "MEMORISING" in page  # inline script only
    assert page.count('src="data:image/png;base64,') >= 3
    rows = json.loads((out / "results.json").read_text())
    assert len((tmp_path / "results.csv").read_text().strip().splitlines()) == len(rows) + 1


EXPLODING = '''
from dataclasses import dataclass
import zoo
from zoo.contracts import Sampler


@dataclass(frozen=True)
class Exploding(Sampler):
    name = "exploding"
    summary = "a sampler whose output overflows"

    def sample(self, process, x, grid, noise):
        process.ode_drift(x, float(grid[0]))
        return x * float("inf")


@zoo.hookimpl
def zoo_register_samplers(register):
    register(Exploding)
'''


def test_a_failed_run_is_recorded_and_the_rest_goes_on(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "exploding.py").write_text(EXPLODING)
    out = tmp_path / "out"
    done = zoo("--plugins-dir", str(plugins), "bench", "--plugins", "heat,network/exact,exploding,euler",
               "--budget", "smoke", "--dataset", DATA, "--out", str(out), "--no-report")
    assert done.returncode == 1, done.stderr  # some runs failed: the others are kept, the status says so
    rows = _rows(out / "results.json")
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["sampler"].split(":")[0] for r in failed} == {"exploding"} and len(failed) == 4  # 2 fields x 2 NFE
    assert all("non-finite" in r["error"] for r in failed)
    assert len(rows) - len(failed) == 4 and "4 of 8 runs failed" in done.stderr
