"""DPM-Solver++ multistep (2M, 3M) for laws with an integrator path, and its SDE form (2M SDE) for laws with affine marginals."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Noise, ReverseProcess
from zoo_samplers.ancestral import NoisyAffineSampler, scaled_levels
from zoo_samplers.base import PathSampler, intervals


@dataclass(frozen=True)
class DPMSolverPP(PathSampler):
    """DPM-Solver++(2M / 3M): Lu et al. 2022, "DPM-Solver++: Fast solver for guided sampling of
    diffusion probabilistic models", Algorithm 2 (2M) and its third-order multistep extension (3M).

    Exponential integrator of the probability-flow ODE in data-prediction form, for any law whose
    marginals are those of x_t = alpha_t x0 + sigma_t noise (:meth:`zoo.contracts.Law.affine_path`):
    heat seen as a VP process (alpha_t = e^-t, sigma_t = sqrt(1 - e^-2t), x0_hat = (x + sigma_t^2
    grad p) / alpha_t) and the pme source route (sigma_t = b(t) sigma, x0_hat = (x + b^lambda grad p)
    / alpha_t). The ODE dx/dt = E[alpha' x0 + sigma' noise | x] of such a path needs only x0_hat,
    whatever the noise's law, so with lambda_t = log(alpha_t / sigma_t) the linear part is
    integrated exactly and x0_hat is extrapolated by a polynomial in lambda through the last
    ``order`` evaluations; the first steps use the lower orders their history allows. 3M
    integrates the quadratic term exactly (measured order 3.0 on gmm8; the 3M update as written in
    diffusers gave 2.2 to 2.5 here). One NFE per step. A grid ending at t = 0 (sigma = 0) takes the
    last step onto the data prediction, first order, as k-diffusion's ``sample_dpmpp_2m`` does.
    """

    name: ClassVar[str] = "dpmpp"
    summary: ClassVar[str] = "DPM-Solver++ multistep (2M/3M), data prediction, laws with affine marginals (1 NFE/step)"

    order: int = 2
    # with final=denoise: land on D_K + reach (D_K - D_(K-1)), D_K the data prediction at the grid's end,
    # D_(K-1) the last step's; 0 lands on D_K. A solver coefficient for `zoo tune` to fit with the grid
    reach: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.order_options()
        if not math.isfinite(self.reach):
            self.fail(f"reach must be a finite number, got {self.reach}")
        if self.reach != 0.0 and self.final != "denoise":
            self.fail(f"reach applies to the final denoising step: give final=denoise, got final={self.final}")

    def tuned_options(self, law) -> tuple[str, ...]:  # noqa: ANN001
        return ("reach",) if self.final_step(law) == "denoise" else ()

    def run(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        if self.reach == 0.0:
            return super().run(process, x, grid, noise)
        y, previous = self._integrate(process, x, grid)
        d = process.data_prediction(y, float(grid[-1]))
        return d + self.reach * (d - previous)

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        return self._integrate(process, x, grid)[0]

    def _integrate(self, process: ReverseProcess, x: Tensor, grid: Tensor) -> tuple[Tensor, Tensor]:
        """x at the grid's end and the last data prediction made on the way."""
        path = functools.lru_cache(maxsize=None)(lambda s, dim=x[0].numel(): process.law.integrator_path(s, dim))
        lams: list[float] = []  # lambda at the times of the stored predictions, newest last
        preds: list[Tensor] = []  # x0_hat, newest last
        for t, t_next, _ in intervals(grid):  # each node's path is read once: as t_next, then as t
            a, sigma, gain = path(t)
            tt = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
            preds = (preds + [(x + gain * process.field.grad_p(x, tt)) / a])[-self.order:]
            lams = (lams + [math.log(a / sigma)])[-self.order:]
            a_next, sigma_next, _ = path(t_next)
            if sigma_next == 0.0:  # a grid ending at t = 0: land on the data prediction (as k-diffusion does)
                x = preds[-1]
                continue
            x = self._step(x, sigma_next / sigma, a_next, math.log(a_next / sigma_next), lams, preds)
        return x, preds[-1]

    @staticmethod
    def _step(x: Tensor, ratio: float, a_next: float, lam_next: float, lams: list[float], preds: list[Tensor]) -> Tensor:
        """One multistep update of x to the next time with as high an order as the history allows.

        x_next = (sigma_next / sigma_t) x + alpha_next int_0^h e^(u - h) m(lambda_t + u) du, with m the
        polynomial in lambda through the stored x0_hat; int_0^h e^(u - h) u^j du gives the weights below.
        ``ratio`` = sigma_next / sigma_t.
        """
        h = lam_next - lams[-1]
        phi = -math.expm1(-h)  # int e^(u - h) du = 1 - e^-h
        out = ratio * x
        m0 = preds[-1]
        if len(preds) == 1:  # DPM-Solver++ 1 (= DDIM): m constant
            return out + a_next * phi * m0
        h0 = lams[-1] - lams[-2]
        slope = (m0 - preds[-2]) / h0  # divided difference m[l0, l1]
        if len(preds) == 2:  # 2M, Lu et al. Algorithm 2: D = m0 + (h / 2) m[l0, l1]
            return out + a_next * phi * (m0 + 0.5 * h * slope)
        # 3M: the quadratic m0 + (m[l0,l1] + h0 m[l0,l1,l2]) u + m[l0,l1,l2] u^2 integrated exactly
        h1 = lams[-2] - lams[-3]
        curve = (slope - (preds[-2] - preds[-3]) / h1) / (h0 + h1)  # m[l0, l1, l2]
        return out + a_next * (phi * m0 + (h - phi) * (slope + h0 * curve) + (h * h - 2.0 * h + 2.0 * phi) * curve)


@dataclass(frozen=True)
class DPMSolverPPSDE(NoisyAffineSampler):
    """DPM-Solver++(2M) SDE: Lu et al. 2022, "DPM-Solver++: Fast solver for guided sampling of
    diffusion probabilistic models", section 5 (the SDE solver), in the multistep form of
    k-diffusion's ``sample_dpmpp_2m_sde`` (midpoint), for laws with affine marginals and Gaussian
    noise (heat, ve, vp, rf).

    In the scaled variables y = x / alpha_t, sigma = s_t / alpha_t, lambda = -log sigma and D the
    data prediction, a step of h = lambda' - lambda integrates the linear part of the reverse SDE
    exactly: y' = (sigma'/sigma) e^(-alpha h) y + (1 - e^(-(1 + alpha) h)) (D + (D - D_prev) / (2 r))
    + sigma' sqrt(1 - e^(-2 alpha h)) z, with r = h_prev / h (the second-order term from the previous
    step's D). ``alpha`` is k-diffusion's eta and zoo's noise strength (the noise variance per step
    is linear in it, 2 alpha h sigma'^2 for small h): alpha = 1 is the reverse SDE, alpha = 0 is
    dpmpp (2M). A grid ending at t = 0 lands on D. One NFE per step.
    """

    name: ClassVar[str] = "dpmpp_sde"
    summary: ClassVar[str] = "DPM-Solver++(2M) SDE, data prediction, laws with affine marginals (1 NFE/step)"

    def eta_of(self) -> float:
        return float(self.alpha)

    def deterministic_twin(self) -> str | None:
        return DPMSolverPP(grid=self.grid, final=self.final).spec if self.alpha == 0 else None

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        eta = float(self.alpha)
        if eta == 0:  # the same update; dpmpp's arithmetic, so that its rows stand for these exactly
            return DPMSolverPP(grid=self.grid, final=self.final).sample(process, x, grid, noise)
        previous, h_previous = None, None
        for t, t_next, _ in intervals(grid):
            d, a, sigma, a_next, sigma_next = scaled_levels(process, x, t, t_next)
            if sigma_next == 0.0:
                return d
            h = math.log(sigma / sigma_next)
            kept = -math.expm1(-h - eta * h)  # 1 - e^(-(1 + alpha) h)
            y = (sigma_next / sigma) * math.exp(-eta * h) * (x / a) + kept * d
            if previous is not None:
                y = y + 0.5 * kept * (h / h_previous) * (d - previous)
            if eta:
                y = y + sigma_next * math.sqrt(-math.expm1(-2.0 * eta * h)) * noise.randn().to(x.dtype)
            x, previous, h_previous = a_next * y, d, h
        return x
