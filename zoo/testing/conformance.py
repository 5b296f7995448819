"""The conformance suite: one ``check_<kind>`` per plugin kind, usable by any plugin author.

Each check takes a plugin class, instance or SPEC string (looked up in the process registry),
raises ``AssertionError`` naming the plugin and the broken promise, and returns a small report
(measured numbers) when everything holds. ``conformance_tests(kind, *specs)`` makes a
parametrised pytest test of them. Every check is sized to run in a few seconds on a CPU.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from zoo.contracts import (KINDS, Barenblatt, BuildContext, Dataset, EvalContext, Field, GaussianMixture, Law,
                           Noise, Plugin, Sampler, seeded_generator)
from zoo.errors import ZooError
from zoo.registry import build, contract_violation, get_registry
from zoo.spec import Spec

Report = dict[str, Any]


class _Who:
    """Names the plugin under test in every failure message."""

    def __init__(self, plugin: Plugin) -> None:
        self.label = f"{plugin.kind} {plugin.name!r} ({type(plugin).__module__}.{type(plugin).__qualname__})"

    def ensure(self, condition: Any, message: str) -> None:
        if not condition:
            raise AssertionError(f"{self.label}: {message}")

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a plugin method; an unexpected exception becomes a failure that says where."""
        try:
            return fn(*args, **kwargs)
        except AssertionError:
            raise
        except Exception as exc:
            raise AssertionError(f"{self.label}: {what} raised {type(exc).__name__}: {exc}") from exc


def _one_thread(check: Callable[..., Report]) -> Callable[..., Report]:
    """Run a check on one CPU thread: its tensors are tiny, and on a busy machine torch's
    thread pool makes each small op tens of times slower."""

    @functools.wraps(check)
    def run(*args: Any, **kwargs: Any) -> Report:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return check(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return run


def resolve(kind: str, plugin: Any) -> Plugin:
    """A plugin instance from a SPEC string, a plugin class (default options) or an instance."""
    if kind not in KINDS:
        raise AssertionError(f"unknown plugin kind {kind!r} (kinds: {', '.join(KINDS)})")
    if isinstance(plugin, str):
        return get_registry().create(kind, plugin)
    if isinstance(plugin, type):
        reason = contract_violation(kind, plugin)
        if reason:
            raise AssertionError(f"{kind} {getattr(plugin, 'name', plugin)!r}: {reason}")
        return build(plugin, Spec(plugin.name))
    if not isinstance(plugin, KINDS[kind]):
        raise AssertionError(f"expected a {kind} (class, instance or SPEC), got {plugin!r}")
    return plugin


def check_contract(kind: str, plugin: Any) -> Plugin:
    """Frozen dataclass subclassing the kind's base, a valid name, options that round-trip
    through the canonical SPEC (``plugin.spec``)."""
    plugin = resolve(kind, plugin)
    who = _Who(plugin)
    reason = contract_violation(kind, type(plugin))
    who.ensure(reason is None, f"breaks the {KINDS[kind].__name__} contract: {reason}")
    for key, value in plugin.options().items():
        who.ensure(value is None or isinstance(value, (bool, int, float, str)),
                   f"option {key}={value!r} is not a bool, int, float, str or None")
    try:
        setattr(plugin, plugin.option_names()[0] if plugin.option_names() else "name", None)
        who.ensure(False, "instances must be immutable (@dataclass(frozen=True))")
    except dataclasses.FrozenInstanceError:
        pass
    rebuilt = who.call(f"rebuilding from its spec {plugin.spec!r}", build, type(plugin), Spec.parse(plugin.spec))
    who.ensure(rebuilt == plugin, f"options do not round-trip through the spec: {plugin.spec!r} "
                                  f"builds {rebuilt!r}, not {plugin!r}")
    hash(plugin)
    return plugin


def _finite(x: Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def _shape(x: Tensor) -> tuple[int, ...]:
    return tuple(x.shape)


# --------------------------------------------------------------------------- laws

GAUSSIAN_H0 = 0.5  # the test data law N(0, h0^2 I): narrower than the stationary state, so the flow has work


def exact_problem(law: Law, dim: int) -> tuple[Any, Field] | tuple[None, None]:
    """A data law with a closed-form solution and the law's exact field for it: N(0, h0^2 I)
    (any law with Gaussian exact fields) or a dilated Barenblatt profile (PME with option m)."""
    from zoo.testing import RelaxingBarenblatt, RelaxingGaussian

    problems: list[Any] = [RelaxingGaussian(GAUSSIAN_H0, dim)]
    if isinstance(getattr(law, "m", None), (int, float)) and law.m > 1:
        problems.append(RelaxingBarenblatt(float(law.m), dim, GAUSSIAN_H0))
    for problem in problems:
        try:
            return problem, law.exact_field(problem.target)
        except ZooError:
            continue
    return None, None


def _rk4_reference(law: Law, field: Field, x: Tensor, steps: int = 1000) -> Tensor:
    """The probability-flow ODE dY/ds = grad p + Y from t = T to t_min by classical RK4 on a
    fine geometric grid: the reference that samplers converge to."""
    process = law.reverse(field, 0.0)
    grid = [float(t) for t in law.time_grid(steps, "geometric")]
    y = x.double()
    for t, t_next in zip(grid[:-1], grid[1:]):
        h = t - t_next
        k1 = process.ode_drift(y, t)
        k2 = process.ode_drift(y + 0.5 * h * k1, t - 0.5 * h)
        k3 = process.ode_drift(y + 0.5 * h * k2, t - 0.5 * h)
        k4 = process.ode_drift(y + h * k3, t_next)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _prior(law: Law, n: int, shape: tuple[int, ...], seed: int) -> Tensor:
    """The prior draws of zoo.sampling: sample i from stream 2i of the seed."""
    return torch.cat([law.prior(1, shape, seeded_generator(seed, 2 * i)) for i in range(n)]).float()


def _field_for(law: Law, dim: int) -> Field:
    """The law's exact field for a closed-form data law, else the heat field of N(0, h0^2 I):
    a smooth field on which any ODE sampler must still converge."""
    from zoo.testing import RelaxingGaussian

    problem, exact = exact_problem(law, dim)
    return exact if problem is not None else RelaxingGaussian(GAUSSIAN_H0, dim).field()


@functools.lru_cache(maxsize=8)
def _reference(law: Law, n: int, seed: int, steps: int) -> tuple[Tensor, Tensor]:
    """Prior draws (n, 2) and their RK4 transport by :func:`_field_for` (shared by every sampler)."""
    x = _prior(law, n, (2,), seed)
    return x, _rk4_reference(law, _field_for(law, 2), x, steps)


@_one_thread
def check_law(law: Any, *, shape: tuple[int, ...] = (2,), steps: int = 40, seed: int = 0) -> Report:
    """Contract; the prior (shape, seeding, centred); stationary sampling (the prior pushed back by
    the law's exact field reproduces the data law); a finite training loss that decreases over
    ``steps`` Adam steps of a tiny MLP; the learned Field (shape, one NFE per call, usable under
    ``torch.no_grad``); P(rho)/rho shaped (n,) and >= 0."""
    from zoo.testing import TinyMLP, TinyMixture

    law = check_contract("law", law)
    who = _Who(law)
    report: Report = {}

    # the prior: shape, seeding, centred (every law here has a radially symmetric stationary state)
    n = 2000
    prior = who.call("prior", law.prior, n, shape, seeded_generator(seed))
    who.ensure(isinstance(prior, Tensor) and _shape(prior) == (n, *shape),
               f"prior(n, shape, generator) must return (n, *shape) = {(n, *shape)}, got {getattr(prior, 'shape', prior)}")
    who.ensure(prior.is_floating_point() and _finite(prior), "prior samples must be finite floats")
    who.ensure(torch.equal(prior, law.prior(n, shape, seeded_generator(seed))),
               "prior is not reproducible: the same generator seed gave different samples")
    who.ensure(not torch.equal(prior, law.prior(n, shape, seeded_generator(seed + 1))),
               "prior ignores its generator: two seeds gave the same samples")
    flat = prior.double().reshape(n, -1)
    offset = (flat.mean(0).abs() / (flat.std(0) / math.sqrt(n)).clamp_min(1e-12)).max().item()
    who.ensure(offset < 5, f"prior is not centred: a coordinate's mean is {offset:.1f} standard errors from 0")

    # stationary sampling: from the prior, the exact reverse flow must land on the data law
    problem, exact = exact_problem(law, math.prod(shape))
    if problem is not None:
        start = _prior(law, 1000, shape, seed)
        end = _rk4_reference(law, exact, start, steps=100)
        sq = end.reshape(end.shape[0], -1).square().sum(1)
        want = problem.second_moment(law.t_min)
        path = law.affine_path(law.t_min, math.prod(shape))
        if path is not None and problem.target_is_gaussian:  # the law's own marginal of N(0, h0^2 I) data
            want = math.prod(shape) * (path[0] ** 2 * problem.h0**2 + path[1] ** 2)
        report["stationary_m2_error"] = abs(sq.mean().item() / want - 1)
        tolerance = max(0.05, 4 * (sq.std() / sq.mean()).item() / math.sqrt(sq.shape[0]))  # 4 standard errors
        who.ensure(report["stationary_m2_error"] < tolerance,
                   f"prior samples moved by the law's exact reverse flow for {type(problem).__name__}"
                   f"(h0={problem.h0}) end with E|x|^2 = {sq.mean().item():.4f}, expected {want:.4f}: the prior "
                   f"is not the stationary state of the law's own dynamics (or exact_field is wrong)")

    # learning: prepare, a finite loss that decreases, a Field from the network
    data = TinyMixture(n=64, dim=math.prod(shape), seed=seed).train().reshape(64, *shape)
    batch = who.call("prepare", law.prepare, data, seeded_generator(seed, 1))
    who.ensure(isinstance(batch, dict) and batch and all(isinstance(v, Tensor) for v in batch.values()),
               "prepare must return a non-empty dict of tensors")
    rows = {v.shape[0] for v in batch.values()}
    who.ensure(len(rows) == 1, f"prepare's tensors must share their first dimension, got sizes {sorted(rows)}")
    rows_n = rows.pop()
    scalar = law.network_output == "scalar"
    who.ensure(law.network_output in ("vector", "scalar"), "network_output must be 'vector' or 'scalar'")
    torch.manual_seed(seed)
    net = TinyMLP(shape, scalar=scalar)
    fixed = {k: v[:64] for k, v in batch.items()}

    def fixed_loss() -> Tensor:
        return law.loss(net, fixed, seeded_generator(seed, 2))

    first = who.call("loss", fixed_loss)
    who.ensure(isinstance(first, Tensor) and first.dim() == 0 and _finite(first),
               f"loss must be a finite scalar tensor, got {first!r}")
    who.ensure(first.requires_grad, "loss must be differentiable in the network's parameters")
    who.ensure(torch.equal(first, fixed_loss()), "loss is not reproducible under the same generator seed")
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = seeded_generator(seed, 3)
    for step in range(steps):
        idx = torch.randint(rows_n, (min(64, rows_n),), generator=g)
        loss = law.loss(net, {k: v[idx] for k, v in batch.items()}, g)
        who.ensure(_finite(loss), f"training loss became {loss.item()} at Adam step {step}")
        opt.zero_grad()
        loss.backward()
        opt.step()
    last = fixed_loss()
    report.update(loss_first=first.item(), loss_last=last.item())
    who.ensure(last.item() < first.item(), f"loss did not decrease over {steps} Adam steps of a tiny MLP: "
                                           f"{first.item():.4g} -> {last.item():.4g}")

    field = who.call("field", law.field, net)
    who.ensure(isinstance(field, Field), f"field(network) must return a zoo.contracts.Field, got {type(field).__name__}")
    x, t = data[:8], torch.full((8,), 0.5)
    field.nfe = 0
    with torch.no_grad():  # how zoo.sampling calls it
        out = who.call("field.grad_p under torch.no_grad", field.grad_p, x, t)
    who.ensure(_shape(out) == _shape(x) and _finite(out), f"field.grad_p(x, t) must be finite with x's shape {_shape(x)}")
    who.ensure(field.nfe == 1, f"one grad_p call must count one NFE, counted {field.nfe}")
    try:  # a law may refuse (ZooError) when the field gives no pressure: no stochastic sampling then
        with torch.no_grad():
            ratio = law.pressure_ratio(field, x, t)
    except ZooError as exc:
        report["pressure_ratio"] = f"refused: {exc}"
    else:
        who.ensure(_shape(ratio) == (8,) and _finite(ratio) and bool((ratio >= 0).all()),
                   f"pressure_ratio must be finite, >= 0 and shaped (n,), got {_shape(ratio)}")
    return report


# --------------------------------------------------------------------------- networks


def _default_law() -> Law:
    registry = get_registry()
    names = ["heat"] if "heat" in registry.entries["law"] else registry.names("law")
    if not names:
        raise AssertionError("no law is registered: pass law= to the check")
    return registry.create("law", names[0])


@_one_thread
def check_network(network: Any, *, law: Any = None, dataset: Any = None, seed: int = 0) -> Report:
    """Contract; a learned network builds deterministically under ``torch.manual_seed``, maps
    x (n, *shape), t (n,) to (n, *shape) (vector) or (n,) (scalar), does not mix samples of a batch,
    and back-propagates; a non-learned one returns a Field that counts one NFE per call."""
    from zoo.testing import TinyImages, TinyMixture

    network = check_contract("network", network)
    who = _Who(network)
    law = resolve("law", law) if law is not None else _default_law()
    datasets = [resolve("dataset", dataset)] if dataset is not None else [TinyMixture(), TinyImages()]
    report: Report = {"datasets": []}
    refused: list[str] = []
    for data in datasets:
        x = data.train()[:6]
        t = torch.linspace(0.01, 1.0, 6)
        if not network.learned:
            try:
                field = network.field(law, data)
            except ZooError as exc:
                refused.append(f"{data.name}: {exc}")
                continue
            who.ensure(isinstance(field, Field), f"field(law, dataset) must return a Field, got {type(field).__name__}")
            field.nfe = 0
            with torch.no_grad():
                out = who.call("field.grad_p", field.grad_p, x, t)
            who.ensure(_shape(out) == _shape(x) and _finite(out), "field.grad_p(x, t) must be finite with x's shape")
            who.ensure(field.nfe == 1, f"one grad_p call must count one NFE, counted {field.nfe}")
            report["datasets"].append(data.name)
            continue
        for output in ("vector", "scalar"):
            ctx = BuildContext(tuple(x.shape[1:]), output, law, data)
            torch.manual_seed(seed)
            try:
                module = network.build(ctx)
            except ZooError as exc:
                refused.append(f"{data.name} ({output}): {exc}")
                continue
            who.ensure(isinstance(module, nn.Module), f"build(ctx) must return an nn.Module, got {type(module).__name__}")
            torch.manual_seed(seed)
            twin = network.build(ctx)
            same = all(torch.equal(a, b) for a, b in zip(module.state_dict().values(), twin.state_dict().values()))
            who.ensure(same, "build(ctx) is not deterministic under torch.manual_seed")
            who.ensure(any(p.requires_grad for p in module.parameters()), "a learned network needs parameters")
            out = who.call(f"forward ({output})", module, x, t)
            want = (x.shape[0],) if output == "scalar" else _shape(x)
            who.ensure(_shape(out) == want and _finite(out),
                       f"forward(x, t) for a {output} output must be finite and shaped {want}, got {_shape(out)}")
            module.eval()
            with torch.no_grad():
                whole, part = module(x, t), module(x[:2], t[:2])
            who.ensure(torch.allclose(whole[:2], part, atol=1e-5, rtol=1e-4),
                       "outputs depend on the rest of the batch (in eval mode)")
            module.train()
            module.zero_grad()
            module(x, t).square().mean().backward()
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            who.ensure(grads and all(_finite(g) for g in grads), "backward gives no finite gradient")
            report["datasets"].append(f"{data.name} ({output})")
    who.ensure(report["datasets"], "worked with none of the data sets tried: " + "; ".join(refused))
    return report


# --------------------------------------------------------------------------- samplers


class _Tally(Field):
    """Wraps a field and counts its evaluations where the sampler cannot reset the count."""

    def __init__(self, inner: Field) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        self.calls += 1
        return self.inner.grad_p(x, t)

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        self.calls += 1
        return self.inner.pressure(x, t)

    def grad_p_and_pressure(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        self.calls += 1
        return self.inner.grad_p_and_pressure(x, t)


def _default_law_for(sampler: Sampler) -> Law:
    registry = get_registry()
    names = ["heat"] + registry.names("law")
    for name in names:
        if name in registry.entries["law"]:
            law = registry.create("law", name)
            if sampler.supports(law):
                return law
    raise AssertionError(f"sampler {sampler.name!r}: no registered law it supports "
                         f"(laws={sampler.laws}); pass law=")


def _run(sampler: Sampler, law: Law, field: Field, x: Tensor, nfe: int, seed: int,
         final: bool = True) -> tuple[Tensor, int]:
    """The sampler's samples and evaluations as zoo.sampling runs it; ``final=False``: stopping at
    t_min, without the final step (convergence is measured against a solution to t_min)."""
    if not final:
        sampler = dataclasses.replace(sampler, final="none")
    tally = _Tally(field)
    grid = law.time_grid(sampler.steps_within(nfe, law), sampler.grid)
    noise = Noise(seed, range(1, 2 * x.shape[0], 2), tuple(x.shape[1:]), device=x.device)
    with torch.no_grad():
        y = sampler.run(law.reverse(tally, sampler.strength(law)), x, grid, noise)
    return y, tally.calls


@_one_thread
def check_sampler(sampler: Any, *, law: Any = None, seed: int = 0,
                  nfes: tuple[int, ...] = (8, 16, 32, 64)) -> Report:
    """Contract; ``steps_for`` positive and non-decreasing; output shape, dtype and device for
    vector and image shapes; input left untouched; determinism under a seed whatever the global
    RNG and the batch size; NFE: the count that zoo.sampling reports equals the field's evaluations,
    at least one per grid step and within the budget; convergence on an exact field: the error
    against a fine RK4 solution (ODE samplers) or in E|x|^2 (stochastic samplers) falls as NFE doubles."""
    from zoo.sampling import generate

    sampler = check_contract("sampler", sampler)
    who = _Who(sampler)
    law = resolve("law", law) if law is not None else _default_law_for(sampler)
    who.ensure(sampler.supports(law), f"does not support law {law.name!r} (laws={sampler.laws})")
    who.ensure(sampler.laws is None or law.name in sampler.laws, "supports() disagrees with `laws`")
    report: Report = {"law": law.spec}

    least = who.call("min_nfe", sampler.min_nfe)
    who.ensure(isinstance(least, int) and least >= 1, f"min_nfe() must return an int >= 1, got {least!r}")
    report["min_nfe"] = least
    least = sampler.least_nfe(law)  # and the final step's NFE
    report["least_nfe"] = least
    budgets = tuple(k for k in (1, 2, 3, 4, 8, 16, 32, 64) if k >= least)
    steps = [who.call("steps_for", sampler.steps_within, k, law) for k in budgets]
    who.ensure(all(isinstance(s, int) and s >= 1 for s in steps), f"steps_for must return ints >= 1, got {steps}")
    who.ensure(steps == sorted(steps), f"steps_for must not decrease as the budget grows: {dict(zip(budgets, steps))}")
    adaptive = bool(sampler.adaptive)  # it chooses its own steps; the budget only fixes a starting grid
    who.ensure(adaptive or len(set(steps)) > 1,
               "steps_for ignores the NFE budget: declare `adaptive = True` if the sampler chooses its own steps")
    report["adaptive"] = adaptive
    base = max(8, least)  # the budget of the shape, NFE and determinism checks

    if sampler.stochastic and exact_problem(law, 2)[0] is None:  # noise needs the law's own pressure
        raise AssertionError(f"{who.label}: law {law.name!r} has no exact field for a Gaussian or "
                             f"Barenblatt data law: pass a law= that has one")
    for shape in ((2,), (1, 4, 4)):
        exact = _field_for(law, math.prod(shape))
        x = _prior(law, 12, shape, seed)
        before = x.clone()
        y, calls = who.call("sample", _run, sampler, law, exact, x, base, seed)
        who.ensure(isinstance(y, Tensor) and _shape(y) == _shape(x),
                   f"sample must return x's shape {_shape(x)}, got {getattr(y, 'shape', y)}")
        who.ensure(y.dtype == x.dtype and y.device == x.device, "sample must keep x's dtype and device")
        who.ensure(_finite(y), "non-finite samples on an exact field")
        who.ensure(torch.equal(x, before), "sample modified its input x in place")
        if not adaptive:  # every budget zoo accepts, down to min_nfe: within it, and one NFE per step at least
            for budget in (*[b for b in budgets if b < base], base):
                k = sampler.steps_within(budget, law)
                _, calls = who.call("sample", _run, sampler, law, exact, x[:4], budget, seed)
                who.ensure(k <= calls <= budget, f"with a budget of {budget} NFE ({k} grid steps) it evaluated the "
                                                 f"field {calls} times: expected between {k} and {budget}"
                                                 + (" (raise min_nfe() if one step costs more)" if budget == least else ""))

        # determinism: same seed, other global RNG state, other batch size
        torch.manual_seed(1)
        a = generate(law, _Tally(exact), sampler, n=12, nfe=base, shape=shape, seed=seed, batch_size=12)
        torch.manual_seed(2)
        tally = _Tally(exact)
        b = generate(law, tally, sampler, n=12, nfe=base, shape=shape, seed=seed, batch_size=5)
        who.ensure(torch.allclose(a.samples, b.samples, atol=1e-5, rtol=1e-5),
                   "samples depend on the batch size or on the global RNG: draw noise only from `noise`")
        who.ensure(b.nfe == calls, f"zoo.sampling counted {b.nfe} NFE, the field was evaluated {calls} times per batch")
        c = generate(law, _Tally(exact), sampler, n=12, nfe=base, shape=shape, seed=seed + 1, batch_size=12)
        if sampler.stochastic:
            who.ensure(not torch.equal(a.samples, c.samples), "a stochastic sampler gave the same samples for two seeds")

    report.update(_convergence(sampler, law, who, seed, nfes, adaptive))
    return report


def _convergence(sampler: Sampler, law: Law, who: _Who, seed: int, nfes: tuple[int, ...],
                 adaptive: bool) -> Report:
    exact = _field_for(law, 2)
    if not sampler.stochastic:
        x, ref = _reference(law, 200, seed, 500)
        scale = ref.square().mean().sqrt().item()
        errors = []
        nfes = nfes[-1:] if adaptive else nfes  # an adaptive sampler picks its own steps: one run
        while not adaptive and nfes[0] < sampler.min_nfe():  # the sweep starts where the sampler accepts a budget
            nfes = tuple(2 * k for k in nfes)
        for nfe in nfes:
            y, _ = _run(sampler, law, exact, x, nfe, seed, final=False)
            errors.append((y.double() - ref).square().mean().sqrt().item() / scale)
            if len(errors) > 1 and errors[-1] < 1e-7:
                break  # at round-off: nothing left to halve
        orders = [math.log2(e0 / e1) for e0, e1 in zip(errors[:-1], errors[1:]) if e1 > 0]
        report = {"errors": dict(zip(nfes, errors)), "orders": orders}
        if adaptive:  # one accuracy, no NFE sweep
            who.ensure(errors[-1] < 1e-2, f"relative error {errors[-1]:.2e} against an RK4 solution on an "
                                          f"exact field: an adaptive ODE sampler should be accurate")
            return report
        falling = all(e1 < e0 or e1 < 1e-7 for e0, e1 in zip(errors[:-1], errors[1:]))
        converging = errors[-1] < 1e-7 or (orders and orders[-1] > 0.5)
        who.ensure(falling and converging and errors[-1] < 0.25,
                   "error against a fine RK4 solution on an exact field does not fall (at order > 0.5) "
                   "as NFE doubles: " + ", ".join(f"nfe {k}: {e:.2e}" for k, e in zip(nfes, errors)))
        if sampler.order is not None:
            report["order"] = _declared_order(sampler, law, who, seed, list(nfes[:len(errors)]), errors, x, ref, scale)
        return report
    # stochastic: all members of the alpha family share the marginals, so compare E|x|^2 with the ODE's
    n = 1000
    x, ref = _reference(law, n, seed, 200)
    want = ref.square().sum(1).mean().item()
    noise_floor = 3 * ref.square().sum(1).std().item() / math.sqrt(n) / want
    low, high = nfes[0], nfes[-1]
    errors = {}
    for nfe in (low, high):
        y, _ = _run(sampler, law, exact, x, nfe, seed, final=False)
        errors[nfe] = abs(y.double().square().sum(1).mean().item() / want - 1)
    report = {"m2_errors": errors, "noise_floor": noise_floor}
    who.ensure(errors[high] < errors[low] or errors[low] < noise_floor,
               f"E|x|^2 error does not fall from nfe {low} to {high}: {errors[low]:.3f} -> {errors[high]:.3f}")
    who.ensure(errors[high] < max(0.1, 2 * noise_floor),
               f"E|x|^2 off by {100 * errors[high]:.1f}% at nfe {high} on an exact field")
    return report


ORDER_SLACK = 0.3  # a measured order this far below the declared one fails
ORDER_MAX_NFE = 256  # the sweep doubles up to here while the order is short of its claim (small error constants)


def measured_order(nfes: list[int], errors: list[float]) -> float:
    """The slope of -log(error) against log(NFE), least squares over the last three points."""
    x, y = [math.log(k) for k in nfes[-3:]], [-math.log(e) for e in errors[-3:]]
    mx, my = sum(x) / len(x), sum(y) / len(y)
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / sum((a - mx) ** 2 for a in x)


def _declared_order(sampler: Sampler, law: Law, who: _Who, seed: int, nfes: list[int], errors: list[float],
                    x: Tensor, ref: Tensor, scale: float) -> float:
    """Checks the order a deterministic sampler declares against the one it shows on an exact
    field; the NFE sweep is doubled (up to ORDER_MAX_NFE) while the order falls short, since a
    small error constant can hide the order at few NFE. Errors at round-off end the sweep."""
    claimed = sampler.order
    who.ensure(isinstance(claimed, int) and claimed >= 1, f"`order` must be None or an int >= 1, got {claimed!r}")
    exact = _field_for(law, 2)
    while True:
        if errors[-1] < 1e-7 or len(errors) < 3:
            return float(claimed)  # exact to round-off: nothing left to measure
        order = measured_order(nfes, errors)
        if order >= claimed - ORDER_SLACK or nfes[-1] * 2 > ORDER_MAX_NFE:
            break
        nfes.append(nfes[-1] * 2)
        y, _ = _run(sampler, law, exact, x, nfes[-1], seed, final=False)
        errors.append((y.double() - ref).square().mean().sqrt().item() / scale)
    who.ensure(order >= claimed - ORDER_SLACK,
               f"declares order {claimed} but converges at order {order:.2f} on an exact field (errors: "
               + ", ".join(f"nfe {k}: {e:.2e}" for k, e in zip(nfes, errors)) + ")")
    return order


# --------------------------------------------------------------------------- data sets


@_one_thread
def check_dataset(dataset: Any) -> Report:
    """Contract; train and test splits are finite float32 CPU tensors (n, *shape) reproducible
    from the options alone; labels (n,) integers or None; ``exact`` None or a density of the right dimension."""
    dataset = check_contract("dataset", dataset)
    who = _Who(dataset)
    train, test = who.call("train", dataset.train), who.call("test", dataset.test)
    for split, x in (("train", train), ("test", test)):
        who.ensure(isinstance(x, Tensor) and x.dim() >= 2 and x.shape[0] >= 1,
                   f"{split}() must return a tensor (n, *shape) with n >= 1")
        who.ensure(x.dtype == torch.float32 and x.device.type == "cpu" and _finite(x),
                   f"{split}() must be finite float32 on the CPU, got {x.dtype} on {x.device}")
        labels = who.call(f"labels({split!r})", dataset.labels, split)
        who.ensure(labels is None or (isinstance(labels, Tensor) and _shape(labels) == (x.shape[0],)
                                      and not labels.is_floating_point()),
                   f"labels({split!r}) must be None or integers shaped ({x.shape[0]},)")
    who.ensure(train.shape[1:] == test.shape[1:], f"splits differ in shape: {_shape(train)} vs {_shape(test)}")
    who.ensure(tuple(dataset.shape) == _shape(train)[1:], f"shape {dataset.shape} is not the splits' {_shape(train)[1:]}")
    twin = build(type(dataset), Spec.parse(dataset.spec))
    who.ensure(torch.equal(twin.train(), train) and torch.equal(twin.test(), test),
               "splits are not reproducible from the options")
    exact = dataset.exact
    dim = math.prod(dataset.shape)
    who.ensure(exact is None or isinstance(exact, (GaussianMixture, Barenblatt)),
               f"exact must be None, a GaussianMixture or a Barenblatt, got {type(exact).__name__}")
    if isinstance(exact, GaussianMixture):
        k = exact.weights.shape[0]
        who.ensure(_shape(exact.means) == (k, dim) and _shape(exact.covs) == (k, dim, dim),
                   f"exact mixture must have means ({k}, {dim}) and covs ({k}, {dim}, {dim})")
        who.ensure(abs(float(exact.weights.sum()) - 1) < 1e-6, "exact mixture weights must sum to 1")
    if isinstance(exact, Barenblatt):
        who.ensure(exact.dim == dim, f"exact Barenblatt has dim {exact.dim}, data have {dim}")
    who.ensure(isinstance(dataset.default_network, str), "default_network must be a network name")
    return {"train": _shape(train), "test": _shape(test)}


# --------------------------------------------------------------------------- metrics


@_one_thread
def check_metric(metric: Any, *, datasets: tuple[Any, ...] = (), seed: int = 0) -> Report:
    """Contract; on the first data set it applies to (real train data as the samples, held-out data
    as the reference), ``compute`` returns finite floats, at least one of them ranked by
    ``higher_is_better``, reproducibly under the same seed."""
    from zoo.testing import TinyImages, TinyMixture

    metric = check_contract("metric", metric)
    who = _Who(metric)
    candidates = [resolve("dataset", d) for d in datasets] or [TinyMixture(), TinyImages()]
    data = next((d for d in candidates if who.call("applies", metric.applies, d)), None)
    who.ensure(data is not None, "applies to none of the data sets tried: "
                                 + ", ".join(d.name for d in candidates) + " (pass datasets=)")
    train, test = data.train()[:200], data.test()[:200]
    law, field = _context_law(data)

    def context() -> EvalContext:
        return EvalContext(dataset=data, train=train, reference=test, seed=seed, law=law, field=field)

    values = who.call("compute", metric.compute, train, context())
    who.ensure(isinstance(values, dict) and values, f"compute must return a non-empty dict, got {values!r}")
    for key, value in values.items():
        who.ensure(isinstance(key, str) and isinstance(value, float) and math.isfinite(value),
                   f"compute must map names to finite floats, got {key!r}: {value!r}")
    ranked = [key for key in values if key in metric.higher_is_better]
    who.ensure(ranked, f"none of {sorted(values)} is in higher_is_better: reports cannot rank the metric")
    again = metric.compute(train, context())
    who.ensure(again == values, f"compute is not reproducible under the same seed: {values} then {again}")
    return {"dataset": data.name, "values": values, "unranked": sorted(set(values) - set(ranked))}


def _context_law(data: Dataset) -> tuple[Law | None, Field | None]:
    """The registered heat law and its exact field for the data, where both exist (velocity metrics)."""
    registry = get_registry()
    if data.exact is None or "heat" not in registry.entries["law"]:
        return None, None
    law = registry.create("law", "heat")
    try:
        return law, law.exact_field(data.exact)
    except ZooError:
        return law, None


# --------------------------------------------------------------------------- executors


def square_job(job: dict) -> dict:
    """A module-level job (executors may pickle it to other processes)."""
    return {"square": job["i"] ** 2}


@_one_thread
def check_executor(executor: Any, *, jobs: int = 3) -> Report:
    """Contract; ``map(fn, jobs)`` yields every job exactly once as ``(job, fn(job))``."""
    executor = check_contract("executor", executor)
    who = _Who(executor)
    work = [{"i": i} for i in range(jobs)]
    out = who.call("map", lambda: list(executor.map(square_job, work)))
    who.ensure(all(isinstance(item, tuple) and len(item) == 2 for item in out), "map must yield (job, result) pairs")
    seen = sorted(job["i"] for job, _ in out)
    who.ensure(seen == list(range(jobs)), f"map must yield each of {jobs} jobs once, yielded {seen}")
    who.ensure(all(result == square_job(job) for job, result in out), "map yielded results that are not fn(job)")
    who.ensure(list(executor.map(square_job, [])) == [], "map over no jobs must yield nothing")
    return {"jobs": jobs}


# --------------------------------------------------------------------------- entry points

CHECKS: dict[str, Callable[..., Report]] = {
    "law": check_law, "network": check_network, "sampler": check_sampler,
    "dataset": check_dataset, "metric": check_metric, "executor": check_executor,
}


def check(kind: str, plugin: Any, **kwargs: Any) -> Report:
    """Run the conformance check of ``kind`` on a plugin class, instance or SPEC."""
    if kind not in CHECKS:
        raise AssertionError(f"unknown plugin kind {kind!r} (kinds: {', '.join(CHECKS)})")
    return CHECKS[kind](plugin, **kwargs)


def conformance_tests(kind: str, *specs: Any, **kwargs: Any) -> Callable[..., None]:
    """A pytest test running ``check(kind, spec)`` for each spec, one parametrised case each.

        test_my_samplers = conformance_tests("sampler", "ralston", "ralston:grid=uniform")
    """
    import pytest

    @pytest.mark.parametrize("plugin", specs, ids=[str(getattr(s, "name", s)) for s in specs])
    def test_conformance(plugin: Any) -> None:
        check(kind, plugin, **kwargs)

    return test_conformance
