"""Ralston's second-order Runge-Kutta method on the probability-flow ODE dY/ds = grad p + Y."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from zoo.contracts import Noise, ReverseProcess, Sampler
from zoo.grids import GRIDS


@dataclass(frozen=True)
class Ralston(Sampler):
    """Ralston 1962 (the RK2 of least error bound): k1 = f(t, y), k2 = f(t - 2h/3, y + 2h/3 k1),
    y <- y + h (k1 + 3 k2) / 4, with s = T - t so that a step of size h lowers t by h.
    Two NFE per step; deterministic, so it works with every law."""

    name: ClassVar[str] = "ralston"
    summary: ClassVar[str] = "Ralston's RK2 on the probability-flow ODE (order 2, 2 NFE/step)"
    order: ClassVar[int] = 2  # checked by zoo.testing.check_sampler

    def min_nfe(self) -> int:
        return 2  # one step evaluates the field twice

    def __post_init__(self) -> None:
        if self.grid not in GRIDS:
            self.fail(f"grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")

    def steps_for(self, nfe: int) -> int:
        return max(1, int(nfe) // 2)

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            h = t - t_next
            k1 = process.ode_drift(x, t)
            k2 = process.ode_drift(x + (2 * h / 3) * k1, t - 2 * h / 3)
            x = x + h * (0.25 * k1 + 0.75 * k2)
        return x
