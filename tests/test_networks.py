"""Built-in networks: shapes, zero start, gradient flow, determinism, option errors, and the
exact / empirical fields wired to the heat law."""
from __future__ import annotations

import pytest
import torch

from zoo.contracts import BuildContext, seeded_generator
from zoo.errors import ZooError
from zoo.registry import get_registry

registry = get_registry()
needs_heat = pytest.mark.skipif("heat" not in registry.names("law"), reason="the heat law plugin is not installed")



def heat():
    return registry.create("law", "heat")


def law():
    """Any law: networks only read T and t_min from it."""
    return heat() if "heat" in registry.names("law") else registry.create("law", registry.names("law")[0])


def build(spec: str, shape: tuple[int, ...], output: str = "vector"):
    return registry.create("network", spec).build(BuildContext(shape, output, law(), None))


CASES = [("mlp:width=32:depth=2", (2,)), ("mlp:width=32:depth=2", (1, 8, 8)), ("unet:base=8", (1, 8, 8)),
         ("unet:base=8", (1, 28, 28))]
OUTPUTS = [(spec, shape, "vector") for spec, shape in CASES] + [
    ("mlp:width=32:depth=2", (2,), "scalar"), ("unet:base=8", (1, 8, 8), "scalar"), ("unet:base=8", (3, 32, 32), "scalar")]


@pytest.mark.parametrize("spec,shape,output", OUTPUTS)
def test_shapes_zero_start_and_gradients(spec, shape, output):
    torch.manual_seed(0)
    net = build(spec, shape, output)
    x, t = torch.randn(3, *shape), torch.tensor([1e-3, 0.1, 5.0])  # both ends of the default [t_min, T]
    y = net(x, t)
    assert y.shape == ((3, *shape) if output == "vector" else (3,)) and y.dtype == torch.float32
    assert torch.equal(y, torch.zeros_like(y))  # zero-initialised read-out
    # after one step of a regression every parameter receives a gradient
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    target = torch.randn(3, *shape) if output == "vector" else torch.randn(3)
    for _ in range(2):
        opt.zero_grad()
        (net(x, t) - target).square().mean().backward()
        opt.step()
    dead = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead
    y = net(x, t)
    assert torch.isfinite(y).all() and not torch.allclose(y[0], y[2])  # time matters
    if output == "scalar":  # the law differentiates a scalar (pressure) output in x
        xg = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(net(xg, t).sum(), xg)
        assert grad.shape == x.shape and grad.abs().sum() > 0


@pytest.mark.parametrize("spec,shape", CASES[:3])
def test_deterministic_under_manual_seed(spec, shape):
    outputs = []
    for _ in range(2):
        torch.manual_seed(1)
        net = build(spec, shape)
        for p in net.parameters():  # move off the zero start so the check sees every layer
            p.data.add_(0.01 * torch.randn(p.shape, generator=seeded_generator(2, p.numel())))
        outputs.append(net(torch.ones(4, *shape), torch.full((4,), 0.3)))
    assert torch.equal(outputs[0], outputs[1])


@pytest.mark.parametrize("spec", ["mlp:width=0", "mlp:depth=0", "mlp:activation=softmax", "unet:base=0",
                                  "unet:mults=1-x", "unet:mults=0-2", "mlp:size=3"])
def test_invalid_options(spec):
    with pytest.raises(ZooError) as err:
        registry.create("network", spec)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["mlp", "unet", "exact", "empirical"])
def test_spec_round_trip(name):
    network = registry.create("network", name)
    assert registry.create("network", network.spec) == network


def test_unet_rejects_what_it_cannot_build():
    with pytest.raises(ZooError, match="images"):
        build("unet", (2,))
    with pytest.raises(ZooError, match="divisible"):
        build("unet:mults=1-2-2-2", (1, 28, 28))
    with pytest.raises(ZooError, match="vector"):
        build("mlp", (2,), output="image")


def test_unet_auto_levels():
    from zoo_networks.unet import auto_mults

    assert [auto_mults(s, s) for s in (8, 28, 32, 64, 6)] == [(1, 2), (1, 2, 2), (1, 2, 2, 2), (1, 2, 2, 2), (1,)]


@needs_heat
def test_mlp_learns_by_denoising_score_matching():
    """A short DSM run on gmm8 brings the loss well below its starting value of 1 (noise prediction 0);
    long runs reach about 0.40."""
    law, data = registry.create("law", "heat:target=eps"), registry.create("dataset", "gmm8:n_train=2000").train()
    torch.manual_seed(0)
    net = registry.create("network", "mlp:width=32:depth=2").build(BuildContext((2,), "vector", law, None))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = seeded_generator(0)
    for _ in range(150):
        loss = law.loss(net, {"x0": data[torch.randint(len(data), (128,), generator=g)]}, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        held_out = law.loss(net, {"x0": data}, seeded_generator(1)).item()
    assert held_out < 0.7


@needs_heat
def test_exact_field_is_the_heat_score_of_the_mixture():
    """Near t = 0 the exact score of gmm8 at mu_k + delta is -delta / std^2: the data set's exact density
    (means, std) reaches the law through the network `exact`."""
    law, data = heat(), registry.create("dataset", "gmm8")
    exact = registry.create("network", "exact")
    assert exact.learned is False
    field = exact.field(law, data)
    delta = torch.tensor([[0.03, -0.02]])
    x = data.exact.means + delta
    t = torch.full((8,), 1e-6)
    assert torch.allclose(field.grad_p(x, t), -delta / 0.1**2, rtol=1e-3)
    assert field.nfe == 1


@needs_heat
def test_exact_needs_a_known_density():
    with pytest.raises(ZooError, match="data set 'moons' has no exact density"):
        registry.create("network", "exact").field(heat(), registry.create("dataset", "moons"))


@needs_heat
def test_empirical_field_points_to_the_training_points():
    """The empirical field is built on the train split: near t = 0, grad p(y_i + delta) = -delta / s_t^2,
    and one exact backward step from s_t-scale noise lands on the nearest training point."""
    law, data = heat(), registry.create("dataset", "gmm8:n_train=20")
    empirical = registry.create("network", "empirical")
    assert empirical.learned is False
    field = empirical.field(law, data)
    y, t = data.train(), 1e-5  # s_t = 0.0045, well below the closest pair of points
    s2 = 1 - torch.exp(torch.tensor(-2 * t)).item()
    delta = 1e-4 * torch.randn(y.shape, generator=seeded_generator(0))
    score = field.grad_p(y + delta, torch.full((20,), t))
    assert torch.allclose(score, -(y + delta - torch.exp(torch.tensor(-t)) * y) / s2, rtol=1e-3, atol=1e-2)
    # Tweedie: x + s_t^2 grad p = e^-t E[y | x]; from a point near y_i the posterior mean is y_i
    assert torch.allclose((y + delta + s2 * score) / torch.exp(torch.tensor(-t)), y, atol=1e-4)
