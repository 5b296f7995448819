"""Learning a law's velocity from a recorded particle flow (MATH.md sections 5 and 8).

Two routes. ``blob`` (low dimension): :func:`record` runs the blob flow on the train split and keeps (x, t, r, p) at log-spaced
times, with ``r = -u = grad p + x`` the reverse drift and ``p = F'(rho~)`` the blob pressure;
:func:`regression_loss` regresses a network on them and :class:`ParticleField` reads it back.

The network predicts ``r = grad p + x`` (vector output) or ``q = p + |x|^2/2`` (scalar output,
``r = grad q`` by autograd), i.e. the deviation from the quadratic pressure ``-|x|^2/2``.
So the pressure is extended quadratically outside the data and the reverse drift
``grad p + y`` there is the network's (at most linear) extrapolation, not ``+y`` as with
``grad p = 0``: no particle is thrown to infinity.

``mckean`` (high dimension, where a blob cannot resolve the density): :func:`record_mckean` runs
McKean-Vlasov particles (:mod:`zoo.mckean`) and keeps snapshots at times s = hold t_k with each
particle's calibrated kNN log density and the cloud's mean rate of change of it in log t. :func:`mckean_loss` then
trains by local denoising score matching on the particle SDE: from a snapshot particle x_s it
draws the exact Ornstein-Uhlenbeck step to a time t in [t_k, t_(k+1)] with the diffusivity D
following the particle's log density, x_t = e^-(t-s) x_s + sqrt(V) z,
V = int_s^t 2 D(tau) e^(-2(t-tau)) dtau, and regresses on grad p = -D_t z / sqrt(V). Its
conditional mean is grad(D rho_t)/rho_t = grad p as t - s -> 0 (D, not P' = m D: the
diffusivity differentiated together with the density). ``hold`` < 1 sets how far back the
snapshot lies: a longer step blurs the snapshot's own finite-N structure (heat at hold -> 0 is
plain denoising score matching from the data) at the price of freezing D along the step.
The network predicts sigma_t (grad p + a(t) x), sigma_t = sqrt(e^(2t) - 1) (order one at every t:
grad p grows like 1/sigma_t at the start; for heat with a = 1 it is v prediction), with a(t) =
d E[D] / E|x|^2 of the particles: the linear field whose flow moves the second moment as the
particles do (exact for a relaxing Barenblatt, h^-lambda; measured: the learned field's error at
t = 0.002 fell from 2.3 to 0.13 of the exact one, d = 64). After training, :func:`match_moments`
adds c(t) x to the field so that its reverse flow moves the second moment as the particles did
(the moment correction). Output ``both`` adds a
small level network predicting log D(x, t), for the noise sqrt(2 alpha D) of the stochastic
samplers. Output ``scalar`` instead regresses a pressure network on the kNN pressure F'(rho~) of
the particles (grad p by autograd): measured worse (d = 64 Barenblatt: grad p 0.53-0.9 of the
exact one, the kNN estimate's bias varies across the cloud), kept for comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor, nn

from zoo import mckean
from zoo.blob import Energy, calibrate_scale, flow
from zoo.contracts import BuildContext, Field, Law, Network, per_sample
from zoo.errors import ZooError

ROUTES = ("auto", "blob", "mckean")
OUTPUTS = ("auto", "vector", "scalar", "both")
WIDTHS = ("auto", "spacing", "scaled")
SCALED_MAX_DT = 0.01  # a scaled width allows long stable steps; this bounds the time-stepping error
MOMENT_DRAWS = 100_000  # stationary draws that fix the moments the kNN density is calibrated to
CALIBRATION_DRAWS = 1000  # reverse-flow samples that set a trained model's moment correction
BLOB_MAX_DIM = 2  # route=auto: the blob flow up to this dimension, McKean-Vlasov particles above
GAUSS_LEGENDRE = [torch.tensor(v, dtype=torch.float64) for v in np.polynomial.legendre.leggauss(8)]  # nodes, weights


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


def record_mckean(data: Tensor, energy: Energy, estimate: mckean.DensityEstimate, times: Tensor, hold: float,
                  generator: torch.Generator) -> dict[str, Tensor]:
    """McKean-Vlasov flow of data (N, *shape) for the intervals [t_k, t_(k+1)] of ``times`` (R+1,):
    rows (R N) of the snapshot particle ``xs`` at s = hold t_k, its log density ``lr`` and the
    cloud's mean d(log rho)/d(log t) ``slope`` there, the interval ``lo``, ``hi``; and, for the level network,
    the particle ``xl`` at t_k with its ``log_noise`` log D."""
    held = hold * times
    wanted = torch.unique(torch.cat([held, times[:-1]]))  # sorted
    snaps = {}
    for snap in mckean.flow(data, energy, wanted, estimate, generator):
        snaps[snap.t] = snap
    at = lambda t: snaps[float(wanted[torch.argmin((wanted - t).abs())])]  # noqa: E731
    shape = tuple(data.shape[1:])
    rows: dict[str, list[Tensor]] = {k: [] for k in ("xs", "s", "lr", "slope", "lo", "hi", "xl", "tl", "log_noise", "p", "pw", "k", "a_lo", "a_hi")}
    n = len(data)

    levels = [at(float(t)) for t in times[:-1]]
    noises = [mckean.noise_of(energy, level.log_rho) for level in levels]
    # a(t_k) = d E[D] / E|x|^2: the linear field that moves the second moment as the particles do
    slopes = [float(noise.mean() * level.x[0].numel() / level.x.flatten(1).square().sum(1).mean())
              for noise, level in zip(noises, levels)]
    for k, level in enumerate(levels):
        here, after = at(float(held[k])), at(float(held[k + 1]))
        full = lambda v: torch.full((n,), float(v), dtype=torch.float64)  # noqa: E731
        rows["xs"].append(here.x)
        rows["s"].append(full(here.t))
        rows["lr"].append(here.log_rho)
        # the cloud's mean rate: a particle's own kNN log density is too noisy (std ~0.7) to difference
        rows["slope"].append(full((after.log_rho - here.log_rho).mean() / math.log(after.t / here.t)))
        rows["lo"].append(full(times[k]))
        rows["hi"].append(full(times[k + 1]))
        rows["xl"].append(level.x)
        rows["tl"].append(full(level.t))
        rows["log_noise"].append(torch.log(noises[k]))
        pressure = energy.pressure(level.log_rho)
        rows["p"].append(pressure)
        rows["pw"].append(full(1.0 / float(pressure.var().clamp_min(1e-12))))
        rows["k"].append(full(k))
        rows["a_lo"].append(full(slopes[k]))
        rows["a_hi"].append(full(slopes[min(k + 1, len(slopes) - 1)]))  # the last: T is not recorded
    out = {k: torch.cat(v).float() for k, v in rows.items()}
    out["k"] = torch.cat(rows["k"]).long()
    for k in ("s", "lo", "hi", "tl", "a_lo", "a_hi"):  # times stay exact: they set the step variance
        out[k] = torch.cat(rows[k])
    out["xs"], out["xl"] = out["xs"].reshape(-1, *shape), out["xl"].reshape(-1, *shape)
    return out


def noise_scale(t: Tensor) -> Tensor:
    """sigma_t = sqrt(e^(2t) - 1) (n,) float64: the McKean network predicts sigma_t (grad p + a x). For
    heat from data x0 and a = 1 that is -v, v = e^-t z - s_t x0 (heat's default target, Salimans & Ho 2022):
    order one at every t, so every t weighs alike in the loss (s_t = sqrt(1 - e^(-2t)) in its place
    weighed t = 5 by e^-10 and cost heat on this route FID 2.2 against 1.2, digits, heun 20 NFE)."""
    return torch.sqrt(torch.expm1(2.0 * t.double()))


def step_variance(energy: Energy, lr: Tensor, slope: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """V = int_s^t 2 D(tau) e^(-2 (t - tau)) dtau (n,) float64, log rho(tau) = lr + slope log(tau/s),
    by 8-point Gauss-Legendre quadrature."""
    nodes, weights = GAUSS_LEGENDRE
    half = (0.5 * (t - s))[:, None]
    tau = 0.5 * (t + s)[:, None] + half * nodes[None, :]
    log_rho = lr[:, None] + slope[:, None] * torch.log(tau / s[:, None])
    integrand = 2.0 * mckean.noise_of(energy, log_rho) * torch.exp(-2.0 * (t[:, None] - tau))
    return (half * weights[None, :] * integrand).sum(1)


def mckean_targets(batch: dict[str, Tensor], energy: Energy, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(x_t, t, grad p target) of the local denoising step (module docstring) for the rows of a
    batch recorded by :func:`record_mckean`: t log-uniform in [lo, hi], x_t drawn from x_s."""
    xs = batch["xs"]
    n, device = xs.shape[0], xs.device
    s, lo, hi = batch["s"].double(), batch["lo"].double(), batch["hi"].double()
    lr, slope = batch["lr"].double(), batch["slope"].double()
    u = torch.rand(n, generator=generator, dtype=torch.float64).to(device)
    t = torch.exp(torch.log(lo) + u * torch.log(hi / lo))
    var = step_variance(energy, lr, slope, s, t)
    d_t = mckean.noise_of(energy, lr + slope * torch.log(t / s))
    z = torch.randn(xs.shape, generator=generator, dtype=xs.dtype).to(device)
    x_t = per_sample(torch.exp(s - t), xs).to(xs.dtype) * xs + per_sample(var.sqrt(), xs).to(xs.dtype) * z
    return x_t, t, -per_sample(d_t / var.sqrt(), xs).to(xs.dtype) * z


def pressure_loss(network: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    """Route mckean, output scalar: the pressure network q = p + |x|^2/2 regressed on the calibrated
    kNN pressure p = F'(rho) of the recorded particles, each time weighted by 1/Var_t(p)."""
    x = batch["xl"]
    q = network(x, batch["tl"].to(x.dtype))
    if q.shape != (x.shape[0],):
        raise ZooError(f"a scalar pressure network must return shape ({x.shape[0]},), got {tuple(q.shape)}")
    p = q - 0.5 * x.flatten(1).square().sum(1)
    return (batch["pw"] * (p - batch["p"]).square()).mean()


def mckean_loss(network: nn.Module, batch: dict[str, Tensor], energy: Energy, generator: torch.Generator,
                level: bool) -> Tensor:
    """Mean square error of sigma_t (grad p + a(t) x) on :func:`mckean_targets`, a(t) the
    moment-matched slope (:class:`McKeanModel`); with ``level`` also that of the level network's
    log D at the recorded particles."""
    x_t, t, grad = mckean_targets(batch, energy, generator)
    lo, hi = batch["lo"].double(), batch["hi"].double()
    a = batch["a_lo"] + (batch["a_hi"] - batch["a_lo"]) * torch.log(t / lo) / torch.log(hi / lo)
    inner = getattr(network, "module", network)  # under DistributedDataParallel
    if isinstance(inner, McKeanModel):
        with torch.no_grad():
            inner.table_t[batch["k"]] = lo
            inner.table_a[batch["k"]] = batch["a_lo"].double()
    target = per_sample(noise_scale(t), x_t).to(x_t.dtype) * (grad + per_sample(a, x_t).to(x_t.dtype) * x_t)
    loss = (network(x_t, t.to(x_t.dtype)) - target).square().mean()
    if level:
        predicted = network(batch["xl"], batch["tl"].to(x_t.dtype), part="level")
        loss = loss + (predicted - batch["log_noise"]).square().mean()
    return loss


class Level(nn.Module):
    """log D(x, t) (n,): a small MLP on (x, log t), for the noise of stochastic samplers."""

    def __init__(self, dim: int, width: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 1))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x.flatten(1), torch.log(t)[:, None].to(x.dtype)], 1))[:, 0]


class McKeanModel(nn.Module):
    """What route mckean trains: the user's network (``part="velocity"``), with output ``both`` a
    :class:`Level` (``part="level"``), and the tables of the moment-matched slope a(t_k) that the
    network's output is measured from (filled by the loss and by :meth:`fill`, saved and averaged
    with the weights) and of the moment correction c(t_k) (:func:`match_moments`, after training)."""

    def __init__(self, velocity: nn.Module, dim: int, records: int, level: bool) -> None:
        super().__init__()
        self.velocity = velocity
        self.level = Level(dim) if level else None
        self.register_buffer("table_t", torch.zeros(records, dtype=torch.float64))
        self.register_buffer("table_a", torch.ones(records, dtype=torch.float64))
        self.register_buffer("table_c", torch.zeros(records, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # a checkpoint from before the moment correction has no table_c: no correction
        state_dict.setdefault(prefix + "table_c", torch.zeros_like(self.table_c))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: Tensor, t: Tensor, part: str = "velocity") -> Tensor:
        if part == "level":
            if self.level is None:
                raise ZooError("this mckean model has no level network (trained with output=vector): no pressure")
            return self.level(x, t)
        return self.velocity(x, t)

    def linear(self, t: Tensor) -> Tensor:
        """a(t) + c(t) (n,) float64, interpolated in log t between the recorded times (1 before training)."""
        if not bool((self.table_t > 0).all()):
            return torch.ones_like(t, dtype=torch.float64)
        log_t, log_table = torch.log(t.double()), torch.log(self.table_t)
        j = torch.searchsorted(log_table, log_t).clamp(1, len(log_table) - 1)
        w = ((log_t - log_table[j - 1]) / (log_table[j] - log_table[j - 1])).clamp(0.0, 1.0)
        table = self.table_a + self.table_c
        return table[j - 1] + w * (table[j] - table[j - 1])

    @torch.no_grad()
    def fill(self, prepared: dict[str, Tensor]) -> None:
        """Every a(t_k) from :func:`record_mckean`'s rows (the loss fills only the levels its
        minibatches saw)."""
        self.table_t[prepared["k"]] = prepared["lo"].double()
        self.table_a[prepared["k"]] = prepared["a_lo"].double()


@torch.no_grad()
def match_moments(law: "ParticleLaw", model: McKeanModel, prepared: dict[str, Tensor], generator: torch.Generator,
                  n: int = CALIBRATION_DRAWS) -> None:
    """The moment correction c(t_k) of a trained mckean model: the learned reverse flow, run from n
    prior draws down the recorded times, is made to change its log second moment between
    consecutive t_k exactly as the particles' does (the particles' is within 0.5 % of the exact one
    on the relaxing Barenblatt, d = 64).

    The field moves ln E|x|^2 at the rate -2 + 2 (a + c - E[x . res] / E|x|^2) (res = out / sigma_t,
    the network's deviation from -(a + c) x), so a network whose deviation keeps a component along x
    moves the second moment too slowly or too fast; uncorrected, a 1-3 % slope error (d = 64) grew
    into 10 % of second moment over the reverse flow from a start whose field is 15x the stationary
    one. Per interval (Heun, steps of at most 15 % in t: one with the default 64 records; c
    interpolated in log t like a): a trial with c(t_k) = c(t_k+1), then c(t_k) moved by the linear
    response of the log second moment to it, and the interval run again (4 NFE per recorded time
    and step). Measured against correcting on the particles themselves
    (E[x . res] = 0 there): the reverse flow's samples are not the particles, and that left the
    d = 64 Barenblatt's second moment 5 % high at t_min (benchmarks/mckean_highdim.md)."""
    model.table_c.zero_()
    xl, k = prepared["xl"], prepared["k"]
    records = len(model.table_t)
    sums = torch.zeros(records, dtype=torch.float64, device=xl.device).index_add_(0, k, xl.flatten(1).double().square().sum(1))
    counts = torch.zeros(records, dtype=torch.float64, device=xl.device).index_add_(0, k, torch.ones_like(k, dtype=torch.float64))
    log_m2 = torch.log(sums / counts).tolist()
    shape = tuple(xl.shape[1:])
    stationary = float(law.prior(MOMENT_DRAWS, shape, generator).double().flatten(1).square().sum(1).mean())
    process = law.reverse(law.field(model))
    y = law.prior(n, shape, generator).to(device=xl.device, dtype=xl.dtype)
    moment = lambda v: math.log(float(v.flatten(1).double().square().sum(1).mean()))  # noqa: E731

    def run(v: Tensor, t: float, t_next: float) -> Tensor:  # Heun, geometric steps of at most 15 % in t
        steps = max(1, math.ceil(math.log(t / t_next) / 0.15))
        nodes = [t * (t_next / t) ** (j / steps) for j in range(steps + 1)]
        for s, s_next in zip(nodes[:-1], nodes[1:]):
            d0 = process.ode_drift(v, s)
            v = v + 0.5 * (s - s_next) * (d0 + process.ode_drift(v + (s - s_next) * d0, s_next))
        return v

    times = [law.T, *model.table_t.tolist()[::-1]]  # decreasing: T, t_(R-1), ..., t_0
    levels = [math.log(stationary), *log_m2[::-1]]
    for i in range(records):
        t, t_next, here = times[i], times[i + 1], records - 1 - i
        if i:  # the trial: c constant over the interval
            model.table_c[here] = model.table_c[here + 1]
        want = moment(y) + levels[i + 1] - levels[i]
        trial = run(y, t, t_next)
        if i == 0:  # above t_(R-1) the tables hold their last value: c weighs the whole interval
            weight = t - t_next
        else:  # int of the interpolation weight of t_next (linear in log t) over [t_next, t]
            span = math.log(t / t_next)
            weight = (t - t_next - t_next * span) / span
        model.table_c[here] -= (want - moment(trial)) / (2.0 * weight)
        y = run(y, t, t_next)


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
    """grad p from a network trained on a particle flow; one NFE per call. Route blob: grad p =
    r(x, t) - x; route mckean: grad p = out / sigma_t - a(t) x, and with the level network p from log D
    (the law converts); the scalar output (either route): p = q - |x|^2/2 and grad p by autograd.
    ``output``: the blob route's output where no ``law`` resolves the route by dimension (heat)."""

    def __init__(self, network: nn.Module, output: str = "vector", law: "ParticleLaw | None" = None) -> None:
        super().__init__()
        self.network = network
        self.output = output
        self.law = law

    def _route(self, x: Tensor) -> tuple[str, str]:
        if self.law is None:
            return "blob", self.output
        route = self.law.route_for(x[0].numel())
        return route, self.law.output_for(route)

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        route, output = self._route(x)
        if route == "mckean" and output != "scalar":
            a = self.network.linear(t) if isinstance(self.network, McKeanModel) else torch.ones_like(t, dtype=torch.float64)
            return self.network(x, t) / per_sample(noise_scale(t), x).to(x.dtype) - per_sample(a, x).to(x.dtype) * x
        r, _ = _drift_and_q(self.network, x, t, output, create_graph=False)
        return r.detach() - x

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        route, output = self._route(x)
        if route == "mckean" and output == "both":
            self.nfe += 1
            log_noise = self.network(x, t, part="level").double()
            return self.law.pressure_of_noise(log_noise, x[0].numel()).to(x.dtype)
        if output != "scalar":
            return super().pressure(x, t)
        self.nfe += 1
        return self.network(x, t) - 0.5 * x.flatten(1).square().sum(1)

    def grad_p_and_pressure(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """One evaluation of the pressure network gives both (one NFE)."""
        _, output = self._route(x)
        if output != "scalar":
            return super().grad_p_and_pressure(x, t)
        self.nfe += 1
        r, q = _drift_and_q(self.network, x, t, output, create_graph=False)
        return r.detach() - x, q.detach() - 0.5 * x.flatten(1).square().sum(1)


@dataclass(frozen=True)
class ParticleLaw(Law):
    """A law learned on a particle flow of its train split: subclasses give :meth:`energy` and
    :meth:`pressure_of_noise`.

    ``route``: ``blob`` (the blob method's flow, regression on its velocity), ``mckean``
    (McKean-Vlasov particles with a calibrated kNN density, local denoising score matching) or
    ``auto`` (default: blob up to dimension 2, mckean above; measured in
    benchmarks/mckean_highdim.md). ``output``: blob: ``scalar`` (default: a pressure network,
    grad p by autograd, and the pressure that stochastic samplers need; about 1.5x the cost of a
    training step of the other) or ``vector`` (grad p + x; deterministic samplers only); mckean:
    ``both`` (default: the velocity network and a small network for log D, the noise of
    stochastic samplers) or ``vector``. ``particles``: the flow runs on at most this many train
    points (a seeded subset; none: 500 for blob, whose cost grows like N^2 per step times N^(2/d)
    steps, 4000 for mckean, N^2 d per step at a fixed number of steps). ``records``: number of
    log-spaced times of the recorded flow.

    Blob only: ``width`` is the mollifier's width rule: ``spacing`` (``eps`` fixed, or none:
    twice the particles' mean nearest-neighbour distance, re-measured after every step so that
    it follows the cloud as it spreads or contracts), ``scaled`` (e(t) = c times the particles'
    RMS radius, c calibrated so that draws of the stationary law are stationary in the mean,
    :func:`zoo.blob.calibrate_scale`; keeps the second moment but gathers the radii into a shell
    at d >= 4) or ``auto`` (``spacing`` up to dimension 4, else ``scaled``). ``cfl``: the fraction
    of the stable explicit step e^2 / max P'(rho~) taken. ``stages``: at most this many
    Runge-Kutta-Chebyshev stages per step (:func:`zoo.blob.flow`). Defaults measured on gmm8
    (1 thread, mlp, 1500 steps): 500 particles record in ~1 s and sample as well as 2000.

    Mckean only: ``neighbours`` (k of the kNN density) and ``hold`` in (0, 1], how far back the
    snapshot of a training step lies (module docstring). Default 0.5: the regression target's
    conditional mean is then within 2.5 % of the exact relaxing Barenblatt's grad p at every t
    (d = 8 and 64; 0.1: up to 23 % off), at twice plain denoising's target variance (1: unbounded).
    On data made of separate points (digits) 0.1 measured better (FID 1.78 against 2.28 at 20
    NFE, one seed): the short steps of 0.5 regress on the N particles' own noise.
    """

    route: str = "auto"
    output: str = "auto"
    width: str = "auto"
    eps: float | None = None
    records: int = 64
    cfl: float = 0.5
    particles: int | None = None
    stages: int = 8
    neighbours: int = 5
    hold: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.route not in self.routes():
            self.fail(f"route must be one of {', '.join(self.routes())}, got {self.route!r}")
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
        if self.particles is not None and self.particles < 2:
            self.fail(f"particles must be at least 2, got {self.particles}")
        if self.neighbours < 1:
            self.fail(f"neighbours must be at least 1, got {self.neighbours}")
        if not 0 < self.hold <= 1:
            self.fail(f"hold must lie in (0, 1], got {self.hold}")
        if self.route in ("blob", "mckean"):
            self.output_for(self.route)

    @classmethod
    def routes(cls) -> tuple[str, ...]:
        return ROUTES

    @classmethod
    def upgrade(cls, options: dict[str, Any]) -> dict[str, Any]:
        # stored before the mckean route existed: those models were trained on the blob flow
        options.setdefault("route", "blob")
        options.setdefault("particles", 500)
        return options

    def route_for(self, dim: int) -> str:
        """The route this law takes on data of dimension ``dim``."""
        if self.route != "auto":
            return self.route
        return "blob" if dim <= BLOB_MAX_DIM else "mckean"

    def output_for(self, route: str) -> str:
        """The network output on ``route`` (the option, or that route's default)."""
        if self.output == "auto":
            return {"blob": "scalar", "mckean": "both"}.get(route, "vector")
        if (route, self.output) == ("blob", "both"):
            raise ZooError(f"law {self.name}: output=both does not apply to route blob (scalar or vector)")
        return self.output

    @property
    def network_output(self) -> str:  # type: ignore[override]
        return "scalar" if self.output in ("auto", "scalar") else "vector"

    @property
    def noise_ready(self) -> bool:
        return self.output != "vector"

    def energy(self, dim: int) -> Energy:
        """The particle methods' view of F for data of dimension ``dim``."""
        raise NotImplementedError

    def pressure_of_noise(self, log_noise: Tensor, dim: int) -> Tensor:
        """p = F'(rho) (n,) at the density whose D = P(rho)/rho is exp(log_noise) (n,), float64."""
        raise NotImplementedError

    def model(self, ctx: BuildContext, network: Network) -> nn.Module:
        dim = math.prod(ctx.shape)
        route = self.route_for(dim)
        output = self.output_for(route)
        if route == "mckean" and output != "scalar":
            velocity = network.build(replace(ctx, output="vector"))
            return McKeanModel(velocity, dim, self.records, level=output == "both")
        return network.build(replace(ctx, output=output))

    def flow_options(self, data: Tensor, generator: torch.Generator) -> dict[str, Any]:
        """Keyword options of :func:`zoo.blob.flow` for particles ``data`` (N, *shape): the width
        (calibrated on ``generator``-drawn stationary samples when scaled) and the stepping."""
        dim = math.prod(data.shape[1:])
        if self.width == "scaled" or (self.width == "auto" and self.eps is None and dim > 4):
            scale = calibrate_scale(self.prior(len(data), tuple(data.shape[1:]), generator), self.energy(dim))
            return {"scale": scale, "cfl": self.cfl, "max_dt": SCALED_MAX_DT, "max_stages": self.stages}
        return {"eps": self.eps, "cfl": self.cfl, "max_stages": self.stages}

    def density_estimate(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> mckean.DensityEstimate:
        """The kNN density calibrated on n ``generator``-drawn stationary samples (as many as
        particles: the kNN bias depends on n) against the moments of MOMENT_DRAWS more."""
        sq = self.prior(MOMENT_DRAWS, shape, generator).double().flatten(1).square().sum(1)
        moments = float(sq.mean()), float(sq.square().mean())
        return mckean.calibrate(self.prior(n, shape, generator), self.energy(math.prod(shape)), self.neighbours, moments)

    def particle_count(self, route: str) -> int:
        return self.particles if self.particles is not None else (500 if route == "blob" else 4000)

    def forward_flow(self, data: Tensor, times: Tensor, generator: torch.Generator) -> Iterator[tuple[float, Tensor, float]]:
        """(t, x (N, *shape), blob width or NaN) of the law's particle flow from ``data`` at ``times`` (>= 0,
        increasing), for ``zoo forward``."""
        shape = tuple(data.shape[1:])
        if self.route_for(math.prod(shape)) == "blob":
            for snap in flow(data, self.energy(math.prod(shape)), times, **self.flow_options(data, generator)):
                yield snap.t, snap.x, snap.eps
            return
        later = times[times > 0]
        for _ in range(len(times) - len(later)):
            yield 0.0, data, math.nan
        estimate = self.density_estimate(len(data), shape, generator)
        for snap in mckean.flow(data, self.energy(math.prod(shape)), later, estimate, generator):
            yield snap.t, snap.x.float(), math.nan

    def prepare(self, data: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Record the particle flow of (a ``generator``-drawn subset of) the train split."""
        shape = tuple(data.shape[1:])
        route = self.route_for(math.prod(shape))
        if route not in ("blob", "mckean"):
            raise ZooError(f"law {self.name}: route {route} has no particle flow")
        if len(data) > self.particle_count(route):
            data = data[torch.randperm(len(data), generator=generator)[:self.particle_count(route)]]
        energy = self.energy(math.prod(shape))
        if route == "mckean":
            estimate = self.density_estimate(len(data), shape, generator)
            times = record_times(self.T, self.t_min, self.records + 1)
            return record_mckean(data, energy, estimate, times, self.hold, generator)
        return record(data, energy, record_times(self.T, self.t_min, self.records), **self.flow_options(data, generator))

    def loss(self, network: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        if "xs" in batch and self.output_for("mckean") == "scalar":
            return pressure_loss(network, batch)
        if "xs" in batch:  # recorded by route mckean
            level = self.output_for("mckean") == "both"
            return mckean_loss(network, batch, self.energy(batch["xs"][0].numel()), generator, level)
        return regression_loss(network, batch, self.output_for("blob"))

    def finish(self, model: nn.Module, prepared: dict[str, Tensor], generator: torch.Generator) -> None:
        if isinstance(model, McKeanModel) and "xl" in prepared:
            model.fill(prepared)
            match_moments(self, model, prepared, generator)

    def field(self, network: nn.Module) -> Field:
        return ParticleField(network, law=self)
