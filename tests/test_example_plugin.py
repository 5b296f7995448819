"""Third-party distributions, installed with pip, found through entry points, benchmarked by zoo bench:
the example package under examples/ and a sampler package written from the guide alone."""
from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "plugins.md").read_text()


def guide_file(path: str) -> str:
    """A complete file from the guide (a fenced block starting with ``# file: PATH``)."""
    match = re.search(rf"```(?:python|toml)\n# file: {re.escape(path)}\n(.*?)```", GUIDE, flags=re.S)
    assert match, f"docs/plugins.md has no block '# file: {path}'"
    return match.group(1)


def pip_install(source: Path, target: Path) -> None:
    """Install a distribution with pip into ``target`` (not the shared environment: other tests
    running at the same time must not see it)."""
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                          "--no-index", "--quiet", "--target", str(target), str(source)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Both distributions installed into one folder; the environment to run zoo with them."""
    root = tmp_path_factory.mktemp("third-party")
    example = root / "zoo-example-plugin"
    shutil.copytree(ROOT / "examples" / "zoo-example-plugin", example,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    scratch = root / "zoo-midpoint"  # following only the guide
    (scratch / "zoo_midpoint").mkdir(parents=True)
    (scratch / "pyproject.toml").write_text(guide_file("pyproject.toml"))
    (scratch / "zoo_midpoint" / "__init__.py").write_text(guide_file("zoo_midpoint/__init__.py"))
    target = root / "site"
    pip_install(example, target)
    pip_install(scratch, target)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))}
    yield env
    shutil.rmtree(target)  # the uninstall: nothing was written outside this folder


def zoo(env: dict[str, str], *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from zoo.cli import main; main()", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_installed_plugins_are_listed_with_their_distribution(site):
    out = zoo(site, "plugins", "--json")
    assert out.returncode == 0, out.stderr
    rows = {(p["kind"], p["name"]): p for p in json.loads(out.stdout)["plugins"]}
    for kind, name, dist in [("sampler", "ralston", "zoo-example-plugin"), ("law", "tempered", "zoo-example-plugin"),
                             ("sampler", "midpoint", "zoo-midpoint")]:
        assert (kind, name) in rows, f"{name} not found through entry points"
        assert (rows[kind, name]["distribution"], rows[kind, name]["version"]) == (dist, "0.1.0")
    assert rows["sampler", "ralston"]["plugin"] == "example"
    assert ("law", "heat") in rows  # built-ins still there
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("zoo-example-plugin")  # this process's environment is untouched


TINY = """[overrides]
n = 64
nfe = [4]
alpha = [1.0]
"""


def test_bench_runs_third_party_plugins_next_to_a_broken_one(site, tmp_path):
    broken = tmp_path / "plugins"
    broken.mkdir()
    (broken / "broken_sampler.py").write_text("raise RuntimeError('this plugin is broken on purpose')\n")
    (tmp_path / "tiny.toml").write_text(TINY)
    out = zoo(site, "--plugins-dir", str(broken), "bench",
              "--plugins", "tempered,ralston,midpoint", "--plugins", "exact,distances",
              "--dataset", "gmm8", "--budget", "smoke", "--suite", str(tmp_path / "tiny.toml"),
              "--out", str(tmp_path / "out"), "--no-report")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    ran = {(r["law"].split(":")[0], r["sampler"].split(":")[0]) for r in rows if r["status"] == "ok"}
    assert {("tempered", "ralston"), ("tempered", "midpoint")} <= ran, rows
    for row in rows:
        assert row["nfe"] <= 4 and all(v == v for v in row["metrics"].values())  # counted NFE within budget, no NaN
    listing = zoo(site, "--plugins-dir", str(broken), "plugins")
    assert "broken plugin broken_sampler: import failed: RuntimeError: this plugin is broken on purpose" in listing.stderr
