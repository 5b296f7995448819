"""The exact field plus a controlled smooth error of relative size eps (MATH.md section 7).

    grad p_eps(x, t) = grad p(x, t) + eps c(t) e(x, t),   c(t) = |grad p|_{L2(rho_t)} / |e|_{L2(rho_t)},

so eps is the relative L2(rho_t) error of grad p (the part a network learns; u = -grad p - x) at
every t. The error e is a sum of J random Fourier features (Rahimi & Recht 2007) of the coordinates
y = x / sigma(t), sigma(t) the rms per-coordinate scale of rho_t, so it has the same shape relative
to the data at every time. The option ``error`` picks its form:

* ``gradient`` (default): e = grad phi, phi(x, t) = sqrt(2/J) sum_j a_j cos(w_j . y + b_j). The error
  stays a pressure gradient, as that of a scalar pressure network, and the pressure is perturbed
  consistently, p_eps = p + eps c(t) phi: pme's stochastic sampler sees the same error in its noise;
* ``vector``: e = sqrt(2/J) sum_j A_j cos(w_j . y + b_j), a general smooth vector field (as a
  vector network's error); the pressure stays exact.

w_j ~ N(0, freq^2 I), b_j ~ U(0, 2 pi), a_j, A_j standard normal, all drawn from ``seed``.
c(t) and sigma(t) are estimated once, on exact samples of rho_t at NODES times of the law's grid
(heat: x_t = e^-t x_0 + s_t z from the train split; pme on a Barenblatt: the dilation
x_t = x_0 h(t)/h0), and interpolated linearly in log t (constant beyond the nodes).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

import zoo
from zoo.contracts import Barenblatt, Dataset, Field, Law, Network, seeded_generator
from zoo.errors import ZooError

ERRORS = ("gradient", "vector")
NODES = 24  # times at which c(t) and sigma(t) are estimated (geometric, as the sampling grid)
POINTS = 4096  # samples of rho_t per node: about 1 % relative error on c(t)


def interp(t: Tensor, nodes: Tensor, values: Tensor) -> Tensor:
    """Piecewise-linear interpolation in log t, constant beyond the nodes.

    t (n,), nodes (K,) increasing log-times, values (K, c) -> (n, c)."""
    lt = torch.log(t.double().clamp_min(1e-300))
    i = torch.searchsorted(nodes, lt).clamp(1, len(nodes) - 1)
    lo, hi = nodes[i - 1], nodes[i]
    w = ((lt - lo) / (hi - lo)).clamp(0.0, 1.0)[:, None]
    return values[i - 1] + w * (values[i] - values[i - 1])


def forward_marginal(law: Law, dataset: Dataset, x0: Tensor, z: Tensor, t: float) -> Tensor:
    """Exact samples (n, *shape) of rho_t from exact draws x0 of rho_0 and Gaussian z, both (n, *shape)."""
    target = dataset.exact
    if isinstance(target, Barenblatt):  # the relaxing Barenblatt's flow map is a dilation
        from zoo_laws.pme import relaxing_h

        h = relaxing_h(torch.tensor(t, dtype=torch.float64), target.h0, target.dim, target.m)
        return x0 * (h / target.h0)
    if hasattr(law, "diffuse"):  # heat: the Ornstein-Uhlenbeck marginal
        return law.diffuse(x0, torch.full((x0.shape[0],), t, dtype=x0.dtype), z)
    raise ZooError(f"network 'perturbed': no exact forward marginals known for law {law.name!r} "
                   f"on data set {dataset.name!r}")


class RandomFeatures(torch.nn.Module):
    """Smooth random error e(y) over y = x / sigma, y (n, D): a gradient or a general vector field."""

    def __init__(self, dim: int, features: int, freq: float, kind: str, generator: torch.Generator) -> None:
        super().__init__()
        opts = {"generator": generator, "dtype": torch.float64}
        self.kind = kind
        self.register_buffer("w", freq * torch.randn(features, dim, **opts))  # (J, D)
        self.register_buffer("b", 2 * math.pi * torch.rand(features, **opts))  # (J,)
        amp = torch.randn(features, **opts) if kind == "gradient" else torch.randn(features, dim, **opts)
        self.register_buffer("amp", amp * math.sqrt(2.0 / features))  # (J,) or (J, D)

    def potential(self, y: Tensor) -> Tensor:
        """phi (n,) at y (n, D)."""
        return torch.cos(y @ self.w.T + self.b) @ self.amp

    def error(self, y: Tensor, sigma: Tensor) -> Tensor:
        """e (n, D): grad_x phi(x / sigma) = -sum_j a_j sin(w_j . y + b_j) w_j / sigma, or sum_j A_j cos(.)."""
        phase = y @ self.w.T + self.b  # (n, J)
        if self.kind == "gradient":
            return -(torch.sin(phase) * self.amp) @ self.w / sigma
        return torch.cos(phase) @ self.amp


class PerturbedField(Field):
    """grad p + eps c(t) e(x, t) (one NFE per call); pressure p + eps c(t) phi for gradient errors."""

    def __init__(self, exact: Field, features: RandomFeatures, eps: float, log_t: Tensor, logs: Tensor) -> None:
        super().__init__()
        self.exact = exact
        self.features = features
        self.eps = eps
        self.register_buffer("log_t", log_t)  # (K,) increasing node times
        self.register_buffer("logs", logs)  # (K, 2): log c(t), log sigma(t) at the nodes

    def _coords(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """y = x / sigma(t) (n, D), sigma(t) (n, 1), eps c(t) (n, 1), all float64."""
        scale, sigma = torch.exp(interp(t, self.log_t, self.logs)).split(1, dim=1)
        return x.reshape(x.shape[0], -1).double() / sigma, sigma, self.eps * scale

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        g = self.exact.grad_p(x, t)
        y, sigma, size = self._coords(x, t)
        return g + (size * self.features.error(y, sigma)).reshape(x.shape).to(g.dtype)

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        p = self.exact.pressure(x, t)
        if self.features.kind != "gradient":
            return p
        y, sigma, size = self._coords(x, t)
        return p + (size[:, 0] * self.features.potential(y)).to(p.dtype)


@dataclass(frozen=True)
class Perturbed(Network):
    """The law's exact field plus a seeded smooth error of relative L2(rho_t) size ``eps`` at every t.

    Options: ``eps`` >= 0; ``seed`` (which error); ``error``: ``gradient`` (error = grad of a random
    potential, the pressure perturbed consistently) or ``vector`` (any smooth field, exact pressure);
    ``features``: random Fourier features J; ``freq``: their frequency scale in units of the data's
    rms scale at time t (larger: rougher error).
    """

    name: ClassVar[str] = "perturbed"
    summary: ClassVar[str] = "exact velocity + smooth seeded error of relative L2(rho_t) size eps (not learned)"
    learned: ClassVar[bool] = False

    eps: float = 0.1
    seed: int = 0
    error: str = "gradient"
    features: int = 16
    freq: float = 1.0

    def __post_init__(self) -> None:
        if not (self.eps >= 0 and math.isfinite(self.eps)):
            self.fail(f"eps must be a finite number >= 0, got {self.eps}")
        if self.error not in ERRORS:
            self.fail(f"error must be one of {', '.join(ERRORS)}, got {self.error!r}")
        if self.features < 1:
            self.fail(f"features must be at least 1, got {self.features}")
        if not (self.freq > 0 and math.isfinite(self.freq)):
            self.fail(f"freq must be a positive number, got {self.freq}")

    @torch.no_grad()
    def field(self, law: Law, dataset: Dataset) -> Field:
        if dataset.exact is None:
            raise ZooError(f"network 'perturbed' needs a data set of known density (e.g. gmm8, barenblatt); "
                           f"{dataset.name!r} has none")
        exact = law.exact_field(dataset.exact)
        train = dataset.train().double()
        n, shape = train.shape[0], tuple(train.shape[1:])
        features = RandomFeatures(math.prod(shape), self.features, self.freq, self.error,
                                  seeded_generator(self.seed, 0))
        gen = seeded_generator(self.seed, 1)
        x0 = train[torch.randint(n, (POINTS,), generator=gen)]  # exact draws of rho_0, resampled
        z = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        times = law.time_grid(NODES - 1).double().flip(0)  # increasing t_min .. T
        logs = []
        for t in times.tolist():
            x = forward_marginal(law, dataset, x0, z, t)
            tt = torch.full((POINTS,), t, dtype=torch.float64)
            sigma = x.flatten(1).square().mean().sqrt()
            e = features.error(x.flatten(1) / sigma, sigma.expand(POINTS, 1))
            g = exact.grad_p(x, tt).double().flatten(1)
            ratio = g.square().sum(1).mean() / e.square().sum(1).mean()
            logs.append(torch.stack([0.5 * ratio.log(), sigma.log()]))
        exact.nfe = 0
        return PerturbedField(exact, features, float(self.eps), times.log(), torch.stack(logs))


@zoo.hookimpl
def zoo_register_networks(register) -> None:
    register(Perturbed)
