"""Reading files that may come from someone else (data folders, caches, results, checkpoints)
without running code from them, blocking on them, or relaying advice to load them unsafely.

* :func:`open_regular` opens a regular file only: a FIFO, device or socket is refused at once
  (opened non-blocking, so a FIFO with no writer cannot hang the read).
* :func:`load_array` reads ``.npy`` / ``.npz`` with ``allow_pickle=False``.
* :func:`load_tensors` reads torch files with ``weights_only=True``: tensors, numbers, strings
  and containers of them, nothing that names a Python global.
* :func:`unpickle_arrays` reads the pickles of data sets such as CIFAR-10 with an unpickler that
  can build only numpy arrays, lists, dicts, numbers and strings.

Every failure is a :class:`ZooError` of one line naming the file; torch's and numpy's own texts,
which suggest ``weights_only=False`` or ``allow_pickle=True``, are never shown.
"""
from __future__ import annotations

import os
import pickle
import re
import stat
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np

from zoo.errors import ZooError, printable

NOT_REGULAR = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a folder", stat.S_IFLNK: "a symbolic link"}


def file_kind(mode: int) -> str:
    """'a FIFO', 'a character device', ... for a stat mode that is not a regular file's."""
    return NOT_REGULAR.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: str | Path, what: str = "file") -> IO[bytes]:
    """``path`` opened for binary reading, if it is a regular file (symbolic links followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ZooError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ZooError(f"cannot read {what} {str(path)!r}: it is {file_kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_text(path: str | Path, what: str = "file") -> str:
    """A regular file's text (UTF-8); a FIFO or device is refused rather than read."""
    with open_regular(path, what) as f:
        try:
            return f.read().decode()
        except (OSError, UnicodeDecodeError) as exc:
            raise ZooError(f"cannot read {what} {str(path)!r}: {_reason(exc)}") from None


# --------------------------------------------------------------------------- numpy


def load_array(path: str | Path, key: str = "samples", what: str = "samples file") -> np.ndarray:
    """The array of a ``.npy`` file, or the ``key`` array of an ``.npz``, read fully and without pickle."""
    name = str(path)
    with open_regular(path, what) as f:
        try:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an array")
            with loaded:
                if key not in loaded.files:
                    keys = ", ".join(loaded.files) or "none"
                    raise ZooError(f"{what} {name!r} has no {key!r} array (keys: {printable(keys)})")
                return loaded[key]  # an .npz member is read here: its errors are caught below too
        except ZooError:
            raise
        except MemoryError:
            raise ZooError(f"{what} {name!r} declares an array too large for this machine's memory") from None
        except ValueError as exc:  # numpy's texts would suggest allow_pickle=True: ours do not
            if "Object arrays" in str(exc):
                raise ZooError(f"{what} {name!r} holds Python objects (an object array), which zoo does not "
                               f"load: save numbers only") from None
            if "pickled" in str(exc):
                raise ZooError(f"cannot read {what} {name!r} as .npy or .npz: it is neither (and zoo does not "
                               f"unpickle files)") from None
            raise ZooError(f"cannot read {what} {name!r} as .npy or .npz: {_reason(exc)}") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, TypeError) as exc:
            raise ZooError(f"cannot read {what} {name!r} as .npy or .npz (truncated or corrupt?): "
                           f"{_reason(exc)}") from None


# --------------------------------------------------------------------------- torch


def load_tensors(path: str | Path, what: str = "file", map_location: Any = "cpu", hint: str = "") -> Any:
    """A torch file of tensors, numbers, strings and containers of them (``weights_only=True``);
    ``hint`` ends the error message (what to do about a bad file)."""
    import torch

    with open_regular(path, what) as f:
        try:
            with warnings.catch_warnings():  # torch warns before failing on foreign pickles
                warnings.simplefilter("ignore")
                return torch.load(f, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as exc:
            found = re.search(r"GLOBAL ([\w.]+)", str(exc))
            held = f" ({found.group(1)})" if found else ""
            raise ZooError(f"corrupt {what} {str(path)!r}: it holds a Python object{held} that zoo does not "
                           f"load, not plain tensors{hint}") from None
        except Exception as exc:  # truncated zip, bad magic number, a device that does not exist
            raise ZooError(f"corrupt {what} {str(path)!r}: {_reason(exc)}{hint}") from None


# --------------------------------------------------------------------------- pickled arrays


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"array subtype {getattr(subtype, '__name__', subtype)!r}")
    return np.ndarray.__new__(np.ndarray, shape, _plain_dtype(dtype))


def _plain_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("an object array")
    return dtype


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    return np.frombuffer(buffer, dtype=_plain_dtype(dtype)).reshape(shape, order=order).copy()


def _encode(text: str, encoding: str = "utf-8") -> bytes:
    if encoding not in ("latin1", "latin-1", "utf-8", "utf8"):
        raise pickle.UnpicklingError(f"encoding {encoding!r}")
    return text.encode(encoding)


# the globals numpy arrays pickle with (numpy 1 and 2 module names; Python 2 and 3 protocols)
_ARRAY_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _plain_dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("_codecs", "encode"): _encode,
}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ARRAY_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"{module}.{name}") from None


def unpickle_arrays(path: str | Path, what: str = "file") -> Any:
    """A pickle of numpy arrays, lists, dicts, numbers and strings (CIFAR-10's batches): any other
    Python object is refused before it is built, so the file cannot run code."""
    with open_regular(path, what) as f:
        try:
            return _ArrayUnpickler(f, encoding="latin1").load()
        except pickle.UnpicklingError as exc:
            raise ZooError(f"{what} {str(path)!r} holds a Python object ({printable(str(exc))[:100]}) that zoo "
                           f"does not load: only arrays, lists, dicts, numbers and strings") from None
        except MemoryError:
            raise ZooError(f"{what} {str(path)!r} declares data too large for this machine's memory") from None
        except Exception as exc:  # truncated or not a pickle at all
            raise ZooError(f"cannot read {what} {str(path)!r}: {_reason(exc)}") from None


# --------------------------------------------------------------------------- messages

_UNSAFE_ADVICE = re.compile(r"weights_only|allow_pickle|add_safe_globals|safe_globals", re.I)


def _reason(exc: BaseException, limit: int = 160) -> str:
    """``Type: first line of the message``, short, printable, and without advice to load unsafely."""
    text = " ".join(str(exc).split())
    if _UNSAFE_ADVICE.search(text):
        text = ""
    text = printable(text)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__



