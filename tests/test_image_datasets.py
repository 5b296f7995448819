"""Image data sets read from a user's disk: tiny MNIST and CIFAR-10 roots written in torchvision's
on-disk formats (idx ubyte files, pickled batches), and a folder of PNGs."""
from __future__ import annotations

import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.cli import main
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.testing.conformance import check


def create(spec: str):
    return get_registry().create("dataset", spec)


def write_idx(path, array: np.ndarray) -> None:
    """The idx format of MNIST: magic (0, 0, 0x08 = ubyte, ndim), big-endian sizes, then the bytes."""
    path.write_bytes(struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
                     + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    """ROOT/MNIST/raw with 12 train and 5 test images (28 x 28); returns (root, arrays)."""
    root = tmp_path_factory.mktemp("torchvision")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = {}
    for prefix, n in (("train", 12), ("t10k", 5)):
        images, labels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)
        images[:, 0, 0], images[:, 0, 1] = 0, 255  # the two ends of the scale
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return root, arrays


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """ROOT/cifar-10-batches-py with 5 train batches of 2 images and a test batch of 3."""
    root = tmp_path_factory.mktemp("torchvision")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name, n in [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        data[:, :1024], data[:, 1024:2048] = 255, 0  # rows are the R, G, B planes of 32 x 32 images
        batch = {"batch_label": name, "labels": rng.integers(0, 10, n).tolist(), "data": data,
                 "filenames": [f"{name}_{i}.png" for i in range(n)]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    return root


def test_mnist_reads_the_torchvision_layout(mnist_root):
    root, arrays = mnist_root
    data = create(f"mnist:root={root}")
    train, test = data.train(), data.test()
    assert data.shape == (1, 28, 28) and train.shape == (12, 1, 28, 28) and test.shape == (5, 1, 28, 28)
    assert torch.equal(train, torch.from_numpy(arrays["train"][0]).float().unsqueeze(1) / 127.5 - 1)
    assert train.min() == -1 and train.max() == 1
    assert torch.equal(data.labels("train"), torch.from_numpy(arrays["train"][1]).long())
    assert torch.equal(data.labels("test"), torch.from_numpy(arrays["t10k"][1]).long())
    import torchvision

    official = torchvision.datasets.MNIST(str(root), train=False)  # torchvision reads the same files
    assert torch.equal(test, official.data.float().unsqueeze(1) / 127.5 - 1)
    assert data.default_network == "unet"
    check("dataset", data)


def test_root_from_the_environment_and_subsampling(mnist_root, monkeypatch):
    root, arrays = mnist_root
    monkeypatch.setenv("ZOO_DATA_ROOT", str(root))
    full = create("mnist")
    assert f"root={root}" in full.spec  # rows name the files they came from
    small = create("mnist:n_train=4:n_test=2:seed=3")
    again, other = create(f"mnist:root={root}:n_train=4:n_test=2:seed=3"), create("mnist:n_train=4:seed=4")
    assert small.train().shape == (4, 1, 28, 28) and small.test().shape == (2, 1, 28, 28)
    assert torch.equal(small.train(), again.train()) and not torch.equal(small.train(), other.train())
    rows = [int(np.flatnonzero((full.train() == x).flatten(1).all(1))[0]) for x in small.train()]
    assert rows == sorted(rows)  # a subset of the official train split, in its order
    assert torch.equal(small.labels("train"), full.labels("train")[rows])
    with pytest.raises(ZooError, match="exceeds the 12 images"):
        create("mnist:n_train=13").train()


def test_cifar10_reads_the_pickled_batches(cifar_root):
    data = create(f"cifar10:root={cifar_root}")
    train, test = data.train(), data.test()
    assert data.shape == (3, 32, 32) and train.shape == (10, 3, 32, 32) and test.shape == (3, 3, 32, 32)
    assert (train[:, 0] == 1).all() and (train[:, 1] == -1).all()  # channel 0 is red
    assert data.labels("train").dtype == torch.int64 and data.labels("train").shape == (10,)
    check("dataset", data)


def test_missing_root_or_files_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ZOO_DATA_ROOT", raising=False)
    with pytest.raises(ZooError, match="no data root: pass root=PATH or set ZOO_DATA_ROOT"):
        create("cifar10")
    with pytest.raises(SystemExit) as exit_:
        main(["data", f"mnist:root={tmp_path}", "--out", str(tmp_path / "x.npz")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"zoo: dataset 'mnist': data not found: missing MNIST/raw/train-images-idx3-ubyte under "
                   f"{tmp_path}; copy torchvision's MNIST folder there, or add download=true on a machine "
                   f"with internet"]


def test_corrupt_files_are_one_clear_line(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"not an idx file")
    with pytest.raises(ZooError, match="cannot read the files in"):
        create(f"mnist:root={tmp_path}").train()


def write_png(path, size: tuple[int, int], color, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color).save(path)


def test_imagefolder_with_class_subfolders(tmp_path):
    for i in range(5):
        write_png(tmp_path / "cats" / f"{i}.png", (12, 8), (255, 0, 0))  # not square: scaled, centre-cropped
        write_png(tmp_path / "dogs" / f"{i}.png", (8, 8), 128, mode="L")
    data = create(f"imagefolder:{tmp_path}:size=6:test_fraction=0.2")
    train, test = data.train(), data.test()
    assert data.shape == (3, 6, 6) and train.shape == (8, 3, 6, 6) and test.shape == (2, 3, 6, 6)
    labels = torch.cat([data.labels("train"), data.labels("test")])
    assert sorted(labels.tolist()) == [0] * 5 + [1] * 5
    cats = torch.cat([train, test])[labels == 0]
    assert (cats[:, 0] == 1).all() and (cats[:, 1:] == -1).all()
    gray = create(f"imagefolder:{tmp_path}:size=4:channels=1")
    assert gray.train().shape[1:] == (1, 4, 4)
    check("dataset", data)


def test_imagefolder_official_splits_without_labels(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for i in range(n):
            write_png(tmp_path / split / f"{i}.png", (4, 4), (i * 40, 0, 0))
    data = create(f"imagefolder:{tmp_path}:size=4")
    assert data.train().shape == (3, 3, 4, 4) and data.test().shape == (2, 3, 4, 4)
    assert data.labels("train") is None
    assert data.train()[:, 0, 0, 0].tolist() == pytest.approx([x / 127.5 - 1 for x in (0, 40, 80)])


def test_imagefolder_bad_input(tmp_path):
    with pytest.raises(ZooError, match="no such folder"):
        create(f"imagefolder:{tmp_path / 'nope'}")
    with pytest.raises(ZooError, match="no image files"):
        create(f"imagefolder:{tmp_path}")
    write_png(tmp_path / "a.png", (4, 4), (0, 0, 0))
    (tmp_path / "b.png").write_bytes(b"broken")
    with pytest.raises(ZooError, match="cannot read image .*b.png"):
        create(f"imagefolder:{tmp_path}").train()
    with pytest.raises(ZooError, match="channels must be 1"):
        create(f"imagefolder:{tmp_path}:channels=2")
