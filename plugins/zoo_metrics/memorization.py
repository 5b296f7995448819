"""Memorisation: does the generator copy its training set? All distances in pixel (raw) space.

* distance-ratio test (Yoon et al. 2023; Gu et al. 2023): a sample is memorised when
  d1 < d2 / 3, with d1, d2 the distances to its nearest and second-nearest training points;
  ``memorization_ratio`` for the samples, ``memorization_ratio_floor`` for held-out data (the
  reference, or the test split when the reference is the train split);
* nearest-neighbour test (Meehan et al. 2020, C_T with a single cell): Mann-Whitney Z of the
  generated->train against the held-out->train nearest distances; Z << 0 is copying, Z >> 0
  underfitting; ``nn_z_flag`` = 1 when |Z| > 3;
* authenticity (Alaa et al. 2022): the fraction of samples farther from their nearest training
  point than that point is from its own nearest training neighbour (about 0.5 for fresh data, 0 for copies).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy.stats import rankdata
from torch import Tensor

from zoo.contracts import EvalContext, Metric
from zoo.errors import ZooError
from zoo_metrics.common import cached, fingerprint, flat, held_out, knn


def mann_whitney_z(x: Tensor, y: Tensor) -> float:
    """Normal approximation Z of the Mann-Whitney U of samples x (n,) and y (m,), ties corrected;
    Z < 0 when x tends to be smaller than y."""
    n, m = len(x), len(y)
    both = np.concatenate([x.double().numpy(), y.double().numpy()])
    ranks = rankdata(both)
    u = ranks[:n].sum() - n * (n + 1) / 2
    _, ties = np.unique(both, return_counts=True)
    total = n + m
    var = n * m / 12 * ((total + 1) - (ties**3 - ties).sum() / (total * (total - 1)))
    return float((u - n * m / 2) / math.sqrt(var)) if var > 0 else 0.0


def train_points(train: Tensor) -> Tensor:
    """The distinct train points (N', d): a duplicated point would hide its own copies from the ratio test."""
    return cached(("unique-train", fingerprint(train)), lambda: torch.unique(flat(train), dim=0))


@dataclass(frozen=True)
class Memorization(Metric):
    """Distance-ratio test with its held-out floor, nearest-neighbour Mann-Whitney Z, authenticity."""

    name = "memorization"
    summary = "distance-ratio memorisation (and its held-out floor), NN Mann-Whitney Z, authenticity"
    higher_is_better: ClassVar[dict[str, bool]] = {
        "memorization_ratio": False, "nn_z_flag": False, "authenticity": True}
    floor: ClassVar[bool] = False  # its held-out floors are among its values

    ratio: float = 3.0  # memorised when d1 < d2 / ratio
    z_flag: float = 3.0

    def __post_init__(self) -> None:
        if not self.ratio > 1:
            self.fail(f"ratio must exceed 1, got {self.ratio}")
        if not self.z_flag > 0:
            self.fail(f"z_flag must be positive, got {self.z_flag}")

    def compute(self, samples: Tensor, ctx: EvalContext) -> dict[str, float]:
        train = train_points(ctx.train)
        if len(train) < 2:
            raise ZooError(f"metric 'memorization' needs at least 2 distinct train points, got {len(train)}")
        gen_d, gen_i = knn(samples, train, 2)
        held = held_out(ctx)
        held_d, held_i = cached(("train-nn", fingerprint(train), fingerprint(held)), lambda: knn(held, train, 2))
        # nearest-neighbour distances within the train set, only for the train points that are hit
        hit, where = torch.unique(torch.cat([gen_i[:, 0], held_i[:, 0]]), return_inverse=True)
        own = knn(train[hit], train, 2)[0][:, 1][where]  # its first neighbour is itself
        own_gen, own_held = own[: len(gen_i)], own[len(gen_i):]
        z = mann_whitney_z(gen_d[:, 0], held_d[:, 0])
        return {
            "memorization_ratio": float((gen_d[:, 0] < gen_d[:, 1] / self.ratio).float().mean()),
            "memorization_ratio_floor": float((held_d[:, 0] < held_d[:, 1] / self.ratio).float().mean()),
            "nn_z": z,
            "nn_z_flag": float(abs(z) > self.z_flag),
            "authenticity": float((gen_d[:, 0] > own_gen).float().mean()),
            "authenticity_floor": float((held_d[:, 0] > own_held).float().mean()),
        }
