"""PME law: exact Barenblatt sampling, the relaxing Barenblatt field and samplers, options."""
import math

import pytest
import torch
from scipy.stats import kstest

from zoo.contracts import Barenblatt, seeded_generator
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.sampling import generate, prior_samples
from zoo_laws.pme import PME, BarenblattData, barenblatt_radius, barenblatt_sample, barenblatt_second_moment



def radius_ks(x, d, m, h):
    """KS statistic of |X|^2 / (h R)^2 against its exact law Beta(d/2, 1/(m-1) + 1)."""
    s = (x.double().square().sum(1) / (h * barenblatt_radius(d, m)) ** 2).numpy()
    return kstest(s, "beta", args=(d / 2, 1 / (m - 1) + 1)).statistic


def test_radius_formula():
    assert barenblatt_radius(2, 2.0) ** 4 == pytest.approx(8 / math.pi, rel=1e-12)


@pytest.mark.parametrize("d, m", [(1, 2.0), (2, 2.0), (3, 1.5), (8, 1.25), (64, 1 + 1 / 64)])
def test_barenblatt_sampler_exact(d, m):
    n = 4000
    x = barenblatt_sample(n, d, m, seeded_generator(d), h=0.8)
    assert radius_ks(x, d, m, 0.8) < 1.63 / math.sqrt(n)  # 1 % critical value
    r2 = x.square().sum(1)
    assert float(r2.max()) <= (0.8 * barenblatt_radius(d, m)) ** 2 * (1 + 1e-9)
    assert float(r2.mean()) == pytest.approx(barenblatt_second_moment(d, m, 0.8), rel=4 * float(r2.std()) / float(r2.mean()) / math.sqrt(n))
    assert float(x.mean(0).norm()) < 4 * math.sqrt(float(r2.mean()) / n)
    # the law's prior is the same sampler at h = 1, reshaped to the data shape
    prior = PME(m=m).prior(5, (d,), seeded_generator(0))
    assert prior.shape == (5, d) and prior.dtype == torch.float32


def test_default_m_and_options():
    assert PME().exponent(2) == 2.0 and PME().exponent(64) == pytest.approx(1 + 2 / 64)
    assert PME(m=3).exponent(2) == 3.0
    assert PME(output="vector").network_output == "vector" and PME().network_output == "scalar"
    registry = get_registry()
    for spec, match in [("pme:m=1", "m must be"), ("pme:m=0.5", "m must be"), ("pme:output=tensor", "output"),
                        ("pme:eps=-1", "eps"), ("pme:mm=2", "unknown option"), ("pme:width=wide", "width"),
                        ("pme:width=scaled:eps=0.1", "cannot be combined"), ("pme:stages=0", "stages")]:
        with pytest.raises(ZooError, match=match):
            registry.create("law", spec)
    with pytest.raises(ZooError, match="m must be"):
        BarenblattData(m=1.0)


def test_exact_field_and_mismatch():
    data = get_registry().create("dataset", "barenblatt:dim=3:m=2:h0=0.5:n_train=10:n_test=10")
    assert data.exact == Barenblatt(m=2.0, dim=3, h0=0.5) and data.train().shape == (10, 3)
    with pytest.raises(ZooError, match="m = 1.66667 but the data"):
        PME().exact_field(data.exact)  # default m = 1 + 2/3
    field = PME(m=2).exact_field(data.exact)
    x = torch.randn(4, 3)
    t = torch.full((4,), 5.0)
    # near stationarity grad p = -x (u = 0) and the pressure is (R^2 - |x|^2)/2
    assert torch.allclose(field.grad_p(x, t), -x, atol=1e-3)
    assert torch.allclose(field.pressure(x, t), (barenblatt_radius(3, 2.0) ** 2 - x.square().sum(1)) / 2, atol=1e-3)
    ratio = PME(m=2).pressure_ratio(field, 10 * x, t)  # far outside: no noise
    assert torch.equal(ratio, torch.zeros(4))
    assert field.nfe == 3
    with pytest.raises(ZooError, match="dimension 3"):
        field.grad_p(torch.randn(4, 2), t)


@pytest.mark.parametrize("sampler, n, nfe", [("heun", 1500, 100), ("em:alpha=0.5", 800, 400), ("em:alpha=1", 800, 400)])
def test_exact_reverse_returns_initial_barenblatt(sampler, n, nfe):
    """MATH.md section 6: with the exact field the ODE and the alpha family reproduce rho_0.
    (Euler-Maruyama is first order and the noise sqrt(2 alpha P/rho) is not Lipschitz at the free
    boundary: at 200 steps its KS statistic is still about 0.04, hence 400 here.)"""
    d, m, h0 = 2, 2.0, 0.5
    law = PME(m=m)
    field = law.exact_field(Barenblatt(m=m, dim=d, h0=h0))
    out = generate(law, field, get_registry().create("sampler", sampler), n=n, nfe=nfe, shape=(d,), seed=1)
    assert torch.isfinite(out.samples).all()
    assert radius_ks(out.samples, d, m, h0) < 1.63 / math.sqrt(n)
    r2 = float(out.samples.double().square().sum(1).mean())
    assert r2 == pytest.approx(barenblatt_second_moment(d, m, h0), rel=4 * 0.71 / math.sqrt(n))  # 4 sigma


@pytest.mark.parametrize("output", ["vector", "scalar"])
def test_learned_on_blob_flow_approximates_exact_velocity(output):
    """Train on the recorded blob flow of a relaxing Barenblatt; the learned grad p must be close
    to the exact -h^-lambda x at the particles, and the scalar network serves the em sampler."""
    from zoo.training import TrainConfig, train

    data = "barenblatt:h0=0.7:m=2:n_train=300:n_test=10"
    law_spec = f"pme:m=2:output={output}:records=12:T=2:t_min=0.05"
    trained = train(TrainConfig(law_spec, "mlp:width=64:depth=2", data, steps=250, batch_size=256,
                                lr=3e-3, ema=0.9, device="cpu"), None, progress=False)
    field = trained.field
    exact = PME(m=2).exact_field(Barenblatt(m=2.0, dim=2, h0=0.7))
    x = barenblatt_sample(500, 2, 2.0, seeded_generator(5), h=0.8).float()
    for t in (0.2, 1.0):
        tt = torch.full((500,), t)
        err = (field.grad_p(x, tt) - exact.grad_p(x, tt)).norm() / exact.grad_p(x, tt).norm()
        assert float(err) < 0.1, (t, float(err))
    if output == "scalar":
        out = generate(trained.law, field, get_registry().create("sampler", "em:alpha=0.5"), n=200, nfe=50, shape=(2,))
        assert torch.isfinite(out.samples).all() and float(out.samples.norm(dim=1).max()) < 2 * barenblatt_radius(2, 2.0)
    else:
        with pytest.raises(ZooError, match="pressure"):
            field.pressure(x, torch.ones(500))


def test_a_pressure_network_costs_one_nfe_per_stochastic_step():
    """em on a scalar pressure network: grad p and p come from one evaluation, so the counted NFE
    equals the budget, as for heat (equal-cost comparisons depend on it)."""
    from zoo.contracts import BuildContext
    from zoo.registry import get_registry
    from zoo.sampling import generate

    registry = get_registry()
    law = registry.create("law", "pme:m=2:output=scalar")
    data = registry.create("dataset", "gmm8")
    net = registry.create("network", "mlp:width=16:depth=2").build(BuildContext((2,), "scalar", law, data))
    field = law.field(net)
    for nfe in (5, 12):
        out = generate(law, field, registry.create("sampler", "em:alpha=1"), n=20, nfe=nfe, shape=(2,))
        assert out.nfe == nfe


@pytest.mark.parametrize("target", ["eps", "v"])
def test_source_route_of_a_point_mass_is_the_relaxing_barenblatt(target):
    """route=source: for data a point mass at 0, E[B | x] = x / b, so grad p = -b^-lambda x, the
    relaxing Barenblatt from h0 -> 0 (MATH.md section 4), and the reverse ODE is the dilation
    X_t_min = b(t_min)/b(T) X_T (a sign or power error in b^(1-lambda) would break both).
    With x0 = 0 the v target is a eps / n."""
    from zoo_laws.pme import SourceField, relaxing_h, source_path, source_scale

    d, m = 3, 2.0
    law = PME(m=m, route="source", target=target)
    lam, sigma = law.source_constants(d)
    assert lam == d * (m - 1) + 2 and sigma**2 == pytest.approx(barenblatt_second_moment(d, m) / d)
    t = torch.tensor([1e-3, 0.1, 1.0, 5.0], dtype=torch.float64)
    assert torch.allclose(source_scale(t, lam), relaxing_h(t, 1e-9, d, m), rtol=1e-6)

    class PointMassOracle(torch.nn.Module):  # E[B | x] / sigma for data = delta_0, or its v
        def forward(self, x, t):
            eps = x / (source_scale(t.double(), lam).to(x.dtype)[:, None] * sigma)
            a, _, n = source_path(t, lam, sigma)
            return eps if target == "eps" else (a / n).to(x.dtype)[:, None] * eps

    field = SourceField(PointMassOracle(), law)
    x = barenblatt_sample(6, d, m, seeded_generator(0), h=0.3).float()
    for tt in (0.01, 0.5):
        ts = torch.full((6,), tt)
        h = float(relaxing_h(torch.tensor(tt, dtype=torch.float64), 1e-9, d, m))
        assert torch.allclose(field.grad_p(x, ts), -h ** (-lam) * x, rtol=1e-4)
    out = generate(law, field, get_registry().create("sampler", "heun:final=none"), n=200, nfe=200, shape=(d,), seed=2)
    ratio = float(out.samples.norm(dim=1).mean() / barenblatt_sample(200, d, m, seeded_generator(9)).norm(dim=1).mean())
    b = source_scale(torch.tensor([law.t_min, law.T], dtype=torch.float64), lam)
    assert ratio == pytest.approx(float(b[0] / b[1]), rel=0.1)


def test_source_route_learns_the_marginal_velocity_and_refuses_noise():
    """Train on two data points in d = 2: the learned grad p matches the exact flow-matching field
    -b^(1-lambda) E[B | x], E[B | x] = sum_j w_j (x - e^-t y_j)/b with w_j proportional to
    rho_inf((x - e^-t y_j)/b); stochastic samplers are refused in one line (no pressure)."""
    from zoo.contracts import BuildContext
    from zoo_laws.pme import source_scale

    registry = get_registry()
    d, m = 2, 2.0
    law = registry.create("law", f"pme:m={m}:route=source:T=2:t_min=0.05")
    lam, sigma = law.source_constants(d)
    points = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    net = registry.create("network", "mlp:width=64:depth=3").build(
        BuildContext((d,), law.network_output, law, registry.create("dataset", "gmm8")))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(600):
        opt.zero_grad()
        law.loss(net, {"x0": points[torch.randint(2, (256,), generator=gen)]}, gen).backward()
        opt.step()
    field = law.field(net)
    t = 0.3
    b, decay, radius = float(source_scale(torch.tensor(t), lam)), math.exp(-t), barenblatt_radius(d, m)
    x = (decay * points[torch.randint(2, (400,), generator=gen)] + b * law.prior(400, (d,), gen)).double()
    rel = (x[:, None] - decay * points.double()[None]) / b  # (400, 2, d): B if x came from point j
    w = (radius**2 - rel.square().sum(-1)).clamp_min(0) ** (1 / (m - 1))
    w = w / w.sum(1, keepdim=True)
    exact = -b ** (1 - lam) * (w[..., None] * rel).sum(1)
    with torch.no_grad():
        learned = field.grad_p(x.float(), torch.full((400,), t)).double()
    assert float((learned - exact).norm() / exact.norm()) < 0.15
    with pytest.raises(ZooError, match="stochastic: its noise needs the pressure"):
        generate(law, field, registry.create("sampler", "em:alpha=1"), n=10, nfe=5, shape=(d,))
    assert not registry.create("sampler", "pc").supports(law) and registry.create("sampler", "heun").supports(law)


def test_route_option_is_checked_and_source_route_conforms():
    from zoo.testing import check_law

    report = check_law("pme:route=source:m=2")  # raises on any breach of the law contract
    assert "refused" in report["pressure_ratio"]  # no pressure: deterministic samplers only
    with pytest.raises(ZooError, match="route must be one of auto, blob, mckean, source"):
        get_registry().create("law", "pme:route=dsm")
    assert get_registry().create("law", "pme:route=source").target == "v"
    check_law("pme:route=source:m=2:target=eps")
    with pytest.raises(ZooError, match="target must be one of eps, v"):
        get_registry().create("law", "pme:route=source:target=x0")
    with pytest.raises(ZooError, match="target applies to route=source only"):
        get_registry().create("law", "pme:target=v")


def test_source_route_is_not_the_pme_for_spread_data():
    """What the docstring claims of the surrogate: from a Barenblatt of h0 = 0.5 its second moment
    e^-2t h0^2 + b(t)^2 (in units of rho_inf's) overshoots the PME's h(t)^2 by up to 41 %."""
    from zoo_laws.pme import relaxing_h, source_scale

    t = torch.logspace(-4, 1, 2000, dtype=torch.float64)
    for d in (2, 64):
        m = 1 + 2 / d
        lam = d * (m - 1) + 2
        ratio = (torch.exp(-2 * t) * 0.25 + source_scale(t, lam) ** 2) / relaxing_h(t, 0.5, d, m) ** 2
        assert float(ratio.max()) == pytest.approx(1.41, abs=0.01)
        assert float(ratio[-1]) == pytest.approx(1.0, abs=1e-6)  # both end at rho_inf


def source_points_field(law: PME, points: torch.Tensor):
    """The exact source-route field of data = the empirical measure of ``points`` (n, d):
    grad p = -b^(1-lambda) E[B | x], E[B | x] = sum_j w_j (x - e^-t y_j) / b, w_j proportional to
    rho_inf((x - e^-t y_j) / b) (softmax of the log-weights: defined outside every support too)."""
    from zoo.contracts import FunctionField
    from zoo_laws.pme import source_scale

    d = points.shape[1]
    m, (lam, _) = law.exponent(d), law.source_constants(d)
    radius, y = barenblatt_radius(d, m), points.double()

    def grad_p(x, t):
        t = t.double()[:, None, None]
        b = source_scale(t, lam)
        rel = (x.double()[:, None] - torch.exp(-t) * y[None]) / b  # (n, N, d)
        logw = torch.log((radius**2 - rel.square().sum(-1)).clamp_min(1e-300)) / (m - 1)
        w = torch.softmax(logw, dim=1)
        return (-(b[:, :, 0] ** (1 - lam)) * (w[..., None] * rel).sum(1)).to(x.dtype)

    return FunctionField(grad_p)


def test_dpmpp_reverses_the_source_route_exactly_for_one_point():
    """For data = one point y, E[x0 | x] = y at every t, so DPM-Solver++ (data prediction) is exact at
    any NFE: x_t_min = e^-t_min y + b(t_min)/b(T) (x_T - e^-T y). A wrong gain b^lambda, sigma or
    alpha in the source route's affine path breaks this."""
    from zoo_laws.pme import source_scale

    registry = get_registry()
    law = registry.create("law", "pme:m=2:route=source:T=2:t_min=0.05")
    y = torch.tensor([[0.7, -0.4]])
    lam, _ = law.source_constants(2)
    b = source_scale(torch.tensor([law.t_min, law.T], dtype=torch.float64), lam)
    prior = prior_samples(law, (2,), 4, range(50))  # the x_T that generate() draws for seed 4
    for spec in ("dpmpp:final=none", "dpmpp:order=3:final=none"):  # to t_min
        out = generate(law, source_points_field(law, y), registry.create("sampler", spec), n=50, nfe=5, shape=(2,), seed=4)
        exact = math.exp(-law.t_min) * y + float(b[0] / b[1]) * (prior.double() - math.exp(-law.T) * y)
        assert torch.allclose(out.samples.double(), exact, atol=1e-5), spec


def test_dpmpp_converges_on_the_source_route_at_second_order():
    """Two points, m = 1.25 (a smooth kernel), against rk45 at tolerance 1e-10: DPM-Solver++ 2M's
    error falls about 4x per doubling of NFE (measured 3.3-4.0) and at 20 NFE it is at least twice
    as accurate as heun at 19 (measured 2.4x); euler's falls 2x (order 1, measured 1.99)."""
    registry = get_registry()
    law = registry.create("law", "pme:m=1.25:route=source:T=2:t_min=0.05")
    field = source_points_field(law, torch.tensor([[-1.0, 0.0], [1.0, 0.5]]))

    def error(spec, nfe):
        run = lambda s, k: generate(law, field, registry.create("sampler", s + ":final=none"), n=200, nfe=k,  # noqa: E731
                                    shape=(2,), seed=3)
        y, ref = run(spec, nfe).samples.double(), run("rk45:rtol=1e-10:atol=1e-10", None).samples.double()
        return float((y - ref).norm(dim=1).square().mean().sqrt())

    e20, e40, e80 = (error("dpmpp", k) for k in (20, 40, 80))
    assert 2.8 < e20 / e40 < 5.0 and 2.8 < e40 / e80 < 5.0, (e20, e40, e80)
    assert e20 < 0.5 * error("heun", 19)
    assert 1.8 < error("euler", 20) / error("euler", 40) < 2.2


def test_source_route_empirical_field_is_exact_streamed_and_memorises():
    """pme:route=source --network empirical: the closed-form field of the training set. It equals the
    direct formula (on draws of the diffused data, all inside some kernel), chunking changes nothing,
    a sample outside every support is pulled by the nearest kernel, and the reverse ODE lands each
    sample within b(t_min) R of a training point: it copies them (the memorisation reference)."""
    from zoo_laws.pme import SourceEmpiricalField, source_scale

    registry = get_registry()
    law = registry.create("law", "pme:m=1.25:route=source:T=2:t_min=1e-7")
    gen = seeded_generator(5)
    points = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    lam, _ = law.source_constants(3)
    for t in (1e-3, 0.3, 1.5):
        b = float(source_scale(torch.tensor(t, dtype=torch.float64), lam))
        x = math.exp(-t) * points[torch.randint(40, (60,), generator=gen)] + b * law.prior(60, (3,), gen).double()
        tt = torch.full((60,), t, dtype=torch.float64)
        whole = SourceEmpiricalField(points, law).grad_p(x, tt)
        assert torch.allclose(whole, source_points_field(law, points).grad_p(x, tt), atol=1e-9 * whole.abs().max())
        assert torch.allclose(SourceEmpiricalField(points, law, chunk=7).grad_p(x, tt), whole, atol=1e-12 * whole.abs().max())
    far = torch.tensor([[30.0, 0.0, 0.0]], dtype=torch.float64)  # outside every kernel at t = 0.3
    nearest = points[(points - far).norm(dim=1).argmin()]
    u = SourceEmpiricalField(points, law).velocity(far, torch.tensor([0.3], dtype=torch.float64))
    assert torch.isfinite(u).all() and float((u[0] / u.norm()) @ ((math.exp(-0.3) * nearest - far[0]) / (math.exp(-0.3) * nearest - far[0]).norm())) < -0.99

    out = generate(law, law.empirical_field(points.float()), registry.create("sampler", "heun"), n=100, nfe=200, shape=(3,), seed=1)
    reach = float(source_scale(torch.tensor(law.t_min, dtype=torch.float64), lam)) * barenblatt_radius(3, 1.25)
    gap = torch.cdist(out.samples.double(), math.exp(-law.t_min) * points).min(dim=1).values
    assert gap.max() < reach and reach < 0.1 * torch.pdist(points).min()
