"""`zoo data`, `zoo train`, `zoo sample` end to end, and every bad input as one line + non-zero exit."""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import zoo
import zoo.errors
import zoo.io
from zoo.cli import main
from zoo_in_process import zoo_cli
from zoo.contracts import seeded_generator
from zoo.registry import get_registry
from zoo_laws.heat import Heat

TINY_TRAIN = ["--law", "heat", "--network", "mlp:width=16:depth=1", "--dataset", "gmm8:n_train=200",
              "--steps", "30", "--batch-size", "32", "--device", "cpu"]
EXACT = ["--law", "heat", "--network", "exact", "--dataset", "gmm8"]



def one_line_error(capsys, *args: str) -> str:
    code, err = zoo_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code != 0, err
    assert len(lines) == 1 and lines[0].startswith("zoo: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    main(["train", *TINY_TRAIN, "--out", str(out)])
    return out


def read(path: Path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


# --------------------------------------------------------------------------- zoo data


def test_data_round_trip_with_labels_and_seeded_subset(capsys, tmp_path):
    assert zoo_cli(capsys, "data", "gmm8", "--split", "test", "--out", tmp_path / "all.npz")[0] == 0
    dataset = get_registry().create("dataset", "gmm8")
    full = read(tmp_path / "all.npz")
    assert full["samples"].dtype == np.float32
    np.testing.assert_array_equal(full["samples"], dataset.test().numpy())
    np.testing.assert_array_equal(full["labels"], dataset.labels("test").numpy())

    assert zoo_cli(capsys, "data", "gmm8", "--split", "test", "--n", 50, "--seed", 3, "--out", tmp_path / "sub.npz")[0] == 0
    keep = torch.randperm(len(dataset.test()), generator=seeded_generator(3))[:50].numpy()
    sub = read(tmp_path / "sub.npz")
    np.testing.assert_array_equal(sub["samples"], full["samples"][keep])
    np.testing.assert_array_equal(sub["labels"], full["labels"][keep])

    # the export is readable back as a data set
    again = get_registry().create("dataset", f"file:{tmp_path / 'all.npz'}")
    assert again.shape == (2,)


def test_data_errors(capsys, tmp_path):
    assert "available: " in one_line_error(capsys, "data", "nosuchset", "--out", tmp_path / "x.npz")
    assert "more than the 2000" in one_line_error(capsys, "data", "gmm8", "--split", "test", "--n", 2001,
                                                 "--out", tmp_path / "x.npz")
    assert "unknown option 'bogus'" in one_line_error(capsys, "data", "gmm8:bogus=1", "--out", tmp_path / "x.npz")
    (tmp_path / "file").write_text("")
    assert "cannot write" in one_line_error(capsys, "data", "gmm8", "--out", tmp_path / "file" / "x.npz")
    assert not (tmp_path / "x.npz").exists()


# --------------------------------------------------------------------------- zoo train / sample


def test_train_then_sample_has_shape_and_counted_nfe(capsys, tmp_path, checkpoint):
    assert (checkpoint / "checkpoint.pt").is_file()
    assert len((checkpoint / "log.jsonl").read_text().splitlines()) == 30
    code, err = zoo_cli(capsys, "sample", "--checkpoint", checkpoint, "--sampler", "euler", "--nfe", 7, "--n", 20,
                        "--device", "cpu", "--out", tmp_path / "s.npz")
    assert code == 0, err
    out = read(tmp_path / "s.npz")
    assert out["samples"].shape == (20, 2) and out["samples"].dtype == np.float32
    assert int(out["nfe"]) == 7  # Euler spends one evaluation a step
    assert out["grid"].shape == (8,)
    protocol = json.loads(str(out["protocol"]))
    assert protocol["nfe"] == 7 and protocol["training"]["steps"] == 30


def test_adaptive_sampler_records_its_counted_nfe_and_no_budget(capsys, tmp_path):
    code, err = zoo_cli(capsys, "sample", *EXACT, "--sampler", "rk45:rtol=1e-3:atol=1e-3", "--n", 10,
                        "--device", "cpu", "--out", tmp_path / "s.npz")
    assert code == 0, err
    out = read(tmp_path / "s.npz")
    protocol = json.loads(str(out["protocol"]))
    assert protocol["nfe_budget"] is None and protocol["nfe"] == int(out["nfe"]) > 7  # 1 + 6 per step
    assert f"({int(out['nfe'])} NFE each)" in err


def test_sample_does_not_depend_on_batch_size(capsys, tmp_path, checkpoint):
    for source in (["--checkpoint", checkpoint], EXACT):
        runs = []
        for batch in (30, 7):
            out = tmp_path / f"b{batch}.npz"
            code, err = zoo_cli(capsys, "sample", *source, "--sampler", "em:alpha=1", "--nfe", 10, "--n", 30,
                                "--seed", 5, "--batch-size", batch, "--device", "cpu", "--out", out)
            assert code == 0, err
            runs.append(read(out)["samples"])
        np.testing.assert_array_equal(runs[0], runs[1])
        assert np.unique(runs[0], axis=0).shape[0] == 30


def test_empirical_network_lands_on_training_points(capsys, tmp_path):
    dataset = "gmm8:n_train=40"
    out = tmp_path / "emp.npz"
    code, err = zoo_cli(capsys, "sample", "--law", "heat:t_min=0.00001", "--network", "empirical", "--dataset", dataset,
                        "--sampler", "heun", "--nfe", 60, "--n", 200, "--device", "cpu", "--out", out)
    assert code == 0, err
    samples = torch.from_numpy(read(out)["samples"])
    data = get_registry().create("dataset", dataset)
    to_train = torch.cdist(samples, data.train()).min(1).values
    held_out = torch.cdist(data.test()[:200], data.train()).min(1).values
    # copies: within the noise level s(t_min) ~ 0.0045 of a training point, an order of
    # magnitude closer than held-out data lies to the training set
    assert to_train.median() < 0.1 * held_out.median(), (to_train.median(), held_out.median())
    assert (to_train < 0.02).all(), to_train.max()


@pytest.mark.slow
def test_trained_heat_puts_samples_on_the_gmm8_modes(capsys, tmp_path):
    out = tmp_path / "run"
    code, err = zoo_cli(capsys, "train", "--law", "heat", "--network", "mlp:width=64:depth=3", "--dataset", "gmm8",
                        "--steps", 1000, "--batch-size", 256, "--lr", 3e-3, "--device", "cpu", "--out", out)
    assert code == 0, err
    code, err = zoo_cli(capsys, "sample", "--checkpoint", out, "--sampler", "heun", "--nfe", 20, "--n", 1000,
                        "--device", "cpu", "--out", tmp_path / "s.npz")
    assert code == 0, err
    samples = torch.from_numpy(read(tmp_path / "s.npz")["samples"])
    angle = torch.arange(8) * 2 * torch.pi / 8
    modes = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    dist = torch.cdist(samples, modes)
    near = dist.min(1).values < 0.3  # 3 standard deviations of a mode
    counts = torch.bincount(dist.argmin(1)[near], minlength=8)
    assert near.float().mean() > 0.75, near.float().mean()
    assert counts.min() > 0.05 * len(samples), counts  # every mode is covered


# --------------------------------------------------------------------------- bad input


@dataclass(frozen=True)
class OtherLaw(Heat):
    name = "test-other-law"

    def affine_path(self, t, dim):  # a third-party law without affine marginals
        return None


class OtherLawPlugin:
    @zoo.hookimpl
    def zoo_register_laws(self, register):
        register(OtherLaw)


def test_sampler_that_does_not_support_the_law(capsys, tmp_path):
    registry = get_registry()
    registry.add(OtherLawPlugin(), name="test-other-law")
    try:
        line = one_line_error(capsys, "sample", "--law", "test-other-law", "--network", "exact", "--dataset", "gmm8",
                              "--sampler", "dpmpp", "--out", tmp_path / "x.npz")
    finally:
        registry.remove("test-other-law")
    assert "does not support law 'test-other-law'" in line and "needs a law that states an integrator path" in line


@pytest.mark.parametrize("args, message", [
    (["--sampler", "nosuch", *EXACT], "unknown sampler 'nosuch' (available: "),
    (["--sampler", "heun", "--law", "nosuch", "--network", "exact", "--dataset", "gmm8"], "unknown law 'nosuch'"),
    (["--sampler", "heun", "--law", "heat", "--network", "nosuch", "--dataset", "gmm8"], "unknown network 'nosuch'"),
    (["--sampler", "heun", "--law", "heat", "--network", "exact", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["--sampler", "em:alpha=-1", *EXACT], "alpha"),
    (["--sampler", "heun", "--nfe", "0", *EXACT], "'--nfe'"),
    (["--sampler", "heun", "--n", "0", *EXACT], "'--n'"),
    (["--sampler", "heun:bogus=1", *EXACT], "unknown option 'bogus'"),
    (["--sampler", "heun", "--law", "heat:bogus=2", "--network", "exact", "--dataset", "gmm8"], "unknown option 'bogus'"),
    (["--sampler", "heun"], "give --checkpoint DIR, or all of"),
    (["--sampler", "heun", "--law", "heat", "--dataset", "gmm8"], "give --checkpoint DIR, or all of"),
    (["--sampler", "heun", "--checkpoint", "CKPT", *EXACT], "not both"),
    (["--sampler", "heun", "--law", "heat", "--network", "mlp", "--dataset", "gmm8"], "is learned"),
    (["--sampler", "heun", "--device", "nosuch", *EXACT], "unknown device"),
    (["--sampler", "rk45", "--nfe", "20", *EXACT], "sampler 'rk45' is adaptive: its tolerances, not --nfe, set its steps"),
])
def test_sample_bad_input(capsys, tmp_path, checkpoint, args, message):
    args = [str(checkpoint) if a == "CKPT" else a for a in args]
    assert message in one_line_error(capsys, "sample", *args, "--out", tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def test_missing_corrupt_checkpoint_and_unwritable_output(capsys, tmp_path, checkpoint):
    sample = ["sample", "--sampler", "heun", "--device", "cpu"]
    assert "no checkpoint in" in one_line_error(capsys, *sample, "--checkpoint", tmp_path / "none",
                                                "--out", tmp_path / "x.npz")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"\x80garbage")
    assert "corrupt checkpoint" in one_line_error(capsys, *sample, "--checkpoint", tmp_path / "bad",
                                                  "--out", tmp_path / "x.npz")
    (tmp_path / "file").write_text("")
    assert "cannot write" in one_line_error(capsys, *sample, "--checkpoint", checkpoint,
                                            "--out", tmp_path / "file" / "x.npz")
    assert "is a directory" in one_line_error(capsys, *sample, "--checkpoint", checkpoint, "--out", tmp_path)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where files cannot be created")
def test_unwritable_output_names_the_path_and_the_reason(capsys, tmp_path):
    line = one_line_error(capsys, "sample", "--sampler", "euler", *EXACT, "--n", 5, "--out", "/proc/x.npz")
    assert line == "zoo: cannot write '/proc/x.npz': No such file or directory"


@pytest.mark.parametrize("write", [
    lambda path: zoo.io.write_npz(path, x=np.zeros(2)), lambda path: zoo.io.write_json(path, {}),
    lambda path: zoo.io.write_text(path, "x"), lambda path: zoo.io.save_torch(path, {}),
])
def test_failed_atomic_writes_name_the_path(tmp_path, write):
    target = tmp_path / "gone" / "x.out"  # its folder does not exist: the temporary file cannot be made
    with pytest.raises(zoo.errors.ZooError) as error:
        write(target)
    assert str(error.value) == f"cannot write {str(target)!r}: No such file or directory"
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("args, message", [
    (["--law", "nosuch"], "unknown law 'nosuch' (available: "),
    (["--network", "exact"], "not learned"),
    (["--steps", "0"], "'--steps'"),
    (["--lr", "0"], "'--lr'"),
    (["--dataset", "gmm8:std=-1"], "std"),
])
def test_train_bad_input(capsys, tmp_path, args, message):
    base = {"--law": "heat", "--network": "mlp:width=16:depth=1", "--dataset": "gmm8", "--steps": "5"}
    base.update(dict(zip(args[::2], args[1::2])))
    flat = [x for kv in base.items() for x in kv]
    assert message in one_line_error(capsys, "train", *flat, "--device", "cpu", "--out", tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_network_that_does_not_fit_leaves_out_free_for_another_config(capsys, tmp_path):
    base = ["train", "--law", "heat", "--dataset", "gmm8:n_train=200", "--steps", "2", "--device", "cpu",
            "--out", tmp_path / "run"]
    assert "needs images" in one_line_error(capsys, *base, "--network", "unet")
    assert not (tmp_path / "run" / "config.json").exists()
    assert zoo_cli(capsys, *base, "--network", "mlp:width=8:depth=1")[0] == 0


def test_train_checks_output_before_work_and_refuses_another_config(capsys, tmp_path, checkpoint):
    (tmp_path / "file").write_text("")
    assert "/file' is a file, not a folder" in one_line_error(capsys, "train", *TINY_TRAIN,
                                                                "--out", tmp_path / "file" / "run")
    line = one_line_error(capsys, "train", *TINY_TRAIN, "--steps", "31", "--out", checkpoint)
    assert "different config (steps differ)" in line


def test_console_script_prints_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "from zoo.cli import main; main()", "sample", "--sampler", "heun:foo=1", *EXACT,
                           "--out", str(tmp_path / "x.npz")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["zoo: sampler 'heun': unknown option 'foo' (options: grid, final)"]


def test_missing_plugins_dir_is_refused(capsys, tmp_path):
    assert "does not exist" in one_line_error(capsys, "--plugins-dir", tmp_path / "none", "plugins")
