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

import torch
from torch import Tensor, nn

from zoo.blob import Energy, flow
from zoo.contracts import Field
from zoo.errors import ZooError

OUTPUTS = ("vector", "scalar")


def record_times(T: float, t_min: float, records: int) -> Tensor:
    """(records,) float64 log-spaced times from t_min to T, where the flow is recorded."""
    return torch.exp(torch.linspace(math.log(t_min), math.log(T), records, dtype=torch.float64))


def record(data: Tensor, energy: Energy, times: Tensor, *, eps: float | None = None,
           cfl: float = 0.5) -> dict[str, Tensor]:
    """Blob flow of data (N, *shape) recorded at ``times`` (R,): float32 tensors
    x (R N, *shape), t (R N,), r (R N, *shape), p (R N,), and per-time weights w (R N,)
    that make every recorded time count equally (|r| grows like 1/t near t = 0)."""
    shape = tuple(data.shape[1:])
    xs, ts, rs, ps, ws = [], [], [], [], []
    for snap in flow(data, energy, times, eps=eps, cfl=cfl):
        r = snap.u + snap.x
        xs.append(snap.x)
        rs.append(r)
        ps.append(energy.pressure(snap.log_rho))
        ts.append(torch.full((len(r),), snap.t, dtype=torch.float64))
        ws.append(torch.full((len(r),), 1.0 / float(r.square().mean().clamp_min(1e-12)), dtype=torch.float64))
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
