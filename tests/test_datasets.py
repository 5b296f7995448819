"""Built-in data sets: shapes, reproducibility, geometry, digits, and file:PATH with every bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.errors import ZooError
from zoo.registry import get_registry

TOYS = ["gmm8", "gmm25", "moons", "checkerboard", "swissroll"]



def create(spec: str):
    return get_registry().create("dataset", spec)


def test_every_builtin_is_registered():
    assert set(TOYS + ["digits", "file"]) <= set(get_registry().names("dataset"))


@pytest.mark.parametrize("name", TOYS)
def test_toy_splits_shapes_and_reproducibility(name):
    d = create(f"{name}:n_train=300:n_test=100:seed=3")
    train, test = d.train(), d.test()
    assert train.shape == (300, 2) and test.shape == (100, 2)
    assert train.dtype == test.dtype == torch.float32 and train.device.type == "cpu"
    assert d.shape == (2,) and not d.is_image
    assert torch.isfinite(train).all() and train.abs().max() < 3.0  # all toys live in about [-2, 2]^2
    again = create(d.spec)  # the canonical SPEC rebuilds the same data set
    assert again == d and torch.equal(train, again.train()) and torch.equal(test, again.test())
    assert not torch.allclose(train, create(f"{name}:n_train=300:n_test=100:seed=4").train())
    assert not torch.allclose(train[:100], test)  # independent streams
    # the test split depends only on (seed, n_test), not on n_train
    assert torch.equal(test, create(f"{name}:n_train=50:n_test=100:seed=3").test())


@pytest.mark.parametrize("spec", ["gmm8:n_train=0", "moons:n_test=-1", "gmm8:std=0", "gmm8:radius=-1",
                                  "swissroll:noise=-0.1", "digits:n_train=0", "digits:n_train=5000"])
def test_invalid_options_fail_in_one_line(spec):
    with pytest.raises(ZooError) as err:
        create(spec)
    assert "\n" not in str(err.value)


def test_gmm8_samples_sit_on_their_modes():
    d = create("gmm8:n_train=4000")
    mix = d.exact
    assert mix.means.shape == (8, 2) and mix.covs.shape == (8, 2, 2) and torch.allclose(mix.weights.sum(), torch.tensor(1.0))
    assert torch.allclose(mix.means.norm(dim=1), torch.full((8,), 2.0))
    x, labels = d.train(), d.labels("train")
    dist = torch.cdist(x, mix.means)
    assert torch.equal(dist.argmin(1), labels)  # modes 1.53 apart, std 0.1: the nearest mode is the label
    assert dist.min(1).values.max() < 5 * 0.1
    assert (x - mix.means[labels]).std().item() == pytest.approx(0.1, rel=0.05)
    counts = torch.bincount(labels, minlength=8).float()
    assert (counts - 500).abs().max() < 4 * 500**0.5  # equal weights
    with pytest.raises(ZooError):
        d.labels("validation")


def test_gmm25_grid():
    d = create("gmm25:n_train=2500")
    mix = d.exact
    assert mix.means.shape == (25, 2)
    assert sorted(set(mix.means[:, 0].tolist())) == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert torch.allclose(mix.covs, 0.05**2 * torch.eye(2).expand(25, 2, 2))
    x, labels = d.train(), d.labels("train")
    assert torch.equal(torch.cdist(x, mix.means).argmin(1), labels)
    assert len(labels.unique()) == 25


def test_checkerboard_fills_only_dark_squares():
    x = create("checkerboard:n_train=2000").train()
    cells = torch.floor(x + 2).long()
    assert ((cells >= 0) & (cells < 4)).all()
    assert (cells.sum(1) % 2 == 0).all()
    assert len({tuple(c) for c in cells.tolist()}) == 8


def test_sets_without_known_density():
    for name in ["moons", "checkerboard", "swissroll", "digits"]:
        assert create(name).exact is None


def test_digits_split_range_and_labels():
    d = create("digits")
    train, test = d.train(), d.test()
    assert train.shape == (1497, 1, 8, 8) and test.shape == (300, 1, 8, 8)
    assert d.shape == (1, 8, 8) and d.is_image and train.dtype == torch.float32
    assert train.min() == -1.0 and train.max() == 1.0 and test.min() >= -1.0 and test.max() <= 1.0
    ytr, yte = d.labels("train"), d.labels("test")
    assert len(ytr) == 1497 and len(yte) == 300
    assert torch.bincount(yte, minlength=10).tolist() == pytest.approx([30] * 10, abs=1)  # stratified
    assert torch.equal(test, create("digits").test())  # a fixed split
    small = create("digits:n_train=100")
    assert torch.equal(small.train(), train[:100]) and torch.equal(small.labels("train"), ytr[:100])
    assert torch.equal(small.test(), test)


def sorted_rows(x: torch.Tensor) -> list:
    return sorted(map(tuple, x.reshape(len(x), -1).tolist()))


def test_file_round_trip_npy_and_npz(tmp_path):
    data = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float64)
    np.save(tmp_path / "a.npy", data)
    np.savez(tmp_path / "b.npz", samples=data, other=np.zeros(2))
    for path in [tmp_path / "a.npy", tmp_path / "b.npz"]:
        d = create(f"file:{path}")
        train, test = d.train(), d.test()
        assert train.dtype == torch.float32 and d.shape == (3,)
        assert len(test) == 5 and len(train) == 45  # test_fraction 0.1
        assert sorted_rows(torch.cat([train, test])) == sorted_rows(torch.from_numpy(data).float())
    again = create(f"file:{tmp_path / 'a.npy'}:test_fraction=0.3:seed=1")
    assert len(again.test()) == 15
    assert not torch.equal(again.test()[:5], create(f"file:{tmp_path / 'a.npy'}:test_fraction=0.3:seed=2").test()[:5])


def test_file_images_and_integers(tmp_path):
    images = np.random.default_rng(1).integers(0, 255, size=(20, 1, 4, 4)).astype(np.uint8)
    np.save(tmp_path / "img.npy", images)
    d = create(f"file:{tmp_path / 'img.npy'}")
    assert d.shape == (1, 4, 4) and d.is_image and d.train().dtype == torch.float32


def bad_files(tmp_path):
    ok = np.zeros((10, 2))
    cases = {}

    def save(name, array):
        np.save(tmp_path / name, array)
        cases[name] = tmp_path / name

    save("empty.npy", np.zeros((0, 2)))
    save("strings.npy", np.array([["a", "b"], ["c", "d"]]))
    save("complex.npy", np.ones((4, 2), dtype=complex))
    save("flat.npy", np.arange(10.0))
    save("three.npy", np.zeros((4, 3, 3)))
    save("nan.npy", np.array([[0.0, 1.0], [np.nan, 2.0]]))
    save("inf.npy", np.array([[0.0, 1.0], [np.inf, 2.0]]))
    save("huge.npy", np.array([[0.0, 1.0], [1e300, 2.0]]))
    save("one.npy", np.zeros((1, 2)))
    save("objects.npy", np.array([[1, None]], dtype=object))
    np.savez(tmp_path / "nokey.npz", data=ok)
    np.savez(tmp_path / "objects.npz", samples=np.array([[1, None]], dtype=object))
    cases.update({"nokey.npz": tmp_path / "nokey.npz", "objects.npz": tmp_path / "objects.npz"})
    (tmp_path / "garbage.npy").write_bytes(b"this is not numpy")
    cases["garbage.npy"] = tmp_path / "garbage.npy"
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    cases["broken.npz"] = tmp_path / "broken.npz"
    cases["missing.npy"] = tmp_path / "missing.npy"
    cases["folder"] = tmp_path
    return cases


EXPECTED = {"empty.npy": "empty", "strings.npy": "numbers", "complex.npy": "numbers", "flat.npy": "shape",
            "three.npy": "shape", "nan.npy": "NaN", "inf.npy": "inf", "huge.npy": "float32",
            "one.npy": "at least 2", "objects.npy": "holds Python objects", "objects.npz": "holds Python objects",
            "nokey.npz": "no 'samples' array (keys: data)",
            "garbage.npy": "cannot read", "broken.npz": "cannot read", "missing.npy": "no such file",
            "folder": "is not a file"}


def test_every_bad_file_gives_one_clear_line(tmp_path):
    for name, path in bad_files(tmp_path).items():
        with pytest.raises(ZooError) as err:
            create(f"file:{path}")
        message = str(err.value)
        assert EXPECTED[name] in message, (name, message)
        assert "\n" not in message and message.startswith("dataset 'file'")
        assert "allow_pickle" not in message  # numpy's advice to load unsafely is not relayed


def test_file_bad_options(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((10, 2)))
    for option in ["test_fraction=0", "test_fraction=1", "seed=x"]:
        with pytest.raises(ZooError):
            create(f"file:{tmp_path / 'a.npy'}:{option}")
    with pytest.raises(ZooError, match="PATH"):
        create("file")
