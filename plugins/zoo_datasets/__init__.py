"""Built-in data sets: 2-D toys (gmm8, gmm25, moons, checkerboard, swissroll), digits, file:PATH."""
import zoo

from zoo_datasets.digits import Digits
from zoo_datasets.files import FileData
from zoo_datasets.toy import Checkerboard, Grid25, Moons, Ring8, SwissRoll

DATASETS = (Ring8, Grid25, Moons, Checkerboard, SwissRoll, Digits, FileData)


@zoo.hookimpl
def zoo_register_datasets(register) -> None:
    for cls in DATASETS:
        register(cls)
