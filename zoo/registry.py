"""The plugin host: finds plugin modules, calls their hooks, owns names and provenance.

Sources, in order: the ``zoo`` entry-point group (built-ins included), single-file plugins
from ``ZOO_PLUGINS_DIR`` / ``--plugins-dir`` (os.pathsep-separated), and modules or objects
registered in-process (:meth:`Registry.add`, used by tests).

Environment:
  ZOO_PLUGINS=a,b            load only these plugin modules (entry-point or file names)
  ZOO_DISABLE_PLUGINS=a,b    never load these
  ZOO_PLUGINS_DIR=DIR[:DIR]  also load every ``*.py`` file of these folders (not ``_*.py``)
  ZOO_TRACE_PLUGINS=1        log to stderr each plugin loaded or skipped, hook call and registration

A plugin module that fails to import, implements no hook or a misspelled one, raises in a
hook, registers something that breaks its kind's contract, or reuses a taken name is
recorded in :attr:`Registry.problems` with the reason; everything else keeps working.
The author's guide is docs/plugins.md.
"""
from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.metadata
import importlib.util
import inspect
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
from zoo.spec import Spec, format_value

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

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "plugin": self.plugin,
                "distribution": self.distribution, "version": self.version,
                "summary": getattr(self.cls, "summary", "") or "", "options": self.options()}

    def options(self) -> dict[str, Any]:
        """Each option and its default (None: the value is required, the positional one)."""
        out = {}
        for f in dataclasses.fields(self.cls):
            if f.init:
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                out[f.name] = None if default is dataclasses.MISSING else default
        return out


@dataclass(frozen=True)
class Problem:
    plugin: str
    reason: str  # one line
    names: tuple[tuple[str, str], ...] = ()  # the (kind, name) it concerns, where known

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "error": self.reason}


def one_line(text: str) -> str:
    """The first line of a message, marking that more was cut."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return (lines[0] + (" ..." if len(lines) > 1 else "")) if lines else ""


def did_you_mean(name: str, choices: list[str] | tuple[str, ...] | set[str], n: int = 3) -> str:
    """`` (did you mean 'heun'?)`` for close matches among ``choices``, else empty."""
    close = difflib.get_close_matches(name, sorted(choices), n=n, cutoff=0.6)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


class Registry:
    """Plugin classes by kind and name (:attr:`entries`), and what could not be loaded (:attr:`problems`)."""

    def __init__(self, *, entry_points: bool = True, plugins_dirs: list[str] | tuple[str, ...] = ()) -> None:
        self.pm = pluggy.PluginManager("zoo")
        self.pm.add_hookspecs(hookspecs)
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.problems: list[Problem] = []
        self._provenance: dict[str, tuple[str, str]] = {}
        self._found: set[str] = set()
        self._only = _env_list("ZOO_PLUGINS")
        self._disabled = _env_list("ZOO_DISABLE_PLUGINS") or set()
        self._trace = bool(os.environ.get("ZOO_TRACE_PLUGINS"))
        if entry_points:
            self._load_entry_points()
        dirs = list(plugins_dirs)
        if os.environ.get("ZOO_PLUGINS_DIR"):
            dirs += [d for d in os.environ["ZOO_PLUGINS_DIR"].split(os.pathsep) if d]
        for folder in dirs:
            self._load_dir(folder)
        if entry_points:
            self._check_selection()

    # ------------------------------------------------------------------ loading
    def _wanted(self, name: str) -> bool:
        return name not in self._disabled and (self._only is None or name in self._only)

    def _log(self, message: str) -> None:
        if self._trace:
            sys.stderr.write(f"[zoo trace] {message}\n")

    def _problem(self, plugin: str, reason: str, names: tuple[tuple[str, str], ...] = ()) -> None:
        reason = one_line(reason).replace("zoo_plugins_dir_", "")  # the module name zoo gave a plugins-dir file
        self._log(f"problem in {plugin}: {reason}")
        self.problems.append(Problem(plugin, reason, names))

    def _load_entry_points(self) -> None:
        seen: set[str] = set()
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:
                continue  # the same distribution can be visible twice on sys.path
            seen.add(ep.name)
            if not self._wanted(ep.name):
                self._log(f"skip {ep.name} ({ep.value}): disabled")
                continue
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            self._log(f"load {ep.name} = {ep.value} from {dist} {version}")
            try:
                module = ep.load()
            except (Exception, SystemExit) as exc:  # a broken plugin must not take zoo down
                self._problem(ep.name, f"import failed: {_exception(exc)}")
                continue
            self.add(module, name=ep.name, distribution=dist, version=version)
        self._found = seen

    def _check_selection(self) -> None:
        """ZOO_PLUGINS naming a plugin that exists nowhere is a problem, not silence."""
        if self._only is None:
            return
        for name in sorted(self._only - self._found - set(self._provenance)):
            self._problem(name, "selected by ZOO_PLUGINS but no such plugin was found")

    def _load_dir(self, folder: str) -> None:
        path = Path(folder)
        if not path.is_dir():
            raise ZooError(f"plugins dir {folder!r} is not a folder")
        for file in sorted(path.glob("*.py")):
            if file.stem.startswith("_"):
                continue
            self._found.add(file.stem)
            if not self._wanted(file.stem):
                self._log(f"skip {file}: disabled")
                continue
            self._log(f"load {file.stem} from {file}")
            # in sys.modules so that type hints resolve and process pools can pickle its classes
            module_name = f"zoo_plugins_dir_{file.stem}"
            try:
                spec = importlib.util.spec_from_file_location(module_name, file)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
            except (Exception, SystemExit) as exc:
                sys.modules.pop(module_name, None)
                self._problem(file.stem, f"import failed: {_exception(exc)}")
                continue
            self.add(module, name=file.stem, distribution=f"file:{file}", version="-")

    def add(self, plugin: object, *, name: str | None = None, distribution: str = "inline",
            version: str = "-") -> str:
        """Register a plugin module or object and collect what its hooks register."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        if self.pm.has_plugin(name) or self.pm.is_registered(plugin):
            self._problem(name, "plugin registered twice")
            return name
        wrong = _hook_problem(plugin)
        if wrong:
            self._problem(name, wrong)
            return name
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # a misspelled hook fails loudly
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self._problem(name, f"invalid hooks: {exc}")
            return name
        if not any(impl.plugin is plugin for hook in hookspecs.HOOK_KINDS
                   for impl in getattr(self.pm.hook, hook).get_hookimpls()):
            self._problem(name, f"implements no zoo hook (expected one of {', '.join(hookspecs.HOOK_KINDS)})")
        self._provenance[name] = (distribution, version)
        self._collect(plugin, name)
        return name

    def remove(self, name: str) -> None:
        """Unregister a plugin module and everything it registered."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        for kind in self.entries:
            self.entries[kind] = {k: e for k, e in self.entries[kind].items() if e.plugin != name}
        self.problems = [p for p in self.problems if p.plugin != name]
        self._provenance.pop(name, None)

    def _collect(self, plugin: object, plugin_name: str) -> None:
        distribution, version = self._provenance[plugin_name]
        for hook_name, kind in hookspecs.HOOK_KINDS.items():
            impls = [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
            for impl in impls:
                def register(cls: type, _kind: str = kind) -> None:
                    self._register(_kind, cls, plugin_name, distribution, version)
                self._log(f"call {plugin_name}.{hook_name}(register)")
                try:
                    # pluggy lets an implementation take fewer arguments than its spec
                    impl.function(*([register] if impl.argnames else []))
                except Exception as exc:
                    self._problem(plugin_name, f"{hook_name} raised {_exception(exc)}")

    def _register(self, kind: str, cls: type, plugin: str, distribution: str, version: str) -> None:
        base = KINDS[kind]
        reason = contract_violation(kind, cls)
        label = getattr(cls, "name", None) or getattr(cls, "__name__", repr(cls))
        if reason:
            self._problem(plugin, f"{kind} {label!r} breaks the {base.__name__} contract: {reason}", ((kind, label),))
            return
        taken = self.entries[kind].get(cls.name)
        if taken is not None:
            self._problem(plugin, f"{kind} name {cls.name!r} is already registered by plugin {taken.plugin!r}")
            return
        self._log(f"  {plugin} registered {kind} {cls.name!r} ({cls.__module__}.{cls.__qualname__})")
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
            raise ZooError(self.unknown(kind, name)) from None

    def unknown(self, kind: str, name: str) -> str:
        """Why no plugin of ``kind`` is called ``name``: the broken plugin that should have given it,
        or a close name, the available ones and the broken plugins that might have given it."""
        broken = [p for p in self.problems if (kind, name) in p.names or p.plugin == name]
        if broken:
            return f"{kind} {name!r} is not available: plugin {broken[0].plugin!r} is broken: {broken[0].reason}"
        available = ", ".join(self.names(kind)) or "none"
        hint = did_you_mean(name, self.names(kind))
        others = sorted({p.plugin for p in self.problems})
        broken_note = f"; broken plugins: {', '.join(others)} (see `zoo plugins`)" if others else ""
        return f"unknown {kind} {name!r}{hint} (available: {available}){broken_note}"

    def kind_of(self, name: str) -> list[str]:
        """Kinds under which a plugin name is registered (bench --plugins accepts any kind)."""
        return [kind for kind in self.entries if name in self.entries[kind]]

    def create(self, kind: str, spec: str | Spec) -> Any:
        """Build a plugin instance from a SPEC string (``em:alpha=0.5``)."""
        spec = Spec.parse(spec) if isinstance(spec, str) else spec
        cls = self.entry(kind, spec.name).cls
        return build(cls, spec)

    def restore(self, kind: str, spec: str) -> Any:
        """Build a plugin from a SPEC read back from disk, through its class's ``upgrade``."""
        parsed = Spec.parse(spec)
        cls = self.entry(kind, parsed.name).cls
        return build(cls, Spec(parsed.name, cls.upgrade(dict(parsed.options)), parsed.positional))

    def all_entries(self) -> list[Entry]:
        return [e for kind in self.entries for e in sorted(self.entries[kind].values(), key=lambda e: e.name)]


def _exception(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(str(exc))}" if str(exc).strip() else type(exc).__name__


def _hook_problem(plugin: object) -> str | None:
    """What is wrong with a plugin's hook implementations, in one line (pluggy says it in three,
    naming internal modules): an unknown hook name, or arguments the hook does not give."""
    for attr in dir(plugin):
        fn = getattr(plugin, attr, None)
        if getattr(fn, "zoo_impl", None) is None:  # not marked by @zoo.hookimpl
            continue
        if attr not in hookspecs.HOOK_KINDS:
            return f"unknown hook {attr!r}{did_you_mean(attr, list(hookspecs.HOOK_KINDS), n=1)}"
        try:
            extra = [name for name, p in inspect.signature(fn).parameters.items()  # pluggy passes no defaulted ones
                     if name != "register" and p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            continue
        if extra:
            return f"hook {attr} takes {', '.join(extra)}, which it is not given (its only argument is `register`)"
    return None


OPTION_TYPES = (bool, int, float, str, type(None))


def _hint_args(hint: Any) -> tuple[Any, ...]:
    """The member types of an option's hint: ``float | None`` -> (float, NoneType)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


# contract attributes a plugin may turn into an option: a stochastic sampler's alpha, dpmpp's order
OVERRIDABLE = {"sampler": {"alpha", "order"}}


def contract_violation(kind: str, cls: Any) -> str | None:
    """Why ``cls`` cannot serve as a plugin of ``kind``, or None."""
    base = KINDS[kind]
    if not isinstance(cls, type) or not issubclass(cls, base):
        return f"expected a subclass of zoo.contracts.{base.__name__}, got {cls!r}"
    if "__dataclass_params__" not in cls.__dict__ or not cls.__dataclass_params__.frozen:
        return f"{cls.__name__} must be decorated with @dataclass(frozen=True)"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or any(c in name for c in ":,= \t"):
        return "needs a class attribute `name` (a non-empty string without ':', ',', '=' or spaces)"
    if not isinstance(getattr(cls, "summary", ""), str):
        return "`summary` must be a string"
    options = cls.option_names()
    if cls.positional is not None and cls.positional not in options:
        return f"positional option {cls.positional!r} is not one of its options ({', '.join(options) or 'none'})"
    reserved = {a for a in dir(base) if not a.startswith("_")} - set(base.option_names()) - OVERRIDABLE.get(kind, set())
    shadowing = [o for o in options if o in reserved]
    if shadowing:
        return f"option {shadowing[0]!r} would hide the contract's attribute of that name: rename it"
    required = [f.name for f in dataclasses.fields(cls)
                if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if [r for r in required if r != cls.positional]:
        return f"options without defaults: {', '.join(r for r in required if r != cls.positional)}"
    try:
        hints = typing.get_type_hints(cls)
    except Exception as exc:
        return f"its type hints do not resolve ({type(exc).__name__}: {exc})"
    for option in options:
        args = _hint_args(hints.get(option))
        if not all(a in OPTION_TYPES or typing.get_origin(a) is typing.Literal for a in args):
            return (f"option {option!r} has type {hints.get(option)!r}; options must be "
                    "bool, int, float, str, a Literal, or one of these or None")
    wrong = _signature_problem(base, cls)
    if wrong:
        return wrong
    if kind == "sampler" and cls.laws is not None and (
            not isinstance(cls.laws, tuple) or not all(isinstance(n, str) for n in cls.laws)):
        return f"`laws` must be None or a tuple of law names, got {cls.laws!r}"
    return None


def _signature_problem(base: type, cls: type) -> str | None:
    """A method of the contract that ``cls`` overrides with a signature zoo cannot call the way
    the contract says (``sample(self, x)`` for ``sample(self, process, x, grid, noise)``)."""
    for attr in dir(base):
        if attr.startswith("_"):
            continue
        ours, theirs = inspect.getattr_static(base, attr), inspect.getattr_static(cls, attr, None)
        if not inspect.isfunction(ours) or theirs is ours or not inspect.isfunction(theirs):
            continue
        wanted = inspect.signature(ours)
        positional = [p for p in wanted.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        try:
            inspect.signature(theirs).bind(*[None] * len(positional))
        except TypeError:
            return f"{attr}{_plain(inspect.signature(theirs))} cannot be called as {attr}{_plain(wanted)}"
        except ValueError:
            continue
    return None


def _plain(signature: inspect.Signature) -> str:
    """(self, process, x, grid, noise): the parameter names of a signature, without annotations."""
    return "(" + ", ".join(p.name for p in signature.parameters.values()) + ")"


def _coerce(cls: type, key: str, value: Any, hints: dict[str, Any]) -> Any:
    """A parsed SPEC value checked against (and converted to) the option's type hint."""
    hint = hints.get(key)
    args = _hint_args(hint)
    for literal in (a for a in args if typing.get_origin(a) is typing.Literal):
        choices = typing.get_args(literal)
        if value in choices or format_value(value) in choices:
            return value if value in choices else format_value(value)
        raise ZooError(f"{cls.kind} {cls.name!r}: option {key}={format_value(value)} "
                       f"should be one of {', '.join(map(format_value, choices))}")
    if isinstance(value, str) and value.lower() == "none" and type(None) in args:
        return None
    if isinstance(value, bool):
        if bool in args or hint is None:
            return value
    elif isinstance(value, (int, float)):
        if int in args and isinstance(value, int):
            return value
        if float in args:
            return float(value)
    elif isinstance(value, str):
        if hint is None or str in args:
            return value
    if str in args:  # "true" or "3" meant as text
        return format_value(value)
    expected = " or ".join(getattr(a, "__name__", str(a)) for a in args if a is not type(None))
    raise ZooError(f"{cls.kind} {cls.name!r}: option {key}={format_value(value)} should be {expected}")


def build(cls: type[Plugin], spec: Spec) -> Any:
    """Instantiate a plugin class from a parsed spec, checking and coercing options."""
    options = dict(spec.options)
    if spec.positional is not None:
        if cls.positional is None:
            raise ZooError(f"{cls.kind} {cls.name!r}: unexpected value {spec.positional!r} (use key=value)")
        if cls.positional in options:
            raise ZooError(f"{cls.kind} {cls.name!r}: option {cls.positional!r} given twice")
        options[cls.positional] = spec.positional
    allowed = cls.option_names()
    unknown = [k for k in options if k not in allowed]
    if unknown:
        raise ZooError(f"{cls.kind} {cls.name!r}: unknown option {unknown[0]!r}{did_you_mean(unknown[0], allowed)} "
                       f"(options: {', '.join(allowed) or 'none'})")
    if cls.positional is not None and cls.positional not in options and not _has_default(cls, cls.positional):
        raise ZooError(f"{cls.kind} {cls.name!r} needs a value: {cls.name}:{cls.positional.upper()}")
    hints = typing.get_type_hints(cls)
    options = {k: _coerce(cls, k, v, hints) for k, v in options.items()}
    try:
        return cls(**options)
    except ZooError:
        raise
    except (TypeError, ValueError) as exc:  # a plugin that validates without self.fail
        raise ZooError(f"{cls.kind} {cls.name!r}: {exc}") from None


def _has_default(cls: type, option: str) -> bool:
    f = next(f for f in dataclasses.fields(cls) if f.name == option)
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


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
