"""zoo's samplers reproduce a peer's: k-diffusion's (Crowson; 0.1.1) sample_euler, sample_heun,
sample_dpmpp_2m (and the stochastic ones, handed zoo's noise) on the same Karras grid, from the same noise, with the exact denoiser of the
8-Gaussian ring, match zoo's euler, heun and dpmpp on the ``ve`` law to 1e-5.

k-diffusion is a test-only dependency, installed without its dependencies (`pip install --no-deps
k-diffusion==0.1.1.post1` plus torchsde, torchdiffeq and safetensors, see .ci/run): its package
__init__ imports CLIP, clean-fid, kornia and more, so this file loads ``k_diffusion.sampling``
(and the ``utils`` it imports) without running the package's __init__.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

import pytest
import torch

from zoo.registry import get_registry


def kdiffusion_sampling():
    """k_diffusion.sampling, imported without k_diffusion/__init__.py; skips the test if absent."""
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("k-diffusion is not installed (pip install --no-deps k-diffusion==0.1.1.post1 torchsde torchdiffeq safetensors)")
    for name in ("torchsde", "torchdiffeq", "safetensors"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"k-diffusion's sampling module needs {name}, which is not installed")
    if "k_diffusion.sampling" in sys.modules:
        return sys.modules["k_diffusion.sampling"]
    package = sys.modules.get("k_diffusion")
    if package is None:
        package = types.ModuleType("k_diffusion")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["k_diffusion"] = package
    return importlib.import_module("k_diffusion.sampling")


def denoiser(mixture):
    """D(x; sigma) = E[x0 | x0 + sigma z = x] for the mixture, written independently of zoo's fields."""
    weights, means, covs = mixture.weights.double(), mixture.means.double(), mixture.covs.double()

    def model(x, sigma):
        eye = torch.eye(x.shape[1], dtype=torch.float64)
        cov = covs[None] + (sigma.double() ** 2)[:, None, None, None] * eye  # (n, K, d, d)
        diff = x.double()[:, None, :] - means[None]  # (n, K, d)
        solved = torch.linalg.solve(cov, diff[..., None])[..., 0]
        logits = torch.log(weights) - 0.5 * ((diff * solved).sum(-1) + torch.logdet(cov))
        w = torch.softmax(logits, dim=1)
        posterior = means[None] + (covs[None] @ solved[..., None])[..., 0]  # mu_k + S_k cov^-1 (x - mu_k)
        return (w[..., None] * posterior).sum(1).to(x.dtype)

    return model


STEPS = 12  # k-diffusion's n: 12 noise levels, then sigma = 0


@pytest.fixture(scope="module")
def setup():
    k = kdiffusion_sampling()
    registry = get_registry()
    law = registry.create("law", "ve")
    mixture = registry.create("dataset", "gmm8").exact
    sigmas = k.get_sigmas_karras(STEPS, law.t_min, law.T).double()  # (STEPS + 1,), last 0
    x = law.T * torch.randn(256, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return k, registry, law, mixture, sigmas, x


def test_zoos_edm_grid_on_ve_is_kdiffusions_karras_grid(setup):
    k, _, law, _, sigmas, _ = setup
    torch.testing.assert_close(law.time_grid(STEPS - 1, "edm"), sigmas[:-1], rtol=1e-6, atol=0)


@pytest.mark.parametrize("zoo_name, peer_name", [("euler", "sample_euler"), ("heun", "sample_heun"),
                                                 ("dpmpp", "sample_dpmpp_2m")])
def test_zoo_reproduces_kdiffusion_from_the_same_noise(setup, zoo_name, peer_name):
    """Same grid (the Karras sigmas and k-diffusion's last step to sigma = 0), same start x = T z."""
    k, registry, law, mixture, sigmas, x = setup
    peer = getattr(k, peer_name)(denoiser(mixture), x.clone(), sigmas, disable=True)
    field = law.exact_field(mixture)
    ours = registry.create("sampler", zoo_name).sample(law.reverse(field), x.clone(), sigmas, None)
    assert (ours - peer).abs().max().item() < 1e-5
    # a real comparison: the samples are on the ring, not at the start
    assert (peer.norm(dim=1) - 2.0).abs().median().item() < 0.2
    expected = {"euler": STEPS, "heun": 2 * STEPS - 1, "dpmpp": STEPS}[zoo_name]
    assert field.nfe == expected  # the peer's count too: Heun's last step (to sigma = 0) is Euler


def test_lms_reproduces_kdiffusions_sample_lms(setup):
    """zoo's lms (variable-step Adams-Bashforth, weights integrated exactly) against k-diffusion's
    sample_lms (order 4, weights by scipy quadrature) on the same grid from the same start."""
    k, registry, law, mixture, sigmas, x = setup
    peer = k.sample_lms(denoiser(mixture), x.clone(), sigmas, disable=True)
    field = law.exact_field(mixture)
    ours = registry.create("sampler", "lms").sample(law.reverse(field), x.clone(), sigmas, None)
    assert (ours - peer).abs().max().item() < 1e-5 and field.nfe == STEPS
    assert (peer.norm(dim=1) - 2.0).abs().median().item() < 0.2


@pytest.mark.parametrize("alpha", [1.0, 0.25])
def test_euler_a_reproduces_kdiffusions_euler_ancestral_from_the_same_noise(setup, alpha):
    """k-diffusion's sample_euler_ancestral(eta) is zoo's euler_a with alpha = eta^2: same grid, same
    start, and k-diffusion's noise_sampler handed zoo's per-sample noise stream."""
    from zoo.contracts import Noise

    k, registry, law, mixture, sigmas, x = setup
    stream = Noise(7, range(x.shape[0]), (2,), dtype=torch.float64)
    peer = k.sample_euler_ancestral(denoiser(mixture), x.clone(), sigmas, disable=True, eta=alpha**0.5,
                                    noise_sampler=lambda sigma, sigma_next: stream.randn())
    field = law.exact_field(mixture)
    ours = registry.create("sampler", f"euler_a:alpha={alpha}").sample(
        law.reverse(field), x.clone(), sigmas, Noise(7, range(x.shape[0]), (2,), dtype=torch.float64))
    assert (ours - peer).abs().max().item() < 1e-5 and field.nfe == STEPS
    # the noise matters: without it the samples differ
    assert (registry.create("sampler", "ddim").sample(law.reverse(field), x.clone(), sigmas, None) - peer).abs().max() > 0.01


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
def test_dpmpp_sde_reproduces_kdiffusions_dpmpp_2m_sde_from_the_same_noise(setup, alpha):
    """k-diffusion's sample_dpmpp_2m_sde(eta, midpoint) is zoo's dpmpp_sde with alpha = eta; at
    alpha = 0 both are DPM-Solver++(2M), zoo's dpmpp."""
    from zoo.contracts import Noise

    k, registry, law, mixture, sigmas, x = setup
    stream = Noise(3, range(x.shape[0]), (2,), dtype=torch.float64)
    peer = k.sample_dpmpp_2m_sde(denoiser(mixture), x.clone(), sigmas, disable=True, eta=alpha,
                                 noise_sampler=lambda sigma, sigma_next: stream.randn())
    field = law.exact_field(mixture)
    ours = registry.create("sampler", f"dpmpp_sde:alpha={alpha}").sample(
        law.reverse(field), x.clone(), sigmas, Noise(3, range(x.shape[0]), (2,), dtype=torch.float64))
    assert (ours - peer).abs().max().item() < 1e-5 and field.nfe == STEPS
    plain = registry.create("sampler", "dpmpp").sample(law.reverse(field), x.clone(), sigmas, None)
    assert ((ours - plain).abs().max().item() > 0.01) == (alpha > 0)


def test_edm_with_churn_reproduces_kdiffusions_sample_heun_from_the_same_noise(setup, monkeypatch):
    """k-diffusion's sample_heun with EDM's churn (ImageNet settings: s_churn 40, s_tmin 0.05, s_tmax 50,
    s_noise 1.003) is zoo's edm with the same options. k-diffusion draws torch.randn_like on every step
    and adds it where the level is churned; zoo draws only there: the peer is handed zoo's stream there."""
    from zoo.contracts import Noise

    k, registry, law, mixture, sigmas, x = setup
    churned = iter([0.05 <= float(s) <= 50.0 for s in sigmas[:-1]])
    stream = Noise(5, range(x.shape[0]), (2,), dtype=torch.float64)
    monkeypatch.setattr(torch, "randn_like", lambda y: stream.randn() if next(churned) else torch.zeros_like(y))
    peer = k.sample_heun(denoiser(mixture), x.clone(), sigmas, disable=True, s_churn=40.0, s_tmin=0.05, s_tmax=50.0,
                         s_noise=1.003)
    monkeypatch.undo()
    field = law.exact_field(mixture)
    ours = registry.create("sampler", "edm:churn=40:s_tmin=0.05:s_tmax=50:s_noise=1.003").sample(
        law.reverse(field), x.clone(), sigmas, Noise(5, range(x.shape[0]), (2,), dtype=torch.float64))
    assert (ours - peer).abs().max().item() < 1e-5 and field.nfe == 2 * STEPS - 1
    plain = registry.create("sampler", "heun").sample(law.reverse(field), x.clone(), sigmas, None)
    assert (ours - plain).abs().max().item() > 0.01  # the churn's noise is in it
