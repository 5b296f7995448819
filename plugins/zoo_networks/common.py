"""Building blocks shared by the learned networks."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from zoo.contracts import BuildContext
from zoo.errors import ZooError

ACTIVATIONS = {"silu": nn.SiLU, "gelu": nn.GELU, "tanh": nn.Tanh, "relu": nn.ReLU}


class LogTimeEmbedding(nn.Module):
    """Fourier features of log t, rescaled so that [t_min, T] maps to c in [-1, 1].

    Sampling grids are geometric down to t_min, so log t spreads the times evenly.
    t (n,) -> (n, dim): [c, sin(pi f_k c), cos(pi f_k c)] with f_k geometric from 1/2 to 4
    (the finest period is a factor of about 8 in t for T/t_min = 5000; the MLP sharpens from there:
    on gmm8 this gave a lower held-out DSM loss than f_k up to 16), padded to dim.
    """

    def __init__(self, t_min: float, T: float, dim: int = 64) -> None:
        super().__init__()
        self.dim = dim
        self.lo, self.hi = math.log(t_min), math.log(T)
        half = (dim - 1) // 2
        self.register_buffer("freqs", math.pi * torch.logspace(-1, 2, half, base=2.0))

    def forward(self, t: Tensor) -> Tensor:
        c = (2.0 * (torch.log(t.to(self.freqs.dtype).clamp_min(1e-12)) - self.lo) / (self.hi - self.lo) - 1.0)[:, None]
        angle = c * self.freqs
        out = torch.cat([c, angle.sin(), angle.cos()], dim=1)
        return nn.functional.pad(out, (0, self.dim - out.shape[1]))


def zero_(layer: nn.Module) -> nn.Module:
    """Zero a layer's parameters: the network starts at output 0 (noise or v prediction of 0,
    pressure 0), the usual stable start (Ho et al. 2020 zero the last conv)."""
    for p in layer.parameters():
        nn.init.zeros_(p)
    return layer


def wants_scalar(ctx: BuildContext) -> bool:
    """True for a scalar (pressure) output (n,), False for a vector output shaped like x."""
    if ctx.output not in ("vector", "scalar"):
        raise ZooError(f"a network output must be 'vector' or 'scalar', got {ctx.output!r}")
    return ctx.output == "scalar"
