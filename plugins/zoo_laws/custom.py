"""A nonlinear diffusion law for any convex F: d/dt rho = div(rho (grad F'(rho) + x)), MATH.md section 2.

F comes from a formula in ``rho`` (``custom:F=rho**3/2``, parsed safely by :mod:`zoo.formula`),
one of the named profiles below, or a Python subclass overriding :meth:`Custom.f` (and, if
wanted, :meth:`Custom.df`, :meth:`Custom.d2f`; automatic differentiation otherwise). The
stationary state solves p(rho_inf(x)) + |x|^2/2 = C on its support, radially, with C fixed by
unit mass (root finding) and radii drawn by inverse CDF. Learned on the blob particle flow.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import gammaln, logsumexp, xlogy
from torch import Tensor

import zoo
from zoo.contracts import Field
from zoo.errors import ZooError
from zoo.formula import parse
from zoo.particles import ParticleLaw

PROFILES = {
    "heat": "rho*log(rho)",  # P = rho: the heat law
    "pme2": "rho**2",  # P = rho^2: PME with m = 2
    # P = rho + rho^2: heat-like where rho is small, PME (m = 2) where rho is large
    "heat-pme": "rho*log(rho) + rho**2",
}
LOG_RHO = (-500.0, 60.0)  # densities considered (a Gaussian in d = 64 has log rho ~ -91 at its typical radius)


def edge_log_rho(dim: int) -> float:
    """log rho that counts as the edge of the stationary state's support in dimension ``dim``:
    far below the typical log density (about -1.4 d for heat) and within the table."""
    return max(LOG_RHO[0], -60.0 - 2.0 * dim)
CHECK = torch.logspace(-8, 4, 241, dtype=torch.float64)  # where F is checked for convexity


@dataclass(frozen=True)
class Custom(ParticleLaw):
    """Nonlinear diffusion for a convex F given by ``F`` (a formula in rho or a named profile:
    heat, pme2, heat-pme). Other options as for pme (route, network output, particles, records; blob: width, eps, cfl, stages; mckean: neighbours, hold)."""

    name: ClassVar[str] = "custom"
    summary: ClassVar[str] = "nonlinear diffusion for any convex F(rho) (formula or Python subclass)"

    F: str = "heat-pme"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check()

    @functools.cached_property
    def _formula(self):
        return parse(PROFILES.get(str(self.F), str(self.F)))

    # -- F and its derivatives on float64 tensors of densities rho > 0
    def f(self, rho: Tensor) -> Tensor:
        """F(rho). A Python subclass overrides this (and optionally df, d2f)."""
        return self._formula(rho)

    def df(self, rho: Tensor) -> Tensor:
        """p = F'(rho), by automatic differentiation unless overridden."""
        return _derivative(self.f, rho)

    def d2f(self, rho: Tensor) -> Tensor:
        """F''(rho), by automatic differentiation unless overridden."""
        return _derivative(self.df, rho)

    def big_p(self, rho: Tensor) -> Tensor:
        """P(rho) = rho F'(rho) - F(rho)."""
        return rho * self.df(rho) - self.f(rho)

    def _check(self) -> None:
        """F must be finite, strictly convex and have P > 0 on densities 1e-8 .. 1e4."""
        try:
            with np.errstate(all="ignore"):
                values = [self.f(CHECK), self.df(CHECK), self.d2f(CHECK), self.big_p(CHECK)]
        except ZooError:
            raise
        except (ArithmeticError, RuntimeError, ValueError, TypeError) as exc:
            self.fail(f"F = {self.F} cannot be evaluated: {exc}")
        if not all(torch.isfinite(v).all() for v in values):
            self.fail(f"F = {self.F} is not finite for every density in [1e-8, 1e4]")
        if not (values[2] > 0).all():
            bad = float(CHECK[~(values[2] > 0)][0])
            self.fail(f"F = {self.F} is not strictly convex (F'' <= 0 at rho = {bad:.3g})")
        if not (values[3] > 0).all():
            self.fail(f"F = {self.F} gives P = rho F' - F <= 0 somewhere (F(0) must be 0)")

    # -- the blob method's view (zoo.blob.Energy): functions of log rho
    def energy(self, dim: int) -> "Custom":
        return self

    def log_weight(self, log_rho: Tensor) -> Tensor:
        return torch.log(self.big_p(torch.exp(log_rho))) - 2.0 * log_rho

    def diffusivity(self, log_rho: Tensor) -> Tensor:
        rho = torch.exp(log_rho)
        return rho * self.d2f(rho)

    def pressure(self, log_rho: Tensor) -> Tensor:
        return self.df(torch.exp(log_rho))

    # -- stationary state
    @functools.cached_property
    def _pressure_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(p, log rho) on a fine log-density grid: F' increases, so p -> log rho interpolates."""
        log_rho = np.linspace(*LOG_RHO, 200001)
        p = self.df(torch.from_numpy(np.exp(log_rho))).detach().numpy()
        return np.maximum.accumulate(p), log_rho

    @functools.cached_property
    def _noise_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(log D, log rho), D = P(rho)/rho, on the same grid (for the mckean level network)."""
        log_rho = self._pressure_table[1]
        log_noise = self.log_weight(torch.from_numpy(log_rho)).numpy() + log_rho
        return np.maximum.accumulate(log_noise), log_rho

    def pressure_of_noise(self, log_noise: Tensor, dim: int) -> Tensor:
        """p = F'(rho) at the rho whose D = P(rho)/rho is exp(log_noise) (D increases with rho)."""
        table_noise, table_log_rho = self._noise_table
        log_rho = np.interp(log_noise.detach().double().cpu().numpy(), table_noise, table_log_rho)
        return self.df(torch.from_numpy(np.exp(log_rho))).to(log_noise.device)

    def density_of_pressure(self, p: Tensor) -> Tensor:
        """log rho (n,) float64 solving F'(rho) = p (n,), clamped to LOG_RHO."""
        table_p, table_log_rho = self._pressure_table
        return torch.from_numpy(np.interp(p.detach().double().cpu().numpy(), table_p, table_log_rho)).to(p.device)

    def stationary(self, dim: int) -> "Stationary":
        return _stationary(self, dim)

    def prior(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        dim = math.prod(shape)
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        z = torch.randn(n, dim, generator=generator, dtype=torch.float64)
        radius = self.stationary(dim).radius(u)
        return (radius[:, None] * z / z.norm(dim=1, keepdim=True)).float().reshape(n, *shape)

    def pressure_ratio(self, field: Field, x: Tensor, t: Tensor) -> Tensor:
        """P(rho)/rho with rho = (F')^-1(p) from the field's pressure."""
        rho = torch.exp(self.density_of_pressure(field.pressure(x, t)).to(x.device))
        return (self.big_p(rho) / rho).to(x.dtype)


def _derivative(fn, rho: Tensor) -> Tensor:
    """d fn/d rho elementwise by automatic differentiation (kept differentiable when rho is)."""
    with torch.enable_grad():
        r = rho if rho.requires_grad else rho.detach().requires_grad_(True)
        y = fn(r)
        if not y.requires_grad:  # fn constant in rho
            return torch.zeros_like(rho)
        return torch.autograd.grad(y.sum(), r, create_graph=rho.requires_grad)[0]


@dataclass(frozen=True)
class Stationary:
    """The radial stationary state: log rho_inf on a radius grid, C, and the radial CDF."""

    C: float
    r: np.ndarray  # (G,) radii from 0 to the edge
    log_rho: np.ndarray  # (G,) log rho_inf(r)
    cdf: np.ndarray  # (G,) P(|X| <= r)

    def density(self, radius: Tensor) -> Tensor:
        """rho_inf at radii (n,), zero beyond the grid."""
        out = np.interp(radius.double().numpy(), self.r, np.exp(self.log_rho), right=0.0)
        return torch.from_numpy(out)

    def radius(self, u: Tensor) -> Tensor:
        """Inverse CDF: radii (n,) for uniforms u (n,)."""
        return torch.from_numpy(np.interp(u.double().numpy(), self.cdf, self.r))


@functools.lru_cache(maxsize=32)
def _stationary(law: Custom, dim: int, grid: int = 4001) -> Stationary:
    """p(rho_inf(r)) + r^2/2 = C; C from log mass(C) = 0 by Brent's method (MATH.md section 2)."""
    p_edge = float(law.df(torch.tensor(math.exp(edge_log_rho(dim)), dtype=torch.float64)))
    log_sphere = math.log(2.0) + dim / 2 * math.log(math.pi) - gammaln(dim / 2)

    def profile(C: float) -> tuple[np.ndarray, np.ndarray]:
        edge = math.sqrt(2.0 * max(C - p_edge, 1e-300))
        r = np.linspace(0.0, edge, grid)
        log_rho = law.density_of_pressure(torch.from_numpy(C - r * r / 2)).numpy()
        log_rho[C - r * r / 2 <= p_edge] = -np.inf  # outside the support
        return r, log_rho

    def log_radial(r: np.ndarray, log_rho: np.ndarray) -> np.ndarray:
        """log(rho r^(d-1)), the radial density up to |S^(d-1)|."""
        with np.errstate(divide="ignore"):
            return log_rho + xlogy(dim - 1, r)

    trapezoid = np.ones(grid)
    trapezoid[[0, -1]] = 0.5

    def log_mass(C: float) -> float:
        r, log_rho = profile(C)
        return float(log_sphere + logsumexp(log_radial(r, log_rho), b=trapezoid) + math.log(r[1] - r[0]))

    lo = hi = float(law.df(torch.tensor(1.0, dtype=torch.float64)))
    step = 1.0
    while log_mass(hi) < 0:
        hi, step = hi + step, 2 * step
    step = 1.0
    while log_mass(lo) > 0:
        lo, step = lo - step, 2 * step
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ZooError(f"law custom: no stationary state found for F = {law.F} in dimension {dim}")
    C = brentq(log_mass, lo, hi, xtol=1e-12, rtol=1e-12)
    r, log_rho = profile(C)
    terms = log_radial(r, log_rho)
    weights = np.exp(terms - terms.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (weights[1:] + weights[:-1]))])
    return Stationary(C, r, log_rho, cdf / cdf[-1])


@zoo.hookimpl
def zoo_register_laws(register) -> None:
    register(Custom)
