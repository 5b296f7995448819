"""The plugin host: finds plugin modules, calls their hooks, owns names and provenance.

Sources, in order: the ``zoo`` entry-point group (built-ins included), single-file plugins
from ``ZOO_PLUGINS_DIR`` / ``--plugins-dir`` (os.pathsep-separated), and modules or objects
registered in-process (:meth:`Registry.add`, used by tests).

Environment:
  ZOO_PLUGINS=a,b            load only these plugin modules (entry-point or file names)
  ZOO_DISABLE_PLUGINS=a,b    never load these
  ZOO_PLUGINS_DIR=DIR[:DIR]  also load every ``*.py`` file of these folders
  ZOO_TRACE_PLUGINS=1        log every hook call to stderr

A plugin module that fails to import, raises in a hook, registers something that breaks its
kind's contract, or reuses a taken name is recorded in :attr:`Registry.problems` with the
reason; everything else keeps working.
"""
from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from zoo import hookspecs
from zoo.contracts import KINDS, Plugin
from zoo.errors import ZooError
from zoo.spec import Spec

ENTRY_POINT_GROUP = "zoo"


@dataclass(frozen=True)
class Entry:
    """One registered plugin class and where it came from."""

    kind: str
    name: str
    cls: type
    plugin: str  # the plugin module's name (entry-point name, file stem, or inline name)
    distribution: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version,
                "summary": getattr(self.cls, "summary", "") or ""}


@dataclass(frozen=True)
class Problem:
    plugin: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "error": self.reason}


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


class Registry:
    def __init__(self, *, entry_points: bool = True, plugins_dirs: list[str] | tuple[str, ...] = ()) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.problems: list[Problem] = []
        self._provenance: dict[str, tuple[str, str]] = {}
        self._only = _env_list("ZOO_PLUGINS")
        self._disabled = _env_list("ZOO_DISABLE_PLUGINS") or set()
        if os.environ.get("ZOO_TRACE_PLUGINS"):
            self.pm.trace.root.setwriter(lambda message: sys.stderr.write(f"[zoo trace] {message}"))
            self.pm.enable_tracing()
        if entry_points:
            self._load_entry_points()
        dirs = list(plugins_dirs)
        if os.environ.get("ZOO_PLUGINS_DIR"):
            dirs += os.environ["ZOO_PLUGINS_DIR"].split(os.pathsep)
        for folder in dirs:
            self._load_dir(folder)

    # ------------------------------------------------------------------ loading
    def _wanted(self, name: str) -> bool:
        return name not in self._disabled and (self._only is None or name in self._only)

    def _load_entry_points(self) -> None:
        seen: set[str] = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen or not self._wanted(ep.name):
                continue  # the same distribution can be visible twice on sys.path
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take zoo down
                self.problems.append(Problem(ep.name, f"import failed: {type(exc).__name__}: {exc}"))
                continue
            self.add(module, name=ep.name, distribution=dist, version=version)

    def _load_dir(self, folder: str) -> None:
        path = Path(folder)
        if not path.is_dir():
            raise ZooError(f"plugins dir {folder!r} is not a folder")
        for file in sorted(path.glob("*.py")):
            if not self._wanted(file.stem):
                continue
            try:
                spec = importlib.util.spec_from_file_location(f"zoo_dir_plugin_{file.stem}", file)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except Exception as exc:
                self.problems.append(Problem(file.stem, f"import failed: {type(exc).__name__}: {exc}"))
                continue
            self.add(module, name=file.stem, distribution=f"file:{file}", version="-")

    def add(self, plugin: object, *, name: str | None = None, distribution: str = "inline",
            version: str = "-") -> str:
        """Register a plugin module or object and collect what its hooks register."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self.pm.has_plugin(name) or self.pm.is_registered(plugin):
            self.problems.append(Problem(name, "plugin registered twice"))
            return name
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # a misspelled hook fails loudly
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.problems.append(Problem(name, f"invalid hooks: {exc}"))
            return name
        self._provenance[name] = (distribution, version)
        self._collect(plugin, name)
        return name

    def remove(self, name: str) -> None:
        """Unregister a plugin module and everything it registered."""
        plugin = self.pm.unregister(name=name)
        if plugin is None:
            return
        for kind in self.entries:
            self.entries[kind] = {k: e for k, e in self.entries[kind].items() if e.plugin != name}
        self.problems = [p for p in self.problems if p.plugin != name]

    def _collect(self, plugin: object, plugin_name: str) -> None:
        distribution, version = self._provenance[plugin_name]
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
            for impl in impls:
                def register(cls: type, _kind: str = kind) -> None:
                    self._register(_kind, cls, plugin_name, distribution, version)
                try:
                    impl.function(register)
                except Exception as exc:
                    self.problems.append(Problem(plugin_name, f"{hook_name} raised {type(exc).__name__}: {exc}"))

    def _register(self, kind: str, cls: type, plugin: str, distribution: str, version: str) -> None:
        base = KINDS[kind]
        reason = contract_violation(kind, cls)
        label = getattr(cls, "name", None) or getattr(cls, "__name__", repr(cls))
        if reason:
            self.problems.append(Problem(plugin, f"{kind} {label!r} breaks the {base.__name__} contract: {reason}"))
            return
        taken = self.entries[kind].get(cls.name)
        if taken is not None:
            self.problems.append(Problem(plugin, f"{kind} name {cls.name!r} is already registered by plugin {taken.plugin!r}"))
            return
        self.entries[kind][cls.name] = Entry(kind, cls.name, cls, plugin, distribution, version)

    # ------------------------------------------------------------------ lookup
    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def entry(self, kind: str, name: str) -> Entry:
        if kind not in self.entries:
            raise ZooError(f"unknown plugin kind {kind!r} (kinds: {', '.join(KINDS)})")
        try:
            return self.entries[kind][name]
        except KeyError:
            available = ", ".join(self.names(kind)) or "none"
            raise ZooError(f"unknown {kind} {name!r} (available: {available})") from None

    def kind_of(self, name: str) -> list[str]:
        """Kinds under which a plugin name is registered (bench --plugins accepts any kind)."""
        return [kind for kind in self.entries if name in self.entries[kind]]

    def create(self, kind: str, spec: str | Spec) -> Any:
        """Build a plugin instance from a SPEC string (``em:alpha=0.5``)."""
        spec = Spec.parse(spec) if isinstance(spec, str) else spec
        cls = self.entry(kind, spec.name).cls
        return build(cls, spec)

    def all_entries(self) -> list[Entry]:
        return [e for kind in self.entries for e in sorted(self.entries[kind].values(), key=lambda e: e.name)]


def contract_violation(kind: str, cls: Any) -> str | None:
    """Why ``cls`` cannot serve as a plugin of ``kind``, or None."""
    base = KINDS[kind]
    if not isinstance(cls, type) or not issubclass(cls, base):
        return f"expected a subclass of zoo.contracts.{base.__name__}, got {cls!r}"
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:
        return "must be a @dataclass(frozen=True)"
    if not isinstance(getattr(cls, "name", None), str) or not cls.name or ":" in cls.name or "," in cls.name:
        return "needs a class attribute `name` (a non-empty string without ':' or ',')"
    required = [f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if required and cls.positional not in required:
        return f"options without defaults: {', '.join(required)}"
    return None


def _coerce(cls: type, key: str, value: Any, hints: dict[str, Any]) -> Any:
    hint = hints.get(key)
    args = set(typing.get_args(hint)) if typing.get_origin(hint) in (typing.Union, types.UnionType) else {hint}
    if value == "none" and type(None) in args:
        return None
    if isinstance(value, bool):
        if bool in args or hint is None:
            return value
    elif isinstance(value, (int, float)):
        if int in args and isinstance(value, int):
            return value
        if float in args:
            return float(value)
        if str in args:
            return str(value)
    elif isinstance(value, str):
        if str in args or hint is None:
            return value
    expected = " or ".join(getattr(a, "__name__", str(a)) for a in args if a is not type(None))
    raise ZooError(f"{cls.kind} {cls.name!r}: option {key}={value!r} should be {expected}")


def build(cls: type[Plugin], spec: Spec) -> Any:
    """Instantiate a plugin class from a parsed spec, checking and coercing options."""
    options = dict(spec.options)
    if spec.positional is not None:
        if cls.positional is None:
            raise ZooError(f"{cls.kind} {cls.name!r}: unexpected value {spec.positional!r} (use key=value)")
        options[cls.positional] = spec.positional
    allowed = cls.option_names()
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ZooError(f"{cls.kind} {cls.name!r}: unknown option {unknown[0]!r} "
                       f"(options: {', '.join(allowed) or 'none'})")
    hints = typing.get_type_hints(cls)
    options = {k: _coerce(cls, k, v, hints) for k, v in options.items()}
    try:
        return cls(**options)
    except ZooError:
        raise
    except TypeError as exc:
        raise ZooError(f"{cls.kind} {cls.name!r}: {exc}") from None


_default: Registry | None = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _default
    if _default is None:
        _default = Registry()
    return _default


def set_registry(registry: Registry | None) -> None:
    global _default
    _default = registry
