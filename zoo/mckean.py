"""McKean-Vlasov particles for nonlinear diffusion in high dimension (MATH.md sections 2 and 8).

The law d/dt rho = div(rho (grad F'(rho) + x)) is the Fokker-Planck equation of

    dX = -X dt + sqrt(2 D(rho(X))) dW,    D = P(rho)/rho    (PME: rho^(m-1)),

so N particles that feel the density only through their diffusivity D follow it. D needs the
density at each particle; for the default m = 1 + 2/d it is the very mild power rho^(2/d), so
an error delta in log rho moves D only by delta (m - 1): a k-nearest-neighbour estimate
(Kozachenko-Leonenko) suffices where the blob method's mollified density, which must resolve
grad rho, gathers the radii into a shell (benchmarks/blob_highdim.md).

A kNN estimate in high dimension is biased and too flat (its spread of log rho across the cloud
is wrong by a factor), so it is calibrated once per law and dimension on exact draws of the
stationary state: log rho = delta + mean + beta (l - mean), l the raw estimate and mean its cloud
average, with (delta, beta) solving the two stationarity conditions of the particle SDE

    E[D] = E|X|^2 / d,    E[D |X|^2] = E|X|^4 / (d + 2)

(d/dt E|X|^2 = 0 and d/dt E|X|^4 = 0 under rho_inf). Then each step of length dt is the exact
Ornstein-Uhlenbeck step with D frozen at the step's start:
X <- e^(-dt) X + sqrt(D (1 - e^(-2 dt))) Z. Memory is O(N x chunk).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from zoo.blob import Energy
from zoo.errors import ZooError

STEP_FRACTION = 0.05  # a step is at most this fraction of the time already flowed (the start is stiff)
MIN_DT, MAX_DT = 1e-4, 0.05


def knn_log_density(x: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Kozachenko-Leonenko log density (N,) float64 at each of the points x (N, d):
    log rho_i = psi(k) - log(N - 1) - log V_d - d log r_i, r_i the distance to the k-th other point,
    V_d the unit ball's volume. Distances in chunks of rows: memory O(N x chunk)."""
    x = x.reshape(x.shape[0], -1).double()
    n, d = x.shape
    if not 1 <= k < n:
        raise ZooError(f"a {k}-nearest-neighbour density needs more than {k} particles, got {n}")
    sq = x.square().sum(1)
    log_r = torch.empty(n, dtype=torch.float64, device=x.device)
    buffer = torch.empty(min(chunk, n), n, dtype=torch.float64, device=x.device)  # one block, reused: a fresh
    for start in range(0, n, chunk):                                              # one per chunk cost 2x the GEMM
        rows = x[start:start + chunk]
        dist2 = torch.addmm(sq[None, :], rows, x.T, alpha=-2.0, out=buffer[:len(rows)])
        dist2.add_(sq[start:start + chunk, None]).clamp_min_(0.0)
        dist2[torch.arange(len(rows)), torch.arange(start, start + len(rows))] = math.inf  # not itself
        kth = dist2.topk(k, dim=1, largest=False).values[:, -1]
        log_r[start:start + chunk] = 0.5 * torch.log(kth.clamp_min(1e-300))
    log_ball = d / 2 * math.log(math.pi) - math.lgamma(d / 2 + 1)
    return float(torch.special.digamma(torch.tensor(float(k)))) - math.log(n - 1) - log_ball - d * log_r


def noise_of(energy: Energy, log_rho: Tensor) -> Tensor:
    """D = P(rho)/rho from log rho (float64): log G'(rho) + log rho = log P - log rho."""
    return torch.exp(energy.log_weight(log_rho) + log_rho)


@dataclass(frozen=True)
class DensityEstimate:
    """log rho = delta + mean + beta (l - mean) from the raw kNN estimate l (see the module)."""

    k: int = 5
    delta: float = 0.0
    beta: float = 1.0

    def __call__(self, x: Tensor) -> Tensor:
        return self.from_raw(knn_log_density(x, self.k))

    def from_raw(self, raw: Tensor) -> Tensor:
        mean = raw.mean()
        return self.delta + mean + self.beta * (raw - mean)


def calibrate(x_inf: Tensor, energy: Energy, k: int = 5, moments: tuple[float, float] | None = None) -> DensityEstimate:
    """The (delta, beta) with which draws x_inf (N, d) of the stationary law satisfy the two
    stationarity conditions of the module docstring, with the law's moments (E|X|^2, E|X|^4)
    (none: those of x_inf; a large separate draw takes N's sampling error out of the level).
    A law whose D does not depend on rho (heat) needs none: the raw estimate is returned."""
    x = x_inf.reshape(x_inf.shape[0], -1).double()
    d = x.shape[1]
    raw = knn_log_density(x, k)
    probe = noise_of(energy, torch.tensor([-5.0, 5.0], dtype=torch.float64))
    if torch.allclose(probe[0], probe[1]):
        return DensityEstimate(k)
    sq = x.square().sum(1)
    m2, m4 = moments if moments is not None else (float(sq.mean()), float(sq.square().mean()))
    want_d = m2 / d
    want_ratio = m4 / (d + 2) / want_d  # E[D |x|^2] / E[D]

    def noise(delta: float, beta: float) -> Tensor:
        return noise_of(energy, DensityEstimate(k, delta, beta).from_raw(raw))

    def delta_for(beta: float) -> float:  # E[D] = want_d; D increases with log rho
        lo, hi = -200.0, 200.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if float(noise(mid, beta).mean()) < want_d else (lo, mid)
        return 0.5 * (lo + hi)

    def ratio(beta: float) -> float:
        dd = noise(delta_for(beta), beta)
        return float((dd * sq).mean() / dd.mean())

    lo, hi = 0.0, 8.0  # the ratio falls as beta grows: dense centre gets more of D
    if not ratio(hi) <= want_ratio <= ratio(lo):
        # D barely varies over the draws (custom F that is heat-like where the law lives): the shape
        # cannot absorb the draws' sampling error in E|X|^4, and does not matter; fit the level only
        return DensityEstimate(k, delta_for(1.0), 1.0)
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ratio(mid) > want_ratio else (lo, mid)
    beta = 0.5 * (lo + hi)
    return DensityEstimate(k, delta_for(beta), beta)


def matched(z: Tensor, x: Tensor, diffusivity: Tensor) -> Tensor:
    """Gaussian increments z (N, d) nudged so that the step moves the second moment exactly as
    its expectation does: orthogonal (over all N d numbers) to the vector sqrt(D_i) x_i, and with
    sum D_i |z_i|^2 = d sum D_i. One direction and one scale out of N d: the law of the particles
    is unchanged to O(1/(N d)), and the moment no longer random-walks (d = 8, N = 4000: with the
    calibration against exact moments the second moment's worst error fell from 1.2-1.3 % to
    0.2-0.6 %, benchmarks/mckean_highdim.md)."""
    v = diffusivity.sqrt()[:, None] * x
    z = z - (z * v).sum() / (v * v).sum().clamp_min(1e-300) * v
    scale = torch.sqrt(x.shape[1] * diffusivity.sum() / (diffusivity[:, None] * z * z).sum())
    return z * scale


@dataclass
class Snapshot:
    """The particles x (N, *shape) at time t with their log density (N,) float64."""

    t: float
    x: Tensor
    log_rho: Tensor


def flow(x0: Tensor, energy: Energy, times: Tensor, estimate: DensityEstimate,
         generator: torch.Generator, *, max_dt: float = MAX_DT) -> Iterator[Snapshot]:
    """McKean-Vlasov particles from x0 (N, *shape) at t = 0, yielded at the increasing ``times``
    (R,) > 0. Steps of STEP_FRACTION of the time flowed (at least MIN_DT, at most max_dt),
    shortened to land on each requested time. Noise from ``generator`` (CPU), in float64."""
    shape = tuple(x0.shape[1:])
    x = x0.reshape(x0.shape[0], -1).double()
    t = 0.0
    log_rho = estimate(x)
    for target in times.tolist():
        if target <= t:
            raise ZooError(f"flow times must increase from 0, got {target} after {t}")
        while t < target:
            dt = min(max(STEP_FRACTION * t, MIN_DT), max_dt, target - t)
            if target - t - dt < 0.2 * dt:  # no sliver of a step before the target
                dt = target - t
            diffusivity = noise_of(energy, log_rho)
            noise = matched(torch.randn(x.shape, generator=generator, dtype=torch.float64).to(x.device), x, diffusivity)
            x = math.exp(-dt) * x + torch.sqrt(diffusivity * -math.expm1(-2.0 * dt))[:, None] * noise
            t = target if dt == target - t else t + dt
            log_rho = estimate(x)
        yield Snapshot(t, x.reshape(-1, *shape), log_rho)
