"""Non-learned velocity fields that make the theory visible (MATH.md section 3)."""
from __future__ import annotations

from dataclasses import dataclass

from zoo.contracts import Dataset, Field, Law, Network
from zoo.errors import ZooError


@dataclass(frozen=True)
class Exact(Network):
    """The law's exact field for data of known density (``Dataset.exact``, e.g. gmm8, gmm25)."""

    name = "exact"
    summary = "the exact velocity for data of known density (not learned)"
    learned = False

    def field(self, law: Law, dataset: Dataset) -> Field:
        if dataset.exact is None:
            raise ZooError(f"data set {dataset.name!r} has no exact density; use --network empirical or a learned network")
        return law.exact_field(dataset.exact)


@dataclass(frozen=True)
class Empirical(Network):
    """The exact field of the diffused training set itself: it memorises (the eps -> 0 limit at fixed N)."""

    name = "empirical"
    summary = "the exact velocity of the diffused training set: memorises (not learned)"
    learned = False

    def field(self, law: Law, dataset: Dataset) -> Field:
        return law.empirical_field(dataset.train())
