"""Atomic writes of results and artifacts (.npz, .json, torch checkpoints).

Every writer goes to a temporary file in the destination's folder, fsyncs it and
``os.replace``s it over the destination: a reader (or a run killed midway) sees either
the old file or the new one, never a torn one.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import torch

from zoo.errors import ZooError

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, final files get the usual 0666 & ~umask


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``.
    A failed write is a ZooError naming ``path`` and the reason."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise cannot_write(path, exc) from None
        raise
    _fsync_dir(path.parent)


def cannot_write(path: str | Path, exc: OSError) -> ZooError:
    """One line: which path could not be written, and the system's reason."""
    return ZooError(f"cannot write {str(path)!r}: {exc.strerror or exc}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_npz(path: str | Path, **arrays: Any) -> None:
    with atomic_open(path) as f:
        np.savez(f, **arrays)


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def save_torch(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as f:
        torch.save(obj, f)


def writable_file(path: str | Path) -> Path:
    """Check, before any long work, that a file can be written at ``path`` (parents are created)."""
    path = Path(path)
    if path.is_dir():
        raise ZooError(f"output path {str(path)!r} is a folder, expected a file")
    _check_folder(path.parent, path)
    return path


def writable_dir(path: str | Path) -> Path:
    """Create folder ``path`` if needed and check that files can be written in it."""
    path = Path(path)
    _check_folder(path, path)
    return path


def _check_folder(folder: Path, target: Path) -> None:
    """Create ``folder`` and write a probe file in it; errors name ``target``, what the user asked for."""
    for above in (folder, *folder.parents):  # the nearest existing ancestor must be a folder
        if above.exists():
            if not above.is_dir():
                raise ZooError(f"cannot write {str(target)!r}: {str(above)!r} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # os.access says yes to root even on read-only mounts: really write a probe
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".zoo-write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise cannot_write(target, exc) from None
