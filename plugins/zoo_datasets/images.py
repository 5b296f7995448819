"""Image data sets from disk: ``mnist`` and ``cifar10`` from a torchvision root, and ``imagefolder:PATH``.

Nothing is downloaded unless ``download=true`` is given (and the machine can reach the internet):
the root is a folder the user already has, laid out as torchvision writes it::

    ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
    ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}

``root`` defaults to ``$ZOO_DATA_ROOT``; the resolved absolute path is recorded in the SPEC, so a
result row names the files it came from (on a cluster, the path must be shared by every node).
Images are float32 ``(n, C, H, W)`` scaled from 0..255 to [-1, 1]; the official test split is held out.
"""
from __future__ import annotations

import math
import os
import stat
import sys
import warnings
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

import zoo
from zoo.contracts import Dataset, seeded_generator
from zoo.errors import ZooError, printable
from zoo.safe import file_kind, open_regular, unpickle_arrays

ROOT_ENV = "ZOO_DATA_ROOT"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")

Split = tuple[Tensor, Tensor | None]  # images (n, C, H, W) uint8, labels (n,) int64 or None


def _to_unit_range(images: Tensor) -> Tensor:
    """uint8 (n, C, H, W) in 0..255 -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0


def _subsample(n: int, keep: int | None, seed: int, stream: int) -> Tensor | None:
    """Sorted indices of ``keep`` of ``n`` items drawn by a seeded permutation; None keeps all."""
    if keep is None or keep >= n:
        return None
    order = torch.randperm(n, generator=seeded_generator(seed, stream))
    return order[:keep].sort().values


@dataclass(frozen=True)
class _DiskImages(Dataset):
    """Shared by the image sets: class labels, lazy loading, and seeded subsets of both splits
    (subclasses have the options ``n_train``, ``n_test`` and ``seed``)."""

    default_network: ClassVar[str] = "unet"

    def _read(self) -> dict[str, Split]:
        raise NotImplementedError

    def _check_sizes(self) -> None:
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            if value is not None and value < 1:
                self.fail(f"{key} must be at least 1, got {value}")

    @cached_property
    def _splits(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        splits = {}
        for stream, (split, (images, labels)) in enumerate(self._read().items()):
            keep = getattr(self, f"n_{split}", None)
            if keep is not None and keep > len(images):
                self.fail(f"n_{split}={keep} exceeds the {len(images)} images of the {split} split")
            index = _subsample(len(images), keep, self.seed, stream)
            if index is not None:
                images, labels = images[index], (labels[index] if labels is not None else None)
            splits[split] = (_to_unit_range(images), labels)
        return splits

    def train(self) -> Tensor:
        return self._splits["train"][0]

    def test(self) -> Tensor:
        return self._splits["test"][0]

    def labels(self, split: str) -> Tensor | None:
        if split not in ("train", "test"):
            raise ZooError(f"unknown split {split!r} (splits: train, test)")
        return self._splits[split][1]


# --------------------------------------------------------------------------- torchvision roots


@dataclass(frozen=True)
class _TorchvisionImages(_DiskImages):
    """A torchvision data set read from its on-disk files (no torchvision integrity hashes)."""

    folder: ClassVar[str]  # below the root
    files: ClassVar[tuple[str, ...]]
    image_shape: ClassVar[tuple[int, int, int]]
    torchvision_class: ClassVar[str]  # what download=true asks torchvision for

    root: str | None = None
    download: bool = False
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0  # of the subsampling

    def __post_init__(self) -> None:
        self._check_sizes()
        root = self.root or os.environ.get(ROOT_ENV)
        if not root:
            self.fail(f"no data root: pass root=PATH or set {ROOT_ENV} to a torchvision root "
                      f"(a folder holding {self.folder}/)")
        object.__setattr__(self, "root", str(Path(root).expanduser().resolve()))
        if self._missing() and self.download:
            self._download()
        missing = self._missing()
        if missing:
            self.fail(f"data not found: missing {missing[0]} under {self.root}; copy torchvision's "
                      f"{self.folder.split('/')[0]} folder there, or add download=true on a machine with internet")

    @property
    def path(self) -> Path:
        return Path(self.root) / self.folder

    @property
    def shape(self) -> tuple[int, ...]:
        return self.image_shape

    def _missing(self) -> list[str]:
        return [f"{self.folder}/{f}" for f in self.files if not (self.path / f).is_file()]

    def _download(self) -> None:
        import torchvision.datasets

        make = getattr(torchvision.datasets, self.torchvision_class)
        try:
            for train in (True, False):
                make(self.root, train=train, download=True)
        except Exception as exc:  # no internet, a full disk, a proxy: one line either way
            self.fail(f"download into {self.root} failed ({type(exc).__name__}: {exc})")

    def _read(self) -> dict[str, Split]:
        try:
            return _read_cached(type(self).__name__, str(self.path))
        except ZooError as exc:
            self.fail(str(exc))
        except (OSError, ValueError, AssertionError, EOFError, KeyError, RuntimeError) as exc:
            self.fail(f"cannot read the files in {self.path}: {type(exc).__name__}: {exc}")


@lru_cache(maxsize=2)
def _read_cached(kind: str, path: str) -> dict[str, Split]:
    return READERS[kind](Path(path))


def _read_mnist(path: Path) -> dict[str, Split]:
    """MNIST/raw idx files -> {split: (uint8 (n, 1, 28, 28), int64 (n,))}."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    def split(prefix: str) -> Split:
        images = read_image_file(str(path / f"{prefix}-images-idx3-ubyte"))
        labels = read_label_file(str(path / f"{prefix}-labels-idx1-ubyte")).long()
        if len(images) != len(labels):
            raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels")
        return images.unsqueeze(1), labels

    return {"train": split("train"), "test": split("t10k")}


def _read_cifar10(path: Path) -> dict[str, Split]:
    """cifar-10-batches-py pickles -> {split: (uint8 (n, 3, 32, 32), int64 (n,))}. The batches are
    read by an unpickler that builds only arrays, lists, dicts, numbers and strings: a crafted
    batch cannot run code (torchvision's reader unpickles anything)."""

    def batches(names: list[str]) -> Split:
        images, labels = [], []
        for name in names:
            batch = unpickle_arrays(path / name, "CIFAR-10 batch")
            data = batch.get("data") if isinstance(batch, dict) else None
            label = batch.get("labels") if isinstance(batch, dict) else None
            if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
                    and data.shape[1] == 3 * 32 * 32 and isinstance(label, list) and len(label) == len(data)
                    and all(type(v) is int and 0 <= v < 10 for v in label)):
                raise ValueError(f"{name} is not a CIFAR-10 batch: expected a dict of 'data' (uint8, (n, 3072)) "
                                 f"and n 'labels' in 0..9")
            images.append(data.reshape(-1, 3, 32, 32))  # rows are R, G, B planes
            labels.append(np.asarray(label, dtype=np.int64))
        return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))

    return {"train": batches([f"data_batch_{i}" for i in range(1, 6)]), "test": batches(["test_batch"])}


@dataclass(frozen=True)
class MNIST(_TorchvisionImages):
    """MNIST digits (1, 28, 28): 60000 train, 10000 test, labels 0-9."""

    name = "mnist"
    summary = "MNIST from a torchvision root (root=PATH or $ZOO_DATA_ROOT), (1, 28, 28) in [-1, 1]"
    folder = "MNIST/raw"
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    image_shape = (1, 28, 28)
    torchvision_class = "MNIST"


@dataclass(frozen=True)
class CIFAR10(_TorchvisionImages):
    """CIFAR-10 (3, 32, 32): 50000 train, 10000 test, labels 0-9."""

    name = "cifar10"
    summary = "CIFAR-10 from a torchvision root (root=PATH or $ZOO_DATA_ROOT), (3, 32, 32) in [-1, 1]"
    folder = "cifar-10-batches-py"
    files = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
    image_shape = (3, 32, 32)
    torchvision_class = "CIFAR10"


READERS = {"MNIST": _read_mnist, "CIFAR10": _read_cifar10}


# --------------------------------------------------------------------------- a folder of images


@dataclass(frozen=True)
class ImageFolder(_DiskImages):
    """Every image file under PATH, resized (scaled, then centre-cropped) to ``size`` x ``size``.

    Splits: PATH/train and PATH/test (or PATH/val) when present, otherwise a seeded
    ``test_fraction`` of the images is held out. Labels: the class subfolder of each image
    (torchvision's ImageFolder layout, ``SPLIT/CLASS/x.png``), when every image has one.
    """

    name = "imagefolder"
    summary = "image files under a folder (imagefolder:PATH; options size, channels), in [-1, 1]"
    positional = "path"

    path: str
    size: int = 32
    channels: int = 3  # 1: grayscale, 3: RGB
    test_fraction: float = 0.1
    n_train: int | None = None
    n_test: int | None = None
    seed: int = 0  # of the held-out draw and the subsampling

    def __post_init__(self) -> None:
        self._check_sizes()
        if self.size < 1:
            self.fail(f"size must be at least 1, got {self.size}")
        if self.channels not in (1, 3):
            self.fail(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if not 0 < self.test_fraction < 1:
            self.fail(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        folder = Path(self.path).expanduser()
        if not folder.is_dir():
            self.fail(f"no such folder: {self.path}")
        object.__setattr__(self, "path", str(folder.resolve()))
        if not self._files:
            self.fail(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {self.path}")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, self.size, self.size)

    @cached_property
    def _files(self) -> dict[str, tuple[Path, list[Path]]]:
        """{split: (its folder, sorted image files)}; the one key "" when PATH has no train/test split.
        Only regular files count (links to them too): a FIFO, device or socket named like an image
        is skipped with a warning, never opened (opening a FIFO blocks until someone writes)."""
        root = Path(self.path)
        test = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
        folders = {"train": root / "train", "test": test} if (root / "train").is_dir() and test else {"": root}
        found, skipped = {}, []
        for split, folder in folders.items():
            files = []
            for p in sorted(folder.rglob("*")):
                if p.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                try:
                    mode = p.stat().st_mode
                except OSError:  # a dangling link
                    mode = p.lstat().st_mode
                if stat.S_ISREG(mode):
                    files.append(p)
                elif not stat.S_ISDIR(mode):
                    skipped.append((p, mode))
            found[split] = (folder, files)
        if skipped:
            first, mode = skipped[0]
            _warn_once(f"dataset 'imagefolder': skipped {len(skipped)} file(s) under {printable(self.path)} that "
                       f"are not regular files (first: {printable(str(first))}, {file_kind(mode)})")
        return found if all(files for _, files in found.values()) else {}

    def _load(self, file: Path) -> np.ndarray:
        """One image -> uint8 (C, size, size). An image whose header declares more pixels than PIL's
        MAX_IMAGE_PIXELS (a decompression bomb: a small file that decodes to gigabytes) is refused."""
        from PIL import Image, ImageOps, UnidentifiedImageError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with open_regular(file, "image") as f, Image.open(f) as image:
                    image = image.convert("L" if self.channels == 1 else "RGB")
                    image = ImageOps.fit(image, (self.size, self.size), Image.Resampling.BICUBIC)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            size = str(exc).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
            self.fail(f"refused image {printable(str(file))}: {size} (a decompression bomb?)")
        except ZooError as exc:
            self.fail(str(exc))
        except UnidentifiedImageError:
            self.fail(f"cannot read image {printable(str(file))}: not an image format PIL can identify")
        except Exception as exc:  # PIL raises OSError, ValueError, SyntaxError, struct.error... on bad files
            self.fail(f"cannot read image {printable(str(file))}: {type(exc).__name__}: {exc}")
        pixels = np.asarray(image, dtype=np.uint8)
        return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    def _read(self) -> dict[str, Split]:
        splits = self._files
        if "" in splits:  # no official split: hold out a seeded fraction
            root, everything = splits[""]
            if len(everything) < 2:
                self.fail(f"need at least 2 images under {self.path} to hold some out, found {len(everything)}")
            n_test = min(len(everything) - 1, max(1, math.floor(self.test_fraction * len(everything) + 0.5)))
            order = torch.randperm(len(everything), generator=seeded_generator(self.seed, 2)).tolist()
            splits = {"train": (root, [everything[i] for i in sorted(order[n_test:])]),
                      "test": (root, [everything[i] for i in sorted(order[:n_test])])}
        # class = the one subfolder between a split's folder and the image, when every image has one
        classes = {split: [f.relative_to(folder).parts[:-1] for f in files] for split, (folder, files) in splits.items()}
        labelled = all(len(c) == 1 for split in classes for c in classes[split])
        names = sorted({c[0] for split in classes for c in classes[split]}) if labelled else []
        out = {}
        for split in ("train", "test"):
            images = torch.from_numpy(np.stack([self._load(f) for f in splits[split][1]]))
            labels = torch.tensor([names.index(c[0]) for c in classes[split]]) if labelled else None
            out[split] = (images, labels)
        return out


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning on stderr, once per process (data sets are built again for every run)."""
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"zoo: warning: {message}", file=sys.stderr)


IMAGE_DATASETS = (MNIST, CIFAR10, ImageFolder)


@zoo.hookimpl
def zoo_register_datasets(register) -> None:
    for cls in IMAGE_DATASETS:
        register(cls)
