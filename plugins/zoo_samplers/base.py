"""What every built-in sampler shares: option checks and the walk along a time grid."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

from torch import Tensor

from zoo.contracts import Law, Sampler
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


@dataclass(frozen=True)
class PathSampler(GridSampler):
    """A sampler built on the law's integrator path (exponential integrators: dpmpp, unipc)."""

    def order_options(self) -> None:
        if self.order not in (2, 3):
            self.fail(f"order must be 2 or 3, got {self.order}")

    def unsupported(self, law: Law) -> str | None:
        if law.integrator_path(law.T, 1) is None:
            return (f"sampler {self.name!r} does not support law {law.name!r}: it needs a law that states an "
                    "integrator path (heat, ve, vp, rf, pme)")
        return super().unsupported(law)


def intervals(grid: Tensor) -> Iterator[tuple[float, float, float]]:
    """(t_k, t_k+1, h = t_k - t_k+1 > 0) for each interval of a decreasing grid (K+1,)."""
    times = [float(t) for t in grid]
    for t, t_next in zip(times[:-1], times[1:]):
        yield t, t_next, t - t_next
