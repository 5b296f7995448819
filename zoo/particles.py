"""Learning a law's velocity from a recorded particle flow (MATH.md section 5).

:func:`record` runs the blob flow on the train split and keeps (x, t, r, p) at log-spaced
times, with ``r = -u = grad p + x`` the reverse drift and ``p = F'(rho~)`` the blob pressure;
:func:`regression_loss` regresses a network on them and :class:`ParticleField` reads it back.

The network predicts ``r = grad p + x`` (vector output) or ``q = p + |x|^2/2`` (scalar output,
``r = grad q`` by autograd), i.e. the deviation from the quadratic pressure ``-|x|^2/2``.
So the pressure is extended quadratically outside the data and the reverse drift
``grad p + y`` there is the network's (at most linear) extrapolation, not ``+y`` as with
``grad p = 0``: no particle is thrown to infinity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from zoo.blob import Energy, calibrate_scale, flow
from zoo.contracts import Field, Law
from zoo.errors import ZooError

OUTPUTS = ("vector", "scalar")
WIDTHS = ("auto", "spacing", "scaled")
SCALED_MAX_DT = 0.01  # a scaled width allows long stable steps; this bounds the time-stepping error


def record_times(T: float, t_min: float, records: int) -> Tensor:
    """(records,) float64 log-spaced times from t_min to T, where the flow is recorded."""
    return torch.exp(torch.linspace(math.log(t_min), math.log(T), records, dtype=torch.float64))


def record(data: Tensor, energy: Energy, times: Tensor, *, eps: float | None = None,
           scale: float | None = None, cfl: float = 0.5, max_dt: float = 0.05, max_stages: int = 1) -> dict[str, Tensor]:
    """Blob flow of data (N, *shape) recorded at ``times`` (R,): float32 tensors
    x (R N, *shape), t (R N,), r (R N, *shape), p (R N,), and per-time weights
    w = 1 / mean(|r|^2 + |x|^2) (R N,) that keep the early times, where |r| grows like 1/t,
    from dominating the loss. ``eps``, ``scale``, ``max_stages``: as for :func:`zoo.blob.flow`."""
    shape = tuple(data.shape[1:])
    xs, ts, rs, ps, ws = [], [], [], [], []
    for snap in flow(data, energy, times, eps=eps, scale=scale, cfl=cfl, max_dt=max_dt, max_stages=max_stages):
        r = -snap.u  # grad p + x
        xs.append(snap.x)
        rs.append(r)
        ps.append(energy.pressure(snap.log_rho))
        ts.append(torch.full((len(r),), snap.t, dtype=torch.float64))
        size = float((r.square() + snap.x.square()).mean().clamp_min(1e-12))  # |x| keeps late times from being blown up
        ws.append(torch.full((len(r),), 1.0 / size, dtype=torch.float64))
    cat = lambda parts: torch.cat(parts).float()  # noqa: E731
    return {"x": cat(xs).reshape(-1, *shape), "t": cat(ts), "r": cat(rs).reshape(-1, *shape),
            "p": cat(ps), "w": cat(ws)}


def _drift_and_q(network: nn.Module, x: Tensor, t: Tensor, output: str, create_graph: bool) -> tuple[Tensor, Tensor | None]:
    """(r, q): r = grad p + x (n, *shape); q = p + |x|^2/2 (n,) for the scalar output, else None."""
    if output == "vector":
        return network(x, t), None
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        q = network(x, t)
        if q.shape != (x.shape[0],):
            raise ZooError(f"a scalar pressure network must return shape ({x.shape[0]},), got {tuple(q.shape)}")
        (r,) = torch.autograd.grad(q.sum(), x, create_graph=create_graph)
    return r, q


def regression_loss(network: nn.Module, batch: dict[str, Tensor], output: str) -> Tensor:
    """Weighted mean square error on r = grad p + x; the scalar output also fits p's level
    (a gradient fixes p only up to a constant, and the stochastic sampler needs p itself)."""
    x, t, w = batch["x"], batch["t"], batch["w"]
    r, q = _drift_and_q(network, x, t, output, create_graph=True)
    loss = (w * (r - batch["r"]).square().flatten(1).mean(1)).mean()
    if q is not None:
        p = q - 0.5 * x.flatten(1).square().sum(1)
        loss = loss + (p - batch["p"]).square().mean() / batch["p"].var().clamp_min(1e-12)
    return loss


class ParticleField(Field):
    """grad p = r(x, t) - x from a network trained by :func:`regression_loss`; with the
    scalar output also p = q - |x|^2/2. One NFE per call."""

    def __init__(self, network: nn.Module, output: str) -> None:
        super().__init__()
        self.network = network
        self.output = output

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        r, _ = _drift_and_q(self.network, x, t, self.output, create_graph=False)
        return r.detach() - x

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        if self.output != "scalar":
            return super().pressure(x, t)
        self.nfe += 1
        return self.network(x, t) - 0.5 * x.flatten(1).square().sum(1)

    def grad_p_and_pressure(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """One evaluation of the pressure network gives both (one NFE)."""
        if self.output != "scalar":
            return super().grad_p_and_pressure(x, t)
        self.nfe += 1
        r, q = _drift_and_q(self.network, x, t, self.output, create_graph=False)
        return r.detach() - x, q.detach() - 0.5 * x.flatten(1).square().sum(1)


@dataclass(frozen=True)
class ParticleLaw(Law):
    """A law learned on its blob particle flow: subclasses give :meth:`energy`.

    ``output``: ``scalar`` (default: a pressure network, grad p by autograd: a gradient field by
    construction, and the pressure that stochastic samplers need; about 1.5x the cost of a training
    step of the other) or ``vector`` (the network predicts grad p + x; deterministic samplers only). ``width``: the blob mollifier's width rule: ``spacing``
    (``eps`` fixed, or none: twice the particles' mean nearest-neighbour distance, re-measured
    after every step so that it follows the cloud as it spreads or contracts), ``scaled``
    (e(t) = c times the particles' RMS radius, c calibrated so that draws of the stationary law
    are stationary in the mean, :func:`zoo.blob.calibrate_scale`; keeps the second moment right
    in high dimension, where a spacing-sized width collapses the particles, but smooths away
    fine structure: on digits the samples are noisy) or ``auto``
    (``spacing`` up to dimension 4, else ``scaled``). ``records``: number of log-spaced times of the
    recorded flow. ``cfl``: the fraction of the stable explicit step e^2 / max P'(rho~) taken.
    ``particles``: the flow runs on at most this many train points (a seeded subset): its cost
    grows like N^2 per step times N^(2/d) explicit steps (dt ~ e^2 ~ spacing^2). ``stages``:
    at most this many Runge-Kutta-Chebyshev stages per step (1: explicit Euler), which take
    steps up to stages^2 times longer for stages evaluations (:func:`zoo.blob.flow`).
    Defaults measured on gmm8 (1 thread, mlp, 1500 steps): particles=500 records in ~1 s and
    samples as well as 1000 or 2000 particles.
    """

    output: str = "scalar"
    width: str = "auto"
    eps: float | None = None
    records: int = 64
    cfl: float = 0.5
    particles: int = 500
    stages: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output not in OUTPUTS:
            self.fail(f"output must be one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.width not in WIDTHS:
            self.fail(f"width must be one of {', '.join(WIDTHS)}, got {self.width!r}")
        if self.eps is not None and self.width == "scaled":
            self.fail("eps is a fixed width: it cannot be combined with width=scaled")
        if self.eps is not None and not (self.eps > 0 and math.isfinite(self.eps)):
            self.fail(f"eps must be a positive number, got {self.eps}")
        if self.records < 2:
            self.fail(f"records must be at least 2, got {self.records}")
        if not 0 < self.cfl <= 1:
            self.fail(f"cfl must lie in (0, 1], got {self.cfl}")
        if self.stages < 1:
            self.fail(f"stages must be at least 1, got {self.stages}")
        if self.particles < 2:
            self.fail(f"particles must be at least 2, got {self.particles}")

    @property
    def network_output(self) -> str:  # type: ignore[override]
        return self.output

    @property
    def noise_ready(self) -> bool:
        return self.network_output == "scalar"

    def energy(self, dim: int) -> Energy:
        """The blob method's view of F for data of dimension ``dim``."""
        raise NotImplementedError

    def flow_options(self, data: Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Keyword options of :func:`zoo.blob.flow` for particles ``data`` (N, *shape): the width
        (calibrated on ``generator``-drawn stationary samples when scaled) and the stepping."""
        dim = math.prod(data.shape[1:])
        if self.width == "scaled" or (self.width == "auto" and self.eps is None and dim > 4):
            scale = calibrate_scale(self.prior(len(data), tuple(data.shape[1:]), generator), self.energy(dim))
            return {"scale": scale, "cfl": self.cfl, "max_dt": SCALED_MAX_DT, "max_stages": self.stages}
        return {"eps": self.eps, "cfl": self.cfl, "max_stages": self.stages}

    def prepare(self, data: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Record the blob flow of (a ``generator``-drawn subset of) the train split."""
        if len(data) > self.particles:
            data = data[torch.randperm(len(data), generator=generator)[:self.particles]]
        energy = self.energy(math.prod(data.shape[1:]))
        return record(data, energy, record_times(self.T, self.t_min, self.records), **self.flow_options(data, generator))

    def loss(self, network: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        return regression_loss(network, batch, self.output)

    def field(self, network: nn.Module) -> Field:
        return ParticleField(network, self.output)
