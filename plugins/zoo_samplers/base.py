"""What every built-in sampler shares: option checks and the walk along a time grid."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from torch import Tensor

from zoo.contracts import Sampler
from zoo.grids import GRIDS


@dataclass(frozen=True)
class GridSampler(Sampler):
    """A sampler stepping along the decreasing forward-time grid (T = t_0 > ... > t_K = t_min)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.grid not in GRIDS:
            self.fail(f"grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")

    def check_alpha(self, alpha: float) -> None:
        if not (alpha >= 0 and math.isfinite(alpha)):
            self.fail(f"alpha must be a finite number >= 0, got {alpha}")


def intervals(grid: Tensor) -> Iterator[tuple[float, float, float]]:
    """(t_k, t_k+1, h = t_k - t_k+1 > 0) for each interval of a decreasing grid (K+1,)."""
    times = [float(t) for t in grid]
    for t, t_next in zip(times[:-1], times[1:]):
        yield t, t_next, t - t_next
