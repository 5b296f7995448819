"""The heat law: exact fields against independent formulas, sign conventions, DSM loss, memorisation."""
import math

import pytest
import torch
from torch import nn

from zoo.contracts import GaussianMixture
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo_laws.heat import Heat, noise_scale
from zoo_samplers import Heun



def ring(std: float = 0.1, k: int = 8) -> GaussianMixture:
    angle = torch.arange(k) * 2 * math.pi / k
    means = 2.0 * torch.stack([angle.cos(), angle.sin()], 1)
    return GaussianMixture(torch.full((k,), 1.0 / k), means, std**2 * torch.eye(2).repeat(k, 1, 1))


def draw(mix: GaussianMixture, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(mix.weights, n, replacement=True, generator=g)
    chol = torch.linalg.cholesky(mix.covs)
    return mix.means[k] + torch.einsum("nde,ne->nd", chol[k], torch.randn(n, mix.dim, generator=g))


class ExactEps(nn.Module):
    """The noise predictor eps = -s_t grad log rho_t of a known mixture (what DSM should learn)."""

    def __init__(self, mix: GaussianMixture) -> None:
        super().__init__()
        self.score = Heat().exact_field(mix)

    def forward(self, x, t):
        return -noise_scale(t)[:, None].to(x.dtype) * self.score.grad_p(x, t)


class ExactV(nn.Module):
    """The v predictor v = (eps - s_t x) / e^-t of a known mixture (what DSM with target=v should learn)."""

    def __init__(self, mix: GaussianMixture) -> None:
        super().__init__()
        self.eps = ExactEps(mix)

    def forward(self, x, t):
        t = t[:, None].to(x.dtype)
        return (self.eps(x, t[:, 0]) - noise_scale(t) * x) / torch.exp(-t)


def test_registered_with_options():
    law = get_registry().create("law", "heat:t_dist=logsnr:T=4")
    assert isinstance(law, Heat) and law.T == 4.0 and law.t_dist == "logsnr"
    with pytest.raises(ZooError, match="t_dist"):
        get_registry().create("law", "heat:t_dist=nope")


def test_mixture_score_matches_autograd_of_the_diffused_density():
    """General (rotated, anisotropic) covariances in 3-D, per-sample times: MATH.md section 3."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, 3, generator=g, dtype=torch.float64)
    covs = a @ a.transpose(1, 2) * 0.3 + 0.01 * torch.eye(3, dtype=torch.float64)
    mix = GaussianMixture(torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64),
                          torch.randn(3, 3, generator=g, dtype=torch.float64), covs)
    x = torch.randn(50, 3, generator=g, dtype=torch.float64) * 2
    t = torch.exp(torch.linspace(math.log(1e-3), math.log(5.0), 50, dtype=torch.float64))
    field = Heat().exact_field(mix)
    got = field.grad_p(x, t)
    assert field.nfe == 1

    decay = torch.exp(-t)[:, None, None]  # (n, 1, 1)
    cov_t = decay[..., None]**2 * covs + (1 - decay[..., None]**2) * torch.eye(3, dtype=torch.float64)  # (n, K, d, d)
    xr = x.clone().requires_grad_(True)
    comp = torch.distributions.MultivariateNormal(decay * mix.means[None], covariance_matrix=cov_t)
    logp = torch.logsumexp(comp.log_prob(xr[:, None, :]) + mix.weights.log(), dim=1)
    (want,) = torch.autograd.grad(logp.sum(), xr)
    assert torch.allclose(got, want, rtol=1e-9, atol=1e-9)


def test_relaxing_gaussian_sign_of_grad_p():
    """N(0, h0^2 I) stays Gaussian: h(t)^2 = 1 + (h0^2 - 1) e^-2t, grad p = grad log rho = -x / h(t)^2."""
    h0 = 0.1
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, 2), h0**2 * torch.eye(2)[None])
    x = torch.randn(20, 2, dtype=torch.float64)
    for t in (1e-3, 0.1, 1.0, 4.0):
        h2 = 1 + (h0**2 - 1) * math.exp(-2 * t)
        got = Heat().exact_field(mix).grad_p(x, torch.full((20,), t, dtype=torch.float64))
        assert torch.allclose(got, -x / h2, rtol=1e-6)  # covariances given in float32


def forward_flow(field, x, times):
    """Heun on dx/dt = u = -grad p - x, forward in t along increasing times."""
    for t0, t1 in zip(times[:-1], times[1:]):
        h = t1 - t0
        u0 = field.velocity(x, torch.full((x.shape[0],), t0, dtype=x.dtype))
        u1 = field.velocity(x + h * u0, torch.full((x.shape[0],), t1, dtype=x.dtype))
        x = x + 0.5 * h * (u0 + u1)
    return x


def test_forward_flow_spreads_a_narrow_start():
    """u = -grad p - x moves N(0, 0.01 I) outwards: variance grows toward 1 as h(t)^2, by a dilation."""
    h0, T = 0.1, 3.0
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, 2), h0**2 * torch.eye(2)[None])
    field = Heat().exact_field(mix)
    x0 = h0 * torch.randn(500, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = torch.cat([torch.zeros(1), torch.logspace(-4, math.log10(T), 400)]).double().tolist()
    xt = forward_flow(field, x0, times)
    h = math.sqrt(1 + (h0**2 - 1) * math.exp(-2 * T))
    assert torch.allclose(xt, x0 * h / h0, rtol=1e-3)  # the exact flow map X_t = X_0 h(t)/h0
    assert xt.var() > 50 * x0.var() and abs(xt.var(dim=0).mean().item() - 1) < 0.15


def test_reverse_flow_concentrates():
    """The reverse ODE takes N(0, h(T)^2 I) back to the narrow N(0, h(t_min)^2 I)."""
    h0, law = 0.1, Heat()
    mix = GaussianMixture(torch.ones(1), torch.zeros(1, 2), h0**2 * torch.eye(2)[None])
    h2 = lambda t: 1 + (h0**2 - 1) * math.exp(-2 * t)  # noqa: E731
    x = math.sqrt(h2(law.T)) * torch.randn(2000, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = Heun().sample(law.reverse(law.exact_field(mix)), x, law.time_grid(80), None)  # Heun error 0.4 %
    assert torch.allclose(y, x * math.sqrt(h2(law.t_min) / h2(law.T)), rtol=1e-2)  # the dilation, reversed
    assert abs(y.var(dim=0).mean().item() / h2(law.t_min) - 1) < 0.1


def test_empirical_field_is_the_zero_width_mixture_and_chunking_is_exact():
    points = torch.randn(37, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    mix = GaussianMixture(torch.full((37,), 1 / 37), points, torch.zeros(37, 2, 2))
    x = torch.randn(40, 2, dtype=torch.float64) * 1.5
    t = torch.exp(torch.linspace(math.log(1e-3), math.log(5.0), 40, dtype=torch.float64))
    law = Heat()
    empirical = law.empirical_field(points)
    want = law.exact_field(mix).grad_p(x, t)
    for chunk in (5, 37, 4096):
        empirical.chunk = chunk
        assert torch.allclose(empirical.grad_p(x, t), want, rtol=1e-8, atol=1e-8)


def test_empirical_field_samples_land_on_training_points():
    """The exact velocity of the diffused training set memorises (MATH.md section 3)."""
    from zoo.sampling import generate

    mix, law = ring(), Heat(t_min=1e-6)  # rho_t_min is the training set blurred by s_t = 0.0014
    train, held_out = draw(mix, 64, seed=4), draw(mix, 200, seed=5)
    out = generate(law, law.empirical_field(train), Heun(), n=200, nfe=41, shape=(2,), seed=0)
    nearest = torch.cdist(out.samples, train).min(dim=1).values
    real = torch.cdist(held_out, train).min(dim=1).values
    assert nearest.max() < 0.01 and real.median() > 5 * nearest.max()


def test_dsm_loss_prefers_the_exact_noise_predictor():
    mix, law = ring(), Heat(target="eps")
    batch = {"x0": draw(mix, 4000, seed=6)}
    shifted = GaussianMixture(mix.weights, mix.means * 1.3, mix.covs)
    loss = lambda net: law.loss(net, batch, torch.Generator().manual_seed(7)).item()  # noqa: E731
    exact, wrong, zero = loss(ExactEps(mix)), loss(ExactEps(shifted)), loss(lambda x, t: torch.zeros_like(x))
    assert exact == loss(ExactEps(mix))  # the generator drives every draw
    assert exact < 0.5 * wrong and exact < 0.5 * zero and abs(zero - 1.0) < 0.05  # mean of z_j^2 is 1


def test_noise_field_reads_a_noise_predictor_as_the_score():
    mix, law = ring(), Heat(target="eps")
    field = law.field(ExactEps(mix))
    x, t = torch.randn(30, 2, dtype=torch.float64), torch.rand(30, dtype=torch.float64) * 5 + 1e-3
    assert torch.allclose(field.grad_p(x, t), law.exact_field(mix).grad_p(x, t), rtol=1e-10)
    assert field.nfe == 1


def test_v_target_reads_a_v_predictor_as_the_score_and_its_loss_prefers_it():
    mix, law = ring(), get_registry().create("law", "heat")
    assert law.target == "v"  # the default
    field = law.field(ExactV(mix))
    x, t = torch.randn(30, 2, dtype=torch.float64), torch.rand(30, dtype=torch.float64) * 5 + 1e-3
    assert torch.allclose(field.grad_p(x, t), law.exact_field(mix).grad_p(x, t), rtol=1e-9)
    # sign: a v network that outputs 0 is the stationary score -x (velocity 0), whatever t
    assert torch.allclose(law.field(lambda x, t: torch.zeros_like(x)).grad_p(x, t), -x)

    batch = {"x0": draw(mix, 4000, seed=6)}
    shifted = GaussianMixture(mix.weights, mix.means * 1.3, mix.covs)
    loss = lambda net: law.loss(net, batch, torch.Generator().manual_seed(7)).item()  # noqa: E731
    exact, wrong = loss(ExactV(mix)), loss(ExactV(shifted))
    scaled = loss(lambda x, t: 1.1 * ExactV(mix)(x, t))
    zero = loss(lambda x, t: torch.zeros_like(x))  # mean of |e^-t z - s_t x0|^2 over the draws
    # near T the posterior spread of x0 (the ring's radius 2) is irreducible, so the margins are smaller than for eps
    assert exact < 0.5 * wrong and exact < 0.7 * zero and exact < scaled
    assert loss(ExactV(mix)) == exact  # the generator drives every draw


def test_target_option_is_checked():
    with pytest.raises(ZooError, match="target must be one of eps, v"):
        get_registry().create("law", "heat:target=x0")
    with pytest.raises(ZooError, match="route=dsm only"):
        get_registry().create("law", "heat:route=blob:target=v")


@pytest.mark.parametrize("t_dist", ["log", "logsnr", "uniform"])
def test_training_times_cover_the_horizon(t_dist):
    law = Heat(t_dist=t_dist)
    t = law.sample_times(20000, torch.Generator().manual_seed(8))
    assert t.min() >= law.t_min * (1 - 1e-6) and t.max() <= law.T * (1 + 1e-6)
    assert (t < 0.1).float().mean() > 0.01 and (t > 1.0).float().mean() > 0.01


def test_prior_and_pressure_ratio():
    law = Heat()
    a = law.prior(5000, (2, 3), torch.Generator().manual_seed(9))
    assert a.shape == (5000, 2, 3) and torch.equal(a, law.prior(5000, (2, 3), torch.Generator().manual_seed(9)))
    assert abs(a.mean()) < 0.03 and abs(a.var() - 1) < 0.03
    assert torch.equal(law.pressure_ratio(None, a, torch.ones(5000)), torch.ones(5000))


def test_conformance_suite():
    from zoo.testing.conformance import check_law

    check_law(Heat())
    check_law(Heat(target="eps"))
