"""``file:PATH``: a user's samples from a ``.npy`` array or the ``samples`` key of an ``.npz``."""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from zoo.contracts import Dataset, seeded_generator
from zoo.errors import ZooError
from zoo.safe import load_array


@dataclass(frozen=True)
class FileData(Dataset):
    """Samples (n, d) or images (n, C, H, W) from a file, split at random into train and test.

    The split is a seeded permutation: ``round(test_fraction * n)`` points (at least one) are held out.
    """

    name = "file"
    summary = "samples from a .npy file or the 'samples' key of a .npz (file:PATH)"
    positional = "path"

    path: str
    test_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.test_fraction < 1:
            self.fail(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        self._splits  # read and check the file now, so bad data fails at once

    def _read(self) -> np.ndarray:
        path = Path(self.path).expanduser()
        if not path.exists():
            self.fail(f"no such file: {self.path}")
        if not path.is_file():
            self.fail(f"{self.path} is not a file")
        try:
            return load_array(path, "samples", "file")  # no pickle: a crafted file cannot run code
        except ZooError as exc:
            self.fail(str(exc))

    @cached_property
    def _splits(self) -> dict[str, Tensor]:
        array = self._read()
        if array.dtype.kind not in "iuf":
            self.fail(f"{self.path}: samples must be numbers, got dtype {array.dtype}")
        if array.ndim not in (2, 4):
            self.fail(f"{self.path}: samples must have shape (n, d) or (n, C, H, W), got {array.shape}")
        if array.size == 0:
            self.fail(f"{self.path}: samples are empty, shape {array.shape}")
        data = torch.from_numpy(np.ascontiguousarray(array)).float()
        if not torch.isfinite(data).all():
            self.fail(f"{self.path}: samples contain NaN or inf (or values too large for float32)")
        n = len(data)
        if n < 2:
            self.fail(f"{self.path}: need at least 2 samples to hold some out, got {n}")
        n_test = min(n - 1, max(1, math.floor(self.test_fraction * n + 0.5)))
        order = torch.randperm(n, generator=seeded_generator(self.seed))
        return {"train": data[order[n_test:]], "test": data[order[:n_test]]}

    def train(self) -> Tensor:
        return self._splits["train"]

    def test(self) -> Tensor:
        return self._splits["test"]
