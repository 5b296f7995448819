"""Leaderboards from bench results: ``leaderboard.md``, a self-contained ``leaderboard.html``
(inline CSS and a few lines of inline JavaScript for sorting and filtering, plots as base64 PNGs)
and ``results.csv``.

A report answers: which law and which sampler win at which NFE budget, and is the difference
real. So, per data set:

* a summary: the best trained row of each law x sampler family at each NFE budget of the grid,
  with the spread over seeds, the best of each budget marked and the rows within noise of it
  marked too (noise: two standard errors of the difference over seeds, and never less than the
  real-vs-real floor of the metric at the same n, the resolution of the metric itself);
  the same numbers in one plot, every law on the same axes;
* trained rows first, ranked; reference rows (``exact``, the exact field; ``empirical``, the
  training set's own field, which copies it) apart, named as references, never ranked with them;
* flags: MEMORISING (a copy of the training set, whatever its fidelity) and BROKEN (no finite
  primary metric, no mode or a single class captured, or a primary metric over 100x the median
  trained row's: a collapsed or diverged sampler);
* samples of the winners, and every column explained on the page.

Rows of one configuration (law, network, data set, sampler, alpha, NFE budget) are averaged over
seeds and ranked by a primary metric (FID for images, energy distance in low dimension: at
n = 1000 on gmm8, W2 between two real samples scatters by more than the gaps between good
samplers, while the energy distance separates them by several floors). See docs/METRICS.md.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from zoo.errors import ZooError
from zoo.io import writable_dir, write_text

if TYPE_CHECKING:
    from zoo.spec import Spec

PRIMARY = ("fid", "energy", "w2", "sliced_w2", "mmd2")  # the first present ranks a data set
SECONDARY = {  # shown beside the primary metric, by primary metric
    "fid": ("kid", "precision", "recall", "coverage", "classes_covered", "class_kl"),
    None: ("w2", "sliced_w2", "modes_captured", "high_quality", "coverage", "velocity_error"),
}
RATIO, RATIO_FLOOR = "memorization_ratio", "memorization_ratio_floor"
NN_Z = ("nn_z",)
RATIO_MARGIN = 0.2  # "well above its floor": the floor is ~0.11 in 2-D, ~0 for digits; copies give ~1
Z_LIMIT = 3.0  # Meehan et al. 2020: |Z| > 3 with Z < 0 means generated points sit too close to train
# Z alone also fires on samples that crowd into dense regions without copying (Heun at 9 NFE on
# the exact gmm8 field: Z = -5.7 with the ratio at its floor), so it counts only with the ratio
# at least this far above its floor too
Z_RATIO_SUPPORT = 0.05
LOWER_IS_BETTER = {"fid", "kid", "w2", "energy", "sliced_w2", "mmd2", "velocity_error", "mode_kl", "class_kl"}
NOISE_SDS = 2.0  # differences within this many standard errors (over seeds) are noise
DIVERGED = 100.0  # a lower-is-better primary metric this many times the median trained row's: BROKEN
REFERENCE_NAMES = {"exact": "reference: exact field", "empirical": "reference: training-set copy (empirical)"}
LABEL_CHARS = 28  # longer labels are abbreviated; the full SPEC is in a tooltip and in the protocol

METRIC_NAMES = {  # what each column means (shown on the page and as header tooltips)
    "fid": "Fréchet distance between features of generated and held-out images (lower is better)",
    "kid": "kernel inception distance, an unbiased cousin of FID (lower is better)",
    "precision": "share of generated samples inside the manifold of real ones (higher is better)",
    "recall": "share of real samples inside the manifold of generated ones (higher is better)",
    "coverage": "share of real samples with a generated one among their nearest neighbours (higher is better)",
    "classes_covered": "classes the generated images fall into, by a classifier (of 10; higher is better)",
    "class_kl": "KL divergence of the generated class histogram from the real one (lower is better)",
    "energy": "energy distance to held-out data, unbiased: it can dip below 0 by noise (lower is better)",
    "w2": "Wasserstein-2 distance to held-out data (lower is better; real data at the same n is not 0)",
    "sliced_w2": "sliced Wasserstein-2 distance to held-out data (lower is better)",
    "mmd2": "squared maximum mean discrepancy to held-out data (lower is better)",
    "modes_captured": "mixture components that received high-quality samples (higher is better)",
    "high_quality": "share of samples within 3 standard deviations of some component (higher is better)",
    "velocity_error": "relative L2 error of the learned field against the exact one (lower is better)",
}
COLUMNS = {
    "#": "rank among the trained rows of this data set, by the primary metric (mean over seeds)",
    "law": "the forward law (heat, pme, ...) with the options that tell rows apart",
    "network": "the learned network, or, for reference rows, which reference",
    "sampler": "the reverse-time integrator",
    "alpha": "noise strength of a stochastic sampler (0: the probability-flow ODE)",
    "NFE": "network evaluations per sample: the budget asked for, and in brackets what was counted when it "
           "differs (heun spends 2 per step but 1 on the last; adaptive rk45 sets its own)",
    "copy ratio (floor)": "memorisation: share of samples much nearer one training point than the next "
                          "(d1 < d2/3), beside the same share for held-out real data",
    "NN Z": "nearest-neighbour Mann-Whitney Z of generated vs held-out distances to the training set; "
            "far below -3 means samples sit closer to the training points than new data would",
    "flag": "MEMORISING: copies the training set; BROKEN: collapsed or diverged (no finite primary metric, "
            "one over 100x the median trained row's, no mode or a single class captured)",
    "seeds": "seeds averaged (mean ± standard deviation over them)",
}


def _z(metrics: dict[str, float]) -> float | None:
    return next((metrics[k] for k in NN_Z if k in metrics), None)


def memorising(metrics: dict[str, float]) -> bool:
    """The copying flag: the distance-ratio statistic well above its held-out floor, or the
    nearest-neighbour Mann-Whitney Z far below 0 with the ratio above its floor."""
    ratio, floor = metrics.get(RATIO), metrics.get(RATIO_FLOOR)
    if ratio is None or floor is None or not (math.isfinite(ratio) and math.isfinite(floor)):
        return False
    z = _z(metrics)
    return ratio > floor + RATIO_MARGIN or (z is not None and z < -Z_LIMIT and ratio > floor + Z_RATIO_SUPPORT)


# --------------------------------------------------------------------------- loading


@dataclass
class Results:
    rows: list[dict[str, Any]]
    floors: dict[str, dict[str, Any]]  # data set SPEC -> {n, run, metric: value}
    dirs: dict[str, Path] = field(default_factory=dict)  # run id -> its bench's runs/<id> folder


TEXT_KEYS = ("run", "dataset", "law", "network", "sampler", "status")


def _number(value: Any, what: str) -> float:
    """A metric value: a number (null reads as NaN); anything else is a one-line error."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ZooError(f"{what} is {json.dumps(value)[:40]}, not a number")
    return float(value)


def _checked_row(raw: Any, where: str) -> dict[str, Any]:
    """A results.json row with the types the report relies on, or a one-line error."""
    if not isinstance(raw, dict):
        raise ZooError(f"{where} is not a bench result row (an object)")
    for key in TEXT_KEYS:
        if not isinstance(raw.get(key), str):
            raise ZooError(f"{where} has no {key!r} (a string)" if key not in raw else
                           f"{where}: {key!r} should be a string, got {json.dumps(raw[key])[:40]}")
    metrics = raw.get("metrics")
    if "metrics" not in raw:
        raise ZooError(f"{where} has no 'metrics' (an object of numbers)")
    if not isinstance(metrics, dict):
        raise ZooError(f"{where}: 'metrics' should be an object of numbers")
    row = dict(raw)
    row["metrics"] = {str(k): _number(v, f"{where}: metric {k!r}") for k, v in metrics.items()}
    row["alpha"] = _number(raw.get("alpha", 0.0), f"{where}: 'alpha'")
    nfe = raw.get("nfe")
    row["nfe"] = None if nfe is None else _number(nfe, f"{where}: 'nfe'")
    budget = raw.get("nfe_budget", nfe)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int)):
        raise ZooError(f"{where}: 'nfe_budget' should be an integer or null, got {json.dumps(budget)[:40]}")
    row["nfe_budget"] = budget
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ZooError(f"{where}: 'seed' should be an integer, got {json.dumps(seed)[:40]}")
    reference = raw.get("reference", _network_name(raw["network"]) if _network_name(raw["network"]) in
                        REFERENCE_NAMES else None)
    row["reference"] = reference if isinstance(reference, str) else None
    row["protocol"] = raw["protocol"] if isinstance(raw.get("protocol"), dict) else {}
    row["error"] = None if raw.get("error") is None else str(raw["error"])
    return row


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise ZooError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except RecursionError:
        raise ZooError(f"{str(path)!r} is nested too deeply to be bench results") from None
    except ValueError as exc:
        raise ZooError(f"{str(path)!r} is not valid JSON: {exc}") from None


def load(dirs: list[str | Path]) -> Results:
    rows, floors, where = [], {}, {}
    for d in map(Path, dirs):
        path = d / "results.json"
        if not path.is_file():
            raise ZooError(f"no results.json in {str(d)!r} (run `zoo bench --out {d}` first)")
        part = _read_json(path)
        if not isinstance(part, list):
            raise ZooError(f"{str(path)!r} should hold a list of bench result rows")
        part = [_checked_row(raw, f"row {i + 1} of {str(path)!r}") for i, raw in enumerate(part)]
        rows += part
        for row in part:
            where[row["run"]] = d / "runs" / row["run"]
        if (d / "floors.json").exists():
            stored = _read_json(d / "floors.json")
            if not isinstance(stored, dict) or not all(isinstance(v, dict) for v in stored.values()):
                raise ZooError(f"{str(d / 'floors.json')!r} should map data sets to their floors")
            for name, values in stored.items():
                what = f"{str(d / 'floors.json')!r}: {name!r}"
                clean = {k: _number(v, f"{what}: {k!r}") for k, v in values.items() if k != "run"}
                if isinstance(values.get("run"), str):
                    clean["run"] = values["run"]
                    where[values["run"]] = d / "runs" / values["run"]
                floors.setdefault(name, clean)
    return Results(rows, floors, where)


# --------------------------------------------------------------------------- entries


CONFIG = ("law", "network", "sampler", "alpha", "nfe_budget")


def _network_name(spec: str) -> str:
    return spec.split(":", 1)[0]


def _finite(values: list[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


@dataclass
class Entry:
    """One configuration of a data set, averaged over its finished seeds."""

    key: tuple
    rows: list[dict[str, Any]]
    names: dict[str, str] = field(default_factory=dict)  # SPEC -> display label
    typical: float | None = None  # the median primary metric of the data set's trained entries

    def label(self, column: str) -> str:
        spec = self.first[column]
        return self.names.get(spec, short(spec))

    @property
    def first(self) -> dict[str, Any]:
        return self.rows[0]

    @property
    def reference(self) -> str | None:
        """None for trained rows; the reference's network name otherwise."""
        return self.first["reference"]

    def values(self, name: str) -> list[float]:
        return _finite([r["metrics"][name] for r in self.rows if name in r["metrics"]])

    def mean(self, name: str) -> float | None:
        values = self.values(name)
        return float(np.mean(values)) if values else None

    def std(self, name: str) -> float | None:
        values = self.values(name)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    @property
    def nfe(self) -> float | None:
        counted = [r["nfe"] for r in self.rows if r["nfe"] is not None]
        return float(np.mean(counted)) if counted else None

    @property
    def budget(self) -> int | None:
        return self.first["nfe_budget"]

    @property
    def flagged(self) -> bool:
        return any(memorising(r["metrics"]) for r in self.rows)

    def broken(self, primary: str | None) -> str | None:
        """Why this configuration is collapsed or diverged, or None."""
        if primary is not None and not self.values(primary):
            return f"no finite {primary}"
        for metric, least, what in (("modes_captured", 0, "no mode captured"), ("classes_covered", 1, "one class")):
            value = self.mean(metric)
            if value is not None and value <= least:
                return what
        value = self.mean(primary) if primary in LOWER_IS_BETTER else None
        if value is not None and self.typical and value > DIVERGED * self.typical:
            return f"{primary} over {DIVERGED:g}x the median trained row"
        return None

    def flag(self, primary: str | None) -> str:
        marks = (["MEMORISING"] if self.flagged else []) + ([f"BROKEN: {b}"] if (b := self.broken(primary)) else [])
        return ", ".join(marks)


def primary_metric(rows: list[dict[str, Any]]) -> str | None:
    present = {k for r in rows for k in r["metrics"]}
    return next((m for m in PRIMARY if m in present), None)


def _without(spec: str, key: str) -> str:
    from zoo.spec import Spec

    parsed = Spec.parse(spec)
    return str(Spec(parsed.name, {k: v for k, v in parsed.options.items() if k != key}, parsed.positional))


def _names(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Display labels of every law, network and sampler SPEC of a data set's rows. A reference
    row's law reads as the trained law it mirrors (the empirical reference integrates to a lower
    t_min: it is the same law, not another one)."""
    names: dict[str, str] = {}
    trained = {r["law"] for r in rows if r["reference"] is None}
    laws = {r["law"] for r in rows}
    names.update(labels(trained or laws, "law"))
    for spec in laws - trained:
        twin = sorted(t for t in trained if _without(t, "t_min") == _without(spec, "t_min"))
        names[spec] = names[twin[0]] if twin else labels(laws, "law")[spec]
    for column in ("network", "sampler"):
        names.update(labels({r[column] for r in rows}, column))
    for spec in {r["network"] for r in rows if r["reference"] is not None}:
        names[spec] = REFERENCE_NAMES.get(names[spec], f"reference: {names[spec]}")
    return names


def ranked(rows: list[dict[str, Any]]) -> tuple[str | None, list[Entry]]:
    """Finished rows of one data set grouped by configuration, best primary metric first
    (configurations without a finite value of it last)."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok":
            groups[tuple(r[k] for k in CONFIG)].append(r)
    names = _names([r for r in rows if r["status"] == "ok"]) if groups else {}
    entries = [Entry(k, sorted(v, key=lambda r: r["seed"]), names) for k, v in groups.items()]
    metric = primary_metric(rows)
    if metric is not None:
        sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
        entries.sort(key=lambda e: (e.mean(metric) is None, sign * (e.mean(metric) or 0.0)))
        typical = [v for e in entries if e.reference is None and (v := e.mean(metric)) is not None]
        for e in entries:
            e.typical = float(np.median(typical)) if typical else None
    return metric, entries


def split(entries: list[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(trained entries, reference entries), each in the order given."""
    return [e for e in entries if e.reference is None], [e for e in entries if e.reference is not None]


def by_dataset(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["dataset"]].append(r)
    return dict(out)


# --------------------------------------------------------------------------- the summary


def resolution(floors: dict[str, Any] | None, metric: str | None) -> float:
    """The smallest difference the metric resolves at this n: the size of its real-vs-real floor."""
    value = (floors or {}).get(metric) if metric else None
    return abs(value) if isinstance(value, float) and math.isfinite(value) else 0.0


def within_noise(a: Entry, b: Entry, metric: str, floor_size: float) -> bool:
    """Whether a and b differ by less than the noise: NOISE_SDS standard errors of the
    difference over seeds (where both have several), and never less than the metric's floor."""
    ma, mb = a.mean(metric), b.mean(metric)
    if ma is None or mb is None:
        return False
    noise = floor_size
    sa, sb = a.std(metric), b.std(metric)
    if sa is not None and sb is not None:
        noise = max(noise, NOISE_SDS * math.sqrt(sa**2 / len(a.values(metric)) + sb**2 / len(b.values(metric))))
    return abs(ma - mb) <= noise


@dataclass
class Board:
    """The summary of a data set: the best entry per (law, sampler family) per NFE budget, of the
    trained rows; of the reference rows that do not copy when there are no trained rows (a bench of
    samplers on the exact or a perturbed field)."""

    metric: str | None
    budgets: list[int | None]  # columns; None: adaptive samplers
    cells: dict[tuple[str, str], dict[int | None, Entry]]  # (law or reference label, sampler) -> budget -> entry
    marks: dict[int, str]  # id(entry) -> "best" or "tie"
    of: str = "trained"  # or "reference"

    @property
    def seeds(self) -> int:
        return max((len(e.rows) for row in self.cells.values() for e in row.values()), default=0)


def board(entries: list[Entry], metric: str | None, floors: dict[str, Any] | None) -> Board:
    trained, references = ([e for e in part if metric is not None and e.mean(metric) is not None]
                           for part in split(entries))
    of = "trained" if trained else "reference"
    pool = trained or [e for e in references if not e.flagged]
    budgets = sorted({e.budget for e in pool}, key=lambda b: (b is None, b or 0))
    cells: dict[tuple[str, str], dict[int | None, Entry]] = defaultdict(dict)
    for e in pool:  # entries come best first: the first of each cell is its best
        cells[(e.label("law" if trained else "network"), short(e.first["sampler"]))].setdefault(e.budget, e)
    marks: dict[int, str] = {}
    size = resolution(floors, metric)
    for budget in budgets:
        column = [row[budget] for row in cells.values() if budget in row]
        if not column:
            continue
        best = min(column, key=pool.index)
        marks[id(best)] = "best"
        for e in column:
            if e is not best and within_noise(e, best, metric, size):
                marks[id(e)] = "tie"
    order = sorted(cells, key=lambda k: min(pool.index(e) for e in cells[k].values()))
    return Board(metric, budgets, {k: cells[k] for k in order}, marks, of)


MARK_TEXT = {"best": "*", "tie": "≈"}


def fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    text = f"{value:.4g}"
    return f"{text} ± {std:.2g}" if std is not None and math.isfinite(std) else text


def short(spec: str) -> str:
    """The plugin name of a SPEC (the full SPEC is in the protocol)."""
    return spec.split(":", 1)[0]


def abbreviated(text: str, limit: int = LABEL_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def budget_text(budget: int | None) -> str:
    return "adaptive" if budget is None else f"NFE {budget}"


def _alpha(e: Entry) -> str:
    """` α=0.5` for a stochastic sampler (its SPEC has alpha, 0 included), else empty."""
    return f" α={e.first['alpha']:g}" if "alpha=" in e.first["sampler"] else ""


def _cell_text(e: Entry, metric: str, mark: str | None) -> str:
    alpha = _alpha(e)
    return f"{MARK_TEXT.get(mark or '', '')}{fmt(e.mean(metric), e.std(metric))}{alpha}"


def board_table(b: Board) -> tuple[list[str], list[list[str]]]:
    head = ["law" if b.of == "trained" else "reference", "sampler", *[budget_text(k) for k in b.budgets]]
    body = [[law, sampler, *[_cell_text(row[k], b.metric, b.marks.get(id(row[k]))) if k in row else ""
                             for k in b.budgets]] for (law, sampler), row in b.cells.items()]
    return head, body


def board_note(b: Board, floors: dict[str, Any] | None) -> str:
    seeds = b.seeds
    spread = f"mean ± sd over {seeds} seeds" if seeds > 1 else "one seed"
    size = resolution(floors, b.metric)
    noise = " or ".join(filter(None, [f"{NOISE_SDS:g} standard errors over seeds" if seeds > 1 else "",
                                      f"the real-vs-real floor {fmt(size)}" if size else ""])) or "no estimate"
    who = ("best trained row per law x sampler" if b.of == "trained" else
           "no trained rows: best reference row (copies left out) per reference x sampler")
    return (f"{who} at each NFE budget ({b.metric}, {spread}, best alpha of "
            f"stochastic samplers): * best, ≈ within noise of the best (less apart than {noise}: not a real "
            f"difference)")


# --------------------------------------------------------------------------- tables


def nfe_text(e: Entry) -> str:
    """The budget asked for, and the counted NFE beside it where they differ."""
    counted = e.nfe
    if e.budget is None:
        return f"adaptive ({fmt(counted)})"
    return str(e.budget) if counted is None or counted == e.budget else f"{e.budget} ({fmt(counted)})"


def _secondary(rows: list[dict[str, Any]], primary: str | None) -> list[str]:
    present = {k for r in rows for k in r["metrics"]}
    return [m for m in SECONDARY.get(primary, SECONDARY[None]) if m in present and m != primary]


def empty_columns(entries: list[Entry], metrics: list[str]) -> set[str]:
    """Metrics without a single finite value in these entries: shown as such, not as a column of dashes."""
    return {m for m in metrics if not any(e.values(m) for e in entries)}


def _table(entries: list[Entry], primary: str | None, secondary: list[str], reference: bool = False
           ) -> tuple[list[str], list[list[str]]]:
    empty = empty_columns(entries, [m for m in [primary, *secondary] if m])
    metrics = [m for m in secondary if m not in empty]
    head = ["#" if not reference else "reference", "law", *([] if reference else ["network"]), "sampler", "alpha",
            "NFE", (primary or "-") + (" (no finite values)" if primary in empty else ""), "copy ratio (floor)",
            "NN Z", "flag", *metrics, "seeds"]
    body = []
    for i, e in enumerate(entries, 1):
        r = e.first
        mem = f"{_ratio(e.mean(RATIO))} ({_ratio(e.mean(RATIO_FLOOR))})"
        z = _finite([v for x in e.rows if (v := _z(x["metrics"])) is not None])
        first = e.label("network") if reference else str(i)
        body.append([first, e.label("law"), *([] if reference else [e.label("network")]), e.label("sampler"),
                     f"{r['alpha']:g}", nfe_text(e), fmt(e.mean(primary), e.std(primary)) if primary else "-", mem,
                     fmt(float(np.mean(z)) if z else None), e.flag(primary), *[fmt(e.mean(m)) for m in metrics],
                     str(len(e.rows))])
    return head, body


def _ratio(value: float | None) -> str:
    """A share in [0, 1] with two decimals (1.00, never a bare 1 beside a 0)."""
    return "-" if value is None else f"{value:.2f}"


def _floor_line(floors: dict[str, Any] | None) -> str:
    if not floors:
        return "real-vs-real floors: not available"
    values = ", ".join(f"{k} {fmt(v)}" for k, v in floors.items() if k not in ("n", "run"))
    return f"real-vs-real floors (held-out vs reference, n = {fmt(floors.get('n'))}): {values}"


def _columns(lines: list[list[str]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(*lines)]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]


def _best_references(references: list[Entry]) -> list[Entry]:
    """The best entry of each kind of reference (entries come best first)."""
    seen: dict[str, Entry] = {}
    for e in references:
        seen.setdefault(e.first["network"], e)
    return list(seen.values())


def summary(rows: list[dict[str, Any]], floors: dict[str, dict[str, Any]], top: int = 10) -> str:
    """The plain-text report printed at the end of a bench: per data set the summary board, the
    best trained rows, and the best row of each reference, apart."""
    out = []
    for dataset, part in by_dataset(rows).items():
        primary, entries = ranked(part)
        trained, references = split(entries)
        failed = sum(r["status"] != "ok" for r in part)
        direction = "" if primary is None else (" (lower is better)" if primary in LOWER_IS_BETTER else
                                                " (higher is better)")
        out.append(f"{dataset}: ranked by {primary or '-'}{direction}"
                   + (f"; {failed} failed runs (see the report)" if failed else ""))
        out.append(_floor_line(floors.get(dataset)))
        b = board(entries, primary, floors.get(dataset))
        if b.cells:
            out.append(board_note(b, floors.get(dataset)) + ":")
            out += ["  " + line for line in _columns(list(board_table(b)[0:1]) + board_table(b)[1])]
        head, body = _table(trained[:top], primary, [])
        out.append(f"trained rows, best first ({min(top, len(trained))} of {len(trained)}):" if trained
                   else "no trained rows")
        if trained:
            out += ["  " + line for line in _columns([head, *body])]
        best = _best_references(references)
        if best:
            out.append("references (not ranked with the trained rows), the best row of each:")
            head, body = _table(best, primary, [], reference=True)
            out += ["  " + line for line in _columns([head, *body])]
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def figure(count: int, width: float = 4.2, height: float = 3.2, cols: int = 3) -> tuple[Any, list[Any]]:
    """A figure of ``count`` panels laid out by matplotlib's constrained layout (titles, labels
    and legends never overlap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(1, min(count, cols))
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


LAW_STYLES = ("-", "--", ":", "-.")


def summary_figure(b: Board, floors: dict[str, Any] | None) -> Any | None:
    """The board as one plot: metric vs NFE budget, every law x sampler family on the same axes
    (colour: sampler, line style: law), seed spread as error bars, the floor dashed."""
    lines = {k: [(budget, e) for budget, e in row.items() if budget is not None] for k, row in b.cells.items()}
    adaptive = {k: row[None] for k, row in b.cells.items() if None in row}
    if not any(lines.values()) and not adaptive:
        return None
    fig, (ax,) = figure(1, 7.5, 4.2)
    laws = sorted({law for law, _ in b.cells})
    samplers = sorted({s for _, s in b.cells})
    colours = {s: f"C{i % 10}" for i, s in enumerate(samplers)}
    values = []
    for (law, sampler), points in lines.items():
        if not points:
            continue
        points.sort(key=lambda p: p[0])
        y = [e.mean(b.metric) for _, e in points]
        err = [e.std(b.metric) or 0.0 for _, e in points]
        values += y
        ax.errorbar([k for k, _ in points], y, yerr=err, color=colours[sampler],
                    linestyle=LAW_STYLES[laws.index(law) % len(LAW_STYLES)], marker="o", ms=3, capsize=2,
                    label=abbreviated(f"{law} · {sampler}"))
    for (law, sampler), e in adaptive.items():
        values.append(e.mean(b.metric))
        ax.plot([e.nfe], [e.mean(b.metric)], marker="D", color=colours[sampler], linestyle="none",
                label=abbreviated(f"{law} · {sampler} (adaptive)"))
    size = resolution(floors, b.metric)
    if size:
        ax.axhline(size, color="k", ls="--", lw=1, label="real-vs-real floor")
    positive = [v for v in values if v is not None and v > 0]
    if positive and min(positive) > 0 and max(positive) > 30 * min(positive) and len(positive) == len(values):
        ax.set_yscale("log")  # a diverged run would flatten every other line
    ax.set(xscale="log", xlabel="NFE budget (adaptive: counted)", ylabel=b.metric)
    ax.set_title(f"{b.metric} vs NFE: best {b.of} row per {'law' if b.of == 'trained' else 'reference'} x sampler",
                 fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def alpha_figure(entries: list[Entry], metric: str) -> Any | None:
    """Metric vs alpha for stochastic samplers of trained rows: one panel per law, one line per
    (sampler, NFE budget), panels sharing their y axis."""
    panels: dict[str, dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    for e in split(entries)[0]:
        if e.mean(metric) is not None:
            panels[e.label("law")][f"{e.label('sampler')} {budget_text(e.budget)}"].append(e)
    panels = {k: {label: es for label, es in lines.items() if len({e.first["alpha"] for e in es}) > 1}
              for k, lines in panels.items()}
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return None
    fig, axes = figure(len(panels), 4.6, 3.4)
    for ax, (law, lines) in zip(axes, sorted(panels.items())):
        for label, es in sorted(lines.items()):
            es.sort(key=lambda e: e.first["alpha"])
            ax.plot([e.first["alpha"] for e in es], [e.mean(metric) for e in es], "o-", label=abbreviated(label), ms=3)
        ax.set(xlabel="alpha (noise strength)", ylabel=metric)
        ax.set_title(abbreviated(law), fontsize=9)
        ax.legend(fontsize=6)
    return fig


def _npz(results: Results, run: str, key: str) -> np.ndarray | None:
    folder = results.dirs.get(run)
    if folder is None:
        return None
    try:
        with np.load(folder / "samples.npz", allow_pickle=False) as f:
            return f[key] if key in f else None
    except (OSError, TypeError, ValueError, EOFError):
        return None


def winners(entries: list[Entry], metric: str | None) -> list[Entry]:
    """Whose samples to show: the best trained entry of each law, then the best of each reference."""
    trained, references = split(entries)
    best: dict[str, Entry] = {}
    for e in trained:
        if metric is None or e.mean(metric) is not None:
            best.setdefault(e.label("law"), e)
    return list(best.values()) + _best_references(references)


def _title(e: Entry, metric: str | None) -> str:
    who = e.label("network") if e.reference else e.label("law")
    alpha = _alpha(e)
    score = f", {metric} {fmt(e.mean(metric))}" if metric else ""
    flag = f" [{e.flag(metric)}]" if e.flag(metric) else ""
    return f"{abbreviated(who, 34)}\n{e.label('sampler')}{alpha}, {nfe_text(e)} NFE{score}{flag}"


def samples_figure(shown: list[tuple[Entry, np.ndarray]], train: np.ndarray | None, metric: str | None) -> Any | None:
    """Scatter plots (low-dim, over the training points in grey) or image grids of the winners."""
    if not shown:
        return None
    fig, axes = figure(len(shown), 3.6, 3.8, cols=4)
    for ax, (e, x) in zip(axes, shown):
        if x.ndim == 4:  # (n, C, H, W) images in about [-1, 1]: an 8 x 8 grid
            k = int(min(8, math.isqrt(len(x))))
            imgs = np.clip((x[: k * k] + 1) / 2, 0, 1).transpose(0, 2, 3, 1)
            imgs = np.pad(imgs, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=0.5)  # a grey frame per tile
            h, w, c = imgs.shape[1:]
            grid = imgs.reshape(k, k, h, w, c).transpose(0, 2, 1, 3, 4).reshape(k * h, k * w, c)
            ax.imshow(grid.squeeze(-1) if c == 1 else grid, cmap="gray", interpolation="nearest")
            ax.axis("off")
        else:
            x = x.reshape(len(x), -1)
            j = 1 if x.shape[1] > 1 else 0
            if train is not None:
                t = train.reshape(len(train), -1)
                ax.scatter(t[:, 0], t[:, j], s=1, c="0.8")
            ax.scatter(x[:, 0], x[:, j], s=1.5, alpha=0.4)
            ax.set_aspect("equal", "datalim")
            ax.set_xticks([])  # the training points give the scale; corner tick labels would collide
            ax.set_yticks([])
        ax.set_title(_title(e, metric), fontsize=8)
    return fig


def memorisation_figure(shown: list[tuple[Entry, np.ndarray]], held: np.ndarray | None, metric: str | None
                        ) -> Any | None:
    """Histograms of d1/d2 (nearest / second-nearest train distance): generated vs held-out."""
    if not shown:
        return None
    fig, axes = figure(len(shown), 3.6, 3.0, cols=4)
    bins = np.linspace(0, 1, 26)
    for ax, (e, ratio) in zip(axes, shown):
        ratio = ratio[np.isfinite(ratio)]
        ax.hist(ratio, bins=bins, alpha=0.6, density=True, label="generated")
        if held is not None:
            ax.hist(held[np.isfinite(held)], bins=bins, alpha=0.6, density=True, label="held-out")
        ax.axvline(1 / 3, color="k", ls="--", lw=1)
        ax.set_xlabel("d1 / d2", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(_title(e, metric), fontsize=8)
        ax.legend(fontsize=6)
    return fig


def _arrays(results: Results, entries: list[Entry], key: str) -> list[tuple[Entry, np.ndarray]]:
    pairs = [(e, _npz(results, e.first["run"], key)) for e in entries]
    return [(e, x) for e, x in pairs if x is not None]


# --------------------------------------------------------------------------- writers


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1500px}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:2px solid #ddd;padding-bottom:.2em;overflow-wrap:anywhere}
h3{margin-top:1.4em}.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;vertical-align:top}
th{background:#f2f2f2;cursor:default}table.sortable th{cursor:pointer}
td.text{text-align:left;max-width:16em;overflow-wrap:anywhere}
tr.mem td{background:#fde2e2}tr.broken td{background:#eee;color:#777}td.flag{color:#b00;font-weight:bold;text-align:left}
td.best{font-weight:bold;background:#e3f4e3}td.tie{background:#f1f9f1}
.floor{background:#eef5ff;border-left:4px solid #4a7fd4;padding:.4em .8em;font-size:13px}
.note{color:#555;font-size:13px;max-width:1100px}img{max-width:100%;display:block;margin:.5em 0}
pre{font-size:11px;background:#f7f7f7;padding:.5em;white-space:pre-wrap;max-width:1100px;overflow-wrap:anywhere}
details{margin:.2em 0}summary{cursor:pointer;overflow-wrap:anywhere}td.err{text-align:left;color:#b00;max-width:40em}
dl.glossary{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;font-size:13px;max-width:1100px}
dl.glossary dt{font-weight:bold}dl.glossary dd{margin:0}
label.filter{font-size:13px;display:inline-block;margin:.3em 0}
"""

# sorting (click a header; numbers by their value, dashes last) and filtering (type to keep matching rows)
SCRIPT = """
function zooSort(th){var t=th.closest('table'),i=[].indexOf.call(th.parentNode.children,th),b=t.tBodies[0];
var up=th.getAttribute('data-dir')!=='up';th.setAttribute('data-dir',up?'up':'down');
var rows=[].slice.call(b.rows);rows.sort(function(p,q){var x=p.cells[i].getAttribute('data-v'),y=q.cells[i].getAttribute('data-v');
var a=parseFloat(x),c=parseFloat(y),d;if(isNaN(a)||isNaN(c)){d=isNaN(a)-isNaN(c);if(!d)d=String(x).localeCompare(String(y));return d;}
d=a-c;return up?d:-d;});rows.forEach(function(r){b.appendChild(r);});}
function zooFilter(input){var q=input.value.toLowerCase(),t=document.getElementById(input.getAttribute('data-table'));
[].forEach.call(t.tBodies[0].rows,function(r){r.style.display=r.textContent.toLowerCase().indexOf(q)>=0?'':'none';});}
document.querySelectorAll('table.sortable th').forEach(function(th){th.addEventListener('click',function(){zooSort(th);});});
document.querySelectorAll('input.filter').forEach(function(i){i.addEventListener('input',function(){zooFilter(i);});});
"""


def _esc(text: Any) -> str:
    return html.escape(str(text))


def _sort_value(text: str) -> str:
    """The number a cell sorts by (its first number), or the text."""
    head = text.lstrip("*≈").split(" ", 1)[0].split("(", 1)[0]
    try:
        value = float(head)
        return repr(value) if math.isfinite(value) else ""
    except ValueError:
        return "" if text in ("-", "") else text


def _explain(column: str) -> str:
    base = column.split(" (", 1)[0]
    return COLUMNS.get(column, COLUMNS.get(base, METRIC_NAMES.get(base, "")))


def _attrs(**values: str) -> str:
    """` class="a" title="b"` for the non-empty values, escaped."""
    return "".join(f' {k.rstrip("_")}="{_esc(v)}"' for k, v in values.items() if v)


def _html_table(head: list[str], body: list[list[str]], row_classes: list[str], *, table_id: str | None = None,
                titles: list[list[str]] | None = None, cell_classes: list[list[str]] | None = None,
                text_columns: tuple[int, ...] = ()) -> str:
    """A table whose headers explain their column (tooltips) and whose cells carry the value
    they sort by; with ``table_id`` it is sortable and a filter input can find it."""
    out = [f"<div class='scroll'><table{_attrs(id=table_id or '', class_='sortable' if table_id else '')}><thead><tr>"
           + "".join(f"<th{_attrs(title=_explain(h))}>{_esc(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    for r, (cells, cls) in enumerate(zip(body, row_classes)):
        tds = []
        for c, text in enumerate(cells):
            classes = " ".join(filter(None, ["text" if c in text_columns else "",
                                             cell_classes[r][c] if cell_classes else ""]))
            title = titles[r][c] if titles and titles[r][c] != text else ""
            tds.append(f"<td{_attrs(class_=classes, title=title)} data-v=\"{_esc(_sort_value(text))}\">"
                       f"{_esc(text)}</td>")
        out.append(f"<tr{_attrs(class_=cls)}>" + "".join(tds) + "</tr>")
    return "\n".join(out) + "</tbody></table></div>"


def _filter(table_id: str, what: str) -> str:
    return (f"<label class='filter'>filter {what}: <input class='filter' data-table='{table_id}' "
            f"placeholder='e.g. pme, heun, MEMORISING'></label> <span class='note'>(click a header to sort)</span>")


def _img(fig: Any | None, alt: str, caption: str) -> str:
    if fig is None:
        return f"<p class='note'>{_esc(caption)}: nothing to show.</p>"
    return (f"<figure><img alt=\"{_esc(alt)}\" src=\"data:image/png;base64,{_png(fig)}\">"
            f"<figcaption class='note'>{_esc(caption)}</figcaption></figure>")


def _spec_titles(entries: list[Entry], head: list[str]) -> list[list[str]]:
    """Tooltips: the full SPEC behind each law, network and sampler label."""
    columns = {h: h for h in ("law", "network", "sampler")}
    out = []
    for e in entries:
        row = []
        for h in head:
            if h in columns:
                row.append(e.first[h])
            elif h == "reference":
                row.append(e.first["network"])
            else:
                row.append("")
        out.append(row)
    return out


def _row_classes(entries: list[Entry], primary: str | None) -> list[str]:
    return ["mem" if e.flagged else "broken" if e.broken(primary) else "" for e in entries]


def _glossary(metrics: set[str]) -> str:
    items = list(COLUMNS.items()) + [(m, METRIC_NAMES[m]) for m in sorted(metrics) if m in METRIC_NAMES]
    return ("<h2 id='how-to-read'>How to read this page</h2><dl class='glossary'>"
            + "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in items) + "</dl>")


def render_html(results: Results) -> str:
    present = {k for r in results.rows for k in r["metrics"]}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>zoo leaderboard</title>"
             f"<style>{CSS}</style></head><body><h1>zoo leaderboard</h1>",
             f"<p class='note'>{len(results.rows)} runs. Per data set: a summary of the best trained row of each "
             f"law x sampler at each NFE budget (with what is within noise marked), the trained rows ranked by "
             f"the primary metric, then the reference rows apart: <b>reference: exact field</b> samples the exact "
             f"velocity, <b>reference: training-set copy (empirical)</b> the exact velocity of the training set "
             f"itself, which reproduces it. A row is flagged <b>MEMORISING</b> when its copy ratio exceeds its "
             f"held-out floor by more than {RATIO_MARGIN}, or by more than {Z_RATIO_SUPPORT} with a "
             f"nearest-neighbour Z below -{Z_LIMIT:g}; <b>BROKEN</b> when it collapsed or diverged. Every column "
             f"is explained <a href='#how-to-read'>at the end of the page</a> and in its header's tooltip.</p>"]
    for n, (dataset, rows) in enumerate(by_dataset(results.rows).items()):
        primary, entries = ranked(rows)
        trained, references = split(entries)
        secondary = _secondary(rows, primary)
        floors = results.floors.get(dataset)
        parts.append(f"<h2>{_esc(dataset)}</h2><p class='floor'>{_esc(_floor_line(floors))}</p>")
        b = board(entries, primary, floors)
        parts.append("<h3>Summary: who wins at which NFE</h3>")
        if b.cells:
            head, body = board_table(b)
            classes = [["", "", *[b.marks.get(id(row[k]), "") if k in row else "" for k in b.budgets]]
                       for row in b.cells.values()]
            titles = [["", "", *[f"{row[k].first['law']} / {row[k].first['network']} / {row[k].first['sampler']}"
                                 if k in row else "" for k in b.budgets]] for row in b.cells.values()]
            parts.append(f"<p class='note'>{_esc(board_note(b, floors))}.</p>")
            parts.append(_html_table(head, body, [""] * len(body), titles=titles, cell_classes=classes,
                                     text_columns=(0, 1)))
            parts.append(_img(summary_figure(b, floors), "summary plot",
                              f"{primary} against the NFE budget, every law on the same axes"))
        else:
            parts.append("<p class='note'>no row with a finite primary metric.</p>")
        train = _npz(results, floors["run"], "train") if floors and "run" in floors else None
        shown = winners(entries, primary)
        parts.append("<h3>Samples of the winners</h3>"
                     + _img(samples_figure(_arrays(results, shown, "samples"), train, primary), "samples",
                            "the best trained row of each law, then the best row of each reference"
                            + ("; training points in grey" if train is not None else "")))
        head, body = _table(trained, primary, secondary)
        parts.append(f"<h3>Trained rows ({len(trained)})</h3>" + _filter(f"trained-{n}", "rows"))
        parts.append(_html_table(head, body, _row_classes(trained, primary), table_id=f"trained-{n}",
                                 titles=_spec_titles(trained, head), text_columns=(1, 2, 3)))
        if references:
            head, body = _table(references, primary, secondary, reference=True)
            parts.append(f"<h3>Reference rows ({len(references)}), not ranked with the trained rows</h3>"
                         + _filter(f"references-{n}", "rows"))
            parts.append(_html_table(head, body, _row_classes(references, primary), table_id=f"references-{n}",
                                     titles=_spec_titles(references, head), text_columns=(0, 1, 2)))
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            parts.append(f"<h3>Failed runs ({len(failed)})</h3>")
            parts.append(_html_table(["law", "network", "sampler", "alpha", "NFE", "seed", "error"],
                                     [[short(r["law"]), short(r["network"]), short(r["sampler"]), f"{r['alpha']:g}",
                                       budget(r), str(r["seed"]), r["error"] or ""] for r in failed],
                                     [""] * len(failed), text_columns=(0, 1, 2),
                                     cell_classes=[[""] * 6 + ["err"] for _ in failed]))
        if primary:
            alpha = alpha_figure(entries, primary)
            if alpha is not None:
                parts.append("<h3>Alpha sweeps of the trained rows</h3>"
                             + _img(alpha, "alpha", f"{primary} against the noise strength alpha"))
        held = _npz(results, floors["run"], "nn_ratio") if floors and "run" in floors else None
        parts.append("<h3>Memorisation: nearest / second-nearest training distance</h3>"
                     + _img(memorisation_figure(_arrays(results, shown, "nn_ratio"), held, primary), "memorisation",
                            "generated vs held-out real data; the dashed line is the d1 < d2/3 threshold of the "
                            "copy ratio"))
        parts.append("<h3>Protocol of every run</h3>")
        for r in rows:
            label = (f"{short(r['law'])} / {short(r['network'])} / {short(r['sampler'])} / NFE {budget(r)} "
                     f"/ seed {r['seed']}: {r['status']}")
            detail = {k: r.get(k) for k in ("run", "training", "law", "network", "sampler", "alpha", "nfe",
                                            "nfe_budget", "dataset", "seed", "metrics", "protocol")}
            parts.append(f"<details><summary>{_esc(label)}</summary>"
                         f"<pre>{_esc(json.dumps(detail, indent=1, sort_keys=True, default=str))}</pre></details>")
    parts.append(_glossary(present))
    parts.append(f"<script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def budget(row: dict[str, Any]) -> str:
    """A row's NFE budget as shown: adaptive samplers (rk45) have none, their steps follow tolerances."""
    return "adaptive" if row["nfe_budget"] is None else str(row["nfe_budget"])


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|").replace("*", "\\*") for c in row) + " |" for row in body]
    return "\n".join(lines)


def render_md(results: Results) -> str:
    out = ["# zoo leaderboard", "",
           "Per data set: the best trained row of each law x sampler at each NFE budget (* best, ≈ within noise), "
           "the trained rows ranked by the primary metric, then the reference rows apart. MEMORISING flags copies "
           f"(copy ratio > floor + {RATIO_MARGIN}, or > floor + {Z_RATIO_SUPPORT} with NN Z < -{Z_LIMIT:g}); "
           "BROKEN flags collapsed or diverged rows. Full protocol per run: results.json; every column is "
           "explained in leaderboard.html.", ""]
    for dataset, rows in by_dataset(results.rows).items():
        primary, entries = ranked(rows)
        trained, references = split(entries)
        secondary = _secondary(rows, primary)
        floors = results.floors.get(dataset)
        out += [f"## {dataset}", "", _floor_line(floors), ""]
        b = board(entries, primary, floors)
        if b.cells:
            out += [board_note(b, floors) + ":", "", _md_table(*board_table(b)), ""]
        out += [f"Trained rows ({len(trained)}):", "", _md_table(*_table(trained, primary, secondary)), ""]
        if references:
            out += [f"Reference rows ({len(references)}), not ranked with the trained rows:", "",
                    _md_table(*_table(references, primary, secondary, reference=True)), ""]
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            out += [f"Failed runs ({len(failed)}):", ""]
            out += [f"- {short(r['law'])} / {short(r['network'])} / {short(r['sampler'])} / NFE {budget(r)} / "
                    f"seed {r['seed']}: {r['error']}" for r in failed]
            out.append("")
    return "\n".join(out)


CSV_BASE = ("run", "dataset", "law", "network", "reference", "sampler", "alpha", "nfe", "nfe_budget", "seed",
            "status", "memorising", "error")
CSV_PROTOCOL = ("n_generated", "n_reference", "reference_split", "training_steps", "ema", "device")


def render_csv(results: Results) -> str:
    names = sorted({k for r in results.rows for k in r["metrics"]})
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow([*CSV_BASE, *names, *CSV_PROTOCOL, "time_grid"])
    for r in results.rows:
        p = r["protocol"]
        grid = p.get("time_grid") if isinstance(p.get("time_grid"), dict) else {}
        w.writerow([*(r.get(k) for k in CSV_BASE), *(r["metrics"].get(m) for m in names),
                    *(p.get(k) for k in CSV_PROTOCOL), f"{grid.get('kind')}:{grid.get('steps')}" if grid else ""])
    return f.getvalue()


def write_report(dirs: list[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write the three report files for the bench folders ``dirs`` into ``out`` (default: the first).
    All three are rendered before any is written: a report that cannot be made leaves none behind."""
    if not dirs:
        raise ZooError("zoo report needs at least one bench results folder")
    results = load(dirs)
    texts = [render_md(results), render_html(results), render_csv(results)]
    out = writable_dir(Path(out) if out is not None else Path(dirs[0]))
    paths = [out / "leaderboard.md", out / "leaderboard.html", out / "results.csv"]
    for path, text in zip(paths, texts):
        write_text(path, text)
    return paths


# --------------------------------------------------------------------------- labels


def at_default(kind: str, spec: "Spec", key: str) -> bool:
    """Whether option ``key`` of ``spec`` has the value the plugin gives it when the SPEC leaves it
    out (its default, or what the other options imply: pme's ``output`` under ``route=source``);
    False when that cannot be told (the plugin is not installed here)."""
    from zoo.registry import get_registry
    from zoo.spec import Spec

    rest = {k: v for k, v in spec.options.items() if k != key}
    try:
        built = get_registry().create(kind, Spec(spec.name, rest, spec.positional))
        return Spec.parse(built.spec).options.get(key) == spec.options[key]
    except ZooError:
        return False


def labels(specs: set[str], kind: str, drop: tuple[str, ...] = ("alpha",)) -> dict[str, str]:
    """Shortest telling labels: the plugin name, plus the options that differ between SPECs of the
    same name (``heat:t_min=1e-07`` beside ``heat:t_min=0.001``) or that every one of them sets
    away from what the plugin would choose (``heat:route=blob`` alone); ``drop``: shown elsewhere."""
    from zoo.spec import Spec

    parsed = {}
    for s in specs:
        try:
            parsed[s] = Spec.parse(s)
        except ZooError:  # not a SPEC (a hand-edited row): shown as it is
            parsed[s] = Spec(s)
    out = {}
    for spec, p in parsed.items():
        same = [q for q in parsed.values() if q.name == p.name]
        shown = [k for k, v in p.options.items() if k not in drop and (
            any(q.options.get(k) != v for q in same) or not at_default(kind, p, k))]
        out[spec] = ":".join([p.name, *(f"{k}={p.options[k]}" for k in shown)])
    return out
