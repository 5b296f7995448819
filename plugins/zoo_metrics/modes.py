"""Mode collapse: modes captured, high-quality fraction and KL over modes for Gaussian mixtures
(8-ring, 25-grid); classes covered and KL for labelled images, under the extractor's classifier.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from zoo.contracts import Dataset, EvalContext, GaussianMixture, Metric
from zoo_metrics import extractor as cnn
from zoo_metrics.common import flat, kl_histogram


def mahalanobis(x: Tensor, mixture: GaussianMixture) -> Tensor:
    """Mahalanobis distances (n, K) of x (n, d) to every mode: |L_k^-1 (x - mu_k)|, S_k = L_k L_k^T."""
    chol = torch.linalg.cholesky(mixture.covs.double())  # (K, d, d)
    diff = x.double()[None] - mixture.means.double()[:, None]  # (K, n, d)
    z = torch.linalg.solve_triangular(chol, diff.transpose(1, 2), upper=False)  # (K, d, n)
    return z.square().sum(1).sqrt().T


@dataclass(frozen=True)
class Modes(Metric):
    """For mixtures: a sample is high-quality within ``sigmas`` (Mahalanobis) of its nearest mode; a mode
    is captured when its high-quality count reaches ``min_share`` of its expected count n w_k (and 1);
    ``mode_kl`` = KL(histogram of nearest modes || weights). For labelled images the same with the
    classifier's predicted classes against the train split's class frequencies."""

    name = "modes"
    summary = "modes captured, high-quality fraction, KL over modes (mixtures); classes covered, KL (labelled images)"
    higher_is_better: ClassVar[dict[str, bool]] = {
        "modes_captured": True, "high_quality": True, "mode_kl": False, "classes_covered": True, "class_kl": False}

    sigmas: float = 3.0
    min_share: float = 0.1

    def __post_init__(self) -> None:
        if not (self.sigmas > 0 and math.isfinite(self.sigmas)):
            self.fail(f"sigmas must be a positive number, got {self.sigmas}")
        if not 0 <= self.min_share <= 1:
            self.fail(f"min_share must lie in [0, 1], got {self.min_share}")

    def applies(self, dataset: Dataset) -> bool:
        if isinstance(dataset.exact, GaussianMixture):
            return True
        return cnn.applies(dataset) and dataset.labels("train") is not None

    def _captured(self, counts: Tensor, weights: Tensor, n: int) -> float:
        """How many bins hold at least min_share of their expected count n w_k (and at least 1)."""
        expected = n * weights.double() / weights.sum()
        return float((counts >= (self.min_share * expected).clamp_min(1)).sum())

    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        exact = ctx.dataset.exact
        if isinstance(exact, GaussianMixture):
            dist = mahalanobis(flat(samples), exact)
            nearest, closest = dist.argmin(1), dist.min(1).values
            good = closest <= self.sigmas
            k = len(exact.weights)
            # a mode is captured by high-quality samples only; its expected count uses all n
            hq = torch.bincount(nearest[good], minlength=k)
            return {"modes_captured": self._captured(hq, exact.weights, len(samples)),
                    "high_quality": float(good.double().mean()),
                    "mode_kl": kl_histogram(torch.bincount(nearest, minlength=k), exact.weights)}
        labels = ctx.dataset.labels("train")
        logits = cnn.features(samples, ctx.dataset, ctx.train)[1]
        k = max(logits.shape[1], int(labels.max()) + 1)
        freq = torch.bincount(labels, minlength=k).double()
        counts = torch.bincount(logits.argmax(1), minlength=k)
        return {"classes_covered": self._captured(counts, freq, len(samples)),
                "class_kl": kl_histogram(counts, freq)}
