"""zoo report: leaderboard.md, a self-contained leaderboard.html and results.csv from bench results."""
from __future__ import annotations

import base64
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.report import memorising, ranked

DATA = "gmm8:n_train=1000:n_test=500"


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    """A real bench without training: the exact and empirical fields of heat, sampled by Euler."""
    out = tmp_path_factory.mktemp("report") / "bench"
    done = subprocess.run([sys.executable, "-c", "from zoo.cli import main; main()", "bench", "--plugins",
                           "heat,network/exact,euler", "--budget", "smoke", "--dataset", DATA, "--out", str(out),
                           "--no-report"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return out


def _report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from zoo.cli import main; main()", "report", *args],
                          capture_output=True, text=True, timeout=300)


def test_report_writes_three_files_and_html_is_self_contained(bench: Path, tmp_path: Path) -> None:
    done = _report(str(bench), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = json.loads((bench / "results.json").read_text())
    page = (tmp_path / "leaderboard.html").read_text()
    # nothing fetched from elsewhere: no external src/href, no scripts or stylesheets by link
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3  # NFE plot, samples, memorisation histograms
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "MEMORISING" in page and "real-vs-real floors" in page and "protocol" in page
    table = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(table) == len(rows) and "w2" in table[0] and "memorization_ratio" in table[0]
    md = (tmp_path / "leaderboard.md").read_text()
    assert md.count("| heat |") == len(ranked(rows)[1])


def test_ranking_puts_the_best_primary_first_and_flags_copies(bench: Path) -> None:
    rows = json.loads((bench / "results.json").read_text())
    metric, entries = ranked(rows)
    assert metric == "w2"
    values = [e.mean("w2") for e in entries]
    assert values == sorted(values)
    empirical = [e for e in entries if e.first["network"] == "empirical"]
    assert any(e.flagged for e in empirical)
    assert not any(e.flagged for e in entries if e.first["network"].startswith("exact"))


def test_memorising_rule() -> None:
    assert memorising({"memorization_ratio": 0.9, "memorization_ratio_floor": 0.11})
    assert memorising({"memorization_ratio": 0.2, "memorization_ratio_floor": 0.11, "nn_z": -8.0})
    # crowding into dense regions (Z < 0) without copying (ratio at its floor) is not memorisation
    assert not memorising({"memorization_ratio": 0.1, "memorization_ratio_floor": 0.11, "nn_z": -5.7})
    assert not memorising({"memorization_ratio": 0.15, "memorization_ratio_floor": 0.11, "nn_z": 1.5})
    assert not memorising({"memorization_ratio": 0.1, "memorization_ratio_floor": 0.11, "nn_z": 6.0})
    assert not memorising({})


def test_report_merges_folders_and_refuses_missing_results(bench: Path, tmp_path: Path) -> None:
    done = _report(str(bench), str(bench), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert len(list(csv.DictReader(open(tmp_path / "results.csv")))) == 2 * len(json.loads((bench / "results.json").read_text()))
    done = _report(str(tmp_path / "nothing"))
    assert done.returncode != 0 and done.stderr.strip().count("\n") == 0 and "no results.json" in done.stderr
