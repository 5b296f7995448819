"""SPEC parsing (zoo/spec.py) and option building (zoo.registry.build)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import pytest

from zoo.contracts import Dataset, Sampler
from zoo.errors import ZooError
from zoo.registry import build
from zoo.spec import Spec, format_value, parse_value, split_list


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-2", -2), ("0.5", 0.5), ("1e-3", 1e-3), ("true", True), ("False", False),
    ("abc", "abc"), ("none", "none"), ("inf", float("inf")),
])
def test_values_are_parsed(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


@pytest.mark.parametrize("value", [True, False, 0, 7, -1.5, 0.1, 1e-12, 3.0, "x", None])
def test_values_round_trip(value):
    text = format_value(value)
    assert parse_value(text) == value or (value is None and text == "none")


def test_name_and_options():
    spec = Spec.parse(" em:alpha=0.5:schedule=linear ")
    assert spec == Spec("em", {"alpha": 0.5, "schedule": "linear"})
    assert str(spec) == "em:alpha=0.5:schedule=linear"
    assert Spec.parse("heat") == Spec("heat")


@pytest.mark.parametrize("text, positional, options", [
    ("file:data.npz", "data.npz", {}),
    ("file:/tmp/a:b:c.npz", "/tmp/a:b:c.npz", {}),
    ("file:C:\\data\\x.npy:seed=3", "C:\\data\\x.npy", {"seed": 3}),
    ("file:/a:b:test_fraction=0.2:seed=1", "/a:b", {"test_fraction": 0.2, "seed": 1}),
])
def test_positional_value_keeps_colons(text, positional, options):
    spec = Spec.parse(text)
    assert (spec.name, spec.positional, spec.options) == ("file", positional, options)
    assert Spec.parse(str(spec)) == spec


def test_colon_inside_an_option_value():
    spec = Spec.parse("file:path=/x/y:z.npz:seed=2")
    assert spec.options == {"path": "/x/y:z.npz", "seed": 2}


@pytest.mark.parametrize("text, message", [
    ("", "empty plugin spec"),
    ("   ", "empty plugin spec"),
    (":alpha=1", "has no name"),
    ("alpha=1", "option before the name"),
    ("em:=1", "expected key=value"),
    ("em:alpha=1:alpha=2", "given twice"),
])
def test_errors(text, message):
    with pytest.raises(ZooError, match=message):
        Spec.parse(text)


def test_split_list():
    assert split_list(("heat,pme:m=3", " heun ", ",")) == ["heat", "pme:m=3", "heun"]


@dataclass(frozen=True)
class Opt(Sampler):
    name: ClassVar[str] = "opt"
    steps: int = 3
    scale: float = 1.0
    label: str = "a"
    flag: bool = False
    cap: float | None = None
    mode: Literal["fast", "exact"] = "fast"


@pytest.mark.parametrize("text, expected", [
    ("opt", Opt()),
    ("opt:steps=5:scale=2", Opt(steps=5, scale=2.0)),  # an int where a float is wanted is converted
    ("opt:label=true:flag=true", Opt(label="true", flag=True)),  # text that looks like a bool stays text
    ("opt:label=12", Opt(label="12")),
    ("opt:cap=none", Opt(cap=None)),
    ("opt:cap=0.5", Opt(cap=0.5)),
    ("opt:mode=exact", Opt(mode="exact")),
])
def test_build_coerces_options(text, expected):
    built = build(Opt, Spec.parse(text))
    assert built == expected and type(built.scale) is float
    assert build(Opt, Spec.parse(built.spec)) == built  # the canonical spec round-trips


@pytest.mark.parametrize("text, message", [
    ("opt:steps=0.5", r"option steps=0.5 should be int"),
    ("opt:scale=abc", r"option scale=abc should be float"),
    ("opt:flag=1", r"option flag=1 should be bool"),
    ("opt:mode=slow", r"should be one of fast, exact"),
    ("opt:speed=1", r"unknown option 'speed' \(options: grid, final, steps, scale, label, flag, cap, mode\)"),
    ("opt:x.npz", r"unexpected value 'x.npz'"),
])
def test_build_errors(text, message):
    with pytest.raises(ZooError, match=message):
        build(Opt, Spec.parse(text))


@dataclass(frozen=True)
class Files(Dataset):
    name: ClassVar[str] = "files"
    positional: ClassVar[str] = "path"
    path: str
    seed: int = 0


def test_positional_option():
    assert build(Files, Spec.parse("files:/a:b.npz:seed=2")) == Files(path="/a:b.npz", seed=2)
    assert build(Files, Spec.parse("files:path=/a:b.npz")) == Files(path="/a:b.npz")
    with pytest.raises(ZooError, match=r"needs a value: files:PATH"):
        build(Files, Spec.parse("files"))
    with pytest.raises(ZooError, match="given twice"):
        build(Files, Spec.parse("files:/a:path=/b"))
