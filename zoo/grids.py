"""Time grids for generation: decreasing forward times from T to t_min.

The reverse flow is stiff near t = 0 (for PME abs(grad u) grows like 1/(lambda t), MATH.md
section 6): uniform steps waste the budget, so the default is geometric (log) spacing. ``tuned`` grids
have no formula: their times are searched per model, sampler and NFE by `zoo tune` (zoo.tuning).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from zoo.errors import ZooError

GRIDS = ("geometric", "uniform", "edm", "tuned")


def log_uniform_times(n: int, t_min: float, T: float, generator: torch.Generator) -> Tensor:
    """n float64 training times (n,), log-uniform on [t_min, T]: the spacing of the geometric grid."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.exp(math.log(t_min) + u * (math.log(T) - math.log(t_min)))


def time_grid(T: float, t_min: float, steps: int, kind: str = "geometric") -> Tensor:
    """(steps + 1,) float64 times, t[0] = T > ... > t[steps] = t_min."""
    if steps < 1:
        raise ZooError(f"a time grid needs at least one step, got {steps}")
    i = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    if kind == "geometric":
        t = torch.exp(math.log(T) + i * (math.log(t_min) - math.log(T)))
    elif kind == "uniform":
        t = T + i * (t_min - T)
    elif kind == "edm":
        # Karras et al. 2022 (rho = 7) in the noise level sigma(t) = sqrt(e^(2t) - 1) of the heat law
        rho = 7.0
        s_max, s_min = math.sqrt(math.expm1(2 * T)), math.sqrt(math.expm1(2 * t_min))
        sigma = (s_max ** (1 / rho) + i * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        t = 0.5 * torch.log1p(sigma**2)
    elif kind == "tuned":
        raise ZooError("grid=tuned has no formula: its times come from `zoo tune` (a grids.json)")
    else:
        raise ZooError(f"unknown time grid {kind!r} (grids: {', '.join(GRIDS)})")
    t[0], t[-1] = T, t_min  # exact ends, whatever the rounding
    return t
