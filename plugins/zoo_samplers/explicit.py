"""Explicit Runge-Kutta samplers of the probability-flow ODE dY/ds = grad p(Y, T - s) + Y."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from zoo.contracts import Noise, ReverseProcess
from zoo_samplers.base import GridSampler, intervals


@dataclass(frozen=True)
class Euler(GridSampler):
    """Explicit Euler on the probability-flow ODE (alpha = 0): first order, one NFE per step."""

    name: ClassVar[str] = "euler"
    summary: ClassVar[str] = "explicit Euler on the probability-flow ODE (order 1, 1 NFE/step)"
    order: ClassVar[int] = 1

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        for t, _, h in intervals(grid):
            x = x + h * process.ode_drift(x, t)
        return x


@dataclass(frozen=True)
class Heun(GridSampler):
    """Heun's method (explicit trapezoidal RK2) on the probability-flow ODE, as in
    Karras et al. 2022 (EDM), Algorithm 1: second order, two NFE per step except the last
    step, which is a single Euler step (so K steps cost 2K - 1 NFE; still second order
    globally, since one Euler step adds a local error O(h^2))."""

    name: ClassVar[str] = "heun"
    summary: ClassVar[str] = "Heun (RK2) on the probability-flow ODE, EDM-style (order 2, 2 NFE/step)"
    order: ClassVar[int] = 2

    def steps_for(self, nfe: int) -> int:
        return max(1, (int(nfe) + 1) // 2)

    def min_nfe(self) -> int:
        # fewer than 5 steps over the default grids' 3.7 to 4.6 decades of t blow up: the trapezoid
        # leaves its stability region where the field is stiff (flow error 1.4 to 4.7 at 5 NFE on
        # heat, ve, vp, rf with exact fields, 0.13 to 0.87 at 9: benchmarks/sampler_end_points.md)
        return 9

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        *body, (t, _, h) = intervals(grid)
        for t_k, t_next, h_k in body:
            d = process.ode_drift(x, t_k)
            x = x + 0.5 * h_k * (d + process.ode_drift(x + h_k * d, t_next))  # trapezoid on the Euler guess
        return x + h * process.ode_drift(x, t)
