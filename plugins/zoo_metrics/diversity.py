"""Diversity: Vendi score, density and coverage, and (where the fidelity extractor does not apply)
precision and recall, in the data set's evaluation space: the extractor's features for images,
the raw coordinates otherwise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import EvalContext, GaussianMixture, Metric
from zoo_metrics import extractor as cnn
from zoo_metrics.common import (balls_hit, cached, count_within, fingerprint, flat, knn, one_thread, sq_dists,
                                subsample)


def embed(x: Tensor, ctx: EvalContext, cache: bool = False) -> Tensor:
    """The evaluation space (n, D): extractor features for images, flattened coordinates otherwise."""
    if cnn.applies(ctx.dataset):
        return cnn.features(x, ctx.dataset, ctx.train, cache=cache)[0]
    return flat(x)


def radii(ref: Tensor, k: int) -> Tensor:
    """Distance (m,) of each reference point to its k-th nearest other reference point (cached)."""
    return cached(("radii", fingerprint(ref), k), lambda: knn(ref, ref, k, exclude_self=True)[0][:, -1])


def vendi(x: Tensor, bandwidth: float) -> float:
    """Vendi score (Friedman and Dieng 2022) of x (n, D): exp of the entropy of the eigenvalues of
    K / n, K the RBF kernel exp(-|xi - xj|^2 / (2 h^2)). Between 1 and n: an effective number of modes."""
    kernel = torch.exp(-sq_dists(x, x).double() / (2 * bandwidth**2))
    with one_thread():
        eig = torch.linalg.eigvalsh(kernel / x.shape[0]).clamp_min(0)
    eig = eig[eig > 0]
    return float(torch.exp(-(eig * eig.log()).sum()))


def vendi_bandwidth(ctx: EvalContext) -> tuple[float, str]:
    """The stated default kernel width and the rule that gave it."""
    exact, dataset = ctx.dataset.exact, ctx.dataset
    if isinstance(exact, GaussianMixture) and len(exact.means) > 1:
        return 0.5 * _min_spacing(exact.means.double()), "half the smallest distance between mixture means"
    labels = dataset.labels("train")
    if labels is not None and labels.unique().numel() > 1:
        def centroids() -> Tensor:
            z = embed(ctx.train, ctx, cache=True).double()
            return torch.stack([z[labels == c].mean(0) for c in labels.unique()])
        means = cached(("centroids", fingerprint(ctx.train)), centroids)
        return 0.5 * _min_spacing(means), "half the smallest distance between class centroids (train split)"
    ref = subsample(embed(ctx.reference, ctx, cache=True), 2000, 0)
    d = sq_dists(ref, ref).sqrt()
    return float(d[torch.triu_indices(len(d), len(d), 1).unbind()].median()), "median pairwise distance (held-out)"


def _min_spacing(means: Tensor) -> float:
    d = sq_dists(means, means).sqrt() + torch.diag(torch.full((len(means),), math.inf, dtype=means.dtype))
    return float(d.min())


@dataclass(frozen=True)
class Diversity(Metric):
    """Vendi score at a stated bandwidth, density and coverage (Naeem et al. 2020, k = 5), and
    precision/recall (Kynkaanniemi et al. 2019, k = 3) for data the fidelity extractor does not cover."""

    name = "diversity"
    summary = "Vendi score (stated RBF bandwidth), density & coverage (k=5), precision/recall (k=3, low-dim)"
    higher_is_better: ClassVar[dict[str, bool]] = {
        "vendi": True, "density": True, "coverage": True, "precision": True, "recall": True}

    bandwidth: float | None = None  # Vendi RBF width; none: half the mode (class) spacing, see vendi_bandwidth
    k_density: int = 5
    k_prc: int = 3
    vendi_points: int = 500  # eigenvalues of an n x n kernel cost n^3: subsample

    def __post_init__(self) -> None:
        if self.bandwidth is not None and not (self.bandwidth > 0 and math.isfinite(self.bandwidth)):
            self.fail(f"bandwidth must be a positive number, got {self.bandwidth}")
        for key in ("k_density", "k_prc", "vendi_points"):
            if getattr(self, key) < 1:
                self.fail(f"{key} must be at least 1, got {getattr(self, key)}")

    def _bandwidth(self, ctx: EvalContext) -> tuple[float, str]:
        return (self.bandwidth, "option bandwidth") if self.bandwidth is not None else vendi_bandwidth(ctx)

    def protocol(self, ctx: EvalContext) -> dict[str, float | str]:
        h, rule = self._bandwidth(ctx)
        return {"vendi_bandwidth": h, "vendi_bandwidth_rule": rule}

    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        gen, ref = embed(samples, ctx), embed(ctx.reference, ctx, cache=True)
        out = {"vendi": vendi(subsample(gen, self.vendi_points, ctx.seed), self._bandwidth(ctx)[0])}
        r = radii(ref, self.k_density)
        out["density"] = float(count_within(gen, ref, r).sum()) / (self.k_density * len(gen))
        out["coverage"] = float(balls_hit(gen, ref, r).float().mean())
        if not cnn.applies(ctx.dataset):  # images get precision/recall from the fidelity metric
            out["precision"] = float((count_within(gen, ref, radii(ref, self.k_prc)) > 0).float().mean())
            gen_r = knn(gen, gen, self.k_prc, exclude_self=True)[0][:, -1]
            out["recall"] = float((count_within(ref, gen, gen_r) > 0).float().mean())
        return out
