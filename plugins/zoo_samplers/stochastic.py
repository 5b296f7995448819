"""Stochastic samplers of the alpha family dY = [(1 + alpha) grad p + Y] ds + sqrt(2 alpha P/rho) dW."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Alpha, Law, Noise, ReverseProcess, per_sample
from zoo_samplers.base import GridSampler, intervals
from zoo_samplers.explicit import Euler

SCHEDULES = ("const", "linear")


def _em_step(process: ReverseProcess, x: Tensor, t: float, h: float, noise: Noise | None) -> Tensor:
    """One Euler-Maruyama step of the reverse SDE over ds = h; noise None gives the mean."""
    if noise is None:
        return x + h * process.drift(x, t)
    drift, std = process.sde_terms(x, t)
    return x + h * drift + math.sqrt(h) * per_sample(std, x) * noise.randn().to(x.dtype)


@dataclass(frozen=True)
class EulerMaruyama(GridSampler):
    """Euler-Maruyama (Kloeden & Platen 1992, section 9.1) on the reverse SDE of the alpha family
    (MATH.md section 6; alpha = 1 is Anderson's reverse SDE as sampled by Song et al. 2021).

    Options: ``alpha`` >= 0, the noise strength (a float option, so ``sampler.alpha`` is that float)
    and ``schedule``: ``const`` or ``linear``, alpha(t) = alpha t / T (noise early, none at the end).
    The schedule needs the law's horizon T: :meth:`strength` builds alpha(t). Following Song et al. 2021, the last step adds no noise
    (it returns the mean of the step). One NFE per step.
    """

    name: ClassVar[str] = "em"
    summary: ClassVar[str] = "Euler-Maruyama on the reverse SDE, alpha constant or linear in t (1 NFE/step)"
    stochastic: ClassVar[bool] = True

    alpha: float = 1.0
    schedule: str = "const"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_alpha(self.alpha)
        if self.schedule not in SCHEDULES:
            self.fail(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")

    def deterministic_twin(self) -> str | None:
        # alpha = 0: the drift is the probability-flow drift and the noise is zero, step for step
        return Euler(grid=self.grid, final=self.final).spec if self.alpha == 0 else None

    def strength(self, law: Law) -> float | Alpha:
        if self.schedule == "const":
            return self.alpha
        return lambda t, a=self.alpha, T=law.T: a * t / T

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        *body, (t, _, h) = intervals(grid)
        for t_k, _, h_k in body:
            x = _em_step(process, x, t_k, h_k, noise)
        return _em_step(process, x, t, h, None)


@dataclass(frozen=True)
class PredictorCorrector(GridSampler):
    """Predictor-corrector sampling, Song et al. 2021 ("Score-based generative modeling through
    stochastic differential equations"), Algorithms 2-3: at each grid time t, ``corrector_steps``
    Langevin MCMC steps x <- x + eps grad log rho_t + sqrt(2 eps) z, then an Euler-Maruyama predictor
    step of the reverse SDE (noise strength ``alpha``; 1 is Anderson's reverse SDE).

    Step size: Song et al. take eps = 2 (snr |z| / |grad log rho|)^2 with norms averaged over the
    batch; per sample that rule explodes where the score vanishes (between modes, near x = 0 at
    large t), and averaged it makes a sample depend on its batch. We use its value at the largest
    Fisher information the heat law allows, |grad log rho_t|^2 <= d / s_t^2 (rho_t is rho_0 blurred
    by N(0, s_t^2 I)): eps = 2 (snr s_t)^2, so snr bounds the ratio |eps grad log rho| / |sqrt(2 eps) z|.

    The last predictor step adds no noise (returns the mean), as in Song et al. Laws with Gaussian
    affine marginals x_t = a x0 + s_t z only (heat, ve, vp, rf): the corrector needs the score
    grad p / D (D = the law's noise, a function of t) and the bound uses s_t (s_t^2 = gain D,
    :meth:`zoo.contracts.Law.affine_path`). 1 + corrector_steps NFE per grid step.
    """

    name: ClassVar[str] = "pc"
    summary: ClassVar[str] = "predictor-corrector: reverse-SDE predictor + Langevin corrector (laws with affine marginals)"
    stochastic: ClassVar[bool] = True

    alpha: float = 1.0
    snr: float = 0.16
    corrector_steps: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_alpha(self.alpha)
        if not (self.snr > 0 and math.isfinite(self.snr)):
            self.fail(f"snr must be a positive number, got {self.snr}")
        if self.corrector_steps < 1:
            self.fail(f"corrector_steps must be at least 1, got {self.corrector_steps}")

    def unsupported(self, law: Law) -> str | None:
        if law.affine_path(law.T, 1) is None or not law.noise_ready:
            return (f"sampler {self.name!r} does not support law {law.name!r} here: its Langevin corrector needs "
                    "the score of affine marginals x_t = a x0 + s z (heat, ve, vp, rf)")
        return super().unsupported(law)

    def steps_for(self, nfe: int) -> int:
        return max(1, int(nfe) // (1 + self.corrector_steps))

    def min_nfe(self) -> int:
        return 1 + self.corrector_steps

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        steps = list(intervals(grid))
        dim = x[0].numel()
        for k, (t, _, h) in enumerate(steps):
            tt = torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)
            # the noise D of an affine law depends on t only; the score is grad p / D
            d = float(process.law.pressure_ratio(process.field, x[:1], tt[:1])[0])
            eps = 2.0 * self.snr**2 * (process.law.affine_path(t, dim)[2] * d)  # Langevin step 2 (snr s_t)^2, see above
            for _ in range(self.corrector_steps):  # Langevin corrector at time t
                x = x + eps * (process.field.grad_p(x, tt) / d) + math.sqrt(2.0 * eps) * noise.randn().to(x.dtype)
            x = _em_step(process, x, t, h, noise if k < len(steps) - 1 else None)
        return x
