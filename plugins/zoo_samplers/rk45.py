"""Adaptive Dormand-Prince 5(4) with per-sample step sizes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Noise, ReverseProcess
from zoo.errors import ZooError
from zoo_samplers.base import GridSampler

# Dormand & Prince 1980, "A family of embedded Runge-Kutta formulae" (the tableau of scipy's RK45)
C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)  # 5th order; stage 7 = FSAL
E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)  # 5th - 4th order
MAX_STEPS = 100_000
# below 100 float64 epsilons (scipy's floor for rtol) a tolerance cannot be met: the step size
# would shrink until time stops advancing and MAX_STEPS ran out, silently, for hours
MIN_TOL = 100 * float(torch.finfo(torch.float64).eps)


def _combine(k: list[Tensor], coeffs: tuple[float, ...]) -> Tensor:
    return sum(c * ki for c, ki in zip(coeffs, k) if c != 0.0)


@dataclass(frozen=True)
class RK45(GridSampler):
    """Adaptive Dormand-Prince RK5(4) (Dormand & Prince 1980; Hairer, Norsett & Wanner, Solving ODEs I,
    section II.4-5) on the probability-flow ODE, as used by Song et al. 2021 for likelihoods and samples.

    Error control is per sample: every trajectory has its own step size, accepts or rejects
    on its own error norm (RMS over dimensions, scaled by atol + rtol |y|) and stops at t_min
    on its own, so a sample does not depend on the batch it is drawn in. The field is called
    with per-sample times (n,). Adaptive: only the grid's end points are used and the tolerances,
    not an NFE budget, set the cost (the counted NFE is 1 + 6 x the most steps any sample of the
    batch needed).
    """

    name: ClassVar[str] = "rk45"
    summary: ClassVar[str] = "adaptive Dormand-Prince RK5(4), per-sample error control (rtol, atol)"
    adaptive: ClassVar[bool] = True

    rtol: float = 1e-5
    atol: float = 1e-5

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("rtol", "atol"):
            value = getattr(self, key)
            if not (0 < value < 1):
                self.fail(f"{key} must lie in (0, 1), got {value}")
            if value < MIN_TOL:
                self.fail(f"{key}={value:g} is below floating-point precision (at least {MIN_TOL:.2g}, "
                          f"100 float64 epsilons): it cannot be met")

    def steps_for(self, nfe: int) -> int:
        return 1

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        shape, start, end = x.shape[1:], float(grid[0]), float(grid[-1])

        def f(y: Tensor, t: Tensor) -> Tensor:
            """dY/ds for flat y (m, D) at per-sample forward times t (m,)."""
            return process.ode_drift(y.reshape(-1, *shape), t.to(y.dtype)).reshape(y.shape)

        x = x.reshape(x.shape[0], -1).clone()  # (n, D), advanced in place sample by sample
        t = torch.full((x.shape[0],), start, dtype=torch.float64, device=x.device)
        d = f(x, t)  # the FSAL derivative at (x, t)
        # initial step (Hairer et al. II.4): 1% of |y| / |f| in the error norm
        scale = self.atol + self.rtol * x.abs()
        h = 0.01 * (x / scale).norm(dim=1) / (d / scale).norm(dim=1).clamp_min(1e-12)
        h = h.double().clamp(1e-6, start - end)
        active = torch.arange(x.shape[0], device=x.device)
        for _ in range(MAX_STEPS):
            if active.numel() == 0:
                return x.reshape(-1, *shape)
            y, ta, left = x[active], t[active], t[active] - end
            ha = torch.minimum(h[active], left)
            hb = ha.to(x.dtype)[:, None]
            k = [d[active]]
            for c, a in zip(C[1:], A[1:]):
                k.append(f(y + hb * _combine(k, a), ta - c * ha))
            y_new = y + hb * _combine(k, B)
            k.append(f(y_new, ta - ha))
            scale = self.atol + self.rtol * torch.maximum(y.abs(), y_new.abs())
            err = (hb * _combine(k, E) / scale).square().mean(dim=1).sqrt().double()  # RMS error norm (m,)
            ok = err <= 1.0
            # step-size controller: h <- h * 0.9 err^(-1/5), within [0.2, 10], never growing after a rejection
            factor = (0.9 * err.clamp_min(1e-10) ** -0.2).clamp(0.2, 10.0)
            h[active] = ha * torch.where(ok, factor, factor.clamp_max(1.0))
            done = ok & (ha >= left)
            accepted = active[ok]
            x[accepted], d[accepted] = y_new[ok], k[-1][ok]
            t[accepted] = torch.where(done[ok], torch.full_like(ha[ok], end), (ta - ha)[ok])
            active = active[~done]
        raise ZooError(f"rk45 did not reach t_min in {MAX_STEPS} steps (rtol={self.rtol}, atol={self.atol})")
