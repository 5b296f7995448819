"""The contract of every plugin kind, written once.

A plugin is a frozen dataclass subclassing one of the kind bases below; its
dataclass fields are its options (``em:alpha=0.5`` builds ``EulerMaruyama(alpha=0.5)``).
Plugins reach zoo only through the hooks in :mod:`zoo.hookspecs`.

Conventions (docs/MATH.md section 1), used everywhere:

* forward time ``t`` runs from the data (t = 0) to the law's prior (t = T);
* a law owns its forward process, stated as a drift ``f(x, t)`` (:meth:`Law.drift`) and a
  noise, the diffusivity ``D = P(rho)/rho`` (:meth:`Law.pressure_ratio`): the process
  ``dX = f dt + sqrt(2 D) dW`` whose marginals solve
  ``d/dt rho + div(rho u) = 0`` with the transport velocity ``u = f - grad p``, where
  ``grad p = grad(D rho) / rho`` is what a :class:`Field` gives. The confined laws of MATH.md
  have ``f = -x`` (heat: ``D = 1``, ``grad p = grad log rho``, the score; PME: ``p = F'(rho)``);
  a law with a forward SDE ``dx = f dt + g(t) dW`` has ``D = g^2/2`` and ``grad p = D grad log rho``;
* generation integrates the reverse family ``dY/ds = -f + (1 + alpha) grad p`` (plus, for
  alpha > 0, the noise ``sqrt(2 alpha D) dW``) in ``s = T - t`` along a *decreasing* grid of
  forward times ``T = t_0 > t_1 > ... > t_K = t_min``; alpha = 0 is the probability-flow ODE
  ``dY/ds = -u``.

Shapes: a batch of ``n`` samples of a data set with ``shape`` is a tensor
``(n, *shape)``; times passed to fields are tensors ``(n,)``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
from torch import Tensor, nn

from zoo.errors import ZooError


# --------------------------------------------------------------------------- base


@dataclass(frozen=True)
class Plugin:
    """Base of every plugin. Subclasses are frozen dataclasses whose fields are options."""

    kind: ClassVar[str] = ""
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line shown by `zoo plugins`
    positional: ClassVar[str | None] = None  # option filled by a bare SPEC value (file:PATH -> path)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    def options(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.option_names()}

    @property
    def spec(self) -> str:
        """Canonical SPEC with every option spelled out: what result rows record."""
        from zoo.spec import format_value

        parts = [self.name] + [f"{k}={format_value(v)}" for k, v in self.options().items()]
        return ":".join(parts)

    @classmethod
    def upgrade(cls, options: dict[str, Any]) -> dict[str, Any]:
        """The options of a SPEC stored before some option existed (a checkpoint's), completed with
        the values that reproduce what it meant then, where today's default would change it (heat's
        ``target``: stored SPECs without it predicted the noise). Default: unchanged."""
        return options

    def fail(self, message: str) -> None:
        """Raise a one-line user error prefixed by the plugin's name (use in __post_init__)."""
        raise ZooError(f"{self.kind} {self.name!r}: {message}")


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k weights[k] N(means[k], covs[k]); means (K, d), covs (K, d, d), weights (K,)."""

    weights: Tensor
    means: Tensor
    covs: Tensor

    @property
    def dim(self) -> int:
        return self.means.shape[1]


@dataclass(frozen=True)
class Barenblatt:
    """The stationary PME profile of exponent m, dilated by h0, in dimension dim (MATH.md section 4)."""

    m: float
    dim: int
    h0: float = 1.0


@dataclass(frozen=True)
class Dataset(Plugin):
    """A data set: a fixed train split, a held-out split, a shape, and what is known exactly.

    Splits are float32 tensors ``(n, *shape)`` on the CPU, reproducible from the
    options alone (synthetic sets draw from their own ``seed`` option).
    """

    kind: ClassVar[str] = "dataset"
    default_network: ClassVar[str] = "mlp"

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.train().shape[1:])

    def train(self) -> Tensor:
        raise NotImplementedError

    def test(self) -> Tensor:
        raise NotImplementedError

    def labels(self, split: str) -> Tensor | None:
        """Integer class labels ``(n,)`` of a split, where the data set has them."""
        return None

    @property
    def exact(self) -> GaussianMixture | Barenblatt | None:
        """The exact density of the data, where known (a law may then give its exact velocity)."""
        return None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3


def per_sample(v: Tensor, like: Tensor) -> Tensor:
    """A per-sample quantity (n,) as (n, 1, ..., 1) in like's dtype, broadcastable over like (n, *shape)."""
    return v.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


# --------------------------------------------------------------------------- fields


class Field(nn.Module):
    """What samplers see: the pressure gradient ``grad p(x, t) = grad(D rho_t)/rho_t`` of a law at
    forward time t (heat: the score; a law with forward noise g(t): g^2/2 times the score).

    The transport velocity is ``u = f - grad_p`` (:meth:`Law.velocity`; ``-grad_p - x`` for
    the confined laws, :meth:`velocity`). Every call of :meth:`grad_p` or
    :meth:`pressure` that evaluates the underlying network counts one NFE (a batched call
    counts once), so samplers report what they really spent.
    """

    def __init__(self) -> None:
        super().__init__()
        self.nfe = 0

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        """x (n, *shape), t (n,) -> grad p (n, *shape)."""
        raise NotImplementedError

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        """x (n, *shape), t (n,) -> p (n,). Needed by stochastic samplers of nonlinear laws."""
        raise ZooError(f"{type(self).__name__} gives no pressure; train a scalar pressure network")

    def grad_p_and_pressure(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Both at (x, t): one evaluation of the field, one NFE (so a stochastic step of a nonlinear
        law costs one NFE on an exact field as on a pressure network, and stays within its budget).
        A field that needs two network passes for them overrides this and counts both."""
        before = self.nfe
        both = self.grad_p(x, t), self.pressure(x, t)
        self.nfe = min(self.nfe, before + 1)
        return both

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """u = -grad p - x: the transport velocity of a confined law (drift f = -x)."""
        return -self.grad_p(x, t) - x


class FunctionField(Field):
    """A Field from plain functions (exact velocities, tests): each call counts one NFE."""

    def __init__(self, grad_p: Callable[[Tensor, Tensor], Tensor],
                 pressure: Callable[[Tensor, Tensor], Tensor] | None = None) -> None:
        super().__init__()
        self._grad_p = grad_p
        self._pressure = pressure

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        self.nfe += 1
        return self._grad_p(x, t)

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        if self._pressure is None:
            return super().pressure(x, t)
        self.nfe += 1
        return self._pressure(x, t)


# --------------------------------------------------------------------------- networks


@dataclass(frozen=True)
class BuildContext:
    """What a network needs to build itself."""

    shape: tuple[int, ...]  # data shape
    output: str  # "vector": output shaped like x; "scalar": output (n,)
    law: "Law"
    dataset: Dataset


@dataclass(frozen=True)
class Network(Plugin):
    """A velocity network: ``build(ctx)`` returns an ``nn.Module`` with ``forward(x (n,*shape), t (n,))``.

    A learned network's output is read by its law (:meth:`Law.field`). A non-learned one
    (``learned = False``: ``exact``, ``empirical``) returns a ready :class:`Field` from
    :meth:`field` and is never trained.
    """

    kind: ClassVar[str] = "network"
    learned: ClassVar[bool] = True

    def build(self, ctx: BuildContext) -> nn.Module:
        raise NotImplementedError

    def field(self, law: "Law", dataset: Dataset) -> Field:
        raise NotImplementedError


# --------------------------------------------------------------------------- laws


Alpha = Callable[[float], float]  # noise strength as a function of forward time t


@dataclass
class ReverseProcess:
    """The alpha family of reverse processes of one law and one field (MATH.md section 6), built
    from what the law states (its drift f and diffusivity D) as score_sde's SDE.reverse is:

        dY = [-f(Y, t) + (1 + alpha) grad p(Y, t)] ds + sqrt(2 alpha D) dW,   s = T - t.

    Every member has the law's marginals: the forward process dX = f dt + sqrt(2 D) dW has the
    probability flow dX/dt = u = f - grad p (Fokker-Planck: rho grad p = grad(D rho)); the process
    with noise 2 alpha D and drift u + alpha grad p has the same marginals, and its time reversal
    (drift -(u + alpha grad p) + 2 alpha grad p) is the line above. Confined laws (f = -x): the seed's
    dY = [(1 + alpha) grad p + Y] ds + sqrt(2 alpha P(rho)/rho) dW.
    """

    law: "Law"
    field: Field
    alpha: Alpha

    def _times(self, y: Tensor, t: Tensor | float) -> Tensor:
        if torch.is_tensor(t):
            return t
        return torch.full((y.shape[0],), float(t), dtype=y.dtype, device=y.device)

    def drift(self, y: Tensor, t: float) -> Tensor:
        """dY/ds = -f + (1 + alpha) grad p at forward time t (one NFE)."""
        tt = self._times(y, t)
        return (1.0 + self.alpha(t)) * self.field.grad_p(y, tt) - self.law.drift(y, tt)

    def ode_drift(self, y: Tensor, t: Tensor | float) -> Tensor:
        """The probability-flow drift dY/ds = -u = -f + grad p (alpha = 0); t a float or per-sample (n,)."""
        tt = self._times(y, t)
        return self.field.grad_p(y, tt) - self.law.drift(y, tt)

    def sde_terms(self, y: Tensor, t: float) -> tuple[Tensor, Tensor]:
        """(drift (n, *shape), noise std sqrt(2 alpha D) (n,)) at forward time t.

        One NFE where the field gives grad p and p from one evaluation (pressure networks):
        the law asks for the pressure only if its noise needs it (not heat's: D = P/rho = 1).
        """
        a = self.alpha(t)
        tt = self._times(y, t)
        if a == 0.0:
            return self.field.grad_p(y, tt) - self.law.drift(y, tt), torch.zeros(y.shape[0], dtype=y.dtype, device=y.device)
        joint = _JointEvaluation(self.field)
        ratio = self.law.pressure_ratio(joint, y, tt)
        g = joint.grad if joint.grad is not None else self.field.grad_p(y, tt)
        return (1.0 + a) * g - self.law.drift(y, tt), torch.sqrt(2.0 * a * ratio.clamp_min(0.0))

    def data_prediction(self, y: Tensor, t: float) -> Tensor:
        """D = (y + gain grad p) / alpha_t along the law's :meth:`Law.integrator_path` (one NFE):
        E[x0 | x_t = y] for a law with affine marginals, the centre of the local source-type
        solution for a nonlinear law; what an exponential integrator extrapolates and where a
        final step lands. Raises ZooError for a law without such a path."""
        path = self.law.integrator_path(float(t), y[0].numel())
        if path is None:
            raise ZooError(f"law {self.law.name!r} states no integrator path: no data prediction")
        a, _, gain = path
        return (y + gain * self.field.grad_p(y, self._times(y, t))) / a

    def finish(self, y: Tensor, t: float, kind: str, prediction: Tensor | None = None) -> Tensor:
        """The final step from forward time t (the grid's t_min) to t = 0 (:data:`FINAL_COST` NFE;
        heun and denoise take none when the data prediction D at (y, t) is given). In the scaled variable x/alpha and
        noise level sigma/alpha every law with an integrator path has the ODE d(x/alpha)/d(sigma/alpha) =
        (x/alpha - D) / (sigma/alpha). ``denoise``: Euler to sigma = 0, which lands on D (Tweedie's
        E[x0 | x_t]; the last DDIM step); it shrinks a smooth data law's spread by the factor
        var / (var + sigma^2) where the flow shrinks it by its square root (std 0.091 for gmm8's
        0.100 from heat's t_min = 1e-3). ``heun``: the trapezoid, with the ODE's slope at sigma = 0
        equal to its limit 0 (the slope is -sigma times a score, bounded where the data law has a
        density): (x/alpha + D) / 2, second order in sigma^2 (gmm8: std 0.100). ``source`` (laws with
        a :meth:`Law.source_exponent`, the PME): :func:`source_final`."""
        a, _, gain = self.law.integrator_path(float(t), y[0].numel())
        if kind == "source":  # both evaluations here: a D from another y is off by its error / gain
            grad = self.field.grad_p(y, self._times(y, t))
            d = (y + gain * grad) / a
            lam = self.law.source_exponent(y[0].numel())
            return source_final(y, d, grad, self.field.grad_p(a * d, self._times(y, t)), a, lam)
        d = self.data_prediction(y, t) if prediction is None else prediction
        return d if kind == "denoise" else 0.5 * (y / a + d)


def source_final(y: Tensor, d: Tensor, grad: Tensor, grad_at_d: Tensor, a: float, lam: float) -> Tensor:
    """The final step of a nonlinear law from the local source-type solution (MATH.md section 4).

    Near a sample the law is taken to spread a Barenblatt of some width h0 >= 0 around some centre:
    grad p = -c (x - mu_t) with c = h(t)^-lambda, and the exact map to t = 0 is
    x0 = m + q^(1/lambda) (y/a - m), m = mu_0, q = 1 - c b^lambda in [0, 1] (b^lambda = ``gain``).
    The data prediction D = (y + gain grad p) / a of the integrator path is m + q (y/a - m), so
    x0 = D + w (y/a - D), w = (q^(1/lambda) - q) / (1 - q), and q is read off ``grad_at_d``, a second
    evaluation at the point a D the path denoises to: grad p(a D) = q grad p(y) for such a solution, so
    q = <grad p(a D), grad p(y)> / |grad p(y)|^2. A point mass (h0 = 0) has q = 0 and lands on D
    (denoise); a wide start has q -> 1 and moves by 1/lambda of the way to D (heun's 1/2 there
    shrank the narrow Barenblatt of issue 12 by 15 % in second moment from t_min = 1e-3; this step
    is exact for it and for point masses, and measured within 0.1 % with dpmpp at 50 NFE)."""
    flat, other = grad.flatten(1).double(), grad_at_d.flatten(1).double()
    q = ((flat * other).sum(1) / flat.square().sum(1).clamp_min(1e-300)).clamp(0.0, 1.0)
    near_one = q > 1.0 - 1e-9
    w = torch.where(near_one, torch.full_like(q, 1.0 - 1.0 / lam),
                    (q ** (1.0 / lam) - q) / (1.0 - q).masked_fill(near_one, 1.0))
    return d + per_sample(w, y).to(y.dtype) * (y / a - d)


class _JointEvaluation(Field):
    """Hands a law the pressure of a field while keeping the grad p of the same evaluation."""

    def __init__(self, field: Field) -> None:
        super().__init__()
        self.field = field
        self.grad: Tensor | None = None

    def grad_p(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field.grad_p(x, t)

    def pressure(self, x: Tensor, t: Tensor) -> Tensor:
        self.grad, p = self.field.grad_p_and_pressure(x, t)
        return p


@dataclass(frozen=True)
class Law(Plugin):
    """A forward diffusion law and how to learn and reverse it.

    The law states its forward process: the drift ``f`` (:meth:`drift`, default ``-x``, the
    confinement of d/dt rho = div(rho (grad F'(rho) + x)), MATH.md section 2) and the noise
    ``D = P(rho)/rho`` (:meth:`pressure_ratio`); its field gives ``grad p = grad(D rho)/rho``.
    A law with a forward SDE dx = f(x, t) dt + g(t) dW (score_sde's VE, VP, sub-VP; EDM) has
    D = g^2/2 and grad p = (g^2/2) grad log rho_t; :class:`ReverseProcess` builds the reverse
    family from these statements, and :meth:`affine_path` states the marginals when they are
    those of x_t = alpha_t x0 + sigma_t noise (what exponential integrators and a final
    denoising step need).

    Options common to every law: ``T`` (horizon: the prior is the law at T) and ``t_min`` (where
    generation stops).
    """

    kind: ClassVar[str] = "law"
    network_output: ClassVar[str] = "vector"  # what build() is asked for: "vector" or "scalar"

    T: float = 5.0
    t_min: float = 1e-3

    def __post_init__(self) -> None:
        if not (self.T > 0 and math.isfinite(self.T)):
            self.fail(f"T must be a positive number, got {self.T}")
        if not (0 < self.t_min < self.T):
            self.fail(f"t_min must lie in (0, T), got {self.t_min}")

    # -- the stationary state
    def prior(self, n: int, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
        """n samples (n, *shape) of the stationary law rho_inf, drawn with ``generator``."""
        raise NotImplementedError

    # -- learning
    def prepare(self, data: Tensor, generator: torch.Generator) -> dict[str, Tensor]:
        """Whatever training needs, computed once from the train split (n, *shape):
        tensors sharing a first dimension, from which :meth:`loss` gets random minibatches.
        Heat returns ``{"x0": data}``; nonlinear laws record the blob particle flow."""
        return {"x0": data}

    def model(self, ctx: "BuildContext", network: "Network") -> nn.Module:
        """The module training optimises: by default the network built for ``ctx``. A law that
        learns more than the field (a second, small network) wraps the network here."""
        return network.build(ctx)

    def loss(self, network: nn.Module, batch: dict[str, Tensor], generator: torch.Generator) -> Tensor:
        """Scalar training loss of a learned network on one minibatch."""
        raise NotImplementedError

    def finish(self, model: nn.Module, prepared: dict[str, Tensor], generator: torch.Generator) -> None:
        """After the last training step, on the averaged (EMA) model that sampling uses, with
        :meth:`prepare`'s tensors and a seeded generator: calibrate what the training left (route
        mckean corrects the field's slope). By default nothing."""

    def field(self, network: nn.Module) -> Field:
        """Wrap a trained network's output as a Field (counting its evaluations)."""
        raise NotImplementedError

    # -- exact references (optional)
    def exact_field(self, target: Any) -> Field:
        """The exact field when the data law ``target`` (Dataset.exact) is known."""
        raise ZooError(f"law {self.name!r} has no exact velocity for {type(target).__name__ if target is not None else 'this data set'}")

    def empirical_field(self, points: Tensor) -> Field:
        """The exact field of the law started from the empirical measure of ``points``."""
        raise ZooError(f"law {self.name!r} has no closed-form empirical velocity")

    # -- the forward process and reversing
    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """The forward drift f(x, t) (n, *shape) for x (n, *shape), t (n,): what the transport
        velocity u = f - grad p adds to the field. Default: the confinement -x (heat, pme, custom)."""
        return -x

    def velocity(self, field: Field, x: Tensor, t: Tensor) -> Tensor:
        """The transport velocity u = f - grad p (n, *shape) of the probability flow (one NFE)."""
        return self.drift(x, t) - field.grad_p(x, t)

    @property
    def noise_ready(self) -> bool:
        """Whether stochastic samplers can reverse this law's learned field: their noise needs
        P(rho)/rho, which for a nonlinear law means the pressure p itself (heat: P/rho = 1)."""
        return True

    def pressure_ratio(self, field: Field, x: Tensor, t: Tensor) -> Tensor:
        """The noise D = P(rho)/rho at (x, t), shape (n,): the stochastic samplers' noise is
        sqrt(2 alpha D). Heat: 1; a forward SDE dx = f dt + g(t) dW: g(t)^2 / 2; PME: rho^(m-1)."""
        raise NotImplementedError

    def affine_path(self, t: float, dim: int) -> tuple[float, float, float] | None:
        """(alpha, sigma, gain) when the forward marginal is that of x_t = alpha x0 + sigma noise
        (noise of unit variance per coordinate and independent of x0; not necessarily Gaussian)
        and the data prediction is E[x0 | x_t = x] = (x + gain grad p(x, t)) / alpha, for data of
        dimension ``dim``; None when the law's marginals are not of that form (a nonlinear law's
        particle flow). For Gaussian noise gain = sigma^2 / D (Tweedie). Exponential integrators
        (dpmpp) and a final denoising step need it (:meth:`ReverseProcess.data_prediction`).
        Heat: (e^-t, s_t, s_t^2). At t = 0 it is (1, 0, 0): a grid may end at t = 0 (k-diffusion's
        last step to sigma = 0), where dpmpp lands on the data prediction (so does an Euler step of
        ve, f = 0 and sigma = t); a sampler must not evaluate the field at t = 0."""
        return None

    def integrator_path(self, t: float, dim: int) -> tuple[float, float, float] | None:
        """(alpha, sigma, gain) of the path an exponential integrator and the final step treat
        exactly: the data prediction is D = (x + gain grad p) / alpha and the probability flow is
        that of x_t = alpha x0 + sigma noise with E[x0 | x] replaced by D (exact when the marginals
        are affine). Default: :meth:`affine_path`. A nonlinear law may state the path of its
        source-type solution (pme: the spreading of a point mass), where its field is stiff."""
        return self.affine_path(t, dim)

    def source_exponent(self, dim: int) -> float | None:
        """lambda of the law's source-type solution, whose width grows like t^(1/lambda) from a point
        mass, when its integrator path is that spreading (the PME: d (m - 1) + 2); the final step
        ``source`` needs it. None: no such solution (the default)."""
        return None

    def reverse(self, field: Field, alpha: float | Alpha = 0.0) -> ReverseProcess:
        """The reverse process with noise strength alpha >= 0 (a constant or a function of t)."""
        fn = alpha if callable(alpha) else (lambda t, a=float(alpha): a)
        return ReverseProcess(self, field, fn)

    def time_grid(self, steps: int, kind: str = "geometric") -> Tensor:
        """Decreasing forward times (steps + 1,) from T to t_min (a final step may then go on to t = 0)."""
        from zoo.grids import time_grid

        return time_grid(self.T, self.t_min, steps, kind)


# --------------------------------------------------------------------------- samplers

FINALS = ("auto", "heun", "denoise", "source", "none")
FINAL_COST = {"heun": 1, "denoise": 1, "source": 2}  # NFE of each final step


class Noise:
    """Per-sample seeded Gaussian noise: sample i always sees the same stream,
    whatever the batch it is drawn in (so results do not depend on batch size)."""

    def __init__(self, seed: int, indices: Iterable[int], shape: tuple[int, ...],
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        self.generators = [seeded_generator(seed, i) for i in indices]
        self.shape = tuple(shape)
        self.dtype = dtype
        self.device = torch.device(device)

    def randn(self) -> Tensor:
        """One fresh draw (n, *shape)."""
        out = torch.stack([torch.randn(self.shape, generator=g, dtype=self.dtype) for g in self.generators])
        return out.to(self.device)

    def __len__(self) -> int:
        return len(self.generators)


def seeded_generator(seed: int, index: int = 0) -> torch.Generator:
    """A CPU generator for stream ``index`` of ``seed``: streams never overlap in practice."""
    mixed = (int(seed) * 0x9E3779B97F4A7C15 + int(index) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


@dataclass(frozen=True)
class Sampler(Plugin):
    """A reverse-time integrator. One signature for all: :meth:`sample`.

    ``nfe`` is the budget of network evaluations per sample trajectory; the sampler turns it into
    a grid with :meth:`steps_for` and the count it really spent is read from the field. zoo refuses
    a budget below :meth:`min_nfe` and a run that spends more than its budget. An ``adaptive``
    sampler picks its own steps by error control and ignores the budget.
    """

    kind: ClassVar[str] = "sampler"
    stochastic: ClassVar[bool] = False
    adaptive: ClassVar[bool] = False  # steps set by error control (tolerances), not by the nfe budget
    laws: ClassVar[tuple[str, ...] | None] = None  # law names supported; None: every law
    # global convergence order claimed on a smooth field (error ~ NFE^-order), checked by the
    # conformance suite for deterministic samplers; None: no claim
    order: ClassVar[int | None] = None

    alpha: ClassVar[float] = 0.0  # noise strength; stochastic samplers make it an option (a field)
    takes_final: ClassVar[bool] = False  # sample() takes the final step itself (reusing an evaluation)

    grid: str = "geometric"  # time grid kind, see zoo.grids
    # the step from t_min to t = 0 (ReverseProcess.finish), out of the budget: ``auto`` (where the law
    # states an integrator path: ``source`` for a law with a source exponent, the PME on its particle
    # routes; ``heun`` otherwise: heat, ve, vp, rf, the pme source route), ``heun``, ``denoise``,
    # ``source``, ``none``
    final: str = "auto"

    def __post_init__(self) -> None:
        if self.final not in FINALS:
            self.fail(f"final must be one of {', '.join(FINALS)}, got {self.final!r}")

    def final_step(self, law: Law) -> str | None:
        """The final step this sampler takes on ``law`` ('heun', 'denoise' or 'source'), or None."""
        if self.final == "none" or (self.final == "auto" and law.integrator_path(law.T, 1) is None):
            return None
        if self.final == "auto":
            return "source" if law.source_exponent(1) is not None and law.affine_path(law.T, 1) is None else "heun"
        return self.final

    def final_cost(self, law: Law) -> int:
        """NFE the final step takes out of the budget on ``law``."""
        kind = self.final_step(law)
        return 0 if kind is None else FINAL_COST[kind]

    def tuned_options(self, law: Law) -> tuple[str, ...]:
        """Float options of this sampler that `zoo tune` fits on ``law`` together with the grid
        (solver coefficients: dpmpp's ``reach``); none by default."""
        return ()

    def least_nfe(self, law: Law) -> int:
        """The smallest budget zoo accepts on ``law``: one step, plus the final step."""
        return self.min_nfe() + self.final_cost(law)

    def steps_within(self, nfe: int, law: Law) -> int:
        """Grid intervals for a budget of ``nfe`` on ``law``, the final step's NFE set aside."""
        return self.steps_for(nfe - self.final_cost(law))

    def run(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        """:meth:`sample` along ``grid``, then the final step to t = 0 (what zoo.sampling calls)."""
        y = self.sample(process, x, grid, noise)
        kind = self.final_step(process.law)
        if kind is not None and not self.takes_final:
            y = process.finish(y, float(grid[-1]), kind)
        return y

    def strength(self, law: Law) -> float | Alpha:
        """alpha for this law: a constant, or a function of forward time t (schedules need law.T)."""
        return self.alpha

    def unsupported(self, law: Law) -> str | None:
        """Why this sampler cannot reverse ``law`` (one line), or None when it can."""
        if self.final not in FINALS:
            return f"sampler {self.name!r}: final must be one of {', '.join(FINALS)}, got {self.final!r}"
        if self.final in FINAL_COST and law.integrator_path(law.T, 1) is None:
            return (f"sampler {self.name!r}: final={self.final} needs a law that states an integrator path "
                    f"(heat, ve, vp, rf, pme); {law.name!r} does not (use final=none)")
        if self.final == "source" and law.source_exponent(1) is None:
            return (f"sampler {self.name!r}: final=source needs a law with a source-type solution (pme); "
                    f"{law.name!r} has none (use final=heun)")
        if self.laws is not None and law.name not in self.laws:
            return f"sampler {self.name!r} does not support law {law.name!r} (it supports: {', '.join(self.laws)})"
        if self.stochastic and not law.noise_ready:
            return (f"sampler {self.name!r} is stochastic: its noise needs the pressure p, which this {law.name!r} "
                    "model does not learn (use a deterministic sampler, or the law's scalar pressure network)")
        return None

    def supports(self, law: Law) -> bool:
        return self.unsupported(law) is None

    def steps_for(self, nfe: int) -> int:
        """Number of grid intervals that spend at most ``nfe`` evaluations (budgets >= min_nfe)."""
        return max(1, int(nfe))

    def min_nfe(self) -> int:
        """The fewest NFE a trajectory can cost (one grid step): smaller budgets are refused."""
        return 1

    def deterministic_twin(self) -> str | None:
        """The SPEC of a deterministic sampler that gives exactly the same samples as this one
        (em at alpha = 0 is euler), so a bench can leave this one out; None if there is none."""
        return None

    def sample(self, process: ReverseProcess, x: Tensor, grid: Tensor, noise: Noise) -> Tensor:
        """Integrate from x (n, *shape) ~ rho_T along grid (K+1,), decreasing from T; return (n, *shape)."""
        raise NotImplementedError


# --------------------------------------------------------------------------- metrics


@dataclass
class EvalContext:
    """What a metric may look at besides the generated samples."""

    dataset: Dataset
    train: Tensor  # (N, *shape) train split
    reference: Tensor  # (M, *shape) held-out split: the comparison law
    seed: int = 0
    device: str = "cpu"
    law: Law | None = None
    field: Field | None = None  # the trained field, for velocity-error metrics
    cache_dir: str | None = None


@dataclass(frozen=True)
class Metric(Plugin):
    """A metric: ``compute(samples, ctx)`` -> {metric name: float}; samples (n, *shape) on the CPU.

    ``applies`` filters data sets; ``available`` filters contexts (a velocity error needs a trained
    field); ``floor`` says whether real-vs-real floors of it are meaningful; ``protocol`` is what a
    result row must record about it (extractor and weights hash, kernel bandwidths).
    """

    kind: ClassVar[str] = "metric"
    higher_is_better: ClassVar[dict[str, bool]] = {}
    floor: ClassVar[bool] = True

    def applies(self, dataset: Dataset) -> bool:
        return True

    def available(self, ctx: EvalContext) -> bool:
        return True

    def protocol(self, ctx: EvalContext) -> dict[str, Any]:
        return {}

    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        raise NotImplementedError


# --------------------------------------------------------------------------- executors


@dataclass(frozen=True)
class Executor(Plugin):
    """Runs independent jobs: ``map(fn, jobs)`` yields ``(job, result)`` as each finishes.

    ``fn`` is a module-level function of one JSON-able dict returning a small JSON-able dict;
    artifacts go to the filesystem, never through the executor.
    """

    kind: ClassVar[str] = "executor"

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        raise NotImplementedError


KINDS: dict[str, type[Plugin]] = {
    "law": Law,
    "network": Network,
    "sampler": Sampler,
    "dataset": Dataset,
    "metric": Metric,
    "executor": Executor,
}
