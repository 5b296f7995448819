"""An MLP for vector data (any shape is flattened), conditioned on time at every layer."""
from __future__ import annotations

import math
from dataclasses import dataclass

from einops import rearrange
from torch import Tensor, nn

from zoo.contracts import BuildContext, Network
from zoo_networks.common import ACTIVATIONS, LogTimeEmbedding, wants_scalar, zero_


class TimeMLP(nn.Module):
    """x (n, *shape), t (n,) -> (n, *shape) (``scalar=False``) or (n,) (``scalar=True``).

    h_0 = x; h_{k+1} = act(W_k h_k + V_k e(t)) for depth layers, e(t) the log-time embedding
    passed through a small MLP; a zero-initialised linear read-out. A vector output adds a
    zero-initialised linear skip from x: at large t the target (for heat, the noise) is nearly
    linear in x, which deep layers learn slowly in many dimensions (on digits it halved the
    DSM loss at t = T after 600 steps).
    """

    def __init__(self, shape: tuple[int, ...], scalar: bool, width: int, depth: int, activation: str,
                 t_min: float, T: float, embed: int = 64) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.scalar = scalar
        act = ACTIVATIONS[activation]
        dim = math.prod(self.shape)
        self.time = nn.Sequential(LogTimeEmbedding(t_min, T, embed), nn.Linear(embed, width), act())
        self.layers = nn.ModuleList(nn.Linear(dim if k == 0 else width, width) for k in range(depth))
        self.conds = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.act = act()
        self.out = zero_(nn.Linear(width, 1 if scalar else dim))
        self.skip = None if scalar else zero_(nn.Linear(dim, dim))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        e = self.time(t)
        h = rearrange(x, "n ... -> n (...)")
        for layer, cond in zip(self.layers, self.conds):
            h = self.act(layer(h) + cond(e))
        out = self.out(h)
        if self.scalar:
            return out[:, 0]
        return (out + self.skip(rearrange(x, "n ... -> n (...)"))).reshape(x.shape)


@dataclass(frozen=True)
class MLP(Network):
    """Multilayer perceptron with a log-time embedding; ``depth`` hidden layers of ``width``.

    Use a smooth activation (silu, gelu, tanh) for scalar (pressure) outputs: the law
    differentiates them in x.
    """

    name = "mlp"
    summary = "MLP with a log-time Fourier embedding, for vector data (flattens any shape)"

    width: int = 256
    depth: int = 4
    activation: str = "silu"

    def __post_init__(self) -> None:
        if self.width < 1:
            self.fail(f"width must be at least 1, got {self.width}")
        if self.depth < 1:
            self.fail(f"depth must be at least 1, got {self.depth}")
        if self.activation not in ACTIVATIONS:
            self.fail(f"activation must be one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")

    def build(self, ctx: BuildContext) -> nn.Module:
        return TimeMLP(ctx.shape, wants_scalar(ctx), self.width, self.depth, self.activation,
                       ctx.law.t_min, ctx.law.T)
