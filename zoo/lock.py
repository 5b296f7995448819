"""One writer per output folder: an OS-level lock on a file inside it.

``zoo bench`` holds ``OUT/.zoo-lock`` (``flock``, exclusive) from before it looks at the folder
until it ends, so two sweeps, or a sweep and a ``--resume`` of it, never run on one folder at
once. The lock is the kernel's: it goes away with the process that holds it, however that ends
(a killed sweep never leaves a stale lock), and the file's text only names the holder (pid, host,
start time) for the message of whoever is refused. The driver process takes it, whatever the
executor (Ray workers write only under ``OUT/runs/<id>/``); on NFS, Linux maps ``flock`` to
the server's byte-range locks, so drivers on different machines exclude each other too.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from zoo.errors import ZooError, printable
from zoo.io import cannot_write, check_destination

LOCK_FILE = ".zoo-lock"


@contextmanager
def hold(folder: str | Path) -> Iterator[None]:
    """Hold ``folder``'s lock for the block; if another process holds it, refuse with one line
    naming the holder."""
    path = Path(folder) / LOCK_FILE
    check_destination(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o666)
    except OSError as exc:
        check_destination(path)
        raise cannot_write(path, exc) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            check_destination(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ZooError(f"{str(folder)!r} is in use by another sweep ({_holder(fd)}): wait for it to end, "
                           f"or choose another --out") from None
        text = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode()
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        try:
            yield
        finally:
            with contextlib.suppress(OSError):  # empty: nobody holds it (or a new holder is writing its name)
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """What the holder wrote in the lock file, 'pid N on HOST since T', waiting a moment for a
    holder that has just taken the lock to write it."""
    deadline = time.monotonic() + 2.0
    while True:
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text or time.monotonic() > deadline:
            return printable(text) or "holder unknown"
        time.sleep(0.02)
