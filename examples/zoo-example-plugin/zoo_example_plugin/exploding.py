"""A variance-exploding law written by a third party from zoo's plugin guide alone.

The forward process is the SDE dx = g(t) dW with g(t)^2 = 2t and no drift, so x_t = x0 + t z
(EDM's sigma(t) = t). What the law states, in zoo's contract:

* its drift f(x, t) = 0 (``drift``; zoo's default is the confinement -x);
* its noise D = g^2 / 2 = t (``pressure_ratio``);
* its field's grad p = D grad log rho_t = t grad log rho_t. With a network eps predicting z,
  grad log rho_t = -eps / t, so grad p = -eps: nothing of the drift is folded into it.

zoo then builds every reverse process from these: the probability-flow ODE dY/ds = -f + grad p
= t grad log rho_t (EDM's dx/dsigma = (x - D(x))/sigma read backwards) and, for alpha > 0,
dY/ds = (1 + alpha) grad p with noise sqrt(2 alpha t), so the stochastic samplers run unchanged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from zoo.contracts import Field, GaussianMixture, Law


def _per_sample(t: Tensor, x: Tensor) -> Tensor:
    """t (n,) -> (n, 1, ..., 1), broadcastable over x (n, *shape)."""
    return t.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


class NoiseField(Field):
    """grad p = -eps(x / sqrt(1 + t^2), t): the network sees its input at unit scale."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        return -self.network(x / torch.sqrt(1 + _per_sample(t, x) ** 2), t)


class MixtureField(Field):
    """Exact grad p = t grad log rho_t for Gaussian-mixture data: rho_t = sum_k pi_k N(mu_k, S_k + t^2 I)."""

    def __init__(self, mixture: GaussianMixture) -> None:
        super().__init__()
        self.register_buffer("log_w", torch.log(mixture.weights.double()))
        self.register_buffer("means", mixture.means.double())
        self.register_buffer("covs", mixture.covs.double())

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        n, d = x.shape[0], self.means.shape[1]
        y, t = x.reshape(n, 1, d).double(), t.double().reshape(n, 1, 1, 1)
        cov = self.covs + t**2 * torch.eye(d, dtype=torch.float64)  # (n, K, d, d)
        r = y - self.means
        solved = torch.linalg.solve(cov, r.unsqueeze(-1)).squeeze(-1)
        w = torch.softmax(self.log_w - 0.5 * ((r * solved).sum(-1) + torch.linalg.slogdet(cov)[1]), dim=-1)
        score = -(w.unsqueeze(-1) * solved).sum(1)
        return (t[:, 0, 0] * score).reshape(x.shape).to(x.dtype)


@dataclass(frozen=True)
class Exploding(Law):
    """Variance exploding, x_t = x0 + t z on [t_min, T] = [0.002, 80], learned by denoising score
    matching (eps prediction, log-uniform times)."""

    name: ClassVar[str] = "exploding"
    summary: ClassVar[str] = "variance exploding x_t = x0 + t z (EDM's schedule); example plugin"

    T: float = 80.0
    t_min: float = 0.002

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)  # no confinement: the variance explodes

    def pressure_ratio(self, field: Field, x: Tensor, t: Tensor) -> Tensor:
        return t.to(x.dtype)  # D = g(t)^2 / 2 = t

    def affine_path(self, t: float, dim: int) -> tuple[float, float, float]:
        return 1.0, t, t  # alpha = 1, sigma = t, E[x0 | x] = x + t grad p (Tweedie: sigma^2 / D = t)

    def prior(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return self.T * torch.randn((n, *shape), generator=generator)

    def loss(self, network: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["x0"]
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
        t = torch.exp(math.log(self.t_min) + u * math.log(self.T / self.t_min)).to(x0.device, x0.dtype)
        z = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        xt = x0 + _per_sample(t, x0) * z
        return (network(xt / torch.sqrt(1 + _per_sample(t, x0) ** 2), t) - z).square().mean()

    def field(self, network: nn.Module) -> Field:
        return NoiseField(network)

    def exact_field(self, target: Any) -> Field:
        if isinstance(target, GaussianMixture):
            return MixtureField(target)
        return super().exact_field(target)
