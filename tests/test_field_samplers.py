"""Issue 12: the field's samplers. DDIM and its eta family, Euler ancestral, LMS, iPNDM and DPM-Solver++(2S):
measured orders against an exact flow, exact Gaussian marginals, the sampler that is another at
alpha = 0, refusals where the mathematics does not hold, flow error to the exact end point.
Exact fields only; measured values in comments, asserted with margins. k-diffusion's samplers
are reproduced from the same noise in tests/test_kdiffusion.py."""
import sys
from pathlib import Path

import pytest
import torch

from zoo.contracts import GaussianMixture
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.sampling import generate
from zoo_laws.heat import Heat
from zoo_samplers import DDIM, EDM, IPNDM, LMS, DPMSolverPP2S

sys.path.insert(0, str(Path(__file__).parent))
from test_end_points import gmm8_end  # noqa: E402,F401  (the fixture)
from test_samplers import Problem  # noqa: E402


@pytest.fixture(scope="module")
def problem() -> Problem:
    return Problem()


@pytest.mark.parametrize("sampler, lo, hi", [
    (DDIM(), 1.8, 2.3),  # first order: ratio 2.02 (20 -> 40 NFE), 2.01 (40 -> 80)
    (LMS(), 7.0, 13.0),  # variable-step AB4: ratios 4.8, 7.0, 9.8, 12.2 from 10 to 160 NFE
    (LMS(history=2), 3.2, 4.2),  # AB2: 3.6
    (IPNDM(), 2.8, 3.8),  # fixed weights on unequal steps: second order in the end, ratios 4.1, 4.0, 3.25, 3.4
    (IPNDM(history=4), 2.9, 4.0),  # 8.6, 2.1, 3.4, 3.8
    (DPMSolverPP2S(), 3.2, 4.2),  # second order, 2 NFE a step (the last 1: 39 for 40): ratios 3.3, 3.4, 3.6, 3.8
    (EDM(), 4.2, 6.2),  # Heun in sigma / alpha on its grid, the last step Euler: ratios 3.2, 5.4, 5.2, 4.6
], ids=["ddim", "lms", "lms2", "ipndm", "ipndm4", "dpmpp2s", "edm"])
def test_convergence_order(problem, sampler, lo, hi):
    """Error ratio from 40 to 80 NFE against rk45 on the ring's exact heat field (before any final step),
    with the NFE counted exactly: one per step."""
    (coarse, counted), fine = (problem.error(sampler, 40), problem.solve(sampler, 40)[1]), problem.error(sampler, 80)
    assert counted == (39 if isinstance(sampler, (DPMSolverPP2S, EDM)) else 40) and lo < coarse / fine < hi, (coarse, fine)


@pytest.fixture(scope="module")
def gaussian():
    """heat with the exact field of N(0, 0.25) in one dimension."""
    law, v = Heat(), 0.25
    mixture = GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64),
                              v * torch.ones(1, 1, 1, dtype=torch.float64))
    return law, law.exact_field(mixture), v


@pytest.mark.parametrize("spec, errors", [
    ("ddim", (-0.255, -0.128)),  # measured -0.2553, -0.1279 at 10 and 20 NFE (n = 20000)
    ("ddim:eta=1", (-0.392, -0.218)),
    ("euler_a", (-0.392, -0.218)),  # alpha = 1 is ddim's eta = 1
])
def test_ddim_family_variance_converges_at_first_order(gaussian, spec, errors):
    """The data variance the samples come back with: off by a first-order error that halves with the step
    (the eta > 0 members add fresh noise, and land with the same sign: too narrow, as DDIM's last steps are)."""
    law, field, v = gaussian
    got = [generate(law, field, get_registry().create("sampler", spec), n=20000, nfe=k, shape=(1,),
                    seed=0).samples.double().var().item() / v - 1 for k in (10, 20)]
    assert all(abs(g - e) < 0.03 for g, e in zip(got, errors)), got
    assert 1.6 < got[0] / got[1] < 2.1, got


def test_euler_a_is_ddims_eta_family_and_ddim_at_alpha_zero(gaussian):
    """euler_a with alpha = eta^2 draws the same samples as ddim with eta (one update, two parametrisations);
    at alpha = 0 its deterministic twin is ddim, and eta > 0 really draws noise."""
    law, field, _ = gaussian
    registry = get_registry()
    run = lambda spec: generate(law, field, registry.create("sampler", spec), n=200, nfe=10, shape=(1,), seed=3).samples  # noqa: E731
    assert torch.equal(run("euler_a:alpha=0.25"), run("ddim:eta=0.5"))
    assert torch.equal(run("euler_a:alpha=0"), run("ddim"))
    assert registry.create("sampler", "euler_a:alpha=0").deterministic_twin() == registry.create("sampler", "ddim").spec
    assert not torch.allclose(run("ddim:eta=0.5"), run("ddim"))
    assert registry.create("sampler", "ddim:eta=0.5").alpha == 0.25 and not DDIM().stochastic
    assert registry.create("sampler", "euler_a").stochastic


@pytest.mark.parametrize("spec", ["ddim", "ddim:eta=1", "euler_a", "edm", "edm:churn=40", "dpmpp_sde"])
def test_ancestral_samplers_refuse_laws_without_affine_marginals(spec):
    registry = get_registry()
    law, data = registry.create("law", "pme"), registry.create("dataset", "barenblatt:h0=0.3:dim=2:m=2")
    name = spec.split(":")[0]
    with pytest.raises(ZooError, match=rf"sampler '{name}' does not support law 'pme': it needs affine marginals"):
        generate(law, law.exact_field(data.exact), registry.create("sampler", spec), n=4, nfe=10, shape=(2,))
    for law_spec in ("heat", "ve", "vp", "rf"):
        assert registry.create("sampler", spec).supports(registry.create("law", law_spec))


@pytest.mark.parametrize("option, bad", [("eta", "-1"), ("alpha", "-0.5"), ("history", "5"), ("churn", "-1"),
                                         ("s_noise", "0")])
def test_option_checks_in_one_line(option, bad):
    name = {"eta": "ddim", "alpha": "euler_a", "history": "lms", "churn": "edm", "s_noise": "edm"}[option]
    with pytest.raises(ZooError, match=rf"{option} must be"):
        get_registry().create("sampler", f"{name}:{option}={bad}")


def test_lms_reverses_every_law_and_ipndm_those_with_an_integrator_path():
    registry = get_registry()
    laws = {name: registry.create("law", name) for name in ("heat", "ve", "vp", "rf", "pme", "custom")}
    assert all(LMS().supports(law) for law in laws.values())
    assert all(IPNDM().supports(law) for name, law in laws.items() if name != "custom")
    assert not DPMSolverPP2S().supports(laws["custom"]) and DPMSolverPP2S().supports(laws["pme"])
    assert IPNDM().unsupported(laws["custom"]) == ("sampler 'ipndm' does not support law 'custom': it needs a law "
                                                   "that states an integrator path (heat, ve, vp, rf, pme)")


@pytest.mark.parametrize("spec, nfe, bound", [
    ("ipndm", 10, 0.016),  # measured 0.0117 (n = 600; unipc 0.0116 at n = 2000)
    ("ipndm", 20, 0.006),  # 0.0039
    ("ddim", 20, 0.05),  # 0.035
    ("lms", 20, 0.025),  # 0.016
    ("dpmpp2s", 10, 0.05),  # 0.038 (dpmpp 0.020: the multistep reuses its evaluations)
    ("dpmpp2s", 20, 0.017),  # 0.012 (dpmpp 0.0077)
])
def test_flow_error_to_the_end_point(gmm8_end, spec, nfe, bound):  # noqa: F811
    law, field, end, _ = gmm8_end
    y = generate(law, field, get_registry().create("sampler", spec), n=600, nfe=nfe, shape=(2,), seed=0).samples
    assert (y - end).square().sum(1).mean().sqrt().item() < bound


def test_ddim_on_ve_is_euler():
    """On ve (alpha = 1, sigma = t) DDIM's step is the Euler step of dx/dsigma = (x - D) / sigma: the same
    samples as euler, reached through the data prediction instead of grad p (benchmarks: equal to 3 digits)."""
    registry = get_registry()
    law, data = registry.create("law", "ve"), registry.create("dataset", "gmm8")
    field = law.exact_field(data.exact)
    run = lambda spec: generate(law, field, registry.create("sampler", spec), n=64, nfe=12, shape=(2,), seed=0).samples  # noqa: E731
    assert (run("ddim") - run("euler")).abs().max().item() < 1e-4


def test_edm_is_heun_on_ve_and_its_churn_keeps_the_mode_width():
    """churn = 0 on ve (alpha = 1, sigma = t): EDM's Heun in sigma on its grid is zoo's heun in t on the same
    grid; on the other laws it steps in sigma / alpha (benchmarks/sampler_end_points.md). With EDM's churn the
    modes keep the data's width on heat at 50 NFE (measured std 0.100; the data's 0.100)."""
    registry = get_registry()
    data = registry.create("dataset", "gmm8")
    law = registry.create("law", "ve")
    field = law.exact_field(data.exact)
    run = lambda spec, law, field, nfe: generate(law, field, registry.create("sampler", spec), n=400, nfe=nfe, shape=(2,),  # noqa: E731
                                                 seed=0).samples
    assert (run("edm", law, field, 20) - run("heun:grid=edm", law, field, 20)).abs().max().item() < 1e-4
    heat = registry.create("law", "heat")
    y = run("edm:churn=40:s_tmin=0.05:s_tmax=50:s_noise=1.003", heat, heat.exact_field(data.exact), 50)
    means = data.exact.means.float()
    assert abs((y - means[torch.cdist(y, means).argmin(1)]).std().item() - 0.100) < 0.006
    with pytest.raises(ZooError, match=r"sampler 'edm' needs at least 10 NFE per sample on law 'heat'"):
        run("edm", heat, heat.exact_field(data.exact), 5)
