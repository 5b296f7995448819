"""The heat law at temperature sigma^2: F(rho) = sigma^2 rho log rho.

d/dt rho = div(rho (sigma^2 grad log rho + x)) = sigma^2 Lap rho + div(rho x), the
Ornstein-Uhlenbeck process dX = -X dt + sqrt(2) sigma dW. So p = sigma^2 log rho (+ const),
P(rho) = sigma^2 rho, the stationary law is N(0, sigma^2 I), and the forward marginal is
X_t = e^-t X_0 + sigma s_t Z with s_t^2 = 1 - e^-2t. sigma = 1 is zoo's heat law.
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


def _s(t: Tensor) -> Tensor:
    """s_t = sqrt(1 - e^-2t), accurate for small t."""
    return torch.sqrt(-torch.expm1(-2.0 * t))


class NoiseField(Field):
    """grad p = -sigma eps(x, t) / s_t for a network eps predicting the noise Z."""

    def __init__(self, network: nn.Module, sigma: float) -> None:
        super().__init__()
        self.network, self.sigma = network, sigma

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        return -self.sigma * self.network(x, t) / _per_sample(_s(t), x)


class MixtureField(Field):
    """Exact grad p = sigma^2 grad log rho_t for Gaussian-mixture data: rho_t = sum_k pi_k
    N(e^-t mu_k, e^-2t S_k + sigma^2 s_t^2 I). Float64 inside, x's dtype outside."""

    def __init__(self, mixture: GaussianMixture, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("log_w", torch.log(mixture.weights.double()))
        self.register_buffer("means", mixture.means.double())  # (K, d)
        self.register_buffer("covs", mixture.covs.double())  # (K, d, d)

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        n, d = x.shape[0], self.means.shape[1]
        y, t = x.reshape(n, 1, d).double(), t.double().reshape(n, 1, 1, 1)
        cov = torch.exp(-2 * t) * self.covs + self.sigma**2 * _s(t) ** 2 * torch.eye(d, dtype=y.dtype)  # (n, K, d, d)
        r = y - torch.exp(-t[..., 0]) * self.means  # (n, K, d)
        solved = torch.linalg.solve(cov, r.unsqueeze(-1)).squeeze(-1)  # S^-1 (x - e^-t mu)
        logits = self.log_w - 0.5 * ((r * solved).sum(-1) + torch.linalg.slogdet(cov)[1])
        w = torch.softmax(logits, dim=-1)  # (n, K)
        grad = -self.sigma**2 * (w.unsqueeze(-1) * solved).sum(1)
        return grad.reshape(x.shape).to(x.dtype)


class EmpiricalField(Field):
    """Exact grad p for the empirical measure of points (N, *shape): -(x - e^-t sum_i w_i y_i) / s_t^2,
    w = softmax_i(-|x - e^-t y_i|^2 / (2 sigma^2 s_t^2))."""

    def __init__(self, points: Tensor, sigma: float) -> None:
        super().__init__()
        self.sigma = sigma
        self.register_buffer("points", points.reshape(points.shape[0], -1).double())

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        y, t = x.reshape(x.shape[0], -1).double(), t.double().reshape(-1, 1)
        var = self.sigma**2 * -torch.expm1(-2 * t)
        centres = torch.exp(-t)[:, None] * self.points[None]  # (n, N, D): e^-t y_i
        w = torch.softmax(-(y[:, None] - centres).square().sum(-1) / (2 * var), dim=1)  # (n, N)
        mean = w @ self.points
        return (-(y - torch.exp(-t) * mean) * self.sigma**2 / var).reshape(x.shape).to(x.dtype)


@dataclass(frozen=True)
class Tempered(Law):
    """Heat at temperature sigma^2 (stationary law N(0, sigma^2 I)), learned by denoising score
    matching with noise prediction: minimise E |eps(x_t, t) - Z|^2, then grad p = -sigma eps / s_t."""

    name: ClassVar[str] = "tempered"
    summary: ClassVar[str] = "heat law at temperature sigma^2 (stationary N(0, sigma^2 I)); example plugin"

    sigma: float = 2.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (self.sigma > 0 and math.isfinite(self.sigma)):
            self.fail(f"sigma must be a positive number, got {self.sigma}")

    def prior(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        return self.sigma * torch.randn((n, *shape), generator=generator)

    def loss(self, network: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        x0 = batch["x0"]
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
        t = torch.exp(math.log(self.t_min) + u * math.log(self.T / self.t_min)).float()  # log-uniform on [t_min, T]
        z = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        t = t.to(x0.device)
        xt = torch.exp(-_per_sample(t, x0)) * x0 + self.sigma * _per_sample(_s(t), x0) * z
        return (network(xt, t) - z).square().mean()

    def field(self, network: nn.Module) -> Field:
        return NoiseField(network, self.sigma)

    def exact_field(self, target: Any) -> Field:
        if isinstance(target, GaussianMixture):
            return MixtureField(target, self.sigma)
        return super().exact_field(target)

    def empirical_field(self, points: Tensor) -> Field:
        return EmpiricalField(points, self.sigma)

    def pressure_ratio(self, field: Field, x: Tensor, t: Tensor) -> Tensor:
        return torch.full((x.shape[0],), self.sigma**2, dtype=x.dtype, device=x.device)  # P(rho)/rho = sigma^2
