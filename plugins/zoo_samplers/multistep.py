"""Linear multistep (Adams-Bashforth) samplers of the probability flow: lms (every law) and ipndm."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from zoo.contracts import Law, Noise, ReverseProcess
from zoo_samplers.base import GridSampler, intervals

# Adams-Bashforth weights for equal steps, newest evaluation first (Hairer, Norsett & Wanner, I.III.1)
AB_FIXED = {1: (1.0,), 2: (3 / 2, -1 / 2), 3: (23 / 12, -16 / 12, 5 / 12), 4: (55 / 24, -59 / 24, 37 / 24, -9 / 24)}


def adams_weights(nodes: list[float], h: float) -> list[float]:
    """Weights w_j with int_0^h P(u) du = sum_j w_j g_j for the polynomial P through (nodes[j], g_j),
    nodes measured from the current time (nodes[0] = 0, then the earlier ones, negative): the
    variable-step Adams-Bashforth step (Hairer, Norsett & Wanner, I.III.5), exact in float64."""
    weights = []
    for j, node in enumerate(nodes):
        others = [u for k, u in enumerate(nodes) if k != j]
        basis = np.poly(others) / np.prod([node - u for u in others]) if others else np.array([1.0])
        antiderivative = np.polyint(basis)
        weights.append(float(np.polyval(antiderivative, h) - np.polyval(antiderivative, 0.0)))
    return weights


@dataclass(frozen=True)
class _Multistep(GridSampler):
    # the number of evaluations a step combines: the Adams-Bashforth order on equal steps (k-diffusion
    # and DEIS call it ``order``; here ``order`` is the convergence order the sampler claims, measured)
    history: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.history not in (1, 2, 3, 4):
            self.fail(f"history must be 1, 2, 3 or 4, got {self.history}")

    @property
    def order(self) -> int:  # type: ignore[override]
        """The global order claimed: min(history, 2). lms starts with an Euler step (no Runge-Kutta
        start), which caps its order at 2 in the end, though the measured order runs higher for a long
        while (ratio 12 from 80 to 160 NFE); ipndm's fixed weights on unequal steps do the same."""
        return min(self.history, 2)

    def weights(self, times: list[float], h: float) -> list[float]:
        raise NotImplementedError

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        """x' = x + sum_j w_j g_j over the last evaluations g = ode_drift (dY/ds, s = T - t), newest first;
        the first steps use the orders their history allows (no Runge-Kutta start: one NFE per step)."""
        times: list[float] = []  # the times of the stored evaluations, newest first
        drifts: list[Tensor] = []
        for t, _, h in intervals(grid):
            times, drifts = [t, *times][:self.history], [process.ode_drift(x, t), *drifts][:self.history]
            for w, g in zip(self.weights(times, h), drifts):
                x = x + w * g
        return x


@dataclass(frozen=True)
class LMS(_Multistep):
    """Linear multistep: the variable-step Adams-Bashforth method of order ``order`` (1 to 4; Hairer,
    Norsett & Wanner, "Solving ODEs I", III.5) on the probability-flow ODE in forward time t, as
    k-diffusion's ``sample_lms`` (Crowson; after Liu et al. 2022, PNDM), whose weights integrate the
    Lagrange polynomial through the last evaluations over each step of the actual grid (exactly
    here, by quadrature there). On ve (sigma = t) it is k-diffusion's. It needs only the
    probability-flow drift, so it reverses every law. One NFE per step.
    """

    name: ClassVar[str] = "lms"
    summary: ClassVar[str] = "variable-step Adams-Bashforth (k-diffusion's LMS) on the probability-flow ODE, every law (1 NFE/step)"

    def weights(self, times: list[float], h: float) -> list[float]:
        # in s = T - t the nodes are s_j - s_0 = t_0 - t_j (<= 0) and the step goes from 0 to h
        return adams_weights([times[0] - u for u in times], h)


@dataclass(frozen=True)
class IPNDM(_Multistep):
    """iPNDM: Zhang & Chen 2023, "Fast sampling of diffusion models with exponential integrator"
    (DEIS, ICLR), Appendix: the pseudo-numerical method of Liu et al. 2022 ("Pseudo numerical
    methods for diffusion models on manifolds", PNDM, ICLR) with its Runge-Kutta warm start replaced
    by lower-order steps, so every step costs one NFE. PNDM's transfer is DDIM's step with the noise
    prediction eps = (x - alpha D) / sigma replaced by its equal-step Adams-Bashforth combination
    (history 4: (55 eps_0 - 59 eps_1 + 37 eps_2 - 9 eps_3) / 24, newest first): in x / alpha and
    sigma / alpha of the law's integrator path (heat, ve, vp, rf, pme), x' / alpha' = x / alpha +
    (sigma' / alpha' - sigma / alpha) sum_j b_j eps_j. The fixed weights assume equal steps in sigma /
    alpha; zoo's grids are not, so the method is consistent but, like iPNDM on its own grids, second
    order in the end (measured error ratios from 40 to 160 NFE 3.3 to 3.8). ``history`` 3 by default:
    at 10 NFE it beats 4 on heat and ve (flow error 0.012 against 0.017, 0.038 against 0.042). One NFE
    per step.
    """

    name: ClassVar[str] = "ipndm"
    summary: ClassVar[str] = "iPNDM (DEIS/PNDM): DDIM's step on an Adams-Bashforth eps, laws with an integrator path (1 NFE/step)"

    history: int = 3

    def unsupported(self, law: Law) -> str | None:
        if law.integrator_path(law.T, 1) is None:
            return (f"sampler {self.name!r} does not support law {law.name!r}: it needs a law that states an "
                    "integrator path (heat, ve, vp, rf, pme)")
        return super().unsupported(law)

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        path = functools.lru_cache(maxsize=None)(lambda s, dim=x[0].numel(): process.law.integrator_path(s, dim))
        eps: list[Tensor] = []  # noise predictions, newest first
        for t, t_next, _ in intervals(grid):
            (a, s, _), (a_next, s_next, _) = path(t), path(t_next)
            eps = [(x - a * process.data_prediction(x, t)) / s, *eps][:self.history]
            combined = sum((b * e for b, e in zip(AB_FIXED[len(eps)], eps)), torch.zeros_like(x))
            x = a_next * (x / a + (s_next / a_next - s / a) * combined)
        return x
