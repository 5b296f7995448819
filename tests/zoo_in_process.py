"""Running `zoo ARGS` inside the test process, shared by the CLI tests."""
from __future__ import annotations

from typing import Any

from zoo.cli import main


def zoo_cli(capsys, *args: Any) -> tuple[int, str]:
    """Run `zoo ARGS` in-process: (exit status, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err
