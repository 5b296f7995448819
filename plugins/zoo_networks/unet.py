"""A small UNet for images (C, H, W): residual blocks with GroupNorm and a time embedding."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from einops import rearrange
from torch import Tensor, nn

from zoo.contracts import BuildContext, Network
from zoo.errors import ZooError
from zoo_networks.common import LogTimeEmbedding, wants_scalar, zero_


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between (Ho et al. 2020)."""

    def __init__(self, c_in: int, c_out: int, t_dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(t_dim, c_out))
        self.conv2 = nn.Sequential(_norm(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, padding=1))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        h = self.conv1(x) + rearrange(self.time(e), "n c -> n c 1 1")
        return self.skip(x) + self.conv2(h)


class UNetModule(nn.Module):
    """x (n, C, H, W), t (n,) -> (n, C, H, W), or (n,) for ``scalar``.

    One residual block per level, channels ``base * mults[i]``, resolution halved between levels.
    The scalar output is p = <x, f(x, t)> / 2 with f the image output: where f is locally linear
    and symmetric, grad p = f, so both outputs start from the same inductive bias.
    """

    def __init__(self, shape: tuple[int, int, int], scalar: bool, base: int, mults: tuple[int, ...],
                 t_min: float, T: float) -> None:
        super().__init__()
        self.scalar = scalar
        channels = shape[0]
        widths = [base * m for m in mults]
        t_dim = 4 * base
        self.time = nn.Sequential(LogTimeEmbedding(t_min, T), nn.Linear(64, t_dim), nn.SiLU(),
                                  nn.Linear(t_dim, t_dim))
        self.inp = nn.Conv2d(channels, base, 3, padding=1)
        self.down = nn.ModuleList(ResBlock(c_in, c_out, t_dim) for c_in, c_out in zip([base] + widths, widths))
        self.pool = nn.ModuleList(nn.Conv2d(c, c, 3, stride=2, padding=1) for c in widths[:-1])
        self.mid = nn.ModuleList([ResBlock(widths[-1], widths[-1], t_dim), ResBlock(widths[-1], widths[-1], t_dim)])
        self.unpool = nn.ModuleList(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                                  nn.Conv2d(c, c, 3, padding=1)) for c in widths[1:])
        self.up = nn.ModuleList(ResBlock(c_deep + c, c, t_dim) for c, c_deep in zip(widths, widths[1:] + widths[-1:]))
        self.out = nn.Sequential(_norm(widths[0]), nn.SiLU(), zero_(nn.Conv2d(widths[0], channels, 3, padding=1)))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        e = self.time(t)
        h = self.inp(x)
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if level < len(self.pool):
                h = self.pool[level](h)
        for block in self.mid:
            h = block(h, e)
        for level in reversed(range(len(self.up))):
            if level < len(self.unpool):
                h = self.unpool[level](h)
            h = self.up[level](torch.cat([h, skips[level]], dim=1), e)
        f = self.out(h)
        if self.scalar:
            return 0.5 * (x * f).flatten(1).sum(1)
        return f


def auto_mults(height: int, width: int) -> tuple[int, ...]:
    """Halve while both sides stay even and at least 4, up to 4 levels: 8 -> (1, 2), 28 -> (1, 2, 2),
    32 -> (1, 2, 2, 2)."""
    levels = 1
    while levels < 4 and all(s % 2**levels == 0 and s // 2**levels >= 4 for s in (height, width)):
        levels += 1
    return (1,) + (2,) * (levels - 1)


@dataclass(frozen=True)
class UNet(Network):
    """Small UNet for images. ``mults`` are channel multipliers per level, dash-separated
    (``unet:base=32:mults=1-2-2``), or ``auto`` (from the image size)."""

    name = "unet"
    summary = "small UNet (GroupNorm, residual blocks, log-time embedding) for images (C, H, W)"

    base: int = 32
    mults: str = "auto"

    def __post_init__(self) -> None:
        if self.base < 1:
            self.fail(f"base must be at least 1, got {self.base}")
        if self.mults != "auto":
            parts = self.mults.split("-")
            if not all(p.isdigit() and int(p) >= 1 for p in parts):
                self.fail(f"mults must be 'auto' or positive integers joined by '-', e.g. 1-2-2, got {self.mults!r}")

    def levels(self, height: int, width: int) -> tuple[int, ...]:
        return auto_mults(height, width) if self.mults == "auto" else tuple(int(p) for p in self.mults.split("-"))

    def build(self, ctx: BuildContext) -> nn.Module:
        if len(ctx.shape) != 3:
            raise ZooError(f"network 'unet' needs images of shape (C, H, W), got data shape {ctx.shape}; use 'mlp'")
        _, height, width = ctx.shape
        mults = self.levels(height, width)
        scale = 2 ** (len(mults) - 1)
        if height % scale or width % scale:
            raise ZooError(f"network 'unet': {len(mults)} levels need H and W divisible by {scale}, "
                           f"got {height}x{width}; choose fewer mults")
        return UNetModule(ctx.shape, wants_scalar(ctx), self.base, mults, ctx.law.t_min, ctx.law.T)
