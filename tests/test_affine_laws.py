"""The laws with affine marginals (ve, vp, rf): their forward statements, the signs of the reverse
family built from them, their exact and learned fields, grids, and the samplers they run with."""
from __future__ import annotations

import math

import pytest
import torch

from zoo.contracts import GaussianMixture
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.sampling import generate
from zoo.testing import check_law
from zoo_laws.affine import EmpiricalField, LearnedField, MixtureField

LAWS = ["ve", "vp", "vp:schedule=cosine", "rf"]


def law_of(spec: str):
    return get_registry().create("law", spec)


def mixture() -> GaussianMixture:
    """Three anisotropic components in 2-D."""
    means = torch.tensor([[1.5, 0.0], [-1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    covs = torch.stack([torch.diag(torch.tensor(v, dtype=torch.float64)) for v in ([0.04, 0.01], [0.02, 0.09], [0.05, 0.05])])
    covs[1, 0, 1] = covs[1, 1, 0] = 0.01
    return GaussianMixture(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64), means, covs)


def posterior_mean(mix: GaussianMixture, x: torch.Tensor, a: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """E[x0 | a x0 + s z = x] for mixture data, written independently of zoo's fields (per-sample a, s (n,))."""
    out = []
    for xi, ai, si in zip(x.double(), a.double(), s.double()):
        eye = torch.eye(xi.shape[0], dtype=torch.float64)
        covs = ai**2 * mix.covs + si**2 * eye  # covariance of x given component k
        dist = torch.distributions.MultivariateNormal(ai * mix.means, covs)
        w = torch.softmax(torch.log(mix.weights) + dist.log_prob(xi), 0)
        gains = ai * mix.covs @ torch.linalg.inv(covs)  # Cov(x0, x) Cov(x)^-1 per component
        means = mix.means + (gains @ (xi - ai * mix.means)[:, :, None])[:, :, 0]
        out.append((w[:, None] * means).sum(0))
    return torch.stack(out)


@pytest.mark.parametrize("spec", LAWS)
def test_the_statement_is_consistent_with_the_path(spec):
    """f = (a'/a) x and D = s s' - (a'/a) s^2 against finite differences of the stated a(t), s(t);
    the prior is s(T) z; affine_path's gain is s^2 / D."""
    law = law_of(spec)
    t = torch.tensor([0.01, 0.3, 0.9 * law.T], dtype=torch.float64)
    dt = 1e-6 * t
    (a, s), (a1, s1), (a0, s0) = law.path(t), law.path(t + dt), law.path(t - dt)
    da, ds = (a1 - a0) / (2 * dt), (s1 - s0) / (2 * dt)
    rate, noise = law.rates(t)
    torch.testing.assert_close(rate, da / a, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(noise, s * ds - rate * s * s, rtol=1e-6, atol=1e-9)
    x = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(law.drift(x, t), rate[:, None] * x)
    torch.testing.assert_close(law.pressure_ratio(None, x, t), noise)
    alpha, sigma, gain = law.affine_path(0.3, 2)
    assert (alpha, sigma) == pytest.approx((float(a[1]), float(s[1])))
    assert gain == pytest.approx(float(s[1] ** 2 / noise[1]))
    assert law.affine_path(0.0, 2) == pytest.approx((1.0, 0.0, 0.0))
    prior = law.prior(4000, (2,), torch.Generator().manual_seed(0))
    assert prior.std().item() == pytest.approx(float(law.path(torch.tensor([law.T], dtype=torch.float64))[1]), rel=0.03)


@pytest.mark.parametrize("spec", LAWS)
def test_the_probability_flow_of_a_gaussian_is_its_exact_dilation(spec):
    """N(0, h0^2 I) data: x_t ~ N(0, (a^2 h0^2 + s^2) I) and the probability-flow map is the
    dilation x_t -> x_t sqrt(v_t' / v_t). Euler with the wrong sign of f or grad p moves away from it."""
    law, h0 = law_of(spec), 0.5
    target = GaussianMixture(torch.ones(1), torch.zeros(1, 2), h0**2 * torch.eye(2)[None])
    field = law.exact_field(target)
    x = law.prior(200, (2,), torch.Generator().manual_seed(1)).double()
    var = lambda t: float(law.path(torch.tensor([t], dtype=torch.float64))[0] ** 2 * h0**2  # noqa: E731
                          + law.path(torch.tensor([t], dtype=torch.float64))[1] ** 2)
    x = x * math.sqrt(var(law.T)) / float(law.path(torch.tensor([law.T], dtype=torch.float64))[1])  # exact rho_T
    y = get_registry().create("sampler", "heun").sample(law.reverse(field), x, law.time_grid(400), None)
    torch.testing.assert_close(y, x * math.sqrt(var(law.t_min) / var(law.T)), rtol=2e-4, atol=1e-6)


@pytest.mark.parametrize("spec", ["heat"] + LAWS)
def test_every_member_of_the_reverse_family_keeps_the_marginals(spec):
    """N(0, h0^2 I) data: rho_t = N(0, v_t I). A linear reverse SDE dY = c Y ds + std dW keeps it
    iff dv/ds = -dv/dt = 2 c v + std^2, for every alpha: checks the signs of f, grad p and D."""
    law, h0 = law_of(spec), 0.5
    field = law.exact_field(GaussianMixture(torch.ones(1), torch.zeros(1, 2), h0**2 * torch.eye(2)[None]))
    y = torch.tensor([[0.7, -0.2]], dtype=torch.float64)
    for t in (0.01, 0.2, 0.7 * law.T):
        path = [law.affine_path(u, 2) for u in (t - 1e-6, t + 1e-6)]
        dv_dt = ((path[1][0] ** 2 - path[0][0] ** 2) * h0**2 + path[1][1] ** 2 - path[0][1] ** 2) / 2e-6
        a, s, _ = law.affine_path(t, 2)
        v = a * a * h0**2 + s * s
        for alpha in (0.0, 0.5, 1.0):
            drift, std = law.reverse(field, alpha).sde_terms(y, t)
            c = drift / y
            torch.testing.assert_close(c, c[:, :1].expand(1, 2))  # linear: the same rate per coordinate
            assert 2 * float(c[0, 0]) * v + float(std[0]) ** 2 == pytest.approx(-dv_dt, rel=1e-5, abs=1e-7)


def test_ve_probability_flow_is_edms_ode_and_its_grid_is_karras():
    """dY/ds = -dx/dsigma = (D(x; sigma) - x) / sigma (Karras et al. 2022, eq. 3 with sigma(t) = t),
    D the mixture's posterior mean; grid=edm is (sigma_max^(1/7) + i/K (sigma_min^(1/7) - sigma_max^(1/7)))^7."""
    law, mix = law_of("ve"), mixture()
    process = law.reverse(law.exact_field(mix))
    x = 3.0 * torch.randn(6, 2, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.1, 0.5, 1.0, 5.0, 40.0], dtype=torch.float64)
    denoised = posterior_mean(mix, x, torch.ones(6, dtype=torch.float64), sigma)
    torch.testing.assert_close(process.ode_drift(x, sigma), (denoised - x) / sigma[:, None])
    i = torch.linspace(0, 1, 11, dtype=torch.float64)
    karras = (80 ** (1 / 7) + i * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    torch.testing.assert_close(law.time_grid(10, "edm"), karras)


@pytest.mark.parametrize("spec", ["vp", "vp:schedule=cosine", "rf"])
def test_edm_grids_are_karras_in_the_laws_noise_level(spec):
    law = law_of(spec)
    grid = law.time_grid(8, "edm")
    a, s = law.path(grid)
    level = (s / a) ** (1 / 7)
    steps = level[1:] - level[:-1]
    torch.testing.assert_close(steps, steps.mean().expand(8), rtol=1e-9, atol=0)
    assert grid[0] == law.T and grid[-1] == law.t_min


@pytest.mark.parametrize("spec", LAWS)
def test_data_prediction_is_the_posterior_mean(spec):
    law, mix = law_of(spec), mixture()
    process = law.reverse(law.exact_field(mix))
    x = 2.0 * torch.randn(5, 2, dtype=torch.float64)
    for t in (0.02, 0.4 * law.T):
        a, s = law.path(torch.full((5,), t, dtype=torch.float64))
        torch.testing.assert_close(process.data_prediction(x, t), posterior_mean(mix, x, a, s))


class Oracle(torch.nn.Module):
    """A 'network' that outputs the exact target of its law (from the mixture's posterior mean)."""

    def __init__(self, law, mix):
        super().__init__()
        self.law, self.mix = law, mix

    def forward(self, inp, t):
        law = self.law
        a, s = law.path(t.double())
        rate, noise = law.rates(t.double())
        a, s, rate, noise = (c[:, None] for c in (a, s, rate, noise))
        x = inp.double()
        if law.target == "edm":  # undo the input scaling c_in x / a
            x = inp.double() * a / law._edm_scales(a, s)[2]
        x0 = posterior_mean(self.mix, x, a[:, 0], s[:, 0])
        eps = (x - a * x0) / s
        if law.target == "eps":
            return eps
        if law.target == "v":
            return (a * eps - s * x0) / torch.sqrt(a * a + s * s)
        if law.target == "flow":
            return rate * a * x0 + (noise + rate * s * s) / s * eps
        c_skip, c_out, _ = law._edm_scales(a, s)
        return (x0 - c_skip * x / a) / c_out


@pytest.mark.parametrize("spec", ["ve", "ve:target=eps", "vp", "vp:target=eps", "vp:target=flow", "rf", "rf:target=v", "rf:target=edm"])
def test_every_target_is_read_into_the_exact_field(spec):
    law, mix = law_of(spec), mixture()
    learned, exact = LearnedField(Oracle(law, mix), law), MixtureField(mix, law)
    x = 2.0 * torch.randn(4, 2, dtype=torch.float64)
    for t in (0.01, 0.3, 0.8 * law.T):
        tt = torch.full((4,), t, dtype=torch.float64)
        torch.testing.assert_close(learned.grad_p(x, tt), exact.grad_p(x, tt), rtol=1e-6, atol=1e-8)
    assert learned.nfe == 3


@pytest.mark.parametrize("spec", LAWS)
def test_the_empirical_field_is_the_mixture_of_its_points(spec):
    law = law_of(spec)
    points = torch.randn(7, 2, dtype=torch.float64)
    dirac = GaussianMixture(torch.ones(7, dtype=torch.float64) / 7, points, torch.zeros(7, 2, 2, dtype=torch.float64))
    x, t = 2.0 * torch.randn(5, 2, dtype=torch.float64), torch.linspace(0.01, 0.9 * law.T, 5, dtype=torch.float64)
    torch.testing.assert_close(EmpiricalField(points, law, chunk=3).grad_p(x, t), MixtureField(dirac, law).grad_p(x, t))


@pytest.mark.parametrize("spec", ["ve", "vp:schedule=cosine", "rf"])
def test_the_laws_pass_the_conformance_suite(spec):
    report = check_law(spec)
    assert report["stationary_m2_error"] < 0.05


def test_options_are_checked():
    for bad in ["ve:target=score", "vp:schedule=sigmoid", "vp:schedule=cosine:T=1.0", "rf:T=1.0", "ve:t_dist=beta",
                "vp:beta_min=0", "ve:sigma_data=0"]:
        with pytest.raises(ZooError):
            law_of(bad)
    assert law_of("vp").T == 1.0 and law_of("vp:schedule=cosine").T == pytest.approx(0.9946)
    assert law_of(law_of("vp:schedule=cosine").spec) == law_of("vp:schedule=cosine")


@pytest.mark.parametrize("spec", LAWS)
def test_grids_ending_at_zero_land_on_the_data_prediction(spec):
    """A grid whose last node is t = 0: DPM-Solver++ lands on the data prediction at the node before
    (k-diffusion's convention); so do Euler and Heun (whose last step is an Euler step) on ve, where
    the Euler step x + sigma (D - x) / sigma is exactly D. No field call at t = 0."""
    law, mix = law_of(spec), mixture()
    field = law.exact_field(mix)
    x = law.prior(5, (2,), torch.Generator().manual_seed(2)).double()
    grid = torch.cat([law.time_grid(6), torch.zeros(1, dtype=torch.float64)])
    for name in ("euler", "heun", "dpmpp") if spec == "ve" else ("dpmpp",):
        sampler = get_registry().create("sampler", name)
        before = sampler.sample(law.reverse(field), x, grid[:-1], None)
        end = sampler.sample(law.reverse(field), x, grid, None)
        if name == "heun":  # its last interval of the short grid was an Euler step, now a Heun step
            before = _heun_all(law.reverse(field), x, grid[:-1])
        torch.testing.assert_close(end, law.reverse(field).data_prediction(before, float(grid[-2])))


def _heun_all(process, x, grid):
    for t, t_next in zip(grid[:-1].tolist(), grid[1:].tolist()):
        h = t - t_next
        d = process.ode_drift(x, t)
        x = x + 0.5 * h * (d + process.ode_drift(x + h * d, t_next))
    return x


def test_every_sampler_runs_on_the_new_laws_or_refuses_in_one_line():
    registry = get_registry()
    gmm = registry.create("dataset", "gmm8")
    for spec in LAWS:
        law = law_of(spec)
        for name in registry.names("sampler"):
            sampler = registry.create("sampler", name)
            why = sampler.unsupported(law)
            if why is not None:
                assert "\n" not in why and law.name in why
                continue
            out = generate(law, law.exact_field(gmm.exact), sampler, n=8, nfe=None if sampler.adaptive else 20,
                           shape=(2,), seed=0)
            assert torch.isfinite(out.samples).all()
    assert registry.create("sampler", "pc").supports(law_of("ve"))
    assert "affine marginals" in registry.create("sampler", "pc").unsupported(law_of("pme"))


@pytest.mark.parametrize("spec", ["heat", "ve", "vp"])
def test_the_langevin_corrector_uses_the_score(spec):
    """pc on one step [t, t'] with the exact field: x + eps score + sqrt(2 eps) z with the score
    (a E[x0 | x] - x) / s^2 from an independent posterior mean, eps = 2 (snr s)^2, then the mean
    of the predictor step: its output, from the same noise."""
    from zoo.contracts import Noise

    law, mix = law_of(spec), mixture()
    process = law.reverse(law.exact_field(mix), 1.0)
    x = 1.5 * torch.randn(4, 2, dtype=torch.float64)
    t, t_next = 0.3, 0.2
    got = get_registry().create("sampler", "pc:snr=0.16").sample(
        process, x, torch.tensor([t, t_next], dtype=torch.float64), Noise(0, range(4), (2,), dtype=torch.float64))
    a, s, _ = law.affine_path(t, 2)
    score = (a * posterior_mean(mix, x, torch.full((4,), a), torch.full((4,), s)) - x) / s**2
    eps = 2 * (0.16 * s) ** 2
    z = Noise(0, range(4), (2,), dtype=torch.float64).randn()
    y = x + eps * score + math.sqrt(2 * eps) * z
    torch.testing.assert_close(got, y + (t - t_next) * process.drift(y, t))
