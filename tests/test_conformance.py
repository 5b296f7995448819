"""The conformance suite (zoo.testing) over every registered plugin, and on deliberately broken ones."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from zoo.contracts import Dataset, Executor, Law, Metric, Network, Sampler
from zoo.registry import get_registry
from zoo.testing import RelaxingBarenblatt, RelaxingGaussian, TinyMixture, check, check_dataset, check_executor, check_law, check_metric, \
    check_network, check_sampler, conformance_tests, registered

REGISTRY = get_registry()
BUILT_IN = [pytest.param(e.kind, e.name, id=f"{e.kind}-{e.name}",
                         marks=[pytest.mark.slow] if e.kind == "executor" else [])
            for e in REGISTRY.all_entries()]
METRIC_DATA = tuple(name for name in ("gmm8", "digits") if name in REGISTRY.entries["dataset"])


def _points(tmp: Path) -> str:
    np.save(tmp / "points.npy", np.random.default_rng(0).normal(size=(60, 2)).astype(np.float32))
    return f"file:{tmp / 'points.npy'}"


def _image_folder(tmp: Path) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp / "images" / label).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(tmp / "images" / label / f"{i}.png")
    return f"imagefolder:{tmp / 'images'}:size=8"


def _mnist_root(tmp: Path) -> str:
    """A torchvision MNIST root holding 5 + 3 random digits in the idx format."""
    raw = tmp / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 5), ("t10k", 3)):
        header = np.array([0x803, n, 28, 28], dtype=">i4").tobytes()
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + rng.integers(0, 256, n * 784, dtype=np.uint8).tobytes())
        header = np.array([0x801, n], dtype=">i4").tobytes()
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(header + rng.integers(0, 10, n, dtype=np.uint8).tobytes())
    return f"mnist:root={tmp}"


def _cifar_root(tmp: Path) -> str:
    """A torchvision CIFAR-10 root: six pickled batches of 2 random images."""
    import pickle

    folder = tmp / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(batch))
    return f"cifar10:root={tmp}"


# plugins that read the user's files get tiny ones (no network, no data shipped with the tests)
ON_DISK = {"file": _points, "imagefolder": _image_folder, "mnist": _mnist_root, "cifar10": _cifar_root}


@pytest.mark.parametrize("kind, name", BUILT_IN)
def test_every_registered_plugin_conforms(kind, name, tmp_path):
    spec = ON_DISK[name](tmp_path) if kind == "dataset" and name in ON_DISK else name
    kwargs = {"datasets": METRIC_DATA} if kind == "metric" else {}
    if kind == "executor":
        kwargs = {"jobs": 2}
    check(kind, spec, **kwargs)


def test_the_registry_has_every_kind_built_in():
    assert {e.kind for e in REGISTRY.all_entries()} == {"law", "network", "sampler", "dataset", "metric", "executor"}


def test_samplers_converge_at_their_order():
    """Measured orders on the exact heat field of N(0, h0^2 I): the reference numbers of the suite."""
    orders = {name: check_sampler(name)["orders"][-1] for name in ("euler", "heun")
              if name in REGISTRY.entries["sampler"]}
    assert orders.get("euler", 1.0) == pytest.approx(1.0, abs=0.15)
    assert orders.get("heun", 2.0) == pytest.approx(2.0, abs=0.25)


EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "zoo-example-plugin"


@pytest.fixture
def example_plugin():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import zoo_example_plugin

        with registered(zoo_example_plugin):
            yield zoo_example_plugin
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in [m for m in sys.modules if m.startswith("zoo_example_plugin")]:
            del sys.modules[name]


def test_the_example_plugin_conforms(example_plugin):
    ralston = check_sampler("ralston", nfes=(64, 128, 256))
    assert min(ralston["orders"]) > 1.5  # second order (its small error constant hides it below 64 NFE)
    tempered = check_law("tempered:sigma=2")
    assert tempered["stationary_m2_error"] < 0.1
    if "em" in REGISTRY.entries["sampler"]:  # a built-in stochastic sampler on the third-party law
        check_sampler("em", law="tempered")


# --------------------------------------------------------------------------- broken plugins fail clearly


@dataclass(frozen=True)
class GlobalNoise(Sampler):
    """Draws noise from the global RNG instead of ``noise``: not reproducible per sample."""

    name: ClassVar[str] = "global-noise"
    stochastic: ClassVar[bool] = True

    @property
    def alpha(self):
        return 1.0

    def sample(self, process, x, grid, noise):
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            h = t - t_next
            x = x + h * process.drift(x, t) + math.sqrt(2 * h) * torch.randn_like(x)
        return x


@dataclass(frozen=True)
class OverBudget(Sampler):
    """Evaluates the field twice per step while steps_for gives one step per NFE."""

    name: ClassVar[str] = "over-budget"

    def sample(self, process, x, grid, noise):
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            process.ode_drift(x, t)
            x = x + (t - t_next) * process.ode_drift(x, t)
        return x


@dataclass(frozen=True)
class WrongSign(Sampler):
    """Integrates with the transport velocity u instead of -u: does not converge to the reference."""

    name: ClassVar[str] = "wrong-sign"

    def sample(self, process, x, grid, noise):
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            x = x - (t - t_next) * process.ode_drift(x, t)
        return x


@dataclass(frozen=True)
class InPlace(Sampler):
    name: ClassVar[str] = "in-place"

    def sample(self, process, x, grid, noise):
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            x += (t - t_next) * process.ode_drift(x, t)
        return x


@dataclass(frozen=True)
class SilentlyAdaptive(Sampler):
    """Takes 10 steps whatever the NFE budget without declaring itself adaptive."""

    name: ClassVar[str] = "silently-adaptive"

    def steps_for(self, nfe):
        return 10

    def sample(self, process, x, grid, noise):
        times = [float(t) for t in grid]
        for t, t_next in zip(times[:-1], times[1:]):
            x = x + (t - t_next) * process.ode_drift(x, t)
        return x


@pytest.mark.parametrize("cls, message", [
    (GlobalNoise, "samples depend on the batch size or on the global RNG"),
    (SilentlyAdaptive, "steps_for ignores the NFE budget: declare `adaptive = True`"),
    (OverBudget, "with a budget of 2 NFE \\(1 grid steps\\) it evaluated the field 3 times: .*raise min_nfe"),
    (WrongSign, "does not fall"),
    (InPlace, "sample modified its input x in place"),
])
def test_a_broken_sampler_fails_with_a_clear_message(cls, message):
    with pytest.raises(AssertionError, match=f"sampler '{cls.name}' \\(.*{cls.__qualname__}\\): .*{message}"):
        check_sampler(cls)


@dataclass(frozen=True)
class UnseededPrior(Law):
    name: ClassVar[str] = "unseeded"

    def prior(self, n, shape, generator):
        return torch.randn((n, *shape))


@dataclass(frozen=True)
class FrozenLoss(Law):
    """A loss that does not depend on the network: nothing to learn."""

    name: ClassVar[str] = "frozen-loss"

    def prior(self, n, shape, generator):
        return torch.randn((n, *shape), generator=generator)

    def loss(self, network, batch, generator):
        return (network(batch["x0"], torch.ones(batch["x0"].shape[0])) * 0).sum() + 1.0


@dataclass(frozen=True)
class WidePrior(Law):
    """Heat's exact field with a prior twice too wide: not the law's stationary state."""

    name: ClassVar[str] = "wide-prior"

    def prior(self, n, shape, generator):
        return 2 * torch.randn((n, *shape), generator=generator)

    def exact_field(self, target):
        return REGISTRY.create("law", "heat").exact_field(target)


@pytest.mark.parametrize("cls, message", [
    (UnseededPrior, "prior is not reproducible"),
    (FrozenLoss, "loss did not decrease"),
    (WidePrior, "the prior is not the stationary state"),
])
def test_a_broken_law_fails_with_a_clear_message(cls, message):
    with pytest.raises(AssertionError, match=f"law '{cls.name}' .*{message}"):
        check_law(cls)


@dataclass(frozen=True)
class BatchMixing(Network):
    """Normalises over the batch: a sample's output depends on the others."""

    name: ClassVar[str] = "batch-mixing"

    def build(self, ctx):
        class Module(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(math.prod(ctx.shape), math.prod(ctx.shape))

            def forward(self, x, t):
                out = self.lin(x.reshape(x.shape[0], -1))
                out = (out - out.mean(0)).reshape(x.shape)
                return out if ctx.output == "vector" else out.reshape(x.shape[0], -1).sum(1)

        return Module()


@dataclass(frozen=True)
class Unreproducible(Dataset):
    name: ClassVar[str] = "unreproducible"

    def train(self):
        return torch.randn(10, 2)

    def test(self):
        return torch.randn(10, 2)


@dataclass(frozen=True)
class Unranked(Metric):
    name: ClassVar[str] = "unranked"

    def compute(self, samples, ctx):
        return {"score": 1.0}


@dataclass(frozen=True)
class Forgetful(Executor):
    name: ClassVar[str] = "forgetful"

    def map(self, fn, jobs):
        for job in jobs[1:]:
            yield job, fn(job)


@dataclass(frozen=True)
class Mutable(Metric):
    """Options that cannot be SPEC values."""

    name: ClassVar[str] = "bad-option"
    higher_is_better: ClassVar[dict[str, bool]] = {"x": True}
    level: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "level", [self.level])

    def compute(self, samples, ctx):
        return {"x": 1.0}


@pytest.mark.parametrize("check_fn, cls, message", [
    (check_network, BatchMixing, "outputs depend on the rest of the batch"),
    (check_dataset, Unreproducible, "splits are not reproducible from the options"),
    (check_metric, Unranked, "none of \\['score'\\] is in higher_is_better"),
    (check_executor, Forgetful, "map must yield each of 3 jobs once, yielded \\[1, 2\\]"),
    (check_metric, Mutable, "option level=\\[1.0\\] is not a bool, int, float, str or None"),
])
def test_other_broken_plugins_fail_with_a_clear_message(check_fn, cls, message):
    with pytest.raises(AssertionError, match=f"'{cls.name}' .*{message}"):
        check_fn(cls)


def test_a_broken_contract_is_named_before_anything_runs():
    class Plain(Sampler):
        name: ClassVar[str] = "plain"

    with pytest.raises(AssertionError, match="sampler 'plain': Plain must be decorated with @dataclass"):
        check_sampler(Plain)
    with pytest.raises(AssertionError, match="unknown plugin kind 'widget'"):
        check("widget", "x")


test_pytest_form = conformance_tests("dataset", TinyMixture, "gmm8:n_train=50:n_test=20")


# --------------------------------------------------------------------------- the exact solutions of zoo.testing


def _rk4_flow(field, x, t_from, t_to, steps=400):
    """dx/dt = u = -(grad p + x) from t_from to t_to by RK4 (forward time)."""
    t = torch.full((x.shape[0],), 0.0, dtype=torch.float64)
    h = (t_to - t_from) / steps
    f = lambda y, s: -(field.grad_p(y, t + s) + y)  # noqa: E731
    for k in range(steps):
        s = t_from + k * h
        k1 = f(x, s)
        k2 = f(x + h / 2 * k1, s + h / 2)
        k3 = f(x + h / 2 * k2, s + h / 2)
        k4 = f(x + h * k3, s + h)
        x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


@pytest.mark.parametrize("problem", [RelaxingGaussian(0.5, 2), RelaxingGaussian(0.5, 3, sigma=2.0),
                                     RelaxingBarenblatt(2.0, 2, 0.5), RelaxingBarenblatt(1.5, 3, 1.3)],
                         ids=["gauss", "gauss-sigma2", "barenblatt-m2", "barenblatt-m1.5"])
def test_analytic_problems_are_exact(problem):
    x = torch.randn(50, problem.dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 0.3
    moved = _rk4_flow(problem.field(), x, 0.0, 1.0)
    assert torch.allclose(moved, problem.flow(x, 0.0, 1.0), rtol=1e-6, atol=0)  # the flow map is a dilation
    y = x.clone().requires_grad_(True)
    t = torch.full((50,), 0.7, dtype=torch.float64)
    (grad,) = torch.autograd.grad(problem.pressure(y, t).sum(), y)
    assert torch.allclose(grad, problem.grad_p(x, t), atol=1e-10)  # grad p is the gradient of p (on the support)


def test_barenblatt_radius_and_moment():
    problem = RelaxingBarenblatt(2.0, 2, 1.0)
    assert problem.radius**4 == pytest.approx(8 / math.pi)  # MATH.md section 4
    assert problem.second_moment(5.0) == pytest.approx(problem.radius**2 * 1 / (1 + 1 + 1), rel=1e-6)


def test_relaxing_gaussian_agrees_with_the_laws_exact_fields(example_plugin):
    x = torch.randn(20, 2, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0.01, 3, 20)
    for law, sigma in (("heat", 1.0), ("tempered:sigma=2", 2.0)):
        problem = RelaxingGaussian(0.5, 2, sigma=sigma)
        field = REGISTRY.create("law", law).exact_field(problem.target)
        assert torch.allclose(field.grad_p(x, t), problem.grad_p(x, t), rtol=1e-5, atol=1e-6), law
