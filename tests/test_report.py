"""zoo report: the summary that says who wins at which NFE and whether it is real, trained rows
apart from references, flags, labels, the three files, malformed input, and the HTML page in a
real browser (headless Chromium: no overlapping text, the summary and sample figures present).

(The report of a real bench is checked in tests/test_bench.py on the smoke bench's folder.)
"""
from __future__ import annotations

import base64
import csv
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from zoo.cli import main
from zoo.errors import ZooError
from zoo.io import write_json, write_npz
from zoo.registry import get_registry
from zoo.report import (board, labels, load, memorising, ranked, samples_figure, split, summary, summary_figure,
                        write_report)

HEAT, HEAT_REF = "heat:T=5.0:t_min=0.001", "heat:T=5.0:t_min=1e-07"
PME = "pme:T=5.0:t_min=0.001:m=2.0:route=auto"
PME_LABEL = "pme:m=2.0"  # m is set away from its default (1 + 2/d): the label keeps it
ENERGY_FLOOR = 0.001


def _row(run: str, law: str, network: str, sampler: str, budget: int, seed: int, energy: float, *,
         counted: int | None = None, ratio: float = 0.1, z: float = 1.0, modes: float = 8.0) -> dict:
    reference = None if network == "mlp" else network
    return {"run": run, "training": None, "law": law, "network": network, "reference": reference,
            "sampler": sampler, "alpha": 0.0, "nfe": counted or budget, "nfe_budget": budget, "dataset": "gmm8",
            "seed": seed, "status": "ok", "error": None, "memorising": None,
            "metrics": {"energy": energy, "w2": 10 * energy, "memorization_ratio": ratio,
                        "memorization_ratio_floor": 0.11, "nn_z": z, "modes_captured": modes},
            "protocol": {"n_generated": 100, "n_reference": 100, "reference_split": "test",
                         "time_grid": {"kind": "geometric", "steps": budget}}}


def _rows() -> list[dict]:
    """heat and pme trained over 2 seeds at 2 NFE budgets, exact and empirical references, a
    collapsed pme row (energy 53, no mode) and a failed run.

    At NFE 10: heat heun 0.0100 is best, pme heun 0.0104 lies within the floor (0.001) of it,
    heat euler 0.030 does not. At NFE 5: pme heun 0.020 beats heat heun 0.040."""
    rows = []
    values = {("heat", "euler"): {5: 0.05, 10: 0.030}, ("heat", "heun"): {5: 0.040, 10: 0.0100},
              ("pme", "heun"): {5: 0.020, 10: 0.0104}}
    for (law, sampler), by_budget in values.items():
        for budget, energy in by_budget.items():
            for seed in (0, 1):
                counted = budget - 1 if sampler == "heun" else budget  # heun's last step is one Euler step
                rows.append(_row(f"{law}-{sampler}-{budget}-{seed}", HEAT if law == "heat" else PME, "mlp",
                                 f"{sampler}:grid=geometric", budget, seed, energy + seed * 1e-4, counted=counted))
    rows.append(_row("broken", PME, "mlp", "euler:grid=geometric", 10, 0, 53.0, modes=0.0))
    for budget in (5, 10):
        rows.append(_row(f"exact-{budget}", HEAT, "exact", "heun:grid=geometric", budget, 0, 0.002, counted=budget - 1))
        rows.append(_row(f"copy-{budget}", HEAT_REF, "empirical", "heun:grid=geometric", budget, 0, 0.0005,
                         ratio=0.95, z=-20.0, counted=budget - 1))
    failed = _row("failed", HEAT, "mlp", "rk45:grid=geometric", 5, 0, 0.0)
    rows.append({**failed, "status": "failed", "error": "sampler 'rk45' produced non-finite samples", "metrics": {},
                 "nfe_budget": None})
    return rows


def _folder(path: Path, rows: list[dict]) -> Path:
    rng = np.random.default_rng(0)
    for run in [r["run"] for r in rows] + ["fl"]:
        (path / "runs" / run).mkdir(parents=True, exist_ok=True)
    for r in rows:
        write_npz(path / "runs" / r["run"] / "samples.npz", samples=rng.normal(size=(100, 2)),
                  nn_ratio=rng.uniform(size=100))
    write_npz(path / "runs" / "fl" / "samples.npz", nn_ratio=rng.uniform(size=100), train=rng.normal(size=(300, 2)))
    write_json(path / "results.json", rows)
    write_json(path / "floors.json", {"gmm8": {"n": 100, "run": "fl", "w2": 0.3, "energy": ENERGY_FLOOR}})
    return path


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    return _folder(tmp_path / "bench", _rows())


LONG_PME = "pme:m=2.0:route=auto:particles=2000:records=128:stages=16:cfl=0.25"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The three files, written once (rendering the figures is most of a report's cost), for a
    bench whose pme SPEC is long."""
    out = tmp_path_factory.mktemp("report")
    rows = [{**r, "law": LONG_PME} if r["law"] == PME else r for r in _rows()]
    write_report([_folder(out / "bench", rows)], out)
    return out


def test_the_summary_board_marks_the_best_and_what_is_within_noise(results: Path) -> None:
    loaded = load([results])
    metric, entries = ranked(loaded.rows)
    b = board(entries, metric, loaded.floors["gmm8"])
    assert metric == "energy" and b.budgets == [5, 10]
    assert list(b.cells) == [("heat", "heun"), (PME_LABEL, "heun"), ("heat", "euler"), (PME_LABEL, "euler")]
    marks = {(law, sampler, k): b.marks.get(id(e)) for (law, sampler), row in b.cells.items() for k, e in row.items()}
    assert marks[("heat", "heun", 10)] == "best" and marks[(PME_LABEL, "heun", 10)] == "tie"  # 0.0004 apart < floor
    assert marks[("heat", "euler", 10)] is None and marks[(PME_LABEL, "euler", 10)] is None
    assert marks[(PME_LABEL, "heun", 5)] == "best" and marks[("heat", "heun", 5)] is None
    assert b.cells[(PME_LABEL, "euler")][10].broken(metric) == "no mode captured"  # energy 53: collapsed


def test_noise_comes_from_the_seeds_when_they_scatter(results: Path) -> None:
    rows = _rows()
    for r in rows:  # pme heun at NFE 10 two seeds 0.004 apart: 0.0002 from heat heun is now noise too
        if r["run"] == "pme-heun-10-1":
            r["metrics"]["energy"] = 0.0140
    floors = {"n": 100, "energy": 0.0}  # no floor: the seeds alone
    metric, entries = ranked(load([_folder(results.parent / "scatter", rows)]).rows)
    b = board(entries, metric, floors)
    assert b.marks.get(id(b.cells[(PME_LABEL, "heun")][10])) == "tie"
    assert b.marks.get(id(b.cells[("heat", "euler")][10])) is None


def test_terminal_summary_puts_trained_rows_first_and_names_references(results: Path) -> None:
    loaded = load([results])
    text = summary(loaded.rows, loaded.floors)
    board_at, trained_at, refs_at = (text.index("best trained row per law x sampler"),
                                     text.index("trained rows, best first"), text.index("references (not ranked"))
    assert board_at < trained_at < refs_at
    trained = text[trained_at:refs_at]
    assert "reference" not in trained and "empirical" not in trained
    first = trained.splitlines()[2].split()
    assert first[:6] == ["1", "heat", "mlp", "heun", "0", "10"] and "(9)" in first  # NFE asked, then counted
    assert "reference: exact field" in text and "reference: training-set copy (empirical)" in text
    assert "t_min=1e-07" not in text  # the empirical reference is the heat law, not another law
    assert re.search(r"pme:m=2.0 +mlp +euler .*BROKEN: no mode captured", trained)
    rows = [{**r, "metrics": {k: v for k, v in r["metrics"].items() if k != "modes_captured"}} for r in _rows()]
    text = summary(rows, loaded.floors)  # without a modes metric, energy 53 is still a diverged row
    assert re.search(r"pme:m=2.0 +mlp +euler .*BROKEN: energy over 100x the median trained row", text)
    assert "MEMORISING" in text[refs_at:] and "1 failed runs" in text
    assert "*0.01005 ± 7.1e-05" in text and "≈0.01045 ± 7.1e-05" in text and "*0.02005" in text


def test_without_trained_rows_the_board_compares_the_references_that_do_not_copy(results: Path) -> None:
    rows = [r for r in _rows() if r["reference"] is not None]  # a bench of samplers on exact fields
    rows += [{**r, "run": r["run"] + "-euler", "sampler": "euler:grid=geometric", "nfe": r["nfe_budget"],
              "metrics": {**r["metrics"], "energy": 0.01}} for r in rows if r["network"] == "exact"]
    metric, entries = ranked(load([_folder(results.parent / "refs", rows)]).rows)
    b = board(entries, metric, {"energy": ENERGY_FLOOR})
    assert b.of == "reference" and list(b.cells) == [("reference: exact field", "heun"),
                                                     ("reference: exact field", "euler")]  # no copy
    assert all(b.marks[id(row[k])] == "best" for row in list(b.cells.values())[:1] for k in row)


def test_ranking_averages_seeds_and_keeps_references_apart(results: Path) -> None:
    metric, entries = ranked(load([results]).rows)
    trained, references = split(entries)
    assert [e.mean(metric) for e in trained] == sorted(e.mean(metric) for e in trained)
    heun = next(e for e in trained if e.label("sampler") == "heun" and e.budget == 10 and e.label("law") == "heat")
    assert len(heun.rows) == 2 and heun.mean("energy") == pytest.approx(0.01005) and heun.nfe == 9
    assert heun.std("energy") == pytest.approx(np.std([0.01, 0.0101], ddof=1))
    assert {e.label("network") for e in references} == {"reference: exact field",
                                                        "reference: training-set copy (empirical)"}
    assert all(e.flagged for e in references if e.reference == "empirical")


def test_memorising_rule() -> None:
    assert memorising({"memorization_ratio": 0.9, "memorization_ratio_floor": 0.11})
    assert memorising({"memorization_ratio": 0.2, "memorization_ratio_floor": 0.11, "nn_z": -8.0})
    # crowding into dense regions (Z < 0) without copying (ratio at its floor) is not memorisation
    assert not memorising({"memorization_ratio": 0.1, "memorization_ratio_floor": 0.11, "nn_z": -5.7})
    assert not memorising({"memorization_ratio": 0.15, "memorization_ratio_floor": 0.11, "nn_z": 1.5})
    assert not memorising({"memorization_ratio": math.nan, "memorization_ratio_floor": 0.11})
    assert not memorising({})


def test_labels_show_the_options_that_differ_or_leave_the_default() -> None:
    names = labels({HEAT, HEAT_REF, "pme:m=2.0:route=auto"}, "law")
    assert names[HEAT] == "heat:t_min=0.001" and names[HEAT_REF] == "heat:t_min=1e-07"
    assert names["pme:m=2.0:route=auto"] == "pme:m=2.0"  # m's default is none (1 + 2/d), route's is auto
    # an option every row sets away from its default stays visible: these are not DSM heat rows
    assert labels({"heat:T=5.0:route=blob"}, "law")["heat:T=5.0:route=blob"] == "heat:route=blob"
    samplers = labels({"em:alpha=0.5:schedule=const", "em:alpha=1.0:schedule=const"}, "sampler")
    assert samplers["em:alpha=0.5:schedule=const"] == "em"  # alpha has its own column
    assert labels({"mine:k=1"}, "law")["mine:k=1"] == "mine:k=1"  # not installed here: every option shown
    # options another option implies stay hidden: route=source makes pme's output a vector and its target v
    source = get_registry().create("law", "pme:route=source").spec
    assert labels({source}, "law")[source] == "pme:route=source"


def test_three_files_and_a_self_contained_html(report: Path) -> None:
    page = (report / "leaderboard.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["'](?!data:|#)""", page)  # nothing fetched from elsewhere
    assert "<link" not in page and page.count("<script") == 1 and "<script>" in page  # inline only
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3  # summary, samples, memorisation histograms (one alpha: no alpha sweep)
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    for text in ("MEMORISING", "BROKEN: no mode captured", "real-vs-real floors", "non-finite samples",
                 "reference: training-set copy (empirical)", 'class="sortable"', "class='filter'",
                 "<dt>NN Z</dt>", "<dt>energy</dt>", f'title="{LONG_PME}"', "pme:m=2.0:particles=2000:records=128:stages=16:cfl=0.25"):
        assert text in page, text
    assert page.index("Trained rows") < page.index("Reference rows")
    assert page.count("<details>") == len(_rows())  # the protocol of every run
    table = list(csv.DictReader(open(report / "results.csv")))
    assert len(table) == len(_rows()) and {"energy", "memorization_ratio", "nn_z", "n_generated"} <= set(table[0])
    md = (report / "leaderboard.md").read_text()
    assert len(re.findall(r"^\| \d+ \| (heat|pme)", md, re.M)) == 7 and "Failed runs (1)" in md
    assert md.index("Trained rows") < md.index("Reference rows")


def test_report_merges_folders_and_refuses_missing_results(results: Path, tmp_path: Path) -> None:
    assert len(load([results, results]).rows) == 2 * len(_rows())
    with pytest.raises(ZooError, match="no results.json"):
        write_report([tmp_path / "nothing"])


def zoo_report(capsys, folder: Path) -> tuple[int, str]:
    try:
        main(["report", str(folder), "--out", str(folder / "report")])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def _without(key: str) -> list[dict]:
    rows = _rows()
    del rows[3][key]
    return rows


@pytest.mark.parametrize("content, message", [
    ("[{", "is not valid JSON"),
    ("[1, 2]", "row 1 of .* is not a bench result row"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps(_without("dataset")), "row 4 of .* has no 'dataset'"),
    (json.dumps(_without("metrics")), "row 4 of .* has no 'metrics'"),
    (json.dumps([{**_rows()[0], "metrics": {"energy": "abc"}}]), "row 1 of .*: metric 'energy' is \"abc\", not a number"),
    (json.dumps([{**_rows()[0], "metrics": [1]}]), "'metrics' should be an object"),
    (json.dumps([{**_rows()[0], "seed": "x"}]), "'seed' should be an integer"),
])
def test_malformed_results_are_one_line_with_exit_2(capsys, tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "results.json").write_text(content)
    code, err = zoo_report(capsys, tmp_path)
    assert code == 2 and err.count("\n") == 1 and err.startswith("zoo: ") and re.search(message, err), err
    assert not (tmp_path / "report").exists()  # nothing written


def test_nan_and_null_metrics_degrade_gracefully(capsys, tmp_path: Path) -> None:
    rows = _rows()
    for r in rows:
        if "energy" in r["metrics"]:
            r["metrics"]["energy"] = math.nan  # every energy NaN (json writes NaN), one w2 null
    rows[0]["metrics"]["w2"] = None
    folder = _folder(tmp_path / "nan", rows)
    code, err = zoo_report(capsys, folder)
    assert code == 0, err
    written = {p.name for p in (folder / "report").iterdir()}
    assert written == {"leaderboard.md", "leaderboard.html", "results.csv"}  # all formats
    md = (folder / "report" / "leaderboard.md").read_text()
    assert "energy (no finite values)" in md and "BROKEN: no finite energy" in md
    page = (folder / "report" / "leaderboard.html").read_text()
    assert "no row with a finite primary metric" in page


def _overlaps(fig) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of a drawn matplotlib figure whose boxes intersect."""
    from matplotlib.text import Text

    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = {id(t): t for t in fig.findobj(Text)}.values()  # a legend's texts are found twice
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts
             if t.get_visible() and t.get_text().strip() and (t.axes is None or t.axes.get_visible())]
    return [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:] if p.overlaps(q)]


def test_figure_texts_do_not_overlap(results: Path) -> None:
    rows = [{**r, "law": LONG_PME} if r["law"] == PME else r for r in _rows()]
    loaded = load([_folder(results.parent / "long", rows)])
    metric, entries = ranked(loaded.rows)
    fig = summary_figure(board(entries, metric, loaded.floors["gmm8"]), loaded.floors["gmm8"])
    assert not _overlaps(fig)
    shown = [(e, np.random.default_rng(0).normal(size=(50, 2))) for e in entries[:6]]
    fig = samples_figure(shown, None, metric)
    assert not _overlaps(fig)


# --------------------------------------------------------------------------- in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         "--window-size=1400,1800"]

# appended to a copy of the page: measures every text run (not elements: a long label spilling into
# its neighbour's box is what a reader sees) and the figures, and writes the result into the page
PROBE = """<pre id="zoo-probe"></pre><script>
(function(){
  var runs = [], walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    var node = walker.currentNode, text = node.textContent.trim();
    var el = node.parentElement;  // text of a closed <details> is laid out nowhere visible
    if (!text || el.closest('script,style,#zoo-probe') || !el.checkVisibility({visibilityProperty: true})) continue;
    var range = document.createRange(); range.selectNodeContents(node);
    [].forEach.call(range.getClientRects(), function(r){
      if (r.width > 0 && r.height > 0) runs.push({text: text.slice(0, 40), l: r.left, r: r.right, t: r.top, b: r.bottom});
    });
  }
  var overlaps = [];
  for (var i = 0; i < runs.length; i++) for (var j = i + 1; j < runs.length; j++) {
    var a = runs[i], b = runs[j], w = Math.min(a.r, b.r) - Math.max(a.l, b.l), h = Math.min(a.b, b.b) - Math.max(a.t, b.t);
    if (w > 1 && h > 1) overlaps.push([a.text, b.text]);
  }
  var images = [].map.call(document.images, function(img){
    var r = img.getBoundingClientRect();
    return {alt: img.alt, loaded: img.complete && img.naturalWidth > 0, width: r.width, height: r.height};
  });
  var table = document.querySelector('table.sortable'), th = table.tHead.rows[0].cells;
  var col = [].findIndex.call(th, function(c){ return c.textContent.indexOf('energy') === 0; });
  th[col].click(); th[col].click();  // sorted, then reversed: descending
  var sorted = [].map.call(table.tBodies[0].rows, function(r){ return r.cells[col].getAttribute('data-v'); });
  var input = document.querySelector('input.filter'); input.value = 'pme'; input.dispatchEvent(new Event('input'));
  var shown = [].filter.call(table.tBodies[0].rows, function(r){ return r.style.display !== 'none'; }).length;
  document.getElementById('zoo-probe').textContent = JSON.stringify(
    {runs: runs.length, overlaps: overlaps.slice(0, 20), images: images, sorted: sorted, shown: shown});
})();
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="zoo-chromium-")
    try:
        return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=60)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium; .ci/run installs it)")
def test_the_html_report_in_a_real_browser(report: Path) -> None:
    page = (report / "leaderboard.html").read_text()
    probe = report / "probe.html"
    probe.write_text(page.replace("</body></html>", PROBE + "</body></html>"))
    dom = _chromium("--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="zoo-probe">(.*?)</pre>', dom.stdout, re.S)
    assert found and found.group(1), dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                        .replace("&gt;", ">"))
    assert result["runs"] > 200 and result["overlaps"] == []
    figures = {img["alt"]: img for img in result["images"]}
    for alt in ("summary plot", "samples", "memorisation"):
        assert figures[alt]["loaded"] and figures[alt]["width"] > 300 and figures[alt]["height"] > 150, figures
    values = [float(v) for v in result["sorted"] if v]
    assert values == sorted(values, reverse=True) and values[0] == 53.0  # sortable: the collapsed row first
    assert result["shown"] == 3  # filterable: the pme rows (heun at 2 budgets, the broken euler)

    shot = report / "page.png"
    _chromium(f"--screenshot={shot}", (report / "leaderboard.html").as_uri())
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (1800, 1400) and (pixels < 128).mean() > 0.02  # text and figures, not a blank page
