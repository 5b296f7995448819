"""The plugin author's guide (docs/plugins.md) stays in step with the hooks, and its examples run."""
from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path

import pytest

from zoo import hookspecs
from zoo.testing import check, registered

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TEXT = GUIDE.read_text()
HOOKS = sorted(hookspecs.HOOK_KINDS)


def signature(name: str) -> str:
    """``def name(param: Annotation, ...) -> Return``, spelled as in zoo/hookspecs.py."""
    sig = inspect.signature(getattr(hookspecs, name))
    params = ", ".join(f"{p.name}: {p.annotation}" for p in sig.parameters.values())
    return f"def {name}({params}) -> {sig.return_annotation}"


def test_every_hookspec_is_a_hook_kind():
    specs = sorted(n for n, f in vars(hookspecs).items()
                   if callable(f) and hasattr(f, "zoo_spec"))
    assert specs == HOOKS


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_is_documented_with_its_exact_signature(name):
    assert f"### {name}\n" in TEXT, f"docs/plugins.md has no section for {name}"
    assert signature(name) in TEXT, f"docs/plugins.md does not show {signature(name)!r}"


def test_every_hook_has_a_docstring_with_its_parameter():
    for name in HOOKS:
        doc = inspect.getdoc(getattr(hookspecs, name))
        assert doc and ":param register:" in doc


def blocks() -> dict[str, str]:
    """The guide's complete files: fenced blocks whose first line is ``# file: PATH``."""
    found = re.findall(r"```(?:python|toml)\n# file: (\S+)\n(.*?)```", TEXT, flags=re.S)
    return {path: code for path, code in found}


FILES = blocks()
KIND_EXAMPLES = [p for p in FILES if p.endswith(".py") and not p.startswith("test_") and "/" not in p]


def test_the_guide_has_an_example_per_kind():
    assert {"pyproject.toml", "zoo_midpoint/__init__.py", "test_midpoint.py"} <= set(FILES)
    assert len(KIND_EXAMPLES) == 7  # one per kind, and custom as a class


def load(name: str, code: str):
    spec = importlib.util.spec_from_loader(name, loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses resolve their module
    exec(compile(code, f"docs/plugins.md:{name}", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("path", KIND_EXAMPLES)
def test_each_example_registers_and_passes_the_conformance_suite(path):
    name = path.removesuffix(".py")
    module = load(name, FILES[path])
    try:
        with registered(module) as registry:
            entries = [e for e in registry.all_entries() if e.plugin == name]
            assert entries, f"{path} registers nothing"
            for entry in entries:
                check(entry.kind, entry.name)
    finally:
        sys.modules.pop(name, None)


def test_the_sampler_package_and_its_test_file_work():
    module = load("zoo_midpoint", FILES["zoo_midpoint/__init__.py"])
    try:
        tests = load("test_midpoint_doc", FILES["test_midpoint.py"])
        tests.test_midpoint_conforms()
    finally:
        sys.modules.pop("zoo_midpoint", None)
        sys.modules.pop("test_midpoint_doc", None)
    assert module.Midpoint.name == "midpoint"
