"""The blob method for nonlinear diffusion (MATH.md section 5).

Carrillo, Craig, Patacchini, "A blob method for diffusion" (2019): N particles of weight
w = 1/N follow the gradient flow of the regularised energy E = sum_i w G(rho~_i),
G(s) = F(s)/s, rho~_i = sum_j w phi_e(x_i - x_j) with phi_e a Gaussian of width e, plus the
confinement |x|^2/2. Differentiating E gives the F''-weighted bracket

    u_i = - sum_j w grad phi_e(x_i - x_j) [G'(rho~_i) + G'(rho~_j)] - x_i,
    G'(s) = P(s)/s^2,  P(s) = s F'(s) - F(s)    (PME: s^(m-2); heat: 1/s),

whose continuum limit is -grad F'(rho) - x, since s G'' + 2 G' = F''.

Kernel: both passes over the N^2 pairs are one augmented matrix product giving the exponent,
an in-place exponential and one product with [1, z]; the row shifts that keep everything in
float32 are known in closed form (the self-pair gives the pass-1 maximum; pass 2 is shifted by
beta_i), so no row reduction and no N x N temporary are needed: memory is O(N x chunk).

Width: the mollified density phi_e * mu_N has second moment (particles') + d e^2. Where d e^2
is not small against the stationary state's second moment (high d with few particles, e.g.
d = 64, N = 1797, where e ~ the spacing ~ 4), a fixed width cannot represent the flow: the
particles contract towards the centre instead of relaxing to rho_inf. The scaled width
e = c s(x) of :func:`flow` (s the RMS radius, c from :func:`calibrate_scale`) keeps the second
moment right in any d (d = 8: within 1 % of the relaxing Barenblatt), but a blob that wide
also gathers the radii into a shell (d = 8: KS 0.34 at t = 2) and smooths away fine structure.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch
from torch import Tensor

from zoo.errors import ZooError


class Energy(Protocol):
    """What the blob method needs of F, as functions of log rho (float64 tensors)."""

    def log_weight(self, log_rho: Tensor) -> Tensor:
        """log G'(rho) = log P(rho) - 2 log rho."""

    def diffusivity(self, log_rho: Tensor) -> Tensor:
        """P'(rho) = rho F''(rho): sets the stable explicit step e^2 / max P'."""

    def pressure(self, log_rho: Tensor) -> Tensor:
        """p = F'(rho)."""


@dataclass(frozen=True)
class PowerEnergy:
    """F = rho^m/(m-1) (PME, P = rho^m); m = 1 is heat, F = rho log rho (P = rho)."""

    m: float

    def log_weight(self, log_rho: Tensor) -> Tensor:
        return (self.m - 2.0) * log_rho

    def diffusivity(self, log_rho: Tensor) -> Tensor:
        return self.m * torch.exp((self.m - 1.0) * log_rho)

    def pressure(self, log_rho: Tensor) -> Tensor:
        if self.m == 1.0:
            return log_rho + 1.0
        return self.m / (self.m - 1.0) * torch.exp((self.m - 1.0) * log_rho)


SPREAD_STEP = 0.01  # long steps: relative motion of the particles per step (d = 8: 0.7 % error at 0.02)


def default_eps(x: Tensor, sample: int = 2000) -> float:
    """Mollifier width: twice the mean nearest-neighbour distance of (a subsample of) x (N, d),
    about the particle spacing (e = 0.05 at N = 1500 tracks a 2-D Barenblatt within 1 %)."""
    x = x.reshape(x.shape[0], -1).double()
    sub = x[torch.linspace(0, x.shape[0] - 1, min(sample, x.shape[0])).long()]
    dist = torch.cdist(sub, x)
    dist[dist == 0] = math.inf  # the point itself (and exact duplicates)
    eps = 2.0 * float(dist.min(dim=1).values.clamp_max(1e300).mean())
    if not math.isfinite(eps) or eps <= 0:
        raise ZooError("cannot choose a mollifier width: the particles coincide")
    return eps


def _pass(a: Tensor, b: Tensor, v: Tensor, chunk: int) -> Tensor:
    """sum_j exp(a_i . b_j) v_j for all i: a (N, k), b (N, k), v (N, c) -> (N, c)."""
    n = a.shape[0]
    out = torch.empty(v.shape[1], n, dtype=v.dtype, device=v.device)  # transposed: see below
    bt, vt = b.t().contiguous(), v.t().contiguous()
    block = torch.empty(min(chunk, n), b.shape[0], dtype=v.dtype, device=v.device)  # reused: no page faults
    for start in range(0, n, chunk):
        e = block[:min(chunk, n - start)]
        torch.mm(a[start:start + chunk], bt, out=e)
        # exp's vectorised kernel takes a slow path for underflowing results (9x slower here);
        # exp(-80) ~ 2e-35 is nothing next to the self-pair's exp(0) = 1 in every row
        e.clamp_min_(-80.0).exp_()
        # v^T e^T rather than e v: BLAS streams the wide block far better for narrow v (5x at d = 2)
        out[:, start:start + chunk] = torch.mm(vt, e.t())
    return out.t()


def velocity(x: Tensor, energy: Energy, eps: float, chunk: int | None = None,
             dtype: torch.dtype = torch.float32, scaled: bool = False) -> tuple[Tensor, Tensor]:
    """Blob velocity u (N, d) and log rho~ (N,) (float64) of particles x (N, d).

    The N^2 work runs in ``dtype`` (float32 by default) on x's device, in row chunks of
    ``chunk`` (default: blocks of about 2 MiB, which stay in cache between the three ops).
    ``scaled``: the width is e = c s(x), s the particles' RMS radius (see :func:`flow`), and u
    includes the term -(e dE/de) (x_i - mean x)/s^2 of differentiating E(x, e(x)).
    """
    n, d = x.shape
    if chunk is None:
        chunk = min(n, max(64, (1 << 19) // n))
    x64 = x.double()
    z = (x64 - x64.mean(0)) / eps  # distances are translation invariant; centring saves digits
    half_sq = 0.5 * (z * z).sum(1, keepdim=True)
    one = torch.ones_like(half_sq)
    v = torch.cat([one, z], 1)
    # pass 1: exponent -|z_i - z_j|^2/2 <= 0, the self-pair gives the row maximum 0
    v1 = torch.cat([v, 2 * half_sq], 1) if scaled else v  # |z_j|^2 for sum_j phi |z_i - z_j|^2
    s1 = _pass(torch.cat([z, -half_sq, one], 1).to(dtype), torch.cat([z, one, -half_sq], 1).to(dtype),
               v1.to(dtype), chunk).double()
    log_cw = -0.5 * d * math.log(2 * math.pi * eps * eps) - math.log(n)  # log of phi_e's constant times w
    log_rho = log_cw + torch.log(s1[:, 0])
    beta = energy.log_weight(log_rho) + log_cw  # log(c w G'(rho~_j))
    shift = beta - beta.mean()
    # pass 2: exponent -|z_i - z_j|^2/2 + beta_j - beta_i <= |m - 2| log N for PME, since every
    # rho~ lies in [c w, c] (the self-pair alone, all the mass within reach); 0 on the diagonal
    s2 = _pass(torch.cat([z, -half_sq - shift[:, None], one], 1).to(dtype),
               torch.cat([z, one, -half_sq + shift[:, None]], 1).to(dtype), v.to(dtype), chunk).double()
    s = s1[:, :d + 1] + s2
    u = torch.exp(beta)[:, None] / eps * (z * s[:, :1] - s[:, 1:]) - x64
    if scaled:
        # e d(rho~_i)/de = rho~_i (<|z_i - z_j|^2>_i - d), <.>_i the phi-weighted mean over j
        mean_sq = 2 * half_sq[:, 0] - 2 * (z * s1[:, 1:d + 1]).sum(1) / s1[:, 0] + s1[:, d + 1] / s1[:, 0]
        e_de = (torch.exp(beta - log_cw + log_rho) * (mean_sq - d)).mean()  # e dE/de, E = mean G(rho~)
        u = u - e_de * z / (eps * (z * z).sum(1).mean())  # z/(e mean abs(z)^2) = (x - mean x)/s^2
    return u.to(x.dtype), log_rho


@dataclass
class Snapshot:
    t: float
    x: Tensor  # (N, d) positions
    u: Tensor  # (N, d) blob velocity at (x, t)
    log_rho: Tensor  # (N,) log of the mollified density rho~ at the particles
    eps: float  # the mollifier width at t


def rms_radius(x: Tensor) -> float:
    """s(x) = sqrt(mean |x_i - mean x|^2) of particles x (N, d): the scale of a scaled width."""
    return float((x - x.mean(0)).square().sum(1).mean().sqrt())


def calibrate_scale(x_inf: Tensor, energy: Energy, relax: float = 2.0, lo: float = 0.01, hi: float = 1.0) -> float:
    """The c of the scaled width e = c s(x) (see :func:`flow`) for which the blob flow keeps
    draws x_inf (N, d) of the stationary law stationary in second moment.

    First the virial condition mean x.u = 0 on x_inf itself (bisection on log c, the first
    crossing from small c, where mass is pushed out); then, since the flow slowly rearranges
    independent draws into a more regular configuration that needs a smaller c (about 5 % at
    d = 8), secant steps on c until the second moment after flowing x_inf for time ``relax``
    is x_inf's own (none if relax = 0).
    """
    x = x_inf.reshape(x_inf.shape[0], -1).double()
    x = x - x.mean(0)
    target = float(x.square().sum(1).mean())

    def virial(c: float) -> float:
        u, _ = velocity(x, energy, c * rms_radius(x), scaled=True)
        return float((x * u).sum(1).mean())

    grid = torch.logspace(math.log10(lo), math.log10(hi), 9).tolist()
    values = [virial(c) for c in grid]
    cross = next((i for i in range(8) if values[i] > 0 >= values[i + 1]), None)
    if cross is None:
        raise ZooError(f"cannot calibrate the mollifier width: no scale in [{lo:g}, {hi:g}] "
                       "makes the stationary law stationary")
    a, b = math.log(grid[cross]), math.log(grid[cross + 1])
    for _ in range(30):
        mid = 0.5 * (a + b)
        a, b = (mid, b) if virial(math.exp(mid)) > 0 else (a, mid)
    c = math.exp(0.5 * (a + b))
    if relax <= 0:
        return c

    def excess(c: float) -> float:  # relative second moment error after time relax
        *_, last = flow(x, energy, torch.tensor([relax]), scale=c, cfl=0.3, max_dt=0.01)
        return float(last.x.square().sum(1).mean()) / target - 1

    c0, c1 = c, 0.95 * c
    f0, f1 = excess(c0), excess(c1)
    for _ in range(3):  # the second moment is smooth and monotone in c near the root
        if abs(f1) < 1e-3 or f1 == f0:
            break
        c0, c1, f0 = c1, c1 - f1 * (c1 - c0) / (f1 - f0), f1
        f1 = excess(c1)
    return c1


def flow(x0: Tensor, energy: Energy, times: Tensor, *, eps: float | None = None, scale: float | None = None,
         cfl: float = 0.5, max_dt: float = 0.05, max_stages: int = 1, chunk: int | None = None,
         progress: Callable[[float], None] | None = None) -> Iterator[Snapshot]:
    """Blob flow of particles x0 (N, *shape) through increasing ``times`` (K,), explicit in time.

    Yields one Snapshot (positions flattened to (N, d)) at each requested time, the first
    one may be t = 0. Steps obey dt <= cfl e^2 / max P'(rho~) (MATH.md section 5), so they
    are finest near t = 0 where densities are largest, and never cross a requested time.
    With ``max_stages`` s > 1, steps up to s^2 times longer are taken by the s-stage
    Runge-Kutta-Chebyshev method (:func:`_rkc`): the stiffness is the diffusion's, at the
    finest resolved scale e, all along the flow (most steps are late, near stationarity).

    Width: ``eps`` fixed; none: :func:`default_eps` of the particles, re-measured after every
    step, so that it follows their spacing as the cloud spreads or contracts (a width frozen at
    x0's spacing ends far below the final spacing when the flow expands the data: from
    independent draws of a 2-D Barenblatt at h0 = 0.5, N = 2000, the second moment then misses
    by 5 % at t = 2, against 0.7 % when it follows); or with ``scale`` = c the scaled
    width e(t) = c s(x_t), s the particles' RMS radius, and the flow is the gradient flow of
    E(x, e(x)). Blob and PME velocities are then covariant under dilations, and the relaxing
    Barenblatt is a dilation: with c from :func:`calibrate_scale` the particles follow it in
    any dimension, where a fixed width (about the spacing, large in high d) smears the
    density so much that the pressure barely varies and the particles collapse.
    """
    x = x0.reshape(x0.shape[0], -1).to(torch.float64).clone()
    times = torch.as_tensor(times, dtype=torch.float64)
    if times.ndim != 1 or len(times) == 0 or bool((times[1:] <= times[:-1]).any()) or float(times[0]) < 0:
        raise ZooError("flow times must be a non-empty increasing list of times >= 0")
    fixed = None if eps is None else float(eps)

    def width(y: Tensor) -> float:
        if scale is not None:
            return scale * rms_radius(y)
        return default_eps(y) if fixed is None else fixed

    t = 0.0
    e = width(x)
    u, log_rho = _checked_velocity(x, energy, e, chunk, t, scale is not None)
    for target in times.tolist():
        while t < target - 1e-12:
            stiff = cfl * e * e / float(energy.diffusivity(log_rho).max())
            dt = min(max_dt, target - t)
            if scale is not None or max_stages > 1:  # long stable steps: bound the first-order error of the spreading
                dt = min(dt, SPREAD_STEP * rms_radius(x) / float(u.square().sum(1).mean().sqrt().clamp_min(1e-300)))
            stages = min(max_stages, math.ceil(math.sqrt(dt / stiff)))
            dt = min(dt, stiff * stages * stages)
            if stages == 1:
                # exponential Euler: the confinement -x exactly, the diffusion part r = u + x frozen
                decay = math.exp(-dt)
                x = decay * x + (1.0 - decay) * (u + x)
            else:
                x = _rkc(x, u, dt, stages,  # a spacing width is held over the step's stages
                         lambda y, t=t, e=e: _checked_velocity(y, energy, e if scale is None else width(y), chunk, t,
                                                               scale is not None)[0])
            t = target if target - t - dt < 1e-12 else t + dt
            e = width(x)
            u, log_rho = _checked_velocity(x, energy, e, chunk, t, scale is not None)
            if progress is not None:
                progress(t)
        yield Snapshot(t, x.clone(), u, log_rho, e)


def _rkc(x: Tensor, u: Tensor, dt: float, stages: int, velocity_at: Callable[[Tensor], Tensor],
         damping: float = 0.05) -> Tensor:
    """One step of the first-order Runge-Kutta-Chebyshev method (van der Houwen & Sommeijer;
    Verwer, Hundsdorfer & Sommeijer 2004) from x (N, d) with velocity u at x: s stages cover
    a real negative spectrum about 1.9 s^2 times longer than one Euler step, so the stiff
    diffusion costs s evaluations per s^2 explicit steps. Stability polynomial
    T_s(w0 + w1 z) / T_s(w0), w0 = 1 + damping/s^2, w1 = T_s(w0)/T_s'(w0)."""
    w0 = 1.0 + damping / stages**2
    cheb, slope = [1.0, w0], [0.0, 1.0]  # T_j(w0), T_j'(w0)
    for j in range(2, stages + 1):
        cheb.append(2 * w0 * cheb[-1] - cheb[-2])
        slope.append(2 * cheb[-2] + 2 * w0 * slope[-1] - slope[-2])
    w1 = cheb[-1] / slope[-1]
    b = [1.0 / c for c in cheb]
    before, y = x, x + (w1 / w0) * dt * u
    for j in range(2, stages + 1):
        mu = 2 * w0 * b[j] / b[j - 1]
        before, y = y, mu * y - (b[j] / b[j - 2]) * before + (w1 / w0) * mu * dt * velocity_at(y)
    return y


def _checked_velocity(x: Tensor, energy: Energy, eps: float, chunk: int | None, t: float,
                      scaled: bool) -> tuple[Tensor, Tensor]:
    u, log_rho = velocity(x, energy, eps, chunk, scaled=scaled)
    if not (torch.isfinite(u).all() and torch.isfinite(log_rho).all()):
        raise ZooError(f"the blob flow became non-finite at t = {t:.4g} "
                       f"(mollifier width {eps:.3g}: try a larger one)")
    return u, log_rho
