"""The blob solver (MATH.md section 5) against a dense reference and the relaxing Barenblatt."""
import math

import pytest
import torch
from scipy.special import betaincinv
from scipy.stats import kstest

from zoo.blob import PowerEnergy, calibrate_scale, default_eps, flow, velocity
from zoo.errors import ZooError
from zoo_laws.pme import barenblatt_radius, barenblatt_sample, barenblatt_second_moment, relaxing_h



def dense_velocity(x, m, eps):
    """The blob velocity written out over all pairs in float64 (log-domain density)."""
    n, d = x.shape
    diff = x[:, None] - x[None]
    log_phi = -d / 2 * math.log(2 * math.pi * eps**2) - diff.square().sum(-1) / (2 * eps**2)
    log_rho = torch.logsumexp(log_phi, 1) - math.log(n)
    a = torch.exp((m - 2) * log_rho)
    grad_phi = -diff / eps**2 * torch.exp(log_phi)[..., None]
    return -(grad_phi * (a[:, None] + a[None])[..., None]).sum(1) / n - x, log_rho


@pytest.mark.parametrize("d, m, eps", [(2, 2.0, 0.2), (2, 1.0, 0.3), (3, 3.0, 0.4), (64, 1 + 2 / 64, 4.0)])
def test_velocity_matches_dense_reference(d, m, eps):
    x = torch.randn(300, d, generator=torch.Generator().manual_seed(d), dtype=torch.float64)
    u, log_rho = velocity(x, PowerEnergy(m), eps, chunk=64)
    ref, ref_log_rho = dense_velocity(x, m, eps)
    assert float((u - ref).norm() / (ref + x).norm()) < 1e-4
    assert float((log_rho - ref_log_rho).abs().max()) < 1e-4


def test_velocity_log_domain_does_not_overflow_in_high_dimension():
    # rho~ ~ exp(-300) here: rho~^(m-2) would overflow float32 and float64 alike
    x = 3.0 * torch.randn(200, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u, log_rho = velocity(x, PowerEnergy(1 + 2 / 256), 3.0)
    assert float(log_rho.max()) < -200
    assert torch.isfinite(u).all()


def test_velocity_chunk_and_translation_invariance():
    x = torch.randn(257, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u1, _ = velocity(x, PowerEnergy(2.0), 0.2, chunk=17)
    u2, _ = velocity(x, PowerEnergy(2.0), 0.2, chunk=257)
    shift = torch.tensor([5.0, -3.0], dtype=torch.float64)
    u3, _ = velocity(x + shift, PowerEnergy(2.0), 0.2)
    assert torch.allclose(u1, u2, atol=1e-6)
    assert torch.allclose(u3 + shift, u1, atol=1e-4)  # u = -grad p - x: only the -x part moves


def stratified_barenblatt(n, d, m, h0, seed=0):
    """Radii at the Beta quantiles (i + 1/2)/n and random directions: no radial sampling noise."""
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    s = torch.from_numpy(betaincinv(d / 2, 1 / (m - 1) + 1, u.numpy()))
    z = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return h0 * barenblatt_radius(d, m) * s.sqrt()[:, None] * z / z.norm(dim=1, keepdim=True)


@pytest.mark.parametrize("seed", [0, 1])
def test_flow_tracks_relaxing_barenblatt_d2_m2(seed):
    """Independent draws of a Barenblatt at h0 = 0.5 (the flow doubles the cloud's radius), the
    default width (the particles' spacing, followed as they spread): the particles' second moment
    within 1 % on t in [0.05, 2] (at t = 0 the draws' own sampling error, 1.1-1.4 % here, is all
    there is) and the radius law at t = 2 passes KS against the exact Beta law. Measured: at most
    0.86 %, KS 0.021 (critical 0.035)."""
    d, m, h0, n = 2, 2.0, 0.5, 1500
    x0 = barenblatt_sample(n, d, m, torch.Generator().manual_seed(seed), h=h0)
    times = torch.tensor([0.0, 0.05, 0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    snaps = list(flow(x0, PowerEnergy(m), times, max_stages=8))
    for snap in snaps[1:]:
        h = float(relaxing_h(torch.tensor(snap.t, dtype=torch.float64), h0, d, m))
        assert float(snap.x.square().sum(1).mean()) == pytest.approx(barenblatt_second_moment(d, m, h), rel=0.01), snap.t
    assert snaps[-1].eps > 2 * snaps[0].eps  # the width followed the spacing
    s = (snaps[-1].x.square().sum(1) / (h * barenblatt_radius(d, m)) ** 2).numpy()
    assert kstest(s, "beta", args=(d / 2, 1 / (m - 1) + 1)).statistic < 1.36 / math.sqrt(n)


def test_a_width_frozen_at_the_start_misses_the_relaxing_barenblatt():
    """Why the default width follows the spacing: frozen at the start's, the same flow as above
    (first draw) loses 5 % of the second moment by t = 2. (Once: its small width makes it the
    most expensive flow of this file.)"""
    d, m, h0, n = 2, 2.0, 0.5, 1500
    x0 = barenblatt_sample(n, d, m, torch.Generator().manual_seed(0), h=h0)
    t = torch.tensor([2.0], dtype=torch.float64)
    *_, frozen = flow(x0, PowerEnergy(m), t, eps=default_eps(x0), max_stages=8)
    h = float(relaxing_h(t[0], h0, d, m))
    assert float(frozen.x.square().sum(1).mean()) < 0.97 * barenblatt_second_moment(d, m, h)


def test_chebyshev_steps_track_relaxing_barenblatt_with_fewer_evaluations():
    """Runge-Kutta-Chebyshev (8 stages): the same 1 % on t in [0, 5] for a third of the velocity
    evaluations of explicit Euler (measured: 0.5 % error; 5.7x faster at N = 1000)."""
    d, m, h0, n = 2, 2.0, 0.7, 300
    x0 = stratified_barenblatt(n, d, m, h0)
    eps = default_eps(x0)
    x0 = x0 * math.sqrt(1 - d * eps**2 / float(x0.square().sum(1).mean()))
    times = torch.tensor([0.0, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0], dtype=torch.float64)
    class Counted(PowerEnergy):
        calls = 0

        def log_weight(self, log_rho):  # once per velocity evaluation
            Counted.calls += 1
            return super().log_weight(log_rho)

    counts = {}
    for stages in (1, 8):
        Counted.calls = 0
        for snap in flow(x0, Counted(m), times, eps=eps, max_stages=stages):
            h = float(relaxing_h(torch.tensor(snap.t, dtype=torch.float64), h0, d, m))
            smoothed = float(snap.x.square().sum(1).mean()) + d * eps**2
            assert abs(smoothed / barenblatt_second_moment(d, m, h) - 1) < 0.01, (stages, snap.t)
        counts[stages] = Counted.calls
    assert counts[8] < counts[1] / 2.5, counts  # measured 463 against 1460


def test_flow_returns_requested_times_and_fails_cleanly():
    x0 = torch.randn(50, 2, dtype=torch.float64)
    snaps = list(flow(x0, PowerEnergy(2.0), torch.tensor([0.0, 0.01, 0.02]), eps=0.3))
    assert [s.t for s in snaps] == pytest.approx([0.0, 0.01, 0.02])
    assert torch.equal(snaps[0].x, x0)

    class Broken(PowerEnergy):
        def log_weight(self, log_rho):
            return log_rho * float("nan")

    with pytest.raises(ZooError, match="non-finite"):
        list(flow(x0, Broken(2.0), torch.tensor([0.0, 0.01]), eps=0.3))
    with pytest.raises(ZooError, match="increasing"):
        list(flow(x0, PowerEnergy(2.0), torch.tensor([0.5, 0.1]), eps=0.3))


def test_heat_blob_route_records_ornstein_uhlenbeck_velocity():
    """heat:route=blob records -u = grad log rho + x; from N(0, h0^2 I) it is (1 - 1/h(t)^2) x
    (per particle the blob target is noisy at N = 400, about 30 %, so compare the fitted slope)."""
    from zoo.registry import get_registry

    heat = get_registry().create("law", "heat:route=blob:T=1:t_min=0.1")
    h0, n = 0.6, 400
    data = h0 * torch.randn(n, 2, generator=torch.Generator().manual_seed(3))
    rec = heat.prepare(data, torch.Generator())
    assert set(rec) == {"x", "t", "r", "p", "w"} and rec["x"].shape == (64 * n, 2)
    for t in (0.2, 0.5):
        k = (rec["t"] - t).abs() == (rec["t"] - t).abs().min()
        x, r = rec["x"][k].double(), rec["r"][k].double()
        h2 = 1 + (h0 * h0 - 1) * math.exp(-2 * float(rec["t"][k][0]))
        slope = float((r * x).sum() / x.square().sum())  # least squares r ~ c x: averages the blob noise
        assert slope == pytest.approx(1 - 1 / h2, rel=0.1)


def test_scaled_width_tracks_relaxing_barenblatt_d8():
    """d = 8: a spacing-sized width misses the second moment by 13-90 %; the scaled width
    e = c s(x), calibrated on stationary draws, follows the dilation within 1 % on t in [0, 2].
    The start is a relaxed configuration (stationary draws flowed for t = 2, then scaled by h0):
    independent draws are first rearranged by the flow, which costs about 2 % early on.
    Only the second moment: the wide blob (e ~ 0.3 s) slowly gathers the radii into a shell."""
    d, m, h0, n = 8, 1.25, 0.5, 300
    energy = PowerEnergy(m)
    c = calibrate_scale(stratified_barenblatt(n, d, m, 1.0, seed=1), energy)
    *_, relaxed = flow(stratified_barenblatt(n, d, m, 1.0), energy, torch.tensor([2.0]), scale=c, max_dt=0.01)
    x0 = h0 * relaxed.x
    assert float(x0.square().sum(1).mean()) == pytest.approx(barenblatt_second_moment(d, m, h0), rel=0.01)
    times = torch.tensor([0.0, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0], dtype=torch.float64)
    for snap in flow(x0, energy, times, scale=c):
        h = float(relaxing_h(torch.tensor(snap.t, dtype=torch.float64), h0, d, m))
        assert float(snap.x.square().sum(1).mean()) == pytest.approx(barenblatt_second_moment(d, m, h), rel=0.01), snap.t
    # a fixed spacing-sized width, same start: far off
    *_, fixed = flow(x0, energy, torch.tensor([2.0]))
    assert float(fixed.x.square().sum(1).mean()) < 0.9 * barenblatt_second_moment(d, m, h)
