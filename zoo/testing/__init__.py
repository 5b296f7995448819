"""Helpers for testing zoo plugins: inline registration, tiny data sets, a tiny network,
analytic fields with exact solutions, and the conformance suite (:mod:`zoo.testing.conformance`).

    from zoo.testing import registered, check_sampler

    def test_my_sampler():
        with registered(my_plugin_module):
            check_sampler("ralston")
"""
from __future__ import annotations

import contextlib
import math
import types
from dataclasses import dataclass
from typing import ClassVar, Iterator

import torch
from torch import Tensor, nn

from zoo.contracts import Barenblatt, Dataset, Field, FunctionField, GaussianMixture, KINDS, Plugin, per_sample, seeded_generator
from zoo.hookspecs import hookimpl
from zoo.registry import Registry, get_registry

__all__ = [
    "registered", "TinyMixture", "TinyImages", "TinyMLP", "RelaxingGaussian", "RelaxingBarenblatt",
    "check", "check_law", "check_network", "check_sampler", "check_dataset", "check_metric",
    "check_executor", "conformance_tests",
]


# --------------------------------------------------------------------------- registration


def _as_plugin(obj: object) -> object:
    """A module or hook-holding object as is; a bare plugin class wrapped in a one-hook plugin."""
    if isinstance(obj, type) and issubclass(obj, Plugin):
        hook = f"zoo_register_{obj.kind}s"
        if obj.kind not in KINDS:
            raise TypeError(f"{obj.__qualname__} subclasses no plugin kind of zoo.contracts")
        impl = hookimpl(lambda register, _cls=obj: register(_cls))
        impl.__name__ = hook
        return types.SimpleNamespace(**{hook: impl, "__name__": f"inline:{obj.__qualname__}"})
    return obj


def _present(registry: Registry, plugin: object) -> bool:
    """Already registered, e.g. through the entry point of the installed package under test."""
    if isinstance(plugin, type) and issubclass(plugin, Plugin):
        entry = registry.entries.get(plugin.kind, {}).get(plugin.name)
        return entry is not None and entry.cls is plugin
    return registry.pm.is_registered(plugin)


@contextlib.contextmanager
def registered(*plugins: object, registry: Registry | None = None, strict: bool = True) -> Iterator[Registry]:
    """Register plugin modules, hook-holding objects or bare plugin classes for the duration
    of a ``with`` block, in the process registry (or ``registry``); unregister them afterwards.
    A plugin already registered (an installed package found through its entry point) is used as is.

    With ``strict`` (the default) a plugin that the host rejects (broken contract, taken name,
    a hook that raises) fails at once with the host's reason.
    """
    registry = registry or get_registry()
    names: list[str] = []
    try:
        for plugin in plugins:
            if _present(registry, plugin):
                continue
            before = len(registry.problems)
            names.append(registry.add(_as_plugin(plugin)))
            new = registry.problems[before:]
            if strict and new:
                raise AssertionError("; ".join(f"plugin {p.plugin!r}: {p.reason}" for p in new))
        yield registry
    finally:
        for name in reversed(names):
            registry.remove(name)


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class _Drawn(Dataset):
    """Splits and labels drawn from seeded stream 0 (train) or 1 (held out) by ``_draw``."""

    def _draw(self, stream: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def train(self) -> Tensor:
        return self._draw(0)[0]

    def test(self) -> Tensor:
        return self._draw(1)[0]

    def labels(self, split: str) -> Tensor:
        return self._draw(0 if split == "train" else 1)[1]


@dataclass(frozen=True)
class TinyMixture(_Drawn):
    """A mixture of ``k`` Gaussians on a circle of radius ``radius`` in ``dim`` dimensions,
    with ``n`` train and ``n`` test points; the exact density is known (``exact``)."""

    name: ClassVar[str] = "tiny-mixture"
    summary: ClassVar[str] = "a small Gaussian mixture for tests (exact density known)"

    n: int = 128
    dim: int = 2
    k: int = 4
    radius: float = 2.0
    std: float = 0.3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.dim < 2 or self.k < 1 or self.std <= 0:
            self.fail("needs n >= 1, dim >= 2, k >= 1 and std > 0")

    @property
    def exact(self) -> GaussianMixture:
        angle = 2 * math.pi * torch.arange(self.k, dtype=torch.float64) / self.k
        means = torch.zeros(self.k, self.dim, dtype=torch.float64)
        means[:, 0], means[:, 1] = self.radius * torch.cos(angle), self.radius * torch.sin(angle)
        covs = self.std**2 * torch.eye(self.dim, dtype=torch.float64).expand(self.k, -1, -1).clone()
        return GaussianMixture(torch.full((self.k,), 1.0 / self.k, dtype=torch.float64), means, covs)

    def _draw(self, stream: int) -> tuple[Tensor, Tensor]:
        g = seeded_generator(self.seed, stream)
        labels = torch.randint(self.k, (self.n,), generator=g)
        noise = torch.randn(self.n, self.dim, generator=g, dtype=torch.float64)
        return (self.exact.means[labels] + self.std * noise).float(), labels


@dataclass(frozen=True)
class TinyImages(_Drawn):
    """``n`` one-channel ``size`` x ``size`` images in [-1, 1]: a bright square whose position is
    the class label (4 classes). For checking image networks and metrics quickly."""

    name: ClassVar[str] = "tiny-images"
    summary: ClassVar[str] = "small synthetic images for tests (4 classes)"
    default_network: ClassVar[str] = "unet"

    n: int = 32
    size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n < 1 or self.size < 4 or self.size % 2:
            self.fail("needs n >= 1 and an even size >= 4")

    def _draw(self, stream: int) -> tuple[Tensor, Tensor]:
        g = seeded_generator(self.seed, stream)
        labels = torch.randint(4, (self.n,), generator=g)
        half = self.size // 2
        images = -torch.ones(self.n, 1, self.size, self.size)
        for i, label in enumerate(labels.tolist()):
            r, c = divmod(label, 2)
            images[i, 0, r * half:(r + 1) * half, c * half:(c + 1) * half] = 1.0
        return (images + 0.05 * torch.randn(images.shape, generator=g)).clamp(-1, 1), labels


# --------------------------------------------------------------------------- a tiny network


class TinyMLP(nn.Module):
    """x (n, *shape), t (n,) -> (n, *shape), or (n,) with ``scalar=True``: the smallest
    network a law can be trained with (for checking that a law's loss decreases)."""

    def __init__(self, shape: tuple[int, ...], scalar: bool = False, width: int = 32) -> None:
        super().__init__()
        self.shape, self.scalar = tuple(shape), scalar
        dim = math.prod(self.shape)
        self.net = nn.Sequential(nn.Linear(dim + 2, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, 1 if scalar else dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        t = t.to(x.dtype).reshape(-1, 1)
        out = self.net(torch.cat([x.reshape(x.shape[0], -1), torch.log(t), t], dim=1))
        return out[:, 0] if self.scalar else out.reshape(x.shape)


# --------------------------------------------------------------------------- exact solutions


@dataclass(frozen=True)
class RelaxingGaussian:
    """N(0, h0^2 I) under the heat law at temperature sigma^2 (F = sigma^2 rho log rho; sigma = 1
    is heat): it stays Gaussian N(0, h(t)^2 I) with h(t)^2 = sigma^2 + (h0^2 - sigma^2) e^-2t
    (MATH.md section 4, heat analogue), grad p = -sigma^2 x / h^2, and the flow map is the
    dilation x -> x h(t) / h(s)."""

    h0: float = 0.5
    dim: int = 2
    sigma: float = 1.0

    def h(self, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return torch.sqrt(self.sigma**2 + (self.h0**2 - self.sigma**2) * torch.exp(-2 * t))

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        """x (n, *shape), t (n,) -> (n, *shape)."""
        h2 = per_sample(self.h(t), x) ** 2
        return -self.sigma**2 * x / h2

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        """p = sigma^2 log rho_t (n,)."""
        h2 = self.h(t).to(x.dtype) ** 2
        d = x[0].numel()
        sq = x.reshape(x.shape[0], -1).square().sum(1)
        return self.sigma**2 * (-sq / (2 * h2) - 0.5 * d * torch.log(2 * math.pi * h2))

    def field(self) -> Field:
        return FunctionField(self.grad_p, self.pressure)

    def flow(self, x: Tensor, t_from: float, t_to: float) -> Tensor:
        """The exact transport of x (n, *shape) from forward time t_from to t_to."""
        return x * float(self.h(t_to) / self.h(t_from))

    target_is_gaussian = True  # a law with affine marginals knows its own E|X_t|^2 for this data law

    def second_moment(self, t: float) -> float:
        """E |X_t|^2."""
        return self.dim * float(self.h(t)) ** 2

    @property
    def target(self) -> GaussianMixture:
        """The data law as a one-component mixture (what Law.exact_field takes)."""
        eye = torch.eye(self.dim, dtype=torch.float64)
        return GaussianMixture(torch.ones(1, dtype=torch.float64), torch.zeros(1, self.dim, dtype=torch.float64),
                               (self.h0**2 * eye)[None])


@dataclass(frozen=True)
class RelaxingBarenblatt:
    """The PME Barenblatt profile of exponent m dilated by h0 (MATH.md section 4):
    rho(t, x) = h^-d rho_inf(x / h), h(t) = [1 + (h0^lambda - 1) e^(-lambda t)]^(1/lambda),
    lambda = d (m - 1) + 2; grad p = -h^-lambda x (extended outside the support),
    p = h^(-d(m-1)) (R^2 - |x / h|^2)_+ / 2; the flow map is a dilation."""

    m: float = 2.0
    dim: int = 2
    h0: float = 0.5

    @property
    def lam(self) -> float:
        return self.dim * (self.m - 1) + 2

    @property
    def radius(self) -> float:
        """R of the stationary profile (d = 2, m = 2: R^4 = 8 / pi)."""
        k, a, d = 1 / (self.m - 1), self.m / (self.m - 1), self.dim
        log_r = (k * math.log(2 * a) + math.lgamma(d / 2 + k + 1) - (d / 2) * math.log(math.pi)
                 - math.lgamma(k + 1)) / (d + 2 * k)
        return math.exp(log_r)

    def h(self, t: Tensor | float) -> Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return (1 + (self.h0**self.lam - 1) * torch.exp(-self.lam * t)) ** (1 / self.lam)

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        scale = per_sample(self.h(t), x) ** -self.lam
        return -scale * x

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.h(t).to(x.dtype)
        sq = x.reshape(x.shape[0], -1).square().sum(1) / h**2
        return h ** (-self.dim * (self.m - 1)) * (self.radius**2 - sq).clamp_min(0) / 2

    def field(self) -> Field:
        return FunctionField(self.grad_p, self.pressure)

    def flow(self, x: Tensor, t_from: float, t_to: float) -> Tensor:
        return x * float(self.h(t_to) / self.h(t_from))

    @property
    def target(self) -> Barenblatt:
        return Barenblatt(self.m, self.dim, self.h0)

    target_is_gaussian = False

    def second_moment(self, t: float) -> float:
        d, k = self.dim, 1 / (self.m - 1)
        return float(self.h(t)) ** 2 * self.radius**2 * (d / 2) / (d / 2 + k + 1)


from zoo.testing.conformance import (  # noqa: E402  (the suite uses the helpers above)
    check, check_dataset, check_executor, check_law, check_metric, check_network, check_sampler,
    conformance_tests,
)
