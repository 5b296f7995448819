"""UniPC: a unified predictor-corrector multistep solver in data-prediction form."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Noise, ReverseProcess
from zoo_samplers.base import PathSampler, intervals

VARIANTS = ("bh1", "bh2")


@dataclass(frozen=True)
class UniPC(PathSampler):
    """UniPC: Zhao, Bai, Rao, Zhou & Lu 2023, "UniPC: A unified predictor-corrector framework for
    fast sampling of diffusion models" (NeurIPS), Algorithms 2-3 (multistep UniP-p with the UniC
    corrector, data prediction), as in its reference implementation (``multistep_uni_pc_bh_update``).

    Like :class:`~zoo_samplers.dpmpp.DPMSolverPP` it integrates the linear part of the probability
    flow exactly in lambda = log(alpha / sigma) of the law's integrator path and extrapolates the
    data prediction D; after each predictor step it evaluates D at the new point and corrects the step
    with it (UniC), then keeps that evaluation for the next step, so the corrector costs no NFE.
    ``order``: the predictor's order p (2 or 3; the corrected step has order p + 1 on a smooth
    field); the first steps use the orders their history allows and, under 10 steps, the last
    ones lower it again (``lower_order_final`` of the reference code). ``variant``: B(h) = h (``bh1``)
    or e^h - 1 (``bh2``). The last step's evaluation is the one the final step to t = 0 needs, so
    with a final step the last step is corrected too at no cost. One NFE per step.
    """

    name: ClassVar[str] = "unipc"
    summary: ClassVar[str] = "UniPC predictor-corrector multistep, data prediction, laws with an integrator path (1 NFE/step)"
    takes_final: ClassVar[bool] = True

    order: int = 2
    variant: str = "bh1"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.order_options()
        if self.variant not in VARIANTS:
            self.fail(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        path = functools.lru_cache(maxsize=None)(lambda s, dim=x[0].numel(): process.law.integrator_path(s, dim))
        lam = lambda s: math.log(path(s)[0] / path(s)[1])  # noqa: E731
        final = self.final_step(process.law)
        steps = list(intervals(grid))
        lams, preds = [lam(steps[0][0])], [process.data_prediction(x, steps[0][0])]
        for i, (t, t_next, _) in enumerate(steps, start=1):
            order = min(self.order, i, len(steps) - i + 1) if len(steps) < 10 else min(self.order, i)
            a_next, sigma_next, _ = path(t_next)
            h = lam(t_next) - lams[-1]
            x_lin, b_h, rks, diffs, (rhos_p, rhos_c) = self._coefficients(x, path(t)[1], a_next, sigma_next, h,
                                                                          lams, preds, order)
            x = x_lin - a_next * b_h * sum((r * d for r, d in zip(rhos_p, diffs)), torch.zeros_like(x))
            if i == len(steps) and final in (None, "source"):  # the last step is not corrected: its
                # evaluation would be one NFE more (the source step evaluates at x itself, twice)
                return x if final is None else process.finish(x, float(grid[-1]), final)
            pred = process.data_prediction(x, t_next)
            corr = sum((r * d for r, d in zip(rhos_c[:-1], diffs)), torch.zeros_like(x))
            x = x_lin - a_next * b_h * (corr + rhos_c[-1] * (pred - preds[-1]))
            lams, preds = (lams + [lams[-1] + h])[-self.order:], (preds + [pred])[-self.order:]
        return process.finish(x, float(grid[-1]), final, prediction=preds[-1])

    def _coefficients(self, x: Tensor, sigma: float, a_next: float, sigma_next: float, h: float,
                      lams: list[float], preds: list[Tensor], order: int):
        """The linear part x_lin (DDIM's step), B(h), the divided differences D_k and the predictor and
        corrector weights rho of one step of order ``order`` (Zhao et al. 2023, Algorithm 2)."""
        hh = -h  # data prediction: the reference code's hh = -h
        rks, diffs = [], []
        for k in range(1, order):
            rk = (lams[-(k + 1)] - lams[-1]) / h
            rks.append(rk)
            diffs.append((preds[-(k + 1)] - preds[-1]) / rk)
        rks.append(1.0)
        h_phi_1 = math.expm1(hh)
        b_h = hh if self.variant == "bh1" else math.expm1(hh)
        h_phi_k, factorial, rows, b = h_phi_1 / hh - 1.0, 1, [], []
        for k in range(1, order + 1):
            rows.append([r ** (k - 1) for r in rks])
            b.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1.0 / factorial
        big_r, b = torch.tensor(rows, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
        if order == 1:
            rhos_p, rhos_c = [], [0.5]
        else:
            rhos_p = [0.5] if order == 2 else torch.linalg.solve(big_r[:-1, :-1], b[:-1]).tolist()
            rhos_c = torch.linalg.solve(big_r, b).tolist()
        x_lin = (sigma_next / sigma) * x - a_next * h_phi_1 * preds[-1]
        return x_lin, b_h, rks, diffs, (rhos_p, rhos_c)
