"""scikit-learn's 8x8 handwritten digits (1797 images, shipped inside scikit-learn: no download)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch
from torch import Tensor

from zoo.contracts import Dataset
from zoo.errors import ZooError

N_TEST = 300  # fixed stratified held-out split: 1497 train / 300 test
SPLIT_SEED = 0


@lru_cache(maxsize=1)
def _load() -> dict[str, tuple[Tensor, Tensor]]:
    """{split: (images (n, 1, 8, 8) float32 in [-1, 1], labels (n,) int64)}."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    pixels, labels = load_digits(return_X_y=True)  # pixels (1797, 64) in 0..16
    images = torch.from_numpy(pixels).float().reshape(-1, 1, 8, 8) / 8.0 - 1.0
    labels = torch.from_numpy(labels).long()
    train, test = train_test_split(torch.arange(len(labels)).numpy(), test_size=N_TEST,
                                   stratify=labels.numpy(), random_state=SPLIT_SEED)
    return {"train": (images[train], labels[train]), "test": (images[test], labels[test])}


@dataclass(frozen=True)
class Digits(Dataset):
    """Digits as (1, 8, 8) images scaled to [-1, 1]; a fixed stratified 1497/300 split.

    ``n_train`` keeps only the first n images of the (shuffled) train split, for sweeps over N.
    The default network is the UNet: with the heat law, 2000 Adam steps (batch 128, lr 1e-3) gave a
    held-out DSM loss of 0.24 and samples that look like digits, against 0.40 for the default MLP,
    whose samples diverged (it underfits the nearly linear noise target at large t in 64 dimensions).
    Base width 16 keeps a CPU training at a few steps per second (base 32 ran at about 2).
    """

    name = "digits"
    summary = "scikit-learn's 8x8 digits, (1, 8, 8) in [-1, 1], 1497 train / 300 held out"
    default_network = "unet:base=16"

    n_train: int = 1497

    def __post_init__(self) -> None:
        full = len(_load()["train"][0])
        if not 1 <= self.n_train <= full:
            self.fail(f"n_train must lie in [1, {full}], got {self.n_train}")

    @cached_property
    def _splits(self) -> dict[str, tuple[Tensor, Tensor]]:
        images, labels = _load()["train"]
        return {"train": (images[: self.n_train], labels[: self.n_train]), "test": _load()["test"]}

    def train(self) -> Tensor:
        return self._splits["train"][0]

    def test(self) -> Tensor:
        return self._splits["test"][0]

    def labels(self, split: str) -> Tensor:
        if split not in self._splits:
            raise ZooError(f"unknown split {split!r} (splits: train, test)")
        return self._splits[split][1]
