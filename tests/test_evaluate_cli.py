"""`zoo evaluate` on constructed sample files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.cli import main
from zoo.evaluation import draw_mixture
from zoo.registry import get_registry

GMM = "gmm8:n_train=800:n_test=500"


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(["evaluate", *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def data():
    return get_registry().create("dataset", GMM)


def test_json_flags_copies_and_passes_fresh_samples(tmp_path, capsys, data):
    copies, fresh = tmp_path / "copies.npz", tmp_path / "fresh.npz"
    np.savez(copies, samples=data.train()[:300].numpy())
    np.savez(fresh, samples=draw_mixture(data.exact, 300, 5).numpy())
    metrics = "memorization,modes"
    code, out, _ = run(capsys, "--dataset", GMM, "--samples", str(copies), "--metrics", metrics, "--json")
    assert code == 0
    copied = json.loads(out)
    code, out, _ = run(capsys, "--dataset", GMM, "--samples", str(fresh), "--metrics", metrics, "--json")
    new = json.loads(out)
    assert copied["memorization_ratio"] > 0.95 and copied["nn_z_flag"] == 1.0
    assert new["memorization_ratio"] < new["memorization_ratio_floor"] + 0.07 and new["nn_z_flag"] == 0.0
    assert new["modes_captured"] == 8


def test_table_prints_floors_and_the_protocol(tmp_path, capsys, data):
    path = tmp_path / "s.npz"
    np.savez(path, samples=draw_mixture(data.exact, 200, 3).numpy())
    code, out, _ = run(capsys, "--dataset", GMM, "--samples", str(path), "--metrics", "distances,memorization")
    assert code == 0
    assert "exact mixture draws" in out and "floor" in out.splitlines()[2]
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[3:]}
    assert set(rows) == {"w2", "sliced_w2", "energy", "mmd2", "memorization_ratio", "nn_z", "nn_z_flag",
                         "authenticity"}
    w2, floor = map(float, rows["w2"][:2])
    assert 0.3 < w2 / floor < 3
    assert float(rows["memorization_ratio"][1]) > 0  # its floor: held-out data's ratio


@pytest.mark.parametrize("samples, message", [
    (None, "no such samples file"),
    ({"x": np.zeros((4, 2))}, "no 'samples' array"),
    ({"samples": np.zeros((4, 3))}, "needs (n, 2)"),
    ({"samples": np.array([[0.0, 1.0], [np.nan, 2.0]])}, "NaN"),
    ({"samples": np.array([["a", "b"], ["c", "d"]])}, "must be numbers"),
    ({"samples": np.full((4, 2), 1e30, dtype=np.float32)}, "too large"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, samples, message):
    path = tmp_path / "bad.npz"
    if samples is not None:
        np.savez(path, **samples)
    code, out, err = run(capsys, "--dataset", GMM, "--samples", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("zoo: ") and message in err


def test_unknown_or_inapplicable_metric(tmp_path, capsys, data):
    path = tmp_path / "s.npz"
    np.savez(path, samples=data.test()[:20].numpy())
    code, _, err = run(capsys, "--dataset", GMM, "--samples", str(path), "--metrics", "nope")
    assert code == 2 and "unknown metric 'nope'" in err
    code, _, err = run(capsys, "--dataset", GMM, "--samples", str(path), "--metrics", "fidelity")
    assert code == 2 and "does not apply" in err
    code, _, err = run(capsys, "--dataset", GMM, "--samples", str(path), "--metrics", "velocity_error")
    assert code == 2 and "needs a trained field" in err


def test_unknown_device_is_refused(tmp_path, capsys, data):
    path = tmp_path / "s.npz"
    np.savez(path, samples=data.test()[:20].numpy())
    code, _, err = run(capsys, "--dataset", GMM, "--samples", str(path), "--device", "tpu", "--no-floors")
    assert code == 2 and err.count("\n") == 1 and "unknown device 'tpu'" in err
