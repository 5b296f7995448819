"""How long a bench will take: a cost per job from its size, at a rate per job kind that the
finished jobs of that kind correct.

A job's size is in units: training steps x batch size; samples x (NFE + METRICS_NFE, the metrics'
cost in evaluations) for a sample row (an adaptive sampler counts as ADAPTIVE_NFE); n for the
floors. The rate of each kind (train per law and network, sample per network, floors) starts from
PRIOR_RATE, CPU seconds per unit on the 2-core development machine, scaled by how fast this
machine ran the jobs finished so far; once jobs of a kind have finished, their own rate
replaces it. So one slow job moves only the estimate of its own kind, and the ETA does not swing
from seconds to hours when a cheap job follows an expensive one.
"""
from __future__ import annotations

import math
from typing import Any

METRICS_NFE = 30  # a row's metrics cost about as much as 30 more network evaluations per sample
ADAPTIVE_NFE = 300  # what an adaptive sampler (rk45) typically counts
PRIOR_RATE = {  # CPU seconds per unit, from the default job's runs (benchmarks/default_time.md)
    "floors": 5e-3,
    "train": 7e-5,  # MLPs on vector data
    "train pme": 1e-4,  # and the blob flow before
    "train custom": 1e-4,
    "train unet": 1.2e-3,
    "sample": 3.5e-5,  # learned MLPs
    "sample exact": 1.5e-5,
    "sample empirical": 1.2e-4,  # every evaluation visits the whole training set
    "sample unet": 2e-3,
}


def kind_and_size(spec: dict[str, Any]) -> tuple[str, float]:
    """The cost kind of a job spec and its size in units."""
    kind = spec["kind"]
    if kind == "train":
        return f"train {spec['law'].split(':')[0]} {spec['network'].split(':')[0]}", spec["steps"] * spec["batch_size"]
    if kind == "sample":
        nfe = spec["nfe"] if spec["nfe"] is not None else ADAPTIVE_NFE
        return f"sample {spec['network'].split(':')[0]}", spec["n"] * (nfe + METRICS_NFE)
    return kind, spec.get("n", 1)


def _prior(kind: str) -> float:
    """The prior rate of a kind: ``train heat unet`` -> "train unet", else "train heat", else "train"."""
    words = kind.split()
    for key in (" ".join(words[:1] + words[-1:]), " ".join(words[:2]), words[0]):
        if key in PRIOR_RATE:
            return PRIOR_RATE[key]
    return PRIOR_RATE["sample"]


WORKER_START = 5.0  # seconds for a pool of workers to start (import torch and the plugins)


class Eta:
    """Remaining seconds of a sweep run by ``workers`` parallel workers, plus ``startup`` seconds
    before the first job finishes."""

    def __init__(self, specs: list[dict[str, Any]], workers: int = 1, startup: float = WORKER_START) -> None:
        self.workers = max(1, workers)
        self.startup = startup
        self.todo = {i: kind_and_size(spec) for i, spec in enumerate(specs)}
        self.seconds: dict[str, float] = {}  # kind -> seconds spent by finished jobs of it
        self.units: dict[str, float] = {}

    def finished(self, index: int, seconds: float) -> None:
        self.startup = 0.0
        kind, size = self.todo.pop(index)
        self.seconds[kind] = self.seconds.get(kind, 0.0) + seconds
        self.units[kind] = self.units.get(kind, 0.0) + size

    def skip(self, index: int) -> None:
        """A job that will not run (done before a resume, or its training failed)."""
        self.todo.pop(index, None)

    def rate(self, kind: str) -> float:
        if self.units.get(kind):
            return self.seconds[kind] / self.units[kind]
        # this machine against the priors': the geometric mean over the kinds seen, so that one
        # kind the priors misjudge does not scale every other kind by its error
        ratios = [math.log(self.seconds[k] / (self.units[k] * _prior(k))) for k in self.units
                  if self.units[k] > 0 and self.seconds[k] > 0]
        return _prior(kind) * (math.exp(sum(ratios) / len(ratios)) if ratios else 1.0)

    def remaining(self) -> float:
        return self.startup + sum(size * self.rate(kind) for kind, size in self.todo.values()) / self.workers


def duration(seconds: float) -> str:
    """``40 s``, ``12 min``, ``3.5 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
