"""SPEC strings: ``name`` or ``name:key=value[:key=value...]``.

Examples: ``em:alpha=0.5``, ``pme:m=2``, ``file:PATH`` (a bare value after the
name is the plugin's positional option, here the path). Colons inside values are
kept: ``file:/a:b:c`` has the positional value ``/a:b:c``, and in
``file:path=/a:b:seed=1`` the part ``b`` (no ``=``) continues the value of ``path``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ZooError


def parse_value(text: str) -> Any:
    """``'3'`` -> 3, ``'0.5'`` -> 0.5, ``'true'`` -> True, anything else stays a string
    (``'none'`` too: it means None only for options that may be None)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def format_value(value: Any) -> str:
    """The SPEC text of an option value; ``parse_value(format_value(v)) == v`` for bool, int, float."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "none"
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Spec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    positional: str | None = None  # a bare value after the name, e.g. the PATH in file:PATH

    @classmethod
    def parse(cls, text: str) -> "Spec":
        if not isinstance(text, str):
            raise ZooError(f"a plugin spec must be a string, got {type(text).__name__}")
        text = text.strip()
        if not text:
            raise ZooError("empty plugin spec")
        name, _, rest = text.partition(":")
        name = name.strip()
        if not name:
            raise ZooError(f"spec {text!r} has no name")
        if "=" in name:
            raise ZooError(f"spec {text!r}: expected NAME:key=value, got an option before the name")
        raw: dict[str, str] = {}
        positional = None
        if rest:
            parts = rest.split(":")
            if "=" not in parts[0]:
                # file:/some/path:with:colons keeps everything up to the first key=value part
                keep = [parts.pop(0)]
                while parts and "=" not in parts[0]:
                    keep.append(parts.pop(0))
                positional = ":".join(keep)
            key = None
            for part in parts:
                if "=" not in part:  # a colon inside the previous value (a path)
                    raw[key] += ":" + part
                    continue
                key, _, value = part.partition("=")
                key = key.strip()
                if not key:
                    raise ZooError(f"spec {text!r}: expected key=value, got {part!r}")
                if key in raw:
                    raise ZooError(f"spec {text!r}: option {key!r} given twice")
                raw[key] = value
        options = {key: parse_value(value.strip()) for key, value in raw.items()}
        return cls(name, options, positional)

    def __str__(self) -> str:
        parts = [self.name]
        if self.positional is not None:
            parts.append(self.positional)
        parts += [f"{k}={format_value(v)}" for k, v in self.options.items()]
        return ":".join(parts)


def split_list(values: tuple[str, ...] | list[str]) -> list[str]:
    """Split repeatable, comma-separated CLI values: ('heat,pme:m=3', 'heun') -> ['heat', 'pme:m=3', 'heun'].
    A comma inside brackets belongs to a formula, not the list: 'custom:F=pow(rho,2),heun' is two SPECs."""
    items = []
    for value in values:
        depth, start = 0, 0
        for i, ch in enumerate(value):
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
            elif ch == "," and depth == 0:
                items.append(value[start:i])
                start = i + 1
        items.append(value[start:])
    return [item.strip() for item in items if item.strip()]
