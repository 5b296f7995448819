"""zoo: compare diffusion laws, velocity networks and samplers side by side."""
from zoo.hookspecs import hookimpl
from zoo.errors import ZooError

__version__ = "0.1.0"
__all__ = ["hookimpl", "ZooError", "__version__"]
