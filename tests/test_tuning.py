"""Tuned time grids (zoo.tuning, `zoo tune`, grid=tuned): the search helps on held-out draws, is
deterministic, is stored and used by `zoo sample`, and bad requests are one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo import tuning
from zoo.cli import main
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.sampling import generate, prior_samples
from zoo_in_process import zoo_cli
from zoo_samplers import RK45

EXACT = ["--law", "heat", "--network", "exact", "--dataset", "gmm8"]
TINY_TRAIN = ["--law", "heat", "--network", "mlp:width=16:depth=1", "--dataset", "gmm8:n_train=200",
              "--steps", "30", "--batch-size", "32", "--device", "cpu"]
SMALL = ["--n", "64", "--evals", "40"]


@pytest.fixture(scope="module")
def heat():
    registry = get_registry()
    law = registry.create("law", "heat")
    return law, law.exact_field(registry.create("dataset", "gmm8").exact)


def one_line_error(capsys, *args) -> str:
    code, err = zoo_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("zoo: ") and "Traceback" not in err, err
    return lines[0]


def read(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def test_search_lowers_the_held_out_error(heat):
    law, field = heat
    sampler = get_registry().create("sampler", "dpmpp")
    entry = tuning.search(law, field, sampler, 6, (2,), n=64, evals=60)
    s = entry["search"]
    assert s["rms"] < s["starts"]["geometric"] and s["evaluations"] <= 60 and s["seed"] == tuning.SEARCH_SEED
    times = torch.tensor(entry["times"], dtype=torch.float64)
    assert len(times) == sampler.steps_within(6, law) + 1 and bool((times[1:] < times[:-1]).all())
    assert (float(times[0]), float(times[-1])) == (law.T, law.t_min)
    # held out: other draws (seed 0) against the exact flow map to t = 0
    x = prior_samples(law, (2,), 0, range(300)).double()
    end = RK45(rtol=1e-8, atol=1e-8).sample(law.reverse(field), x, torch.tensor([law.T, 0.0], dtype=torch.float64), None)

    def error(times=None) -> float:
        y = generate(law, field, sampler, n=300, nfe=6, shape=(2,), seed=0, times=times).samples
        return float((y.double() - end).square().sum(1).mean().sqrt())

    assert error(entry["times"]) < 0.8 * error()


def test_search_is_deterministic(heat):
    law, field = heat
    sampler = get_registry().create("sampler", "unipc")
    one, two = (tuning.search(law, field, sampler, 5, (2,), n=32, evals=25) for _ in range(2))
    assert one["times"] == two["times"]
    other = tuning.search(law, field, sampler, 5, (2,), n=32, evals=25, seed=7)
    assert other["times"] != one["times"]


@pytest.mark.parametrize("spec, message", [("em", "is stochastic"), ("euler_a", "is stochastic"),
                                           ("ddim:eta=0.5", "draws noise"), ("rk45", "is adaptive")])
def test_stochastic_and_adaptive_samplers_are_refused(capsys, tmp_path, spec, message):
    line = one_line_error(capsys, "tune", *EXACT, "--sampler", spec, "--nfe", 10, *SMALL, "--grids", tmp_path / "g.json")
    assert message in line
    assert not (tmp_path / "g.json").exists()


def test_tuned_grid_is_stored_used_and_recorded(capsys, tmp_path):
    grids = tmp_path / "g.json"
    code, err = zoo_cli(capsys, "tune", *EXACT, "--sampler", "dpmpp", "--nfe", 5, *SMALL, "--grids", grids)
    assert code == 0, err
    code, err = zoo_cli(capsys, "tune", *EXACT, "--sampler", "ipndm", "--nfe", 5, *SMALL, "--grids", grids)
    assert code == 0, err
    stored = json.loads(grids.read_text())["grids"]
    assert len(stored) == 2  # the second tune kept the first grid
    (key, entry), = [(k, v) for k, v in stored.items() if "sampler=dpmpp:" in k]
    assert "grid=tuned" in key and "nfe=5" in key and entry["search"]["n"] == 64
    out = tmp_path / "s.npz"
    code, err = zoo_cli(capsys, "sample", *EXACT, "--sampler", "dpmpp:grid=tuned", "--nfe", 5, "--n", 20,
                        "--grids", grids, "--out", out)
    assert code == 0, err
    got = read(out)
    np.testing.assert_array_equal(got["grid"], [*entry["times"], 0.0])  # then the final step to t = 0
    protocol = json.loads(str(got["protocol"]))
    assert protocol["grid_kind"] == "tuned" and protocol["tuned_grid"]["file"] == str(grids)
    assert protocol["tuned_grid"]["key"] == key and protocol["tuned_grid"]["search"] == entry["search"]


def test_missing_tuned_grid_names_the_command(capsys, tmp_path):
    grids = tmp_path / "g.json"
    line = one_line_error(capsys, "sample", *EXACT, "--sampler", "unipc:grid=tuned", "--nfe", 10, "--grids", grids,
                          "--out", tmp_path / "s.npz")
    assert "no tuned grids file" in line and f"`zoo tune {' '.join(EXACT)} --sampler unipc:grid=tuned --nfe 10" in line
    assert "--grids FILE" in one_line_error(capsys, "sample", *EXACT, "--sampler", "unipc:grid=tuned", "--nfe", 10,
                                            "--out", tmp_path / "s.npz")
    assert zoo_cli(capsys, "tune", *EXACT, "--sampler", "unipc", "--nfe", 10, *SMALL, "--grids", grids)[0] == 0
    line = one_line_error(capsys, "sample", *EXACT, "--sampler", "unipc:grid=tuned", "--nfe", 12, "--grids", grids,
                          "--out", tmp_path / "s.npz")
    assert "no tuned grid in" in line and "--nfe 12" in line
    assert not (tmp_path / "s.npz").exists()


def test_checkpoint_grids_live_in_the_run_folder(capsys, tmp_path):
    run = tmp_path / "run"
    main(["train", *TINY_TRAIN, "--out", str(run)])
    line = one_line_error(capsys, "sample", "--checkpoint", run, "--sampler", "dpmpp:grid=tuned", "--nfe", 5,
                          "--out", tmp_path / "s.npz")
    assert f"zoo tune --checkpoint {run} --sampler dpmpp:grid=tuned --nfe 5" in line
    code, err = zoo_cli(capsys, "tune", "--checkpoint", run, "--sampler", "dpmpp", "--nfe", 5, *SMALL)
    assert code == 0, err
    (entry,) = json.loads((run / tuning.GRIDS_FILE).read_text())["grids"].values()
    assert entry["search"]["training_steps"] == 30 and "float64" in entry["search"]["reference"]
    code, err = zoo_cli(capsys, "sample", "--checkpoint", run, "--sampler", "dpmpp:grid=tuned", "--nfe", 5, "--n", 10,
                        "--out", tmp_path / "s.npz")
    assert code == 0, err
    assert read(tmp_path / "s.npz")["grid"].tolist() == [*entry["times"], 0.0]
    # a grid tuned at another step of training (the run resumed since) is stale
    data = json.loads((run / tuning.GRIDS_FILE).read_text())
    for value in data["grids"].values():
        value["search"]["training_steps"] = 20
    (run / tuning.GRIDS_FILE).write_text(json.dumps(data))
    assert "tuned at training step 20" in one_line_error(capsys, "sample", "--checkpoint", run, "--sampler",
                                                         "dpmpp:grid=tuned", "--nfe", 5, "--out", tmp_path / "s.npz")


def test_given_times_are_checked(heat):
    law, field = heat
    sampler = get_registry().create("sampler", "euler")
    with pytest.raises(ZooError, match="budget buys 4"):
        generate(law, field, sampler, n=2, nfe=5, shape=(2,), times=[5.0, 1.0, 0.1, 0.001])
    with pytest.raises(ZooError, match="strictly decreasing"):
        generate(law, field, sampler, n=2, nfe=5, shape=(2,), times=[5.0, 0.1, 1.0, 0.01, 0.001])
    with pytest.raises(ZooError, match="t_min"):  # below t_min (ending above it is a tuned grid's right)
        generate(law, field, sampler, n=2, nfe=5, shape=(2,), times=[5.0, 1.0, 0.1, 0.01, 0.0005])
    with pytest.raises(ZooError, match="zoo tune"):
        generate(law, field, get_registry().create("sampler", "euler:grid=tuned"), n=2, nfe=5, shape=(2,))


def test_bench_row_with_a_tuned_grid(tmp_path):
    from zoo.bench import budget, make_row, make_sweep, plan, run_job

    sweep = make_sweep(["heat", "exact", "dpmpp:grid=tuned", "modes"], ["gmm8:n_train=1000:n_test=500"],
                       budget("smoke").replace(nfe=[5]))
    (job,) = [j for j in plan(sweep) if j["spec"]["kind"] == "sample" and j["spec"]["network"] == "exact"]
    result = run_job({**job, "out": str(tmp_path)})
    assert result["status"] == "ok", result["error"]
    grid = make_row(job, result, sweep, {})["protocol"]["time_grid"]
    (entry,) = json.loads((tmp_path / "runs" / job["id"] / tuning.GRIDS_FILE).read_text())["grids"].values()
    assert grid["kind"] == "tuned" and grid["times"] == [*entry["times"], 0.0]
    assert grid["tuned"]["search"] == entry["search"] and entry["search"]["seed"] == tuning.SEARCH_SEED


def test_dpmpps_reach_is_fitted_with_the_grid_and_its_end(heat, capsys, tmp_path):
    """dpmpp:final=denoise lands on D_K + reach (D_K - D_(K-1)); zoo tune fits reach with the grid and
    where the grid hands over to the landing step (>= t_min), stores them, and zoo sample applies them.
    (Measured with the defaults, n = 2000 held out: flow error 0.019 at 5 NFE, 0.0024 at 10 with
    more evaluations; benchmarks/tuned_grids.md.)"""
    law, field = heat
    registry = get_registry()
    plain = generate(law, field, registry.create("sampler", "dpmpp:final=denoise"), n=50, nfe=5, shape=(2,)).samples
    assert torch.equal(plain, generate(law, field, registry.create("sampler", "dpmpp:final=denoise:reach=0"), n=50,
                                       nfe=5, shape=(2,)).samples)
    with pytest.raises(ZooError, match="reach applies to the final denoising step"):
        registry.create("sampler", "dpmpp:reach=1")
    sampler = registry.create("sampler", "dpmpp:final=denoise")
    entry = tuning.search(law, field, sampler, 5, (2,), n=64, evals=80)
    assert set(entry["options"]) == {"reach"} and entry["times"][-1] >= law.t_min and entry["search"]["rms"] < entry["search"]["starts"]["geometric"]
    grids, out = tmp_path / "grids.json", tmp_path / "s.npz"
    source = ["--law", "heat", "--network", "exact", "--dataset", "gmm8"]
    code, err = zoo_cli(capsys, "tune", *source, "--sampler", "dpmpp:final=denoise", "--nfe", 5, "--grids", grids,
                        "--n", 64, "--evals", 80)
    assert code in (0, None), err
    code, err = zoo_cli(capsys, "sample", *source, "--sampler", "dpmpp:final=denoise:grid=tuned", "--nfe", 5, "--n", 20,
                        "--grids", grids, "--out", out)
    assert code in (0, None), err
    protocol = json.loads(str(read(out)["protocol"]))
    reach = protocol["tuned_grid"]["options"]["reach"]
    assert reach != 0.0 and f"reach={reach}" in protocol["sampler"]
