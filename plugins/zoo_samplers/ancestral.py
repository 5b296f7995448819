"""DDIM and its eta family, and Euler ancestral: the same step in the scaled variables x / alpha_t."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from zoo.contracts import Law, Noise, ReverseProcess
from zoo_samplers.base import GridSampler, intervals


def scaled_levels(process: ReverseProcess, x: Tensor, t: float, t_next: float) -> tuple[Tensor, float, float, float, float]:
    """(D, a, sigma, a', sigma'): the data prediction at (x, t) (one NFE) and, on the law's affine path
    x_t = a_t x0 + s_t z, the scale a and the noise level sigma = s / a at t and at t_next (sigma' = 0
    at t_next = 0)."""
    dim = x[0].numel()
    a, s, _ = process.law.affine_path(t, dim)
    a_next, s_next, _ = process.law.affine_path(t_next, dim)
    return process.data_prediction(x, t), a, s / a, a_next, s_next / a_next


def ancestral_step(process: ReverseProcess, x: Tensor, t: float, t_next: float, eta: float,
                   noise: Noise | None) -> Tensor:
    """One DDIM / ancestral step of x from forward time t to t_next < t (one NFE).

    With the law's affine path x_t = a_t x0 + s_t z, the scaled state y = x / a and noise level
    sigma = s / a (k-diffusion's sigma: VE's own), and D the data prediction at (x, t):
    sigma_up = min(sigma', eta sigma' sqrt(1 - sigma'^2 / sigma^2)), sigma_down = sqrt(sigma'^2 -
    sigma_up^2), y' = y + (sigma_down - sigma) (y - D) / sigma + sigma_up z. At eta = 0 it is the
    Euler step of dy/dsigma = (y - D) / sigma, i.e. DDIM and DPM-Solver++ 1. A next time with
    s = 0 (a grid ending at t = 0) lands on D."""
    d, a, sigma, a_next, sigma_next = scaled_levels(process, x, t, t_next)
    if sigma_next == 0.0:
        return d
    up = min(sigma_next, eta * sigma_next * math.sqrt(-math.expm1(2.0 * math.log(sigma_next / sigma)))) if eta else 0.0
    down = math.sqrt(sigma_next**2 - up**2) if up else sigma_next
    y = x / a
    y = y + (down - sigma) * ((y - d) / sigma)
    if up:
        y = y + up * noise.randn().to(x.dtype)
    return a_next * y


class _Ancestral(GridSampler):
    """What ddim and euler_a share: laws with affine marginals, and the walk along the grid."""

    def eta_of(self) -> float:
        raise NotImplementedError

    def unsupported(self, law: Law) -> str | None:
        if law.affine_path(law.T, 1) is None:
            return (f"sampler {self.name!r} does not support law {law.name!r}: it needs affine marginals "
                    "x_t = alpha_t x0 + sigma_t noise (heat, ve, vp, rf)")
        if self.eta_of() > 0 and not law.noise_ready:
            return (f"sampler {self.name!r} with eta > 0 is stochastic: its noise needs the pressure p, which this "
                    f"{law.name!r} model does not learn (use eta=0)")
        return super().unsupported(law)

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        eta = self.eta_of()
        for t, t_next, _ in intervals(grid):
            x = ancestral_step(process, x, t, t_next, eta, noise)
        return x


@dataclass(frozen=True)
class DDIM(_Ancestral):
    """DDIM: Song, Meng & Ermon 2021, "Denoising Diffusion Implicit Models" (ICLR), eq. 12 with
    sigma_t(eta) of eq. 16, for any law with affine marginals x_t = alpha_t x0 + sigma_t z
    (:meth:`zoo.contracts.Law.affine_path`: heat, ve, vp, rf), written with the law's own alpha and
    sigma: x' = alpha' D + sqrt(sigma'^2 - c^2) eps_hat + c z, with D the data prediction, eps_hat =
    (x - alpha D) / sigma and c = eta sigma' sqrt(1 - (alpha sigma' / (alpha' sigma))^2).

    ``eta`` = 0: deterministic, the first-order exponential integrator of the probability flow
    (DPM-Solver++ 1; Euler in sigma / alpha); eta = 1: DDPM's ancestral sampling (Ho et al. 2020).
    For small steps eta is the noise strength of the reverse-SDE family with alpha = eta^2 (MATH.md
    section 6), which ``alpha`` reports. eta > 0 draws noise (Gaussian noise, as DDIM assumes); zoo
    bench runs a ddim SPEC as written (not swept over its alpha grid: that is euler_a's role) and
    records alpha = eta^2.
    One NFE per step; the final step to t = 0 (``final``) follows the grid's last step.
    """

    name: ClassVar[str] = "ddim"
    summary: ClassVar[str] = "DDIM and its eta family (eta=0: first-order exponential integrator), laws with affine marginals (1 NFE/step)"
    order: ClassVar[int] = 1

    eta: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.eta >= 0 and math.isfinite(self.eta)):
            self.fail(f"eta must be a finite number >= 0, got {self.eta}")

    @property
    def alpha(self) -> float:  # type: ignore[override]
        return float(self.eta) ** 2

    def eta_of(self) -> float:
        return float(self.eta)


@dataclass(frozen=True)
class NoisyAffineSampler(_Ancestral):
    """A stochastic sampler of laws with affine marginals whose noise strength is the option ``alpha``
    (euler_a, dpmpp_sde): the bench sweeps it over its alpha grid."""

    stochastic: ClassVar[bool] = True

    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_alpha(self.alpha)


@dataclass(frozen=True)
class EulerAncestral(NoisyAffineSampler):
    """Euler ancestral: k-diffusion's ``sample_euler_ancestral`` (Crowson; used with Karras et al.
    2022's grids), for any law with affine marginals (heat, ve, vp, rf): an Euler step of the
    probability flow in sigma / alpha down to sigma_down, then fresh noise of std sigma_up, with
    sigma_up = eta sigma' sqrt(1 - sigma'^2 / sigma^2). It is DDIM's eta family in the variables
    x / alpha and sigma / alpha (the same update, :func:`ancestral_step`), parametrised here as zoo's
    stochastic samplers are: ``alpha`` = eta^2 is the noise strength of the reverse-SDE family it
    discretises (k-diffusion's default eta = 1 is alpha = 1, Anderson's reverse SDE), so a bench
    sweeps it over alpha like em and pc; at alpha = 0 it is ddim. Noise is added on every step to a
    time with sigma > 0, as k-diffusion does. One NFE per step.
    """

    name: ClassVar[str] = "euler_a"
    summary: ClassVar[str] = "Euler ancestral (k-diffusion), DDIM's eta family with alpha = eta^2, laws with affine marginals (1 NFE/step)"

    def eta_of(self) -> float:
        return math.sqrt(self.alpha)

    def deterministic_twin(self) -> str | None:
        return DDIM(grid=self.grid, final=self.final).spec if self.alpha == 0 else None
