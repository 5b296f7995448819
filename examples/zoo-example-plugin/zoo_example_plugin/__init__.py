"""An example zoo plugin: the hook implementations zoo finds through the entry point."""
import zoo

from zoo_example_plugin.exploding import Exploding
from zoo_example_plugin.laws import Tempered
from zoo_example_plugin.samplers import Ralston


@zoo.hookimpl
def zoo_register_samplers(register) -> None:
    register(Ralston)


@zoo.hookimpl
def zoo_register_laws(register) -> None:
    register(Tempered)
    register(Exploding)
