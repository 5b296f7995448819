"""Synthetic 2-D data sets. All live in about [-2, 2]^2, the scale of the heat law's N(0, I).

Each split is drawn from its own seeded generator (stream 0: train, stream 1: test), so a
split depends only on (seed, its size) and is cached on the instance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from zoo.contracts import Dataset, GaussianMixture, seeded_generator
from zoo.errors import ZooError

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Synthetic(Dataset):
    """A toy set drawn by :meth:`draw`: ``n_train`` / ``n_test`` points reproducible from ``seed``."""

    n_train: int = 5000
    n_test: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        for key in ("n_train", "n_test"):
            if getattr(self, key) < 1:
                self.fail(f"{key} must be at least 1, got {getattr(self, key)}")

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor | None]:
        """n points (n, 2) float32 and their labels (n,) int64, or None."""
        raise NotImplementedError

    @cached_property
    def _splits(self) -> dict[str, tuple[Tensor, Tensor | None]]:
        return {"train": self.draw(self.n_train, seeded_generator(self.seed, 0)),
                "test": self.draw(self.n_test, seeded_generator(self.seed, 1))}

    def train(self) -> Tensor:
        return self._splits["train"][0]

    def test(self) -> Tensor:
        return self._splits["test"][0]

    def labels(self, split: str) -> Tensor | None:
        if split not in SPLITS:
            raise ZooError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
        return self._splits[split][1]


@dataclass(frozen=True)
class Mixture(Synthetic):
    """Equal-weight isotropic Gaussian mixture; labels are the mode index."""

    std: float = 0.1

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.std > 0 and math.isfinite(self.std)):
            self.fail(f"std must be a positive number, got {self.std}")

    @property
    def means(self) -> Tensor:
        """(K, 2) mode centres."""
        raise NotImplementedError

    @property
    def exact(self) -> GaussianMixture:
        k, d = self.means.shape
        covs = (self.std**2 * torch.eye(d)).expand(k, d, d).clone()
        return GaussianMixture(torch.full((k,), 1.0 / k), self.means, covs)

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        means = self.means
        modes = torch.randint(len(means), (n,), generator=generator)
        x = means[modes] + self.std * torch.randn(n, 2, generator=generator)
        return x, modes


@dataclass(frozen=True)
class Ring8(Mixture):
    """8 Gaussians (std 0.1) evenly spaced on the circle of radius 2."""

    name = "gmm8"
    summary = "8 Gaussians on a ring (radius 2, std 0.1); exact density known"
    radius: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.radius > 0 and math.isfinite(self.radius)):
            self.fail(f"radius must be a positive number, got {self.radius}")

    @property
    def means(self) -> Tensor:
        angle = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        return (self.radius * torch.stack([angle.cos(), angle.sin()], 1)).float()


@dataclass(frozen=True)
class Grid25(Mixture):
    """25 Gaussians (std 0.05) on the 5x5 grid {-2, ..., 2}^2 (spacing 1, centred at 0)."""

    name = "gmm25"
    summary = "25 Gaussians on a 5x5 grid (spacing 1, std 0.05); exact density known"
    std: float = 0.05

    @property
    def means(self) -> Tensor:
        axis = torch.arange(5, dtype=torch.float32) - 2.0
        return torch.cartesian_prod(axis, axis)


@dataclass(frozen=True)
class Moons(Synthetic):
    """Two interleaved half circles (scikit-learn's make_moons), centred and scaled by 1.3."""

    name = "moons"
    summary = "two interleaving half circles"
    noise: float = 0.05  # std of the Gaussian jitter, before scaling, as in make_moons

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            self.fail(f"noise must be a non-negative number, got {self.noise}")

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, None]:
        moon = torch.randint(2, (n,), generator=generator).float()
        angle = math.pi * torch.rand(n, generator=generator)
        # upper moon (cos a, sin a); lower moon (1 - cos a, 1/2 - sin a)
        x = torch.stack([moon + (1 - 2 * moon) * angle.cos(), 0.5 * moon + (1 - 2 * moon) * angle.sin()], 1)
        x = x + self.noise * torch.randn(n, 2, generator=generator)
        return 1.3 * (x - torch.tensor([0.5, 0.25])), None


@dataclass(frozen=True)
class Checkerboard(Synthetic):
    """Uniform on the 8 dark squares (side 1) of a 4x4 board covering [-2, 2]^2."""

    name = "checkerboard"
    summary = "uniform on the dark squares of a 4x4 board on [-2, 2]^2"

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, None]:
        cells = torch.cartesian_prod(torch.arange(4), torch.arange(4))
        dark = cells[(cells.sum(1) % 2) == 0].float()  # (8, 2) lower-left corners
        corner = dark[torch.randint(len(dark), (n,), generator=generator)]
        return corner + torch.rand(n, 2, generator=generator) - 2.0, None


@dataclass(frozen=True)
class SwissRoll(Synthetic):
    """The 2-D Swiss roll (the (x, z) plane of make_swiss_roll), scaled to radius at most 2."""

    name = "swissroll"
    summary = "a 2-D spiral, scaled into [-2, 2]^2"
    noise: float = 0.05  # std of the Gaussian jitter, after scaling

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            self.fail(f"noise must be a non-negative number, got {self.noise}")

    def draw(self, n: int, generator: torch.Generator) -> tuple[Tensor, None]:
        turn = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))  # make_swiss_roll's t
        x = turn[:, None] * torch.stack([turn.cos(), turn.sin()], 1) / (2.25 * math.pi)
        return x + self.noise * torch.randn(n, 2, generator=generator), None
