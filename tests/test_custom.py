"""custom law: safe formulas, convexity checks, numerical stationary states, blob flows vs heat/PME."""
import math
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from scipy.stats import kstest

from zoo.blob import PowerEnergy, flow, velocity
from zoo.contracts import FunctionField, seeded_generator
from zoo.errors import ZooError
from zoo.formula import parse
from zoo.registry import get_registry
from zoo_laws.custom import Custom
from zoo_laws.pme import barenblatt_radius



def law(spec):
    return get_registry().create("law", spec)


@pytest.mark.parametrize("d", [1, 2, 5])
def test_heat_formula_gives_gaussian_stationary_state(d):
    st = law("custom:F=rho*log(rho)").stationary(d)
    assert st.C == pytest.approx(1 - d / 2 * math.log(2 * math.pi), abs=1e-6)  # log rho + 1 = C - r^2/2
    r = torch.linspace(0, 3, 7, dtype=torch.float64)
    assert torch.allclose(st.density(r), (2 * math.pi) ** (-d / 2) * torch.exp(-r * r / 2), rtol=1e-4)
    x = law("custom:F=heat").prior(3000, (d,), seeded_generator(d)).double()
    assert kstest(x.square().sum(1).numpy(), "chi2", args=(d,)).statistic < 1.63 / math.sqrt(3000)


@pytest.mark.parametrize("d, formula, m", [(2, "rho**2", 2.0), (3, "rho**3/2", 3.0), (2, "pme2", 2.0)])
def test_pme_formula_gives_barenblatt(d, formula, m):
    custom = law(f"custom:F={formula}")
    st = custom.stationary(d)
    R = barenblatt_radius(d, m)
    assert st.r[-1] == pytest.approx(R, rel=1e-4)
    k, a = 1 / (m - 1), m / (m - 1)
    r = torch.linspace(0, 0.95 * R, 6, dtype=torch.float64)
    assert torch.allclose(st.density(r), (2 * a) ** (-k) * (R * R - r * r) ** k, rtol=1e-3)
    x = custom.prior(3000, (d,), seeded_generator(0)).double()
    s = (x.square().sum(1) / R**2).numpy()
    assert kstest(s, "beta", args=(d / 2, k + 1)).statistic < 1.63 / math.sqrt(3000)


@pytest.mark.parametrize("formula, m", [("rho**2", 2.0), ("rho*log(rho)", 1.0), ("rho**3/2", 3.0)])
def test_blob_velocity_equals_power_law(formula, m):
    x = torch.randn(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    u, _ = velocity(x, law(f"custom:F={formula}").energy(2), 0.3)
    ref, _ = velocity(x, PowerEnergy(m), 0.3)
    assert torch.allclose(u, ref, rtol=1e-6, atol=1e-8)


def test_heat_formula_flow_tracks_gaussian():
    """OU from N(0, h0^2 I): h(t)^2 = 1 + (h0^2 - 1) e^-2t; moment of phi_e * mu_N within 2 %."""
    d, h0, n, eps = 2, 0.6, 400, 0.15
    x0 = h0 * torch.randn(n, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x0 = (x0 - x0.mean(0)) * math.sqrt((d * h0 * h0 - d * eps * eps) / float(x0.square().sum(1).mean()))
    times = torch.tensor([0.0, 0.1, 0.3], dtype=torch.float64)
    for snap in flow(x0, law("custom:F=heat").energy(d), times, eps=eps, cfl=1.0):
        exact = d * (1 + (h0 * h0 - 1) * math.exp(-2 * snap.t))
        assert (float(snap.x.square().sum(1).mean()) + d * eps * eps) / exact == pytest.approx(1, abs=0.02)


def test_pme_formula_flow_equals_pme_flow():
    x0 = torch.randn(150, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    times = torch.tensor([0.0, 0.05])
    a = list(flow(x0, law("custom:F=rho**2").energy(2), times, eps=0.3))[-1]
    b = list(flow(x0, PowerEnergy(2.0), times, eps=0.3))[-1]
    assert torch.allclose(a.x, b.x, atol=1e-6)


@dataclass(frozen=True)
class Cubic(Custom):
    """A Python-defined F with hand-written derivatives: F = rho^3/2 (PME, m = 3)."""

    name: ClassVar[str] = "cubic"

    def f(self, rho):
        return rho**3 / 2

    def df(self, rho):
        return 1.5 * rho**2

    def d2f(self, rho):
        return 3 * rho


def test_python_subclass_matches_formula():
    assert Cubic().stationary(2).C == pytest.approx(law("custom:F=rho**3/2").stationary(2).C, rel=1e-6)
    p = torch.tensor([0.1, 0.5, 1.0], dtype=torch.float64)
    assert torch.allclose(torch.exp(Cubic().density_of_pressure(p)), (p / 1.5).sqrt(), rtol=1e-5)


def test_heat_pme_profile():
    custom = law("custom")  # the named default: F = rho log rho + rho^2, P = rho + rho^2
    assert custom.F == "heat-pme"
    rho = torch.tensor([1e-6, 1e3], dtype=torch.float64)
    assert torch.allclose(custom.big_p(rho) / rho, 1 + rho, rtol=1e-6)  # heat-like, then PME
    st = custom.stationary(2)
    assert st.density(torch.tensor([4.0], dtype=torch.float64)).item() > 0  # Gaussian-like tails: no edge
    field = FunctionField(lambda x, t: -x, lambda x, t: torch.full((x.shape[0],), float(custom.df(torch.tensor(2.0, dtype=torch.float64)))))
    ratio = custom.pressure_ratio(field, torch.zeros(3, 2), torch.ones(3))
    assert torch.allclose(ratio, torch.full((3,), 3.0), rtol=1e-4)  # P(2)/2 = 1 + 2


@pytest.mark.parametrize("spec, match", [
    ("custom:F=-rho**2", "not strictly convex"),
    ("custom:F=rho", "not strictly convex"),
    ("custom:F=rho**2 + 1", "F\\(0\\) must be 0"),
    ("custom:F=rho**2 + x", "unknown name 'x'"),
    ("custom:F=system(rho)", "unknown function 'system'"),
    ("custom:F=rho.__class__", "Attribute is not allowed"),
    ("custom:F=rho**", "not valid arithmetic"),
    ("custom:F=10**400", "cannot be evaluated"),
])
def test_bad_formulas_are_one_line_errors(spec, match):
    with pytest.raises(ZooError, match=match) as err:
        law(spec)
    assert "\n" not in str(err.value)


def test_formula_parser_whitelist():
    f = parse("pow(rho, 2) + exp(-rho) * sqrt(rho) / pi")
    rho = torch.tensor([0.5, 2.0], dtype=torch.float64)
    assert torch.allclose(f(rho), rho**2 + torch.exp(-rho) * rho.sqrt() / math.pi)
    for bad in ["__import__('os')", "(lambda: 1)()", "[rho]", "rho if rho else 1", "exp(rho, 2)", "'a'"]:
        with pytest.raises(ZooError):
            parse(bad)
