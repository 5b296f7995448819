"""Evaluate samples with the metric suite, measure real-vs-real floors, and describe the protocol.

A metric plugin implements :class:`zoo.contracts.Metric`: a metric not ``available`` in a context
is left out; :func:`floors` skips metrics with ``floor = False`` (``velocity_error`` is a property
of the field; ``memorization`` reports its held-out floors among its own values).

Floors (METRICS.md: FID depends on n, W2 between two real samples varies between seeds): the same
statistics for n real points against the same held-out reference, averaged over a few seeds.
The real points are drawn fresh from the exact law where the data set is a known Gaussian
mixture, and are otherwise a seeded subsample of the train split (the ideal model's output:
same law as the held-out data, same n, same reference), or of the test split when the
reference is the train split.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np
import torch
from torch import Tensor

from zoo.contracts import Dataset, EvalContext, GaussianMixture, Metric, seeded_generator
from zoo.errors import ZooError
from zoo.registry import get_registry

FLOOR_SEEDS = 3


def context(dataset: Dataset, *, seed: int = 0, device: str = "cpu", **extra: Any) -> EvalContext:
    """The standard context: train split, held-out split as the reference (``extra``: law, field)."""
    return EvalContext(dataset, dataset.train(), dataset.test(), seed=seed, device=device, **extra)


def select(ctx: EvalContext, metrics: Iterable[str | Metric] | None = None) -> list[Metric]:
    """Metric instances that can run in ctx: by default every registered metric that applies to the
    data set; else the named ones (SPECs or instances), each of which must apply. Either way a
    metric not available in this context (``velocity_error`` without a trained field) is left out."""
    registry = get_registry()
    if metrics is None:
        chosen = [m for m in (registry.create("metric", name) for name in registry.names("metric"))
                  if m.applies(ctx.dataset)]
    else:
        chosen = [m if isinstance(m, Metric) else registry.create("metric", m) for m in metrics]
        for m in chosen:
            if not m.applies(ctx.dataset):
                raise ZooError(f"metric {m.name!r} does not apply to data set {ctx.dataset.name!r}")
    return [m for m in chosen if m.available(ctx)]


def check_samples(samples: Tensor | np.ndarray, dataset: Dataset) -> Tensor:
    """Samples as float32 (n, *shape) on the CPU; a ZooError for a wrong shape, too few or non-finite values."""
    if isinstance(samples, np.ndarray):
        if samples.dtype.kind not in "iuf":
            raise ZooError(f"samples must be numbers, got dtype {samples.dtype}")
        samples = torch.from_numpy(np.ascontiguousarray(samples))
    samples = samples.detach().float().cpu()
    if tuple(samples.shape[1:]) != tuple(dataset.shape) or samples.ndim < 2:
        raise ZooError(f"samples have shape {tuple(samples.shape)}; data set {dataset.name!r} "
                       f"needs (n, {', '.join(map(str, dataset.shape))})")
    if len(samples) < 2:
        raise ZooError(f"need at least 2 samples to evaluate, got {len(samples)}")
    bad = int((~torch.isfinite(samples.flatten(1))).any(1).sum())
    if bad:
        raise ZooError(f"{bad} of {len(samples)} samples contain NaN or inf")
    # distances between samples must not overflow float32 in the metrics' kernels
    huge = int((~torch.isfinite((2 * samples.flatten(1)).square().sum(1))).sum())
    if huge:
        raise ZooError(f"{huge} of {len(samples)} samples are too large (squared distances overflow float32)")
    return samples


def _run(metrics: list[Metric], samples: Tensor, ctx: EvalContext) -> dict[str, float]:
    out: dict[str, float] = {}
    for metric in metrics:
        for key, value in metric.compute(samples, ctx).items():
            out[key if key not in out else f"{metric.name}.{key}"] = float(value)
    return out


def evaluate(samples: Tensor | np.ndarray, ctx: EvalContext,
             metrics: Iterable[str | Metric] | None = None) -> dict[str, float]:
    """{metric value name: value} of samples (n, *shape); a name two metrics share gets the
    second one's name as a prefix (``metric.key``)."""
    return _run(select(ctx, metrics), check_samples(samples, ctx.dataset), ctx)


def floor_data(ctx: EvalContext, n: int, seed: int) -> Tensor:
    """Real stand-ins (k, *shape) for n samples: exact draws of a known mixture, else a seeded
    subsample (k = min(n, its size)) of the real split that is not the reference."""
    exact = ctx.dataset.exact
    if isinstance(exact, GaussianMixture):
        return draw_mixture(exact, n, seed).reshape(n, *ctx.dataset.shape)
    pool = _floor_pool(ctx)
    return pool[torch.randperm(len(pool), generator=seeded_generator(seed, 1))[:n]]


def _floor_pool(ctx: EvalContext) -> Tensor:
    same = ctx.reference.shape == ctx.train.shape and torch.equal(ctx.reference, ctx.train)
    return ctx.dataset.test() if same else ctx.train


def floors(ctx: EvalContext, metrics: Iterable[str | Metric] | None = None, *, n: int,
           seeds: int = FLOOR_SEEDS) -> dict[str, float]:
    """The statistics of :func:`evaluate` for real data of size n (see the module docstring),
    averaged over ``seeds`` draws; metrics without a floor are left out."""
    if n < 2:
        raise ZooError(f"a floor needs n >= 2, got {n}")
    chosen = [m for m in select(ctx, metrics) if m.floor]
    totals: dict[str, float] = {}
    for s in range(seeds):
        values = _run(chosen, floor_data(ctx, n, ctx.seed + s), dataclasses.replace(ctx, seed=ctx.seed + s))
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + value / seeds
    return totals


def draw_mixture(mixture: GaussianMixture, n: int, seed: int) -> Tensor:
    """n samples (n, d) of a Gaussian mixture, reproducible from seed."""
    gen = seeded_generator(seed, 2)
    modes = torch.multinomial(mixture.weights.double(), n, replacement=True, generator=gen)
    chol = torch.linalg.cholesky(mixture.covs.double())
    z = torch.randn(n, mixture.dim, generator=gen, dtype=torch.float64)
    return (mixture.means.double()[modes] + (chol[modes] @ z[:, :, None])[:, :, 0]).float()


def protocol(ctx: EvalContext, n_generated: int, metrics: Iterable[str | Metric] | None = None,
             seeds: int = FLOOR_SEEDS) -> dict[str, Any]:
    """What a result row records about its evaluation: sizes, split, floors, and each metric's own
    protocol (extractor and weights hash, bandwidths)."""
    chosen = select(ctx, metrics)
    exact = isinstance(ctx.dataset.exact, GaussianMixture)
    pool = "train" if _floor_pool(ctx) is ctx.train else "test"
    info: dict[str, Any] = {
        "n_generated": int(n_generated), "n_reference": len(ctx.reference), "n_train": len(ctx.train),
        "reference_split": "train" if pool == "test" else "test", "metric_seed": ctx.seed,
        "floor_source": "exact mixture draws" if exact else f"{pool} split subsamples",
        "floor_n": int(n_generated) if exact else min(int(n_generated), len(_floor_pool(ctx))),
        "floor_seeds": seeds,
        "metrics": [m.spec for m in chosen],
    }
    for m in chosen:
        info.update(m.protocol(ctx))
    return info
