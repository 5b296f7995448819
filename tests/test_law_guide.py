"""A variance-exploding law written by a third party on the law contract (docs/plugins.md section 8,
and the example package's ``exploding``) conforms, and zoo's samplers, the stochastic ones
included, reverse it exactly as they reverse the built-in ``ve`` law: nothing folded into grad p."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch

from zoo.registry import get_registry
from zoo.sampling import generate
from zoo.testing import check_law, registered

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text()
EXAMPLE = ROOT / "examples" / "zoo-example-plugin"


def guide_module():
    code = re.search(r"```python\n# file: zoo_exploding_doc/__init__.py\n(.*?)```", GUIDE, flags=re.S).group(1)
    spec = importlib.util.spec_from_loader("zoo_exploding_doc", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules["zoo_exploding_doc"] = module
    exec(compile(code, "docs/plugins.md:zoo_exploding_doc", "exec"), module.__dict__)
    return module


@pytest.fixture(params=["guide", "example"])
def third_party(request):
    """(registry with the third-party law, its name)."""
    if request.param == "guide":
        module, name = guide_module(), "exploding-doc"
    else:
        sys.path.insert(0, str(EXAMPLE))
        import zoo_example_plugin as module

        name = "exploding"
    try:
        with registered(module) as registry:
            yield registry, name
    finally:
        sys.modules.pop("zoo_exploding_doc", None)
        if str(EXAMPLE) in sys.path:
            sys.path.remove(str(EXAMPLE))
        for key in [m for m in sys.modules if m.startswith("zoo_example_plugin")]:
            del sys.modules[key]


def test_the_third_party_law_conforms(third_party):
    registry, name = third_party
    assert check_law(name)["stationary_m2_error"] < 0.05
    assert get_registry().create("sampler", "em").supports(registry.create("law", name))


def test_its_samples_are_the_builtin_ve_laws(third_party):
    """Same prior draws (T z), same noise, exact fields of gmm8: the same samples, for the ODE and the SDE."""
    registry, name = third_party
    theirs, ours = registry.create("law", name), get_registry().create("law", "ve")
    gmm8 = registry.create("dataset", "gmm8")
    for spec in ("heun", "em:alpha=1.0", "dpmpp"):
        sampler = registry.create("sampler", spec)
        a, b = (generate(law, law.exact_field(gmm8.exact), sampler, n=64, nfe=20, shape=(2,), seed=1).samples
                for law in (theirs, ours))
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
