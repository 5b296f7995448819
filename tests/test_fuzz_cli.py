"""Property-based fuzzing of every `zoo` command (hypothesis): generated SPECs, option values and
small malformed files. Whatever the input, a command exits 0 or 2, a failure is one line
`zoo: ...` without a traceback, and nothing is written outside the example's own folder.

Bounded: in-process, tiny budgets (train --steps <= 2, --n <= 8), a few examples per command,
derandomised (the same examples on every run) and without hypothesis's example database.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.configuration import set_hypothesis_home_dir  # noqa: E402

# hypothesis keeps caches in ./.hypothesis: not in the working tree
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "zoo-hypothesis"))

from zoo.cli import main  # noqa: E402

EXAMPLES = 20
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))

# --------------------------------------------------------------------------- generated input

FILES = ["ok.npz", "garbage.npz", "objects.npz", "truncated.npz", "empty.npy", "nan.npy", "strings.npy",
         "pickle.npy", "fifo.npz", "folder", "missing.npz", "images", "bad.toml", "suite.toml", "run"]
VALUES = st.one_of(
    st.integers(-3, 9).map(str),
    st.sampled_from(["0", "-1", "0.5", "nan", "inf", "-inf", "1e-300", "1e300", "true", "none", "", "rho**3",
                     "pow(rho,2)", "rho,2", "(", "rho**rho", "__import__('os')", "\x1b[2J", "é", "a:b", "=",
                     "../x", "/dev/zero", "geometric", "source", "eps", "scalar", "digits", "inception"]),
    st.sampled_from(FILES),
    st.text(max_size=5),
)
KEYS = ["alpha", "m", "F", "n_train", "n_test", "rtol", "atol", "eps", "width", "depth", "grid", "order", "seed",
        "root", "size", "channels", "T", "t_min", "route", "output", "schedule", "snr", "target", "extractor",
        "weights", "k", "workers", "test_fraction", "nope"]


def specs(names: list[str]) -> st.SearchStrategy[str]:
    """name[:key=value...], the name mostly a real one, the options mostly real keys."""
    name = st.one_of(st.sampled_from(names), st.text(max_size=6))
    options = st.lists(st.tuples(st.sampled_from(KEYS), VALUES).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=2)
    positional = st.one_of(st.just([]), st.sampled_from(FILES).map(lambda f: [f]))
    return st.builds(lambda n, p, o: ":".join([n, *p, *o]), name, positional, options)


LAWS = specs(["heat", "heat", "pme:route=source", "custom:F=rho**3", "nosuch"])
NETWORKS = specs(["mlp:width=8:depth=1", "exact", "empirical", "perturbed:eps=0.1", "unet"])
SAMPLERS = specs(["euler", "heun", "em", "pc", "dpmpp", "rk45:rtol=1e-2:atol=1e-2"])
DATASETS = specs(["gmm8:n_train=64:n_test=16", "moons:n_train=64:n_test=16", "file", "imagefolder", "barenblatt",
                  "digits", "cifar10", "mnist"])
METRICS = specs(["distances", "diversity", "modes", "memorization", "fidelity", "velocity_error"])
SMALL = st.one_of(st.integers(-1, 8).map(str), st.sampled_from(["x", "1e3", ""]))
OUT = st.sampled_from(["out.npz", "sub/dir/out.npz", "fifo.npz", "folder", "ok.npz", "missing/../out.npz",
                       "\x1b[31m.npz"])
OUT_DIR = st.sampled_from(["run", "newrun", "fifo.npz", "ok.npz", "images", "a/b"])


def option(flag: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    """[] or [flag, value]."""
    return st.one_of(st.just([]), values.map(lambda v: [flag, v]))


def command(*parts: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*parts).map(lambda lists: [a for part in lists for a in part])


def fixed(*args: str) -> st.SearchStrategy[list[str]]:
    return st.just(list(args))


# --------------------------------------------------------------------------- the sandbox


def _malformed_files(folder: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(folder / "ok.npz", samples=rng.normal(size=(16, 2)).astype(np.float32))
    (folder / "garbage.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.savez(folder / "objects.npz", samples=np.array([[1, None]], dtype=object))
    (folder / "truncated.npz").write_bytes((folder / "ok.npz").read_bytes()[:100])
    np.save(folder / "empty.npy", np.zeros((0, 2)))
    np.save(folder / "nan.npy", np.full((8, 2), np.nan))
    np.save(folder / "strings.npy", np.array([["a", "b"]] * 4))
    (folder / "pickle.npy").write_bytes(b"\x80\x04K\x01.")
    os.mkfifo(folder / "fifo.npz")
    (folder / "folder").mkdir()
    (folder / "images").mkdir()
    (folder / "images" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    (folder / "images" / "b.png").write_bytes(b"")
    os.mkfifo(folder / "images" / "c.png")
    (folder / "bad.toml").write_text("plugins = [\n")
    (folder / "suite.toml").write_text('plugins = ["heat", 3]\nbudget = "smoke"\n[overrides]\nn = -1\n')
    (folder / "run").mkdir()  # a bench folder that already holds results: a bench here never starts running
    (folder / "run" / "results.json").write_text("[]")
    (folder / "run" / "sweep.json").write_text('{"hash": "0000"}')
    (folder / "run" / "checkpoint.pt").write_bytes(b"\x80\x02}q\x00.")


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def run_zoo(base: Path, args: list[str]) -> None:
    """Run `zoo ARGS` in a fresh folder holding the malformed files; check the properties."""
    repo = Path.cwd()
    before_repo, before_base = sorted(os.listdir(repo)), sorted(os.listdir(base))
    sandbox = Path(tempfile.mkdtemp(dir=base))
    _malformed_files(sandbox)
    stdout, stderr = io.StringIO(), io.StringIO()
    os.chdir(sandbox)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                main(args)
                code = 0
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(repo)
    err = stderr.getvalue()
    try:
        assert code in (0, 2), (args, code, err)
        assert "Traceback" not in err, (args, err)
        if code != 0:
            said = [line for line in err.splitlines() if line.startswith("zoo: ") and not line.startswith("zoo: warning")]
            assert len(said) == 1 and err.rstrip().splitlines()[-1] == said[0], (args, err)
            assert "\x1b" not in said[0], (args, err)
        assert sorted(os.listdir(repo)) == before_repo, (args, "wrote into the working folder")
        assert sorted(os.listdir(base)) == before_base + [sandbox.name] or \
            sorted(os.listdir(base)) == sorted(before_base + [sandbox.name]), (args, "wrote next to the sandbox")
    finally:
        shutil.rmtree(sandbox)


# --------------------------------------------------------------------------- one property per command


@FUZZ
@given(args=command(fixed("plugins"), option("--json", st.just("")).map(lambda a: a[:1]),
                    option("--bogus", VALUES)))
def test_fuzz_plugins(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("data"), DATASETS.map(lambda s: [s]), option("--n", SMALL),
                    option("--split", st.sampled_from(["train", "test", "val", "\x1b"])), option("--seed", SMALL),
                    OUT.map(lambda o: ["--out", o])))
@example(args=["data", "imagefolder:images", "--out", "out.npz"])  # every image is broken or a FIFO
def test_fuzz_data(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("train", "--steps", "1", "--batch-size", "8"), LAWS.map(lambda s: ["--law", s]),
                    option("--network", NETWORKS), DATASETS.map(lambda s: ["--dataset", s]),
                    option("--lr", st.sampled_from(["0", "-1", "nan", "1e-3", "x"])),
                    option("--ema", st.sampled_from(["0", "1", "0.5", "2"])),
                    option("--device", st.sampled_from(["cpu", "cuda:7", "tpu", "auto"])),
                    OUT_DIR.map(lambda o: ["--out", o])))
@example(args=["train", "--steps", "2", "--batch-size", "8", "--law", "heat", "--network", "mlp:width=8:depth=1",
               "--dataset", "file:ok.npz", "--device", "cpu", "--out", "newrun"])
def test_fuzz_train(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("sample", "--device", "cpu"),
                    st.one_of(command(LAWS.map(lambda s: ["--law", s]), NETWORKS.map(lambda s: ["--network", s]),
                                      DATASETS.map(lambda s: ["--dataset", s])),
                              OUT_DIR.map(lambda o: ["--checkpoint", o])),
                    SAMPLERS.map(lambda s: ["--sampler", s]), option("--nfe", SMALL),
                    SMALL.map(lambda n: ["--n", n]), option("--batch-size", SMALL), OUT.map(lambda o: ["--out", o])))
@example(args=["sample", "--device", "cpu", "--law", "heat", "--network", "empirical", "--dataset", "file:ok.npz",
               "--sampler", "heun", "--nfe", "2", "--n", "8", "--out", "sub/dir/out.npz"])
def test_fuzz_sample(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("forward", "--n", "6", "--snapshots", "2"),
                    LAWS.map(lambda s: ["--law", s]), DATASETS.map(lambda s: ["--dataset", s]),
                    st.sampled_from(["0.001", "0", "-1", "nan", "inf", "x"]).map(lambda t: ["--t-end", t]),
                    OUT.map(lambda o: ["--out", o])))
@example(args=["forward", "--n", "6", "--snapshots", "2", "--law", "pme:route=source", "--dataset", "file:ok.npz",
               "--t-end", "0.001", "--out", "out.npz"])
def test_fuzz_forward(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("evaluate", "--no-floors"), DATASETS.map(lambda s: ["--dataset", s]),
                    st.sampled_from(FILES).map(lambda f: ["--samples", f]), option("--metrics", METRICS),
                    option("--json", st.just("")).map(lambda a: a[:1]), option("--seed", SMALL)))
def test_fuzz_evaluate(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("bench", "--no-report"),
                    option("--plugins", st.lists(st.one_of(LAWS, SAMPLERS, NETWORKS, METRICS), max_size=3)
                           .map(",".join)),
                    option("--dataset", DATASETS), option("--budget", st.sampled_from(["smoke", "small", "huge", ""])),
                    option("--suite", st.sampled_from(["bad.toml", "suite.toml", "missing.toml", "fifo.npz"])),
                    option("--seeds", SMALL), option("--executor", st.sampled_from(["local", "local:workers=-1",
                                                                                    "nosuch", "ray:num_cpus=x"])),
                    option("--resume", st.just("")).map(lambda a: a[:1]),
                    st.sampled_from(["run", "ok.npz", "fifo.npz"]).map(lambda o: ["--out", o])))
def test_fuzz_bench(base, args):
    run_zoo(base, args)


@FUZZ
@given(args=command(fixed("report"), st.lists(st.sampled_from(["run", "folder", "missing", "images", "ok.npz"]),
                                              min_size=1, max_size=2),
                    option("--out", st.sampled_from(["board", "ok.npz", "folder"]))))
def test_fuzz_report(base, args):
    run_zoo(base, args)
