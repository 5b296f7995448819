"""Built-in networks: learned (mlp, unet) and non-learned exact fields (exact, empirical)."""
import zoo

from zoo_networks.exact import Empirical, Exact
from zoo_networks.mlp import MLP
from zoo_networks.unet import UNet

NETWORKS = (MLP, UNet, Exact, Empirical)


@zoo.hookimpl
def zoo_register_networks(register) -> None:
    for cls in NETWORKS:
        register(cls)
