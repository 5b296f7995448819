"""zoo report: ranking, the memorisation flag, and the three files, from a constructed results folder.

(The report of a real bench is checked in tests/test_bench.py on the smoke bench's folder.)
"""
from __future__ import annotations

import base64
import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

from zoo.errors import ZooError
from zoo.io import write_json, write_npz
from zoo.registry import get_registry
from zoo.report import labels, memorising, ranked, summary, write_report

HEAT, HEAT_REF = "heat:T=5.0:t_min=0.001", "heat:T=5.0:t_min=1e-07"


def _row(run: str, law: str, network: str, sampler: str, nfe: int, seed: int, w2: float, ratio: float,
         z: float) -> dict:
    return {"run": run, "training": None, "law": law, "network": network, "reference": None, "sampler": sampler,
            "alpha": 0.0, "nfe": nfe, "nfe_budget": nfe, "dataset": "gmm8", "seed": seed, "status": "ok",
            "error": None, "memorising": None,
            "metrics": {"w2": w2, "energy": w2 / 10, "memorization_ratio": ratio, "memorization_ratio_floor": 0.11,
                        "nn_z": z},
            "protocol": {"n_generated": 100, "n_reference": 100, "reference_split": "test",
                         "time_grid": {"kind": "geometric", "steps": nfe}}}


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    """Two trained configurations over 2 seeds and 2 NFE, an empirical reference, one failed run."""
    rng = np.random.default_rng(0)
    rows = []
    for nfe in (5, 10):
        for seed in (0, 1):
            rows.append(_row(f"e{nfe}{seed}", HEAT, "mlp", "euler", nfe, seed, 0.5 + 1 / nfe + seed / 100, 0.1, 1.0))
            rows.append(_row(f"h{nfe}{seed}", HEAT, "mlp", "heun", nfe, seed, 0.4 + 1 / nfe + seed / 100, 0.12, 0.5))
        rows.append(_row(f"m{nfe}", HEAT_REF, "empirical", "euler", nfe, 0, 0.45, 0.95, -20.0))
    failed = _row("f", HEAT, "mlp", "rk45", 5, 0, 0, 0, 0)
    rows.append({**failed, "status": "failed", "error": "sampler 'rk45' produced non-finite samples", "metrics": {}})
    for run in [r["run"] for r in rows] + ["fl"]:
        (tmp_path / "runs" / run).mkdir(parents=True)
    for r in rows:
        write_npz(tmp_path / "runs" / r["run"] / "samples.npz", samples=rng.normal(size=(100, 2)),
                  nn_ratio=rng.uniform(size=100))
    write_npz(tmp_path / "runs" / "fl" / "samples.npz", nn_ratio=rng.uniform(size=100), train=rng.normal(size=(300, 2)))
    write_json(tmp_path / "results.json", rows)
    write_json(tmp_path / "floors.json", {"gmm8": {"n": 100, "run": "fl", "w2": 0.3, "energy": 0.001}})
    return tmp_path


def test_ranking_averages_seeds_and_puts_the_best_first(results: Path) -> None:
    rows = json.loads((results / "results.json").read_text())
    metric, entries = ranked(rows)
    assert metric == "energy"
    values = [e.mean("energy") for e in entries]
    assert values == sorted(values) and len(entries) == 6  # 2 samplers x 2 NFE + 2 empirical; failed left out
    heun10 = next(e for e in entries if e.first["sampler"] == "heun" and e.first["nfe"] == 10)
    assert len(heun10.rows) == 2 and heun10.mean("w2") == pytest.approx(0.505)
    assert heun10.std("w2") == pytest.approx(np.std([0.5, 0.51], ddof=1))
    assert [e.flagged for e in entries][0] and entries[0].first["network"] == "empirical"  # ranked first, flagged
    text = summary(rows, {"gmm8": {"n": 100, "w2": 0.3}})
    assert "MEMORISING" in text and "1 failed runs" in text and "w2 0.3" in text


def test_memorising_rule() -> None:
    assert memorising({"memorization_ratio": 0.9, "memorization_ratio_floor": 0.11})
    assert memorising({"memorization_ratio": 0.2, "memorization_ratio_floor": 0.11, "nn_z": -8.0})
    # crowding into dense regions (Z < 0) without copying (ratio at its floor) is not memorisation
    assert not memorising({"memorization_ratio": 0.1, "memorization_ratio_floor": 0.11, "nn_z": -5.7})
    assert not memorising({"memorization_ratio": 0.15, "memorization_ratio_floor": 0.11, "nn_z": 1.5})
    assert not memorising({})


def test_labels_show_the_options_that_differ_or_leave_the_default() -> None:
    names = labels({HEAT, HEAT_REF, "pme:m=2.0:route=blob"}, "law")
    assert names[HEAT] == "heat:t_min=0.001" and names[HEAT_REF] == "heat:t_min=1e-07"
    assert names["pme:m=2.0:route=blob"] == "pme:m=2.0"  # m's default is none (1 + 2/d), route's is blob
    # an option every row sets away from its default stays visible: these are not DSM heat rows
    assert labels({"heat:T=5.0:route=blob"}, "law")["heat:T=5.0:route=blob"] == "heat:route=blob"
    samplers = labels({"em:alpha=0.5:schedule=const", "em:alpha=1.0:schedule=const"}, "sampler")
    assert samplers["em:alpha=0.5:schedule=const"] == "em"  # alpha has its own column
    assert labels({"mine:k=1"}, "law")["mine:k=1"] == "mine:k=1"  # not installed here: every option shown
    # options another option implies stay hidden: route=source makes pme's output a vector and its target v
    source = get_registry().create("law", "pme:route=source").spec
    assert labels({source}, "law")[source] == "pme:route=source"


def test_three_files_and_a_self_contained_html(results: Path, tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("report")
    write_report([results], out)
    page = (out / "leaderboard.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)  # nothing fetched from elsewhere
    assert "<link" not in page and "<script" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # metric vs NFE, samples, memorisation histograms (one alpha: no alpha sweep)
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    assert "MEMORISING" in page and "real-vs-real floors" in page and "non-finite samples" in page
    assert page.count("<details>") == 11  # the protocol of every run
    table = list(csv.DictReader(open(out / "results.csv")))
    assert len(table) == 11 and {"w2", "memorization_ratio", "nn_z", "n_generated"} <= set(table[0])
    md = (out / "leaderboard.md").read_text()
    assert len(re.findall(r"^\| \d+ \| heat", md, re.M)) == 6 and "Failed runs (1)" in md


def test_report_merges_folders_and_refuses_missing_results(results: Path, tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp("merged")
    write_report([results, results], out)
    assert len(list(csv.DictReader(open(out / "results.csv")))) == 22
    with pytest.raises(ZooError, match="no results.json"):
        write_report([out / "nothing"])
    (out / "bad").mkdir()
    (out / "bad" / "results.json").write_text("[{")
    with pytest.raises(ZooError, match="not valid JSON"):
        write_report([out / "bad"])
    (out / "bad" / "results.json").write_text("[1, 2]")
    with pytest.raises(ZooError, match="list of bench result rows"):
        write_report([out / "bad"])
    (out / "bad" / "results.json").write_text("[]")
    (out / "bad" / "floors.json").write_text("{x")
    with pytest.raises(ZooError, match="floors.json' is not valid JSON"):
        write_report([out / "bad"])
