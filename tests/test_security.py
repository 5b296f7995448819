"""Untrusted inputs and careless use (docs/security.md): nothing from a data folder, cache or
checkpoint runs code; outputs never replace anything but a regular file; one sweep per bench
folder; bad input is one line and exit 2; no read blocks on a FIFO."""
from __future__ import annotations

import contextlib
import os
import pickle
import socket
import stat
import struct
import subprocess
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import pytest
import torch
from PIL import Image

from zoo import io, lock
from zoo.bench import budget, make_sweep, prepare_out, run_bench
from zoo_in_process import zoo_cli
from zoo.contracts import Executor
from zoo.errors import ZooError
from zoo.spec import split_list
from zoo_metrics import common

UNSAFE_ADVICE = ("weights_only", "allow_pickle")


class Planted:
    """Unpickling this object creates ``marker``: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def one_line_error(capsys, *args: Any) -> str:
    """The command fails with exit 2 and one line `zoo: ...` that relays no advice to load unsafely."""
    code, err = zoo_cli(capsys, *args)
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("zoo: ") and "Traceback" not in err, err
    assert not any(word in err for word in UNSAFE_ADVICE), err
    return lines[0]


# --------------------------------------------------------------------------- no code from data


def _cifar_root(root: Path, planted: Path | None = None) -> Path:
    """A torchvision CIFAR-10 root of 2-image batches pickled with protocol 2, as the real ones are
    (arrays by numpy's _reconstruct, bytes by _codecs.encode); ``planted``: batch 3 runs code."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": name, "labels": [3, 7], "data": data, "filenames": ["a.png", "b.png"]}
        if planted is not None and name == "data_batch_3":
            batch["filenames"] = Planted(planted)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def test_crafted_cifar_batch_runs_nothing_and_real_batches_still_read(tmp_path, capsys):
    out = tmp_path / "cifar.npz"
    assert zoo_cli(capsys, "data", f"cifar10:root={_cifar_root(tmp_path / 'real')}", "--out", out)[0] == 0
    with np.load(out) as f:
        assert f["samples"].shape == (10, 3, 32, 32) and list(f["labels"][:2]) == [3, 7]

    marker = tmp_path / "ran"
    root = _cifar_root(tmp_path / "crafted", planted=marker)
    message = one_line_error(capsys, "data", f"cifar10:root={root}", "--out", tmp_path / "x.npz")
    assert "data_batch_3" in message and "posix.system" in message and not marker.exists()
    assert not (tmp_path / "x.npz").exists()


def test_planted_metric_cache_file_and_checkpoint_run_nothing(tmp_path, capsys):
    marker = tmp_path / "ran"
    key = ("radii", "planted", 3)
    cache = tmp_path / "cache"
    cache.mkdir()
    assert common.cached(key, lambda: torch.ones(3), str(cache)).tolist() == [1.0, 1.0, 1.0]
    (path,) = cache.glob("*.pt")
    assert torch.load(path, weights_only=True).tolist() == [1.0, 1.0, 1.0]  # stored as a plain tensor
    torch.save({"radii": Planted(marker)}, path)  # planted in the shared OUT/cache
    common._CACHE.clear()  # as in another bench run: only the disk cache is left
    with pytest.raises(ZooError) as err:
        common.cached(key, lambda: torch.ones(3), str(cache))
    assert "posix.system" in str(err.value) and "delete it" in str(err.value)
    assert not any(word in str(err.value) for word in UNSAFE_ADVICE) and not marker.exists()

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"config": {}, "step": 1, "model": Planted(marker)}, run / "checkpoint.pt")
    message = one_line_error(capsys, "sample", "--checkpoint", run, "--sampler", "euler", "--nfe", 2, "--n", 4,
                             "--device", "cpu", "--out", tmp_path / "s.npz")
    assert "corrupt checkpoint" in message and not marker.exists()


@pytest.mark.parametrize("make, expected", [
    (lambda p: np.savez(p, samples=np.array([[1, None]], dtype=object)), "holds Python objects"),
    (lambda p: p.write_bytes(_valid_npz()[:-40]), "cannot read samples file"),  # truncated
    (lambda p: p.write_bytes(_valid_npz().replace(b"\x00\x00\x80\x3f", b"\x00\x00\x80\x40")), "Bad CRC"),
    (lambda p: p.write_bytes(pickle.dumps([1, 2])), "zoo does not unpickle"),
    (lambda p: p.write_bytes(_npy_header((10 ** 12, 2)) + bytes(64)), "too large for this machine's memory"),
])
def test_evaluate_on_unsafe_or_broken_npz_is_one_line(tmp_path, capsys, make, expected):
    path = tmp_path / "s.npz"
    make(path)
    assert expected in one_line_error(capsys, "evaluate", "--dataset", "gmm8", "--samples", path, "--no-floors")


def _npy_header(shape: tuple[int, ...]) -> bytes:
    import io as stdio

    buffer = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _valid_npz() -> bytes:
    import io as stdio

    buffer = stdio.BytesIO()
    np.savez(buffer, samples=np.ones((8, 2), dtype=np.float32))
    return buffer.getvalue()


# --------------------------------------------------------------------------- outputs that never clobber


def _special_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    yield "a FIFO", fifo
    device = tmp_path / "null.npz"
    with contextlib.suppress(PermissionError):  # mknod of a device needs root
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
        yield "a character device", device
    link = tmp_path / "link.npz"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "target.npz").write_bytes(b"keep me")
    link.symlink_to(tmp_path / "elsewhere" / "target.npz")
    yield "a symbolic link", link


def test_out_onto_a_fifo_a_device_or_a_link_is_refused(tmp_path, capsys):
    kinds = []
    for kind, path in _special_files(tmp_path):
        mode = os.lstat(path).st_mode
        for args in (["data", "gmm8", "--n", 4], ["sample", "--law", "heat", "--network", "exact", "--dataset",
                                                   "gmm8", "--sampler", "euler", "--nfe", 1, "--n", 4]):
            message = one_line_error(capsys, *args, "--out", path)
            assert f"it is {kind}" in message
            assert os.lstat(path).st_mode == mode  # still what it was
        with pytest.raises(ZooError, match=f"it is {kind}"):
            io.write_json(path, {})  # the one write path of every artifact
        kinds.append(kind)
    assert (tmp_path / "elsewhere" / "target.npz").read_bytes() == b"keep me"
    assert "a FIFO" in kinds and "a symbolic link" in kinds


def test_rejected_commands_leave_no_empty_output_folder(tmp_path, capsys):
    one_line_error(capsys, "train", "--law", "heat", "--network", "exact", "--dataset", "gmm8",
                   "--out", tmp_path / "a" / "not-learned")
    one_line_error(capsys, "train", "--law", "heat", "--dataset", "file:missing.npy", "--out", tmp_path / "b")
    if not torch.cuda.is_available():
        one_line_error(capsys, "train", "--law", "heat", "--dataset", "gmm8", "--device", "cuda",
                       "--out", tmp_path / "c")
    one_line_error(capsys, "data", "file:missing.npy", "--out", tmp_path / "d" / "x.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()  # a folder that existed before stays
    one_line_error(capsys, "train", "--law", "heat", "--dataset", "file:missing.npy", "--out", tmp_path / "kept")
    assert (tmp_path / "kept").is_dir()


def test_full_disk_is_one_clear_line(tmp_path, capsys):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with pytest.raises(ZooError, match="No space left on device"):
            io.save_torch(disk / "big.pt", {"x": torch.zeros(100_000)})  # torch itself says "unexpected pos"
        assert list(disk.iterdir()) == []  # no torn file, no temporary left
        code, err = zoo_cli(capsys, "train", "--law", "heat", "--network", "mlp:width=256", "--dataset", "gmm8",
                            "--steps", 1, "--device", "cpu", "--out", disk / "run")
        assert code == 2 and "Traceback" not in err  # the last line (after training's progress bar):
        assert err.strip().splitlines()[-1].startswith("zoo: cannot write") and "No space left on device" in err
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_resume_removes_the_temporary_files_of_killed_writers(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    sweep = make_sweep(["heat", "euler"], ["gmm8"], budget("smoke"))
    prepare_out(out, sweep, resume=False)
    run = out / "runs" / "0123456789abcdef"
    run.mkdir(parents=True)
    stale = [out / ".results.json.k3j_x9a2.tmp", run / ".samples.npz.abcdefgh.tmp", out / ".zoo-write-probe.q1w2e3r4"]
    kept = [run / "samples.npz", out / "notes.tmp", run / "log"]
    for path in stale + kept:
        path.write_bytes(b"")
    prepare_out(out, sweep, resume=True)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# --------------------------------------------------------------------------- one sweep per folder


@dataclass(frozen=True)
class Gated(Executor):
    """Runs jobs in the calling thread, once ``release`` is set: a sweep that is still running."""

    name: ClassVar[str] = "gated"
    entered: ClassVar[threading.Event]
    release: ClassVar[threading.Event]

    def map(self, fn: Callable[[dict], dict], jobs: list[dict]) -> Iterator[tuple[dict, dict]]:
        type(self).entered.set()
        assert type(self).release.wait(60)
        for job in jobs:
            yield job, fn(job)


def test_two_benches_started_together_on_one_folder_one_runs(tmp_path, capsys):
    b = budget("smoke").replace(n=20, nfe=[2])
    sweep = make_sweep(["heat", "exact", "euler", "distances"], ["gmm8:n_train=200:n_test=100"], b)
    out = tmp_path / "out"
    Gated.entered, Gated.release = threading.Event(), threading.Event()
    start, outcomes = threading.Barrier(2), {}

    def bench(who: str) -> None:
        start.wait()
        try:
            outcomes[who] = run_bench(sweep, out, Gated(), progress=False, echo=lambda m: None)
        except ZooError as exc:
            outcomes[who] = exc
            Gated.release.set()  # the refused one let the other go on

    threads = [threading.Thread(target=bench, args=(who,)) for who in "AB"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = [r for r in outcomes.values() if isinstance(r, ZooError)]
    rows = [r for r in outcomes.values() if isinstance(r, list)]
    assert len(refused) == 1 and len(rows) == 1, outcomes
    assert f"in use by another sweep (pid {os.getpid()} on {socket.gethostname()} since" in str(refused[0])
    assert rows[0] and all(r["status"] == "ok" for r in rows[0])

    with lock.hold(out):  # another sweep holds it: bench and --resume are refused by the command line
        for extra in ([], ["--resume"]):
            message = one_line_error(capsys, "bench", "--plugins", "heat,exact,euler", "--budget", "smoke",
                                     "--dataset", "gmm8:n_train=200:n_test=100", "--out", out, *extra)
            assert "in use by another sweep (pid" in message
    with lock.hold(out):  # released when the holder ends, however it ends
        pass


def test_logs_are_appended_to_regular_files_only_and_never_block(tmp_path):
    io.append_text(tmp_path / "log", "one\n")
    io.append_text(tmp_path / "log", "two\n")
    assert (tmp_path / "log").read_text() == "one\ntwo\n"
    os.mkfifo(tmp_path / "fifo")  # open(..., "a") would wait here for a reader forever
    with pytest.raises(ZooError, match="it is a FIFO"):
        io.append_text(tmp_path / "fifo", "x")
    (tmp_path / "link").symlink_to(tmp_path / "log")
    with pytest.raises(ZooError, match="it is a symbolic link"):
        io.append_text(tmp_path / "link", "x")


# --------------------------------------------------------------------------- one line, exit 2


def _png(path: Path, width: int, height: int) -> None:
    """A PNG whose header declares width x height 1-bit pixels, with almost no data: a bomb's shape."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [10_000, 100_000])  # PIL warns above 89 M pixels, refuses above 179 M
def test_decompression_bomb_in_an_image_folder_is_one_line(tmp_path, capsys, side):
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    _png(tmp_path / "bomb.png", side, side)
    message = one_line_error(capsys, "data", f"imagefolder:{tmp_path}", "--out", tmp_path / "x.npz")
    assert "bomb.png" in message and "decompression bomb" in message


def test_fifo_in_an_image_folder_is_skipped_with_a_warning(tmp_path, capsys):
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    unblocked = []

    def unblock() -> None:  # a reader stuck in open() on the FIFO: let it go, and fail the test
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            unblocked.append(True)

    watchdog = threading.Timer(30, unblock)
    watchdog.start()
    try:
        code, err = zoo_cli(capsys, "data", f"imagefolder:{tmp_path}:size=8", "--out", tmp_path / "x.npz")
    finally:
        watchdog.cancel()
    assert not unblocked, "reading the image folder blocked on a FIFO"
    assert code == 0, err
    assert "warning" in err and "pipe.png" in err and "a FIFO" in err
    with np.load(tmp_path / "x.npz") as f:
        assert len(f["samples"]) == 2  # 3 images, one held out


@pytest.mark.parametrize("args, expected", [
    (["data", "\x1b[2Jgmm8\x07"], "unknown dataset '\\x1b[2Jgmm8\\x07'"),
    (["data", "file:\x1b]0;title\x07.npy"], "\\x1b]0;title\\x07"),
    (["data", "gmm8", "--split", "\x1b[31mtrain"], "\\x1b[31mtrain"),
    (["sample", "--law", "heat", "--network", "exact", "--dataset", "gmm8", "--sampler", "rk45:rtol=1e-300"],
     "rtol=1e-300 is below floating-point precision"),
    (["sample", "--law", "heat", "--network", "exact", "--dataset", "gmm8", "--sampler", "rk45:atol=1e-20"],
     "atol=1e-20 is below floating-point precision"),
    (["sample", "--law", "heat", "--network", "exact", "--dataset", "gmm8", "--sampler", "euler",
      "--n", 10 ** 15], "need 8000.0 TB"),
])
def test_listed_errors_are_one_printable_line(tmp_path, capsys, args, expected):
    message = one_line_error(capsys, *args, "--out", tmp_path / "x.npz")
    assert "\x1b" not in message and "\x07" not in message and expected in message


def test_a_comma_inside_a_formula_does_not_split_the_plugin_list():
    assert split_list(["custom:F=pow(rho,2),heun", "euler"]) == ["custom:F=pow(rho,2)", "heun", "euler"]
    sweep = make_sweep(split_list(["custom:F=pow(rho,2),heun"]), ["gmm8"], budget("smoke"))
    assert [law.split(":F=")[1] for law in sweep.laws] == ["pow(rho,2)"] and sweep.samplers[0].startswith("heun")


def test_large_n_is_written_batch_by_batch_with_the_same_samples(tmp_path, capsys):
    """zoo sample keeps one batch in memory: the file it streams equals the one-piece samples."""
    from zoo.registry import get_registry
    from zoo.sampling import generate
    from zoo.training import untrained

    common_args = ["sample", "--law", "heat", "--network", "exact", "--dataset", "gmm8", "--sampler", "heun",
                   "--nfe", 12, "--n", 50, "--device", "cpu"]
    assert zoo_cli(capsys, *common_args, "--batch-size", 16, "--out", tmp_path / "a.npz")[0] == 0
    trained = untrained("heat", "exact", "gmm8", "cpu")
    batches = []
    whole = generate(trained.law, trained.field, get_registry().create("sampler", "heun"), n=50, nfe=12, shape=(2,),
                     batch_size=16)
    streamed = generate(trained.law, trained.field, get_registry().create("sampler", "heun"), n=50, nfe=12,
                        shape=(2,), batch_size=16, on_batch=batches.append)
    assert [len(b) for b in batches] == [16, 16, 16, 2] and len(streamed.samples) == 0
    assert torch.equal(torch.cat(batches), whole.samples) and streamed.nfe == whole.nfe
    with np.load(tmp_path / "a.npz") as f:
        assert np.array_equal(f["samples"], whole.samples.numpy()) and int(f["nfe"]) == whole.nfe
