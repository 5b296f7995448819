"""Distances between sample and held-out distributions for low-dimensional data (d <= 16):
exact W2 by optimal transport (POT's network simplex), sliced W2, energy distance and a
multi-bandwidth MMD^2.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from zoo.contracts import Dataset, EvalContext, GaussianMixture, Metric
from zoo_metrics.common import flat, one_thread, sq_dists, subsample

SCALES = (0.1, 0.3, 1.0, 3.0)  # MMD bandwidths, in units of the held-out split's per-coordinate std


def w2(x: Tensor, y: Tensor) -> float:
    """Exact W2 of the empirical measures of x (n, d) and y (m, d), by ot.emd2 on squared distances."""
    import ot

    cost = sq_dists(x.double(), y.double()).numpy()
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    return math.sqrt(max(0.0, float(ot.emd2(a, b, cost, numItermax=10_000_000))))


def sliced_w2(x: Tensor, y: Tensor, projections: int, seed: int) -> float:
    """sqrt of the mean over random directions of the 1-D W2^2 (sorted projections of equal-size sets)."""
    k = min(len(x), len(y))
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(projections, x.shape[1], generator=gen, dtype=torch.float64)
    theta /= theta.norm(dim=1, keepdim=True)
    px = (x[:k].double() @ theta.T).sort(0).values  # (k, projections)
    py = (y[:k].double() @ theta.T).sort(0).values
    return float((px - py).square().mean().sqrt())


def energy_distance(x: Tensor, y: Tensor) -> float:
    """2 E|X - Y| - E|X - X'| - E|Y - Y'| (within-set means over distinct pairs)."""
    def within(z: Tensor) -> Tensor:
        return sq_dists(z, z).sqrt().sum() / (len(z) * (len(z) - 1))

    x, y = x.double(), y.double()
    return float(2 * sq_dists(x, y).sqrt().mean() - within(x) - within(y))


def mmd2(x: Tensor, y: Tensor, bandwidths: list[float]) -> float:
    """Unbiased MMD^2 with the mean of RBF kernels exp(-|a - b|^2 / (2 h^2)) over the bandwidths."""
    x, y = x.double(), y.double()
    dxx, dyy, dxy = sq_dists(x, x), sq_dists(y, y), sq_dists(x, y)
    n, m = len(x), len(y)
    total = 0.0
    for h in bandwidths:
        kxx, kyy, kxy = (torch.exp(-d / (2 * h * h)) for d in (dxx, dyy, dxy))
        total += float((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2 * kxy.mean())
    return total / len(bandwidths)


def mmd_bandwidths(dataset: Dataset, reference: Tensor) -> list[float]:
    """SCALES times the held-out per-coordinate std, plus the mode width of a known mixture."""
    scale = float(flat(reference).double().var(0).mean().sqrt())
    widths = [s * scale for s in SCALES]
    exact = dataset.exact
    if isinstance(exact, GaussianMixture):
        widths.append(float(torch.diagonal(exact.covs.double(), dim1=1, dim2=2).mean().sqrt()))
    return widths


@dataclass(frozen=True)
class Distances(Metric):
    """W2 (POT) and sliced W2 on at most ``points`` per set, energy distance and MMD^2 on at most
    ``kernel_points``, for data of dimension d <= ``max_dim``."""

    name = "distances"
    summary = "low-dim distances to held-out data: W2 (POT emd2), sliced W2, energy distance, MMD^2"
    higher_is_better: ClassVar[dict[str, bool]] = {"w2": False, "sliced_w2": False, "energy": False, "mmd2": False}

    max_dim: int = 16
    points: int = 2000  # exact OT costs about 1 s at 2000 points, 6.6 s at 5000
    kernel_points: int = 1000  # energy and MMD^2: three dense kernel matrices per bandwidth
    projections: int = 128

    def __post_init__(self) -> None:
        for key, least in (("max_dim", 1), ("points", 2), ("kernel_points", 2), ("projections", 1)):
            if getattr(self, key) < least:
                self.fail(f"{key} must be at least {least}, got {getattr(self, key)}")

    def applies(self, dataset: Dataset) -> bool:
        return not dataset.is_image and math.prod(dataset.shape) <= self.max_dim

    def protocol(self, ctx: EvalContext) -> dict[str, object]:
        return {"mmd_bandwidths": mmd_bandwidths(ctx.dataset, ctx.reference), "w2_points": self.points}

    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        # random subsamples, so their first kernel_points rows are random subsamples too
        x = subsample(flat(samples), self.points, ctx.seed, shuffle=True)
        y = subsample(flat(ctx.reference), self.points, ctx.seed + 1, shuffle=True)
        xk, yk = x[: self.kernel_points], y[: self.kernel_points]
        with one_thread():  # products of a few thousand points: threads only contend
            return {"w2": w2(x, y),
                    "sliced_w2": sliced_w2(x, y, self.projections, ctx.seed),
                    "energy": energy_distance(xk, yk),
                    "mmd2": mmd2(xk, yk, mmd_bandwidths(ctx.dataset, ctx.reference))}
