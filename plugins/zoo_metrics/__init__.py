"""Built-in metrics (docs/METRICS.md), one module per family.

Heavy dependencies (torch-fidelity, POT) are imported when a metric computes, not when zoo loads.
"""
import zoo
from zoo_metrics.diversity import Diversity
from zoo_metrics.distances import Distances
from zoo_metrics.fidelity import Fidelity
from zoo_metrics.memorization import Memorization
from zoo_metrics.modes import Modes
from zoo_metrics.velocity import VelocityError

METRICS = (Fidelity, Diversity, Modes, Memorization, Distances, VelocityError)


@zoo.hookimpl
def zoo_register_metrics(register) -> None:
    for cls in METRICS:
        register(cls)
