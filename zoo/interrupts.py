"""Ctrl-C that acts at once and never tears a unit of work in half.

By default SIGINT raises ``KeyboardInterrupt`` wherever the code is: fine for sampling, metrics
and particle flows, which leave nothing half-written (every file is replaced atomically). A
training step, though, is several updates (weights, optimizer, EMA, loss log) that a checkpoint
must see whole: inside :func:`deferred` SIGINT only sets a flag, which the loop reads between
steps to save a checkpoint and then raise ``KeyboardInterrupt`` itself.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def deferred(enabled: bool = True) -> Iterator[Callable[[], bool]]:
    """Within the block, SIGINT sets a flag; yields a function telling whether it came.

    Not ``enabled``, where SIGINT is not Python's default (ignored, or handled by someone else) or
    outside the main thread, nothing changes and the function always says no."""
    if not enabled or threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield lambda: False
        return
    hits: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: hits.append(signum))
    try:
        yield lambda: bool(hits)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def say(message: str) -> None:
    """One line on stderr, at once (workers share the terminal with the bench's progress bar)."""
    sys.stderr.write(f"\ninterrupted: {message}\n")
    sys.stderr.flush()
