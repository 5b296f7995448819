"""Atomic writes of results and artifacts (.npz, .json, torch checkpoints): the one way zoo writes files.

Every writer goes to a temporary file in the destination's folder, fsyncs it and
``os.replace``s it over the destination: a reader (or a run killed midway) sees either
the old file or the new one, never a torn one. A destination that exists must be a regular
file: a FIFO, device, socket or symbolic link is refused, never replaced (as root,
``--out /dev/null`` would otherwise replace /dev/null).
"""
from __future__ import annotations

import io
import json
import os
import re
import stat
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import numpy as np

from zoo.errors import ZooError
from zoo.safe import file_kind

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, final files get the usual 0666 & ~umask


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success it replaces ``path``.
    A failed write is a ZooError naming ``path`` and the reason."""
    path = Path(path)
    check_destination(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        check_destination(path)  # again: it may have been swapped while we wrote
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


def check_destination(path: str | Path) -> None:
    """``path`` is absent or a regular file (not followed if it is a symbolic link)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise cannot_write(path, exc) from None
    if not stat.S_ISREG(mode):
        raise ZooError(f"cannot write {str(path)!r}: it is {file_kind(mode)}; zoo writes only regular files "
                       f"and replaces nothing else")


def open_log(path: str | Path) -> IO[str]:
    """A text file opened for appending (created if absent): refused if ``path`` is anything but a
    regular file (opened without following a link and without blocking on a FIFO)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as exc:
        check_destination(path)  # a link, or a FIFO without reader: say what it is
        raise cannot_write(path, exc) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        check_destination(path)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a")


def append_text(path: str | Path, text: str) -> None:
    """Append ``text`` to a log file (:func:`open_log`)."""
    try:
        with open_log(path) as f:
            f.write(text)
    except OSError as exc:
        raise cannot_write(path, exc) from None


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
    # serialised in memory first: torch reports a failed write (a full disk) as an internal
    # RuntimeError, a plain file write reports it as what it is
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_open(path) as f:
        f.write(buffer.getbuffer())


class NpzStream:
    """An .npz being written member by member (:func:`npz_stream`)."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive

    def array(self, name: str, value: Any) -> None:
        """A whole array, as ``np.savez`` stores it."""
        value = np.asanyarray(value)
        with self.archive.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array(f, value, allow_pickle=False)

    @contextmanager
    def rows(self, name: str, shape: tuple[int, ...], dtype: Any) -> Iterator[Callable[[np.ndarray], None]]:
        """An array of ``shape`` written in row blocks: yields ``write(block)``; the blocks must add up
        to ``shape[0]`` rows. Memory stays that of one block, whatever the array's size."""
        dtype = np.dtype(dtype)
        written = [0]
        with self.archive.open(f"{name}.npy", "w", force_zip64=True) as f:
            header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
            np.lib.format.write_array_header_2_0(f, header)

            def write(block: np.ndarray) -> None:
                block = np.ascontiguousarray(block, dtype=dtype)
                if block.shape[1:] != tuple(shape[1:]) or written[0] + len(block) > shape[0]:
                    raise ValueError(f"{name}: block {block.shape} does not fit {shape} after {written[0]} rows")
                f.write(block.data)
                written[0] += len(block)

            yield write
            if written[0] != shape[0]:
                raise ValueError(f"{name}: wrote {written[0]} of {shape[0]} rows")


@contextmanager
def npz_stream(path: str | Path) -> Iterator[NpzStream]:
    """Write an .npz (uncompressed, readable by ``np.load``) atomically, one member at a time."""
    with atomic_open(path) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        yield NpzStream(archive)


TEMP_SUFFIX = ".tmp"
PROBE_PREFIX = ".zoo-write-probe."
# mkstemp's names in atomic_open and _check_folder
_TEMP = re.compile(r"^\.(.+\.[A-Za-z0-9_]{8}\.tmp|zoo-write-probe\.[A-Za-z0-9_]{8})$")


def remove_stale_temps(folder: str | Path) -> int:
    """Delete the temporary files that writers killed midway left under ``folder`` (only call it
    while no writer runs there, e.g. holding the folder's lock); returns how many."""
    removed = 0
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if _TEMP.match(name) and stat.S_ISREG(os.lstat(path).st_mode):
                try:
                    os.unlink(path)
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


def check_free_space(path: str | Path, needed: int, what: str) -> None:
    """Refuse at once, not hours later, an output of ``needed`` bytes that the disk holding
    ``path`` cannot take."""
    import shutil

    free = shutil.disk_usage(Path(path).parent).free
    if needed > free:
        raise ZooError(f"{what} need {_size(needed)} in {str(path)!r}, but only {_size(free)} is free there")


def _size(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000:
            return f"{n:.1f} {unit}"
    return f"{n / 1000:.1f} TB"


def writable_file(path: str | Path) -> Path:
    """Check, before any long work, that a file can be written at ``path`` (parents are created)."""
    path = Path(path)
    if path.is_dir():
        raise ZooError(f"output path {str(path)!r} is a folder, expected a file")
    check_destination(path)
    _check_folder(path.parent, path)
    return path


def writable_dir(path: str | Path) -> Path:
    """Create folder ``path`` if needed and check that files can be written in it."""
    path = Path(path)
    _check_folder(path, path)
    return path


_CREATED: list[Path] = []  # folders this process created for its outputs, outermost first


def forget_created_outputs() -> None:
    """Start a new command: folders created so far are no longer candidates for removal."""
    _CREATED.clear()


def remove_empty_outputs() -> None:
    """Remove the output folders this process created and left empty (a command that failed
    before writing anything leaves no trace); folders holding anything are kept."""
    while _CREATED:
        try:
            _CREATED.pop().rmdir()  # innermost first; fails (and keeps it) unless empty
        except OSError:
            pass


def _check_folder(folder: Path, target: Path) -> None:
    """Create ``folder`` and write a probe file in it; errors name ``target``, what the user asked for."""
    for above in (folder, *folder.parents):  # the nearest existing ancestor must be a folder
        if above.exists():
            if not above.is_dir():
                mode = above.stat().st_mode
                kind = "a file" if stat.S_ISREG(mode) else file_kind(mode)
                raise ZooError(f"cannot write {str(target)!r}: {str(above)!r} is {kind}, not a folder")
            break
    try:
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        folder.mkdir(parents=True, exist_ok=True)
        _CREATED.extend(reversed(missing))
        # os.access says yes to root even on read-only mounts: really write a probe
        fd, probe = tempfile.mkstemp(dir=folder, prefix=PROBE_PREFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise cannot_write(target, exc) from None
