"""EDM's sampler (Karras et al. 2022, Algorithms 1-2): Heun in the noise level sigma / alpha, with churn."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from zoo.contracts import Law, Noise, ReverseProcess
from zoo_samplers.base import GridSampler, intervals


def time_of_level(law: Law, level: float, dim: int, t_hi: float) -> float:
    """The forward time t in (0, t_hi] where sigma_t / alpha_t = level (bisection in log t; the level
    increases with t on every law with affine marginals)."""
    ratio = lambda t: law.affine_path(t, dim)[1] / law.affine_path(t, dim)[0]  # noqa: E731
    lo, hi = math.log(t_hi) - 40.0, math.log(t_hi)
    if ratio(t_hi) <= level:
        return t_hi
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio(math.exp(mid)) < level else (lo, mid)
    return math.exp(0.5 * (lo + hi))


@dataclass(frozen=True)
class EDM(GridSampler):
    """EDM's stochastic sampler: Karras, Aittala, Aila & Laine 2022, "Elucidating the design space of
    diffusion-based generative models" (NeurIPS), Algorithm 2 (``churn`` = 0: Algorithm 1), for laws
    with affine marginals (heat, ve, vp, rf), in the scaled state x / alpha and noise level sigma =
    s / alpha where every such law is EDM's VE: at each grid level sigma_i in [s_tmin, s_tmax] the
    noise is first raised to sigma_hat = (1 + gamma) sigma_i, gamma = min(churn / K, sqrt(2) - 1) for K
    steps, by fresh noise of std s_noise sqrt(sigma_hat^2 - sigma_i^2); then a Heun step of dx/dsigma =
    (x - D) / sigma from sigma_hat to sigma_{i+1}. As k-diffusion's ``sample_heun`` (which it
    reproduces on ve from the same noise) and zoo's heun, the last step is Euler's: K steps cost
    2K - 1 NFE. The raised level never exceeds the prior's, sigma(T) (EDM's S_tmax keeps below it).
    Its grid is EDM's (``grid=edm``, rho = 7 in sigma / alpha) by default. churn > 0 draws noise, but
    it is not the reverse-SDE family: zoo bench runs an edm SPEC as written, with alpha 0 recorded. EDM's ImageNet setting:
    ``edm:churn=40:s_tmin=0.05:s_tmax=50:s_noise=1.003``.
    """

    name: ClassVar[str] = "edm"
    summary: ClassVar[str] = "EDM's sampler: Heun in sigma/alpha with churn (Karras et al. 2022, Alg. 2), laws with affine marginals"
    order: ClassVar[int] = 2

    grid: str = "edm"  # EDM's rho = 7 grid in sigma / alpha: on zoo's geometric grid in t the first Heun steps
    # span sigma / alpha from sigma(T) (148 on heat, 999 on rf) to a few units, and the trapezoid blows up (vp, rf)
    churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.churn >= 0 and math.isfinite(self.churn)):
            self.fail(f"churn must be a finite number >= 0, got {self.churn}")
        if not (0 <= self.s_tmin <= self.s_tmax):
            self.fail(f"s_tmin and s_tmax must satisfy 0 <= s_tmin <= s_tmax, got {self.s_tmin} and {self.s_tmax}")
        if not (self.s_noise > 0 and math.isfinite(self.s_noise)):
            self.fail(f"s_noise must be a positive number, got {self.s_noise}")

    def unsupported(self, law: Law) -> str | None:
        if law.affine_path(law.T, 1) is None:
            return (f"sampler {self.name!r} does not support law {law.name!r}: it needs affine marginals "
                    "x_t = alpha_t x0 + sigma_t noise (heat, ve, vp, rf)")
        if self.churn > 0 and not law.noise_ready:
            return (f"sampler {self.name!r} with churn > 0 is stochastic: its noise needs the pressure p, which this "
                    f"{law.name!r} model does not learn (use churn=0)")
        return super().unsupported(law)

    def steps_for(self, nfe: int) -> int:
        return max(1, (int(nfe) + 1) // 2)

    def min_nfe(self) -> int:
        return 9  # as heun: Heun's steps over 3.7 to 4.6 decades of t blow up below 5 steps

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        dim = x[0].numel()
        path = functools.lru_cache(maxsize=None)(lambda s: process.law.affine_path(s, dim))
        level = lambda s: path(s)[1] / path(s)[0]  # noqa: E731
        steps = list(intervals(grid))
        gamma = min(self.churn / len(steps), math.sqrt(2.0) - 1.0)
        top = process.law.T
        for k, (t, t_next, _) in enumerate(steps):
            sigma, sigma_next = level(t), level(t_next)
            y = x / path(t)[0]
            t_hat, sigma_hat = t, sigma
            if gamma > 0 and self.s_tmin <= sigma <= self.s_tmax:
                sigma_hat = min((1.0 + gamma) * sigma, level(top))
                if sigma_hat > sigma:
                    t_hat = time_of_level(process.law, sigma_hat, dim, top) if sigma_hat < level(top) else top
                    sigma_hat = level(t_hat)
                    y = y + self.s_noise * math.sqrt(sigma_hat**2 - sigma**2) * noise.randn().to(x.dtype)
            d = (y - process.data_prediction(path(t_hat)[0] * y, t_hat)) / sigma_hat
            y_next = y + (sigma_next - sigma_hat) * d
            if sigma_next > 0 and k < len(steps) - 1:  # Heun; the last step (and one to sigma = 0) is Euler's
                d_next = (y_next - process.data_prediction(path(t_next)[0] * y_next, t_next)) / sigma_next
                y_next = y + (sigma_next - sigma_hat) * 0.5 * (d + d_next)
            x = path(t_next)[0] * y_next
        return x
