"""DPM-Solver++(2S): the singlestep second-order exponential integrator in data-prediction form."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from zoo.contracts import Noise, ReverseProcess
from zoo_samplers.base import PathSampler, intervals


@dataclass(frozen=True)
class DPMSolverPP2S(PathSampler):
    """DPM-Solver++(2S): Lu et al. 2022, "DPM-Solver++: Fast solver for guided sampling of diffusion
    probabilistic models", Algorithm 1, for any law that states an integrator path (heat, ve, vp, rf,
    pme: :meth:`zoo.contracts.Law.integrator_path`). Each step from t to t' evaluates the data
    prediction D at (x, t), takes DDIM's step to the intermediate time s = sqrt(t t') (the middle of
    the step in log t, where zoo's default grid is uniform; r = (lambda_s - lambda_t) / h of the step
    h = lambda_t' - lambda_t, lambda = log(alpha / sigma)), evaluates D there and completes the step with
    the combination (1 - 1/(2r)) D_t + 1/(2r) D_s: second order, two NFE per step, no history (so
    no warm-up). As heun's last step is Euler's, the last step is DDIM's (one NFE; still second order
    globally): K steps cost 2K - 1 NFE.
    """

    name: ClassVar[str] = "dpmpp2s"
    summary: ClassVar[str] = "DPM-Solver++(2S) singlestep, data prediction, laws with an integrator path (order 2, 2 NFE/step, the last 1)"
    order: ClassVar[int] = 2

    def steps_for(self, nfe: int) -> int:
        return max(1, (int(nfe) + 1) // 2)

    def min_nfe(self) -> int:
        return 2

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        path = functools.lru_cache(maxsize=None)(lambda s, dim=x[0].numel(): process.law.integrator_path(s, dim))
        lam = lambda s: math.log(path(s)[0] / path(s)[1])  # noqa: E731
        steps = list(intervals(grid))
        for k, (t, t_next, _) in enumerate(steps):
            a, sigma, _ = path(t)
            d = process.data_prediction(x, t)
            a_next, sigma_next, _ = path(t_next)
            if sigma_next == 0.0:  # a grid ending at t = 0: land on the data prediction
                x = d
                continue
            if k == len(steps) - 1:  # the last step is DDIM's (first order, one NFE), as heun's last is Euler
                x = (sigma_next / sigma) * x - a_next * math.expm1(-(lam(t_next) - lam(t))) * d
                continue
            s = math.sqrt(t * t_next)
            a_mid, sigma_mid, _ = path(s)
            h, r = lam(t_next) - lam(t), (lam(s) - lam(t)) / (lam(t_next) - lam(t))
            u = (sigma_mid / sigma) * x - a_mid * math.expm1(-r * h) * d
            d_mid = process.data_prediction(u, s)
            x = (sigma_next / sigma) * x - a_next * math.expm1(-h) * ((1 - 0.5 / r) * d + (0.5 / r) * d_mid)
        return x
