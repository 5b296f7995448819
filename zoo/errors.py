"""The one exception type that reaches users as a single line, and the text hygiene of that line."""
from __future__ import annotations

import unicodedata

_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")  # reorder what a terminal shows


class ZooError(Exception):
    """A user-facing error: bad input, a missing file, an incompatible choice.

    The CLI prints ``zoo: <message>`` and exits with status 2; nothing else
    should ever show a user a traceback.
    """


def printable(text: str) -> str:
    """``text`` with control characters (escape sequences, bell, bidi overrides) written as
    ``\\xNN`` / ``\\uNNNN``: a SPEC or file name from the command line or a data folder is shown,
    never interpreted by the terminal."""
    out = []
    for ch in text:
        if ch in _BIDI or (unicodedata.category(ch) == "Cc" and ch != " "):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def one_line(text: str) -> str:
    """A message as one printable line: its lines joined by spaces, control characters escaped."""
    return printable(" ".join(line.strip() for line in str(text).splitlines() if line.strip()))
