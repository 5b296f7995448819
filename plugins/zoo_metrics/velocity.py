"""The velocity error eps of a trained field, where the law knows the exact one (MATH.md section 7):

    eps^2 = mean_t [ E_{rho_t} |grad p_theta - grad p|^2 / E_{rho_t} |grad p|^2 ]

over the nodes t of the law's time grid (geometric: small t, where the flow is stiff, weighs in as
much as large t). Each node's relative error does not change when a law stores its field at another
scale per time (heat's score, ve's grad p = t x score, a noise prediction -s_t x score), so eps is
comparable across laws; the perturbed network's eps (the same relative error at every t) reads as eps.
(Until issue 13 the nodes were summed before dividing, which let the small times, where |grad p| is
largest, dominate heat's number and weighed another law's nodes differently.)
Samples of rho_t come from the forward flow dx/dt = u = f - grad p (heat: -(grad p + x)) of the exact field started
at train points at t = 0 (Heun steps along 0 and the same grid): the transport form carries rho_0
to rho_t. (Started at t_min instead, as if the train points sampled rho_t_min, a field with
eps = 0.2 read 0.224 on heat/gmm8: at t_min = 1e-3 the noise still adds 20 % to each mode's variance.)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Dataset, EvalContext, Field, Metric
from zoo.errors import ZooError
from zoo_metrics.common import subsample


def _exact_field(ctx: EvalContext) -> Field | None:
    if ctx.field is None or ctx.law is None or ctx.dataset.exact is None:
        return None
    try:
        return ctx.law.exact_field(ctx.dataset.exact)
    except ZooError:
        return None


@dataclass(frozen=True)
class VelocityError(Metric):
    """Relative L2(rho_t) error of a trained field's grad p against the exact one, RMS over the nodes t."""

    name = "velocity_error"
    summary = "relative L2(rho_t) error eps of a trained grad p against the exact one (where known)"
    higher_is_better: ClassVar[dict[str, bool]] = {"velocity_error": False}
    floor: ClassVar[bool] = False  # a property of the field, not of the samples

    points: int = 1000
    steps: int = 32

    def __post_init__(self) -> None:
        if self.points < 1 or self.steps < 1:
            self.fail(f"points and steps must be at least 1, got {self.points} and {self.steps}")

    def applies(self, dataset: Dataset) -> bool:
        return dataset.exact is not None

    def available(self, ctx: EvalContext) -> bool:
        """Whether ctx holds a trained field and its law has the exact field of the data set."""
        return _exact_field(ctx) is not None

    @torch.no_grad()
    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        exact = _exact_field(ctx)
        if exact is None:
            raise ZooError("metric 'velocity_error' needs a trained field and a law with the exact velocity "
                           "of the data set")
        field, counted = ctx.field, ctx.field.nfe
        grid = ctx.law.time_grid(self.steps).flip(0).tolist()  # increasing forward times t_min .. T
        x = subsample(ctx.train, self.points, ctx.seed).float()

        def grad_p(f: Field, y: Tensor, t: float, device: str = "cpu") -> Tensor:
            tt = torch.full((len(y),), t)
            return f.grad_p(y.to(device), tt.to(device)).float().cpu()

        def drift(y: Tensor, t: float) -> Tensor:  # the law's forward drift f (heat: -x)
            return ctx.law.drift(y, torch.full((len(y),), t)).float()

        grid = [0.0, *grid]  # the train points sample rho_0: carry them to t_min first
        ratios = []
        for i, t in enumerate(grid):
            g = grad_p(exact, x, t)
            if i == 0 and not bool(torch.isfinite(g).all()):  # a singular rho_0: start at t_min
                continue
            if i > 0:
                err = float((grad_p(field, x, t, ctx.device) - g).square().flatten(1).sum(1).mean())
                ratios.append(err / float(g.square().flatten(1).sum(1).mean()))
            if i + 1 < len(grid):  # Heun step of dx/dt = u = f - grad p to the next node
                dt = grid[i + 1] - t
                k1 = drift(x, t) - g
                y = x + dt * k1
                x = x + 0.5 * dt * (k1 + (drift(y, grid[i + 1]) - grad_p(exact, y, grid[i + 1])))
        field.nfe = counted  # evaluation does not spend the sampler's budget
        return {"velocity_error": (sum(ratios) / len(ratios)) ** 0.5}
