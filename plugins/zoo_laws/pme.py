"""The porous medium equation with confinement: d/dt rho = div(rho (grad p + x)), p = m/(m-1) rho^(m-1).

MATH.md sections 2, 4, 5: F = rho^m/(m-1), P = rho^m; the stationary state is the confined
Barenblatt profile, sampled exactly (Beta radius); the velocity is learned by regression on the
blob particle flow of the train split (:mod:`zoo.particles`). The exponent ``m`` defaults to
1 + 2/d for data of dimension d (MATH.md section 2), resolved when the law first sees data.
Also registers the data set ``barenblatt``, the start of a relaxing Barenblatt (exact references).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import betaincinv
from torch import Tensor, nn

import zoo
from zoo.blob import PowerEnergy
from zoo.contracts import Barenblatt, Dataset, Field, per_sample, seeded_generator
from zoo.grids import log_uniform_times
from zoo.errors import ZooError
from zoo.particles import ParticleLaw
from zoo_laws.streaming import softmax_sums

TARGETS = ("eps", "v")


def default_m(dim: int) -> float:
    """m = 1 + 2/d keeps the theory's constants from growing exponentially in d (MATH.md section 2)."""
    return 1.0 + 2.0 / dim


def barenblatt_radius(dim: int, m: float) -> float:
    """Support radius R of the stationary Barenblatt (MATH.md section 4), via log-gamma for any d."""
    k, a = 1.0 / (m - 1.0), m / (m - 1.0)
    log_r = (k * math.log(2 * a) + math.lgamma(dim / 2 + k + 1) - dim / 2 * math.log(math.pi)
             - math.lgamma(k + 1)) / (dim + 2 * k)
    return math.exp(log_r)


def barenblatt_second_moment(dim: int, m: float, h: float = 1.0) -> float:
    """E|X|^2 = h^2 R^2 (d/2) / (d/2 + k + 1)."""
    k = 1.0 / (m - 1.0)
    return h * h * barenblatt_radius(dim, m) ** 2 * (dim / 2) / (dim / 2 + k + 1)


def barenblatt_sample(n: int, dim: int, m: float, generator: torch.Generator, h: float = 1.0) -> Tensor:
    """Exact draws (n, dim) float64: X = h R sqrt(S) Z/|Z|, S ~ Beta(d/2, k + 1) by inverse CDF."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    s = torch.from_numpy(np.asarray(betaincinv(dim / 2, 1.0 / (m - 1.0) + 1.0, u.numpy()), dtype=np.float64))
    radius = h * barenblatt_radius(dim, m) * s.sqrt()
    return radius[:, None] * z / z.norm(dim=1, keepdim=True)


def relaxing_h(t: Tensor, h0: float, dim: int, m: float) -> Tensor:
    """h(t) = [1 + (h0^lambda - 1) e^(-lambda t)]^(1/lambda), lambda = d(m-1) + 2 (MATH.md section 4)."""
    lam = dim * (m - 1.0) + 2.0
    return (1.0 + (h0**lam - 1.0) * torch.exp(-lam * t)) ** (1.0 / lam)


class RelaxingBarenblattField(Field):
    """Exact field of the relaxing Barenblatt, extended quadratically outside the support:
    grad p = -h^(-lambda) x, p = h^(-lambda) (h^2 R^2 - |x|^2)/2 (negative outside)."""

    def __init__(self, target: Barenblatt) -> None:
        super().__init__()
        self.target = target
        self.lam = target.dim * (target.m - 1.0) + 2.0
        self.radius = barenblatt_radius(target.dim, target.m)

    def _h(self, x: Tensor, t: Tensor) -> Tensor:
        if x[0].numel() != self.target.dim:
            raise ZooError(f"the exact Barenblatt field is for dimension {self.target.dim}, got samples of shape {tuple(x.shape[1:])}")
        return relaxing_h(t.double(), self.target.h0, self.target.dim, self.target.m)

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        h = self._h(x, t).reshape(-1, *([1] * (x.dim() - 1)))
        return (-h ** (-self.lam) * x.double()).to(x.dtype)

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        h = self._h(x, t)
        sq = x.double().flatten(1).square().sum(1)
        return (h ** (-self.lam) * (h * h * self.radius**2 - sq) / 2).to(x.dtype)


def source_scale(t: Tensor, lam: float) -> Tensor:
    """b(t) = (1 - e^(-lambda t))^(1/lambda): the relaxing Barenblatt started from a point mass
    (h0 -> 0 in :func:`relaxing_h`), accurate for small t (expm1)."""
    return (-torch.expm1(-lam * t)) ** (1.0 / lam)


def source_path(t: Tensor, lam: float, sigma: float) -> tuple[Tensor, Tensor, Tensor]:
    """(a, beta, n) of the source route's path x_t = a x0 + beta eps, eps = B / sigma:
    a = e^-t, beta = b(t) sigma, n = sqrt(a^2 + beta^2) (float64)."""
    t = t.double()
    a, beta = torch.exp(-t), source_scale(t, lam) * sigma
    return a, beta, torch.sqrt(a * a + beta * beta)


class SourceField(Field):
    """grad p = -b^(1-lambda) sigma eps(x, t) for a network predicting the standardised Barenblatt
    draw eps = B / sigma of the source route (see :class:`PME`), or v = (a eps - beta x0) / n, from
    which eps = (a v + beta x / n) / n (:func:`source_path`). One NFE per call."""

    def __init__(self, network: nn.Module, law: PME) -> None:
        super().__init__()
        self.network, self.law = network, law

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        lam, sigma = self.law.source_constants(x[0].numel())
        out = self.network(x, t)
        if self.law.target == "v":
            a, beta, norm = (per_sample(c, x) for c in source_path(t, lam, sigma))
            out = ((a * out + beta * x / norm) / norm).to(x.dtype)
        return -per_sample(source_scale(t.double(), lam) ** (1.0 - lam) * sigma, x) * out


class SourceEmpiricalField(Field):
    """Exact source-route field of the empirical measure of ``points`` (the memorisation reference):
    grad p = -b^(1-lambda) E[B | x], E[B | x] = (x - e^-t sum_j w_j y_j) / b, with w_j proportional to
    the Barenblatt profile (R^2 - |x - e^-t y_j|^2 / b^2)_+^(1/(m-1)) of the kernel around point j.

    The weights stream over chunks of points (online log-sum-exp), so memory is O(n x chunk). A
    sample outside every kernel's support (the exact flow never leaves the union; round-off can)
    takes the nearest kernel. Computed in float64, returned in x's dtype.
    """

    def __init__(self, points: Tensor, law: PME, chunk: int = 4096) -> None:
        super().__init__()
        if points.shape[0] < 1:
            raise ZooError("the empirical field needs at least one training point")
        self.register_buffer("points", points.reshape(points.shape[0], -1).double())  # (N, D)
        dim = self.points.shape[1]
        self.m = law.exponent(dim)
        self.lam = law.source_constants(dim)[0]
        self.radius = barenblatt_radius(dim, self.m)
        self.chunk = chunk

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        n = x.shape[0]
        y = x.reshape(n, -1).double()
        t = t.double().reshape(n, 1)
        decay, b = torch.exp(-t), source_scale(t, self.lam)  # (n, 1)
        sq = (y**2).sum(-1, keepdim=True)

        def room(pts: Tensor) -> Tensor:  # R^2 - |x - e^-t y_j|^2 / b^2: > 0 inside kernel j's support
            return self.radius**2 - (sq - 2 * decay * (y @ pts.T) + decay**2 * (pts**2).sum(-1)) / b**2

        def logw(pts: Tensor) -> Tensor:
            r = room(pts)
            return torch.where(r > 0, torch.log(r.clamp_min(1e-300)) / (self.m - 1.0), -math.inf)

        total, mass = softmax_sums(self.points, logw, n, self.chunk)
        centre = total / torch.where(mass > 0, mass, 1.0)  # sum_j w_j y_j
        if bool((mass == 0).any()):  # outside every support: the nearest kernel (largest room), streamed too
            best, nearest = torch.full_like(mass, -math.inf), torch.zeros_like(y)
            for pts in self.points.split(self.chunk):
                r, j = room(pts).max(-1, keepdim=True)
                closer = r > best
                best, nearest = torch.where(closer, r, best), torch.where(closer, pts[j[:, 0]], nearest)
            centre = torch.where(mass > 0, centre, nearest)
        grad = -b ** (1.0 - self.lam) * (y - decay * centre) / b
        return grad.reshape(x.shape).to(x.dtype)


@dataclass(frozen=True)
class PME(ParticleLaw):
    """Porous medium law, learned by regression on the blob particle flow.

    ``m``: exponent > 1 (none: 1 + 2/d for data of dimension d). The other options are those of
    :class:`zoo.particles.ParticleLaw` (network output, mollifier width rule, recorded times, CFL, particles, Chebyshev stages).

    ``route``: ``blob`` (default: the particle flow above) or ``source``, a linear surrogate
    for high dimension: denoising with Barenblatt noise, X_t = e^(-t) X_0 + b(t) B, B ~ rho_inf,
    b(t) = (1 - e^(-lambda t))^(1/lambda), lambda = d(m-1) + 2, the network predicting B / sigma
    (sigma^2 = E|B|^2 / d) as heat's predicts Z; the flow-matching velocity of this path is
    u = -x - b^(1-lambda) E[B | x], so grad p = -b^(1-lambda) sigma eps. Each data point spreads
    exactly as the PME spreads a point mass (the relaxing Barenblatt from h0 = 0, MATH.md
    section 4) and the path ends exactly at rho_inf, but the spreading of the points is
    superposed, not made to interact: for data that are not point masses far apart this is not
    the PME (from a Barenblatt of h0 = 0.5 the second moment overshoots the exact one by up to
    41 %, at t ~ 0.015, in any d for m = 1 + 2/d). It is what trains on digits, where N
    particles cannot resolve a 64-d density for the blob method. Output ``vector``, deterministic
    samplers only (no pressure p). ``target`` (source route only): the network predicts ``eps`` = B / sigma
    or ``v`` = (e^-t eps - b sigma x0) / n, n^2 = e^-2t + b^2 sigma^2 (default: v, for the reason
    given in :class:`zoo_laws.heat.Heat`).
    """

    name: ClassVar[str] = "pme"
    summary: ClassVar[str] = "porous medium law (Barenblatt prior), learned on the blob particle flow"

    m: float | None = None
    target: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.m is not None and not (self.m > 1 and math.isfinite(self.m)):
            self.fail(f"m must be a number > 1, got {self.m}")
        if self.route == "source":  # the network predicts a vector (B / sigma); say so in the SPEC
            object.__setattr__(self, "output", "vector")
            object.__setattr__(self, "target", "v" if self.target is None else self.target)
            if self.target not in TARGETS:
                self.fail(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        elif self.target is not None:
            self.fail("target applies to route=source only (the particle routes regress the velocity)")

    @classmethod
    def routes(cls) -> tuple[str, ...]:
        return (*super().routes(), "source")

    @classmethod
    def upgrade(cls, options: dict[str, Any]) -> dict[str, Any]:
        if options.get("route") == "source":
            options.setdefault("target", "eps")  # stored before target existed: noise prediction
        return super().upgrade(options)

    def affine_path(self, t: float, dim: int) -> tuple[float, float, float] | None:
        """Source route: x_t = e^-t x0 + b(t) sigma eps; grad p = -b^(1-lambda) sigma E[eps | x], so
        E[x0 | x] = (x + b^lambda grad p) / e^-t. The blob route's marginals are not affine: None."""
        return self.integrator_path(t, dim) if self.route == "source" else None

    def integrator_path(self, t: float, dim: int) -> tuple[float, float, float]:
        """Both routes: the source route's path, the PME's spreading of a point mass (MATH.md
        section 4), where grad p grows like 1/(lambda t): with D = (x + b^lambda grad p) / e^-t the
        probability flow is exactly that of x_t = e^-t x0 + b(t) sigma eps with D for E[x0 | x], so
        exponential integrators and the final step treat the stiff start exactly for point masses
        (the blob route's marginals are not affine: D is not E[x0 | x] there)."""
        lam, sigma = self.source_constants(dim)
        b = float(source_scale(torch.tensor(float(t), dtype=torch.float64), lam))
        return math.exp(-t), b * sigma, b**lam

    def source_exponent(self, dim: int) -> float:
        return self.source_constants(dim)[0]

    def source_constants(self, dim: int) -> tuple[float, float]:
        """(lambda, sigma) of the source route for data of dimension ``dim``."""
        m = self.exponent(dim)
        return dim * (m - 1.0) + 2.0, math.sqrt(barenblatt_second_moment(dim, m) / dim)

    def prepare(self, data: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        if self.route == "source":
            return {"x0": data}
        return super().prepare(data, generator)

    def loss(self, network: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        """Source route: mean |eps(x_t, t) - B/sigma|^2 (or its v), t log-uniform on [t_min, T]."""
        if self.route != "source":
            return super().loss(network, batch, generator)
        x0 = batch["x0"]
        n, shape = x0.shape[0], tuple(x0.shape[1:])
        lam, sigma = self.source_constants(math.prod(shape))
        t = log_uniform_times(n, self.t_min, self.T, generator).to(x0.device)
        b = self.prior(n, shape, generator).to(x0.device, x0.dtype)
        a, beta, norm = (per_sample(c, x0).to(x0.dtype) for c in source_path(t, lam, sigma))
        eps = b / sigma
        xt = a * x0 + beta * eps
        goal = (a * eps - beta * x0) / norm if self.target == "v" else eps
        return (network(xt, t.to(x0.dtype)) - goal).square().mean()

    def field(self, network: nn.Module) -> Field:
        if self.route != "source":
            return super().field(network)
        return SourceField(network, self)

    def empirical_field(self, points: Tensor) -> Field:
        if self.route != "source":
            return super().empirical_field(points)
        return SourceEmpiricalField(points, self)

    def exponent(self, dim: int) -> float:
        """m for data of dimension ``dim`` (the option, or 1 + 2/d)."""
        return default_m(dim) if self.m is None else float(self.m)

    def prior(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        dim = math.prod(shape)
        return barenblatt_sample(n, dim, self.exponent(dim), generator).float().reshape(n, *shape)

    def energy(self, dim: int) -> PowerEnergy:
        return PowerEnergy(self.exponent(dim))

    def exact_field(self, target: Any) -> Field:
        if isinstance(target, Barenblatt):
            m = self.exponent(target.dim)
            if abs(m - target.m) > 1e-12:
                raise ZooError(f"law pme has m = {m:g} but the data are a Barenblatt of m = {target.m:g}; "
                               f"use pme:m={target.m:g}")
            return RelaxingBarenblattField(target)
        return super().exact_field(target)

    def pressure_of_noise(self, log_noise: Tensor, dim: int) -> Tensor:
        """p = m/(m-1) rho^(m-1) = m/(m-1) D."""
        m = self.exponent(dim)
        return m / (m - 1.0) * torch.exp(log_noise)

    def pressure_ratio(self, field: Field, x: Tensor, t: Tensor) -> Tensor:
        """P(rho)/rho = rho^(m-1) = (m-1) p/m, zero outside the support."""
        m = self.exponent(x[0].numel())
        return ((m - 1.0) / m * field.pressure(x, t)).clamp_min(0.0)


@dataclass(frozen=True)
class BarenblattData(Dataset):
    """h0 X with X ~ the stationary Barenblatt of exponent m in dimension dim: the start of a
    relaxing Barenblatt, whose pme velocity is exact (``--network exact``)."""

    name: ClassVar[str] = "barenblatt"
    summary: ClassVar[str] = "the stationary PME Barenblatt scaled by h0 (exact pme velocity known)"

    h0: float = 0.5
    dim: int = 2
    m: float | None = None
    n_train: int = 2000
    n_test: int = 2000
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.h0 > 0 and math.isfinite(self.h0)):
            self.fail(f"h0 must be a positive number, got {self.h0}")
        if self.dim < 1:
            self.fail(f"dim must be at least 1, got {self.dim}")
        if self.m is not None and not (self.m > 1 and math.isfinite(self.m)):
            self.fail(f"m must be a number > 1, got {self.m}")
        if self.n_train < 1 or self.n_test < 1:
            self.fail("n_train and n_test must be at least 1")

    @property
    def exponent(self) -> float:
        return default_m(self.dim) if self.m is None else float(self.m)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.dim,)

    def _split(self, n: int, stream: int) -> Tensor:
        return barenblatt_sample(n, self.dim, self.exponent, seeded_generator(self.seed, stream), self.h0).float()

    def train(self) -> Tensor:
        return self._split(self.n_train, 0)

    def test(self) -> Tensor:
        return self._split(self.n_test, 1)

    @property
    def exact(self) -> Barenblatt:
        return Barenblatt(m=self.exponent, dim=self.dim, h0=self.h0)


@zoo.hookimpl
def zoo_register_laws(register) -> None:
    register(PME)


@zoo.hookimpl
def zoo_register_datasets(register) -> None:
    register(BarenblattData)
