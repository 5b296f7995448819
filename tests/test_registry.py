"""The plugin host: registration, contract checks, problems, loading controls, the CLI view."""
from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass
from typing import ClassVar

import pytest

import zoo
from zoo.contracts import Sampler
from zoo.errors import ZooError
from zoo.registry import Registry, contract_violation, get_registry, set_registry
from zoo.testing import registered


@dataclass(frozen=True)
class Good(Sampler):
    name: ClassVar[str] = "good-test"
    summary: ClassVar[str] = "a sampler for registry tests"
    alpha_: float = 0.0

    def sample(self, process, x, grid, noise):
        return x


def module(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, classes in hooks.items():
        impl = zoo.hookimpl(lambda register, _c=classes: [register(c) for c in _c])
        impl.__name__ = hook
        setattr(mod, hook, impl)
    return mod


def fresh() -> Registry:
    return Registry(entry_points=False)


def reasons(registry: Registry) -> dict[str, str]:
    return {p.plugin: p.reason for p in registry.problems}


def test_add_collects_classes_with_provenance_and_remove_forgets_them():
    registry = fresh()
    registry.add(module("mine", zoo_register_samplers=[Good]), distribution="mine-dist", version="1.2")
    entry = registry.entry("sampler", "good-test")
    assert (entry.cls, entry.plugin, entry.distribution, entry.version) == (Good, "mine", "mine-dist", "1.2")
    assert registry.kind_of("good-test") == ["sampler"]
    assert registry.create("sampler", "good-test:alpha_=0.5") == Good(alpha_=0.5)
    registry.remove("mine")
    assert registry.names("sampler") == [] and registry.problems == []


def test_unknown_names_and_kinds_are_user_errors():
    registry = fresh()
    with pytest.raises(ZooError, match=r"unknown sampler 'nope' \(available: none\)"):
        registry.create("sampler", "nope")
    with pytest.raises(ZooError, match="unknown plugin kind 'widget'"):
        registry.entry("widget", "x")


def test_a_name_registered_twice_is_reported_with_both_plugins():
    registry = fresh()
    registry.add(module("first", zoo_register_samplers=[Good]))
    registry.add(module("second", zoo_register_samplers=[Good]))
    assert registry.entry("sampler", "good-test").plugin == "first"
    assert reasons(registry) == {"second": "sampler name 'good-test' is already registered by plugin 'first'"}
    registry.add(module("first"))
    assert reasons(registry)["first"] == "plugin registered twice"


@dataclass(frozen=True)
class BadName(Sampler):
    name: ClassVar[str] = "a:b"


@dataclass(frozen=True)
class Unnamed(Sampler):
    pass


@dataclass(frozen=True, kw_only=True)
class Required(Sampler):
    name: ClassVar[str] = "required"
    steps: int


@dataclass(frozen=True)
class ListOption(Sampler):
    name: ClassVar[str] = "list-option"
    steps: list = None


class Undecorated(Good):
    name: ClassVar[str] = "undecorated"
    extra: int = 1


@dataclass(frozen=True)
class BadLaws(Sampler):
    name: ClassVar[str] = "bad-laws"
    laws: ClassVar = "heat"


@dataclass(frozen=True)
class ShadowsKind(Sampler):
    name: ClassVar[str] = "shadows-kind"
    kind: str = "gradient"  # would turn every message's "sampler" into "gradient"


@pytest.mark.parametrize("cls, reason", [
    (ShadowsKind, "option 'kind' would hide the contract's attribute"),
    (BadName, "a non-empty string without ':'"),
    (Undecorated, "Undecorated must be decorated with @dataclass(frozen=True)"),
    (Unnamed, "needs a class attribute `name`"),
    (Required, "options without defaults: steps"),
    (ListOption, "option 'steps' has type"),
    (BadLaws, "`laws` must be None or a tuple of law names"),
    (int, "expected a subclass of zoo.contracts.Sampler"),
])
def test_contract_violations_are_reported_and_skipped(cls, reason):
    registry = fresh()
    registry.add(module("bad", zoo_register_samplers=[cls, Good]))
    assert registry.names("sampler") == ["good-test"]  # the rest of the plugin still loads
    assert reason in reasons(registry)["bad"]
    assert reasons(registry)["bad"].startswith("sampler ")
    assert contract_violation("sampler", cls)


def test_a_hook_that_raises_is_reported():
    mod = types.ModuleType("raises")

    @zoo.hookimpl
    def zoo_register_laws(register):
        raise RuntimeError("no GPU here")

    mod.zoo_register_laws = zoo_register_laws
    registry = fresh()
    registry.add(mod)
    assert reasons(registry) == {"raises": "zoo_register_laws raised RuntimeError: no GPU here"}


def test_a_misspelled_hook_or_no_hook_at_all_is_reported():
    mod = types.ModuleType("typo")
    mod.zoo_register_sampler = zoo.hookimpl(lambda register: None)
    registry = fresh()
    registry.add(mod)
    assert reasons(registry)["typo"] == "unknown hook 'zoo_register_sampler' (did you mean 'zoo_register_samplers'?)"
    registry.add(types.ModuleType("empty"))
    assert reasons(registry)["empty"].startswith("implements no zoo hook")


def test_an_implementation_may_take_fewer_arguments_than_its_hook():
    mod = types.ModuleType("lazy")
    mod.zoo_register_samplers = zoo.hookimpl(lambda: None)
    registry = fresh()
    registry.add(mod)
    assert registry.problems == []


def test_registered_adds_to_the_process_registry_and_removes_in_finally():
    registry = get_registry()
    with pytest.raises(KeyError):
        with registered(Good):
            assert registry.entry("sampler", "good-test").cls is Good
            raise KeyError("the test body failed")
    assert "good-test" not in registry.names("sampler")
    with pytest.raises(AssertionError, match="must be decorated with @dataclass"):
        with registered(Undecorated):
            pass
    assert not [p for p in registry.problems if "Undecorated" in p.plugin]


PLUGIN_FILE = '''
from __future__ import annotations
from dataclasses import dataclass
from typing import ClassVar
import zoo
from zoo.contracts import Sampler


@dataclass(frozen=True)
class FromFile(Sampler):
    name: ClassVar[str] = "from-file"
    steps: int | None = None

    def sample(self, process, x, grid, noise):
        return x


@zoo.hookimpl
def zoo_register_samplers(register):
    register(FromFile)
'''


@pytest.fixture
def plugins_dir(tmp_path):
    (tmp_path / "single.py").write_text(PLUGIN_FILE)
    (tmp_path / "broken.py").write_text("raise ImportError('needs the flux capacitor')\n")
    (tmp_path / "_helper.py").write_text("raise SystemExit('never imported')\n")
    return tmp_path


def test_plugins_dir_loads_single_files_and_reports_the_broken_one(plugins_dir):
    registry = Registry(entry_points=False, plugins_dirs=[str(plugins_dir)])
    entry = registry.entry("sampler", "from-file")
    assert entry.plugin == "single" and entry.distribution == f"file:{plugins_dir / 'single.py'}"
    assert registry.create("sampler", "from-file:steps=none").steps is None  # hints resolve (module in sys.modules)
    assert reasons(registry) == {"broken": "import failed: ImportError: needs the flux capacitor"}
    with pytest.raises(ZooError, match="is not a folder"):
        Registry(entry_points=False, plugins_dirs=[str(plugins_dir / "single.py")])


def test_plugins_dir_from_the_environment(monkeypatch, plugins_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "second.py").write_text(PLUGIN_FILE.replace('"from-file"', '"from-other"'))
    monkeypatch.setenv("ZOO_PLUGINS_DIR", f"{plugins_dir}{os.pathsep}{other}")
    registry = Registry(entry_points=False)
    assert registry.names("sampler") == ["from-file", "from-other"]


def test_disable_and_select_plugins(monkeypatch, plugins_dir):
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", "broken")
    registry = Registry(entry_points=False, plugins_dirs=[str(plugins_dir)])
    assert registry.problems == [] and registry.names("sampler") == ["from-file"]
    monkeypatch.delenv("ZOO_DISABLE_PLUGINS")
    monkeypatch.setenv("ZOO_PLUGINS", "single,nowhere")
    registry = Registry(plugins_dirs=[str(plugins_dir)])  # entry points too: only 'single' may load
    assert [e.plugin for e in registry.all_entries()] == ["single"]
    assert reasons(registry) == {"nowhere": "selected by ZOO_PLUGINS but no such plugin was found"}


def test_entry_point_selection(monkeypatch):
    everything = Registry()
    eps = {e.plugin for e in everything.all_entries()}
    assert eps, "the built-in plugins are found through entry points"
    keep = sorted(eps)[0]
    monkeypatch.setenv("ZOO_PLUGINS", keep)
    assert {e.plugin for e in Registry().all_entries()} == {keep}
    monkeypatch.delenv("ZOO_PLUGINS")
    monkeypatch.setenv("ZOO_DISABLE_PLUGINS", keep)
    assert {e.plugin for e in Registry().all_entries()} == eps - {keep}


def test_trace_logs_loading_hook_calls_and_registrations(monkeypatch, plugins_dir, capsys):
    monkeypatch.setenv("ZOO_TRACE_PLUGINS", "1")
    Registry(entry_points=False, plugins_dirs=[str(plugins_dir)])
    err = capsys.readouterr().err
    assert f"[zoo trace] load single from {plugins_dir / 'single.py'}" in err
    assert "[zoo trace] call single.zoo_register_samplers(register)" in err
    assert "[zoo trace]   single registered sampler 'from-file'" in err
    assert "[zoo trace] problem in broken: import failed" in err


def test_zoo_plugins_json_names_the_broken_plugin_and_lists_the_rest(plugins_dir, monkeypatch):
    from click.testing import CliRunner

    from zoo.cli import cli

    monkeypatch.setenv("ZOO_PLUGINS_DIR", "")  # --plugins-dir writes it; monkeypatch restores it
    before = get_registry()
    set_registry(None)  # the command builds the process registry as `zoo` would
    try:
        result = CliRunner().invoke(cli, ["--plugins-dir", str(plugins_dir), "plugins", "--json"])
    finally:
        set_registry(before)
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert {"plugin": "broken", "error": "import failed: ImportError: needs the flux capacitor"} in listing["problems"]
    names = {(p["kind"], p["name"]) for p in listing["plugins"]}
    assert ("sampler", "from-file") in names and ("law", "heat") in names


def test_zoo_plugins_text_view(plugins_dir):
    from click.testing import CliRunner

    from zoo.cli.plugins import command

    before = get_registry()
    set_registry(Registry(plugins_dirs=[str(plugins_dir)]))
    try:
        result = CliRunner().invoke(command, [])
    finally:
        set_registry(before)
    assert result.exit_code == 0
    assert "broken plugin broken: import failed: ImportError: needs the flux capacitor" in result.stderr
    assert "from-file" in result.stdout and "samplers:" in result.stdout


def test_registered_uses_a_plugin_that_is_already_there():
    registry = fresh()
    mod = module("installed", zoo_register_samplers=[Good])
    registry.add(mod)
    with registered(mod, Good, registry=registry):
        assert registry.entry("sampler", "good-test").plugin == "installed"
    assert registry.names("sampler") == ["good-test"] and registry.problems == []
