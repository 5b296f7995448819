"""Leaderboards from bench results: ``leaderboard.md``, a self-contained ``leaderboard.html``
(inline CSS, plots as base64 PNGs) and ``results.csv``.

Rows of one configuration (law, network, data set, sampler, alpha, NFE) are averaged over seeds
and ranked per data set by a primary metric (FID for images, energy distance in low
dimension: at n = 1000 on gmm8, W2 between two real samples scatters by more than the gaps between
good samplers, while the energy distance separates them by several floors). Memorisation sits beside it, and a copying row is flagged, so that a memorising
model cannot top the board unnoticed (docs/METRICS.md).
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
from typing import Any

import numpy as np

from zoo.errors import ZooError
from zoo.io import writable_dir, write_text

PRIMARY = ("fid", "energy", "w2", "sliced_w2", "mmd2")  # the first present ranks a data set
SECONDARY = {  # shown beside the primary metric, by primary metric
    "fid": ("kid", "precision", "recall", "coverage", "classes_covered", "class_kl"),
    None: ("w2", "sliced_w2", "modes_captured", "high_quality", "coverage", "velocity_error"),
}
RATIO, RATIO_FLOOR = "memorization_ratio", "memorization_ratio_floor"
NN_Z = ("nn_z",)
AUTHENTICITY = "authenticity"
RATIO_MARGIN = 0.2  # "well above its floor": the floor is ~0.11 in 2-D, ~0 for digits; copies give ~1
Z_LIMIT = 3.0  # Meehan et al. 2020: |Z| > 3 with Z < 0 means generated points sit too close to train
# Z alone also fires on samples that crowd into dense regions without copying (Heun at 9 NFE on
# the exact gmm8 field: Z = -5.7 with the ratio at its floor), so it counts only with the ratio
# at least this far above its floor too
Z_RATIO_SUPPORT = 0.05
LOWER_IS_BETTER = {"fid", "kid", "w2", "energy", "sliced_w2", "mmd2", "velocity_error"}


def _z(metrics: dict[str, float]) -> float | None:
    return next((metrics[k] for k in NN_Z if k in metrics), None)


def memorising(metrics: dict[str, float]) -> bool:
    """The copying flag: the distance-ratio statistic well above its held-out floor, or the
    nearest-neighbour Mann-Whitney Z far below 0 with the ratio above its floor."""
    ratio, floor = metrics.get(RATIO), metrics.get(RATIO_FLOOR)
    if ratio is None or floor is None:
        return False
    z = _z(metrics)
    return ratio > floor + RATIO_MARGIN or (z is not None and z < -Z_LIMIT and ratio > floor + Z_RATIO_SUPPORT)


# --------------------------------------------------------------------------- loading


@dataclass
class Results:
    rows: list[dict[str, Any]]
    floors: dict[str, dict[str, Any]]  # data set SPEC -> {n, run, metric: value}
    dirs: dict[str, Path] = field(default_factory=dict)  # run id -> its bench's runs/<id> folder


def load(dirs: list[str | Path]) -> Results:
    rows, floors, where = [], {}, {}
    for d in map(Path, dirs):
        path = d / "results.json"
        try:
            part = json.loads(path.read_text())
        except FileNotFoundError:
            raise ZooError(f"no results.json in {str(d)!r} (run `zoo bench --out {d}` first)") from None
        except ValueError as exc:
            raise ZooError(f"{str(path)!r} is not valid JSON: {exc}") from None
        if not isinstance(part, list) or not all(isinstance(row, dict) and "run" in row for row in part):
            raise ZooError(f"{str(path)!r} should hold a list of bench result rows")
        rows += part
        for row in part:
            where[row["run"]] = d / "runs" / row["run"]
        if (d / "floors.json").exists():
            try:
                stored = json.loads((d / "floors.json").read_text())
            except ValueError as exc:
                raise ZooError(f"{str(d / 'floors.json')!r} is not valid JSON: {exc}") from None
            for name, values in stored.items():
                floors.setdefault(name, values)
                if "run" in values:
                    where[values["run"]] = d / "runs" / values["run"]
    return Results(rows, floors, where)


# --------------------------------------------------------------------------- ranking


CONFIG = ("law", "network", "sampler", "alpha", "nfe_budget")


@dataclass
class Entry:
    """One configuration of a data set, averaged over its finished seeds."""

    key: tuple
    rows: list[dict[str, Any]]
    names: dict[str, str] = field(default_factory=dict)  # SPEC -> display label

    def label(self, column: str) -> str:
        spec = self.first[column]
        return self.names.get(spec, short(spec))

    @property
    def first(self) -> dict[str, Any]:
        return self.rows[0]

    def mean(self, name: str) -> float | None:
        values = [r["metrics"][name] for r in self.rows if name in r["metrics"]]
        return float(np.mean(values)) if values else None

    def std(self, name: str) -> float | None:
        values = [r["metrics"][name] for r in self.rows if name in r["metrics"]]
        return float(np.std(values, ddof=1)) if len(values) > 1 else None

    @property
    def nfe(self) -> float:
        return float(np.mean([r["nfe"] for r in self.rows]))

    @property
    def flagged(self) -> bool:
        return any(memorising(r["metrics"]) for r in self.rows)


def primary_metric(rows: list[dict[str, Any]]) -> str | None:
    present = {k for r in rows for k in r["metrics"]}
    return next((m for m in PRIMARY if m in present), None)


def ranked(rows: list[dict[str, Any]]) -> tuple[str | None, list[Entry]]:
    """Finished rows of one data set grouped by configuration, best primary metric first."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["status"] == "ok":
            groups[tuple(r[k] for k in CONFIG)].append(r)
    names = {k: v for c in ("law", "network", "sampler") for k, v in labels({r[c] for r in rows}, c).items()}
    entries = [Entry(k, sorted(v, key=lambda r: r["seed"]), names) for k, v in groups.items()]
    metric = primary_metric(rows)
    if metric is not None:
        sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
        entries.sort(key=lambda e: (e.mean(metric) is None, sign * (e.mean(metric) or 0.0)))
    return metric, entries


def by_dataset(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["dataset"]].append(r)
    return dict(out)


def fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.4g}"
    return f"{text} ± {std:.2g}" if std is not None else text


def short(spec: str) -> str:
    """The plugin name of a SPEC (the full SPEC is in the protocol)."""
    return spec.split(":", 1)[0]


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

    parsed = {s: Spec.parse(s) for s in specs}
    out = {}
    for spec, p in parsed.items():
        same = [q for q in parsed.values() if q.name == p.name]
        shown = [k for k, v in p.options.items() if k not in drop and (
            any(q.options.get(k) != v for q in same) or not at_default(kind, p, k))]
        out[spec] = ":".join([p.name, *(f"{k}={p.options[k]}" for k in shown)])
    return out


def _secondary(rows: list[dict[str, Any]], primary: str | None) -> list[str]:
    present = {k for r in rows for k in r["metrics"]}
    return [m for m in SECONDARY.get(primary, SECONDARY[None]) if m in present and m != primary]


def _table(entries: list[Entry], primary: str | None, secondary: list[str]) -> tuple[list[str], list[list[str]]]:
    head = ["#", "law", "network", "sampler", "alpha", "NFE", primary or "-", "mem. ratio (floor)", "NN Z", "flag",
            *secondary, "seeds"]
    body = []
    for i, e in enumerate(entries, 1):
        r = e.first
        mem = f"{fmt(e.mean(RATIO))} ({fmt(e.mean(RATIO_FLOOR))})"
        z = [_z(x["metrics"]) for x in e.rows]
        z = [v for v in z if v is not None]
        body.append([str(i), e.label("law"), e.label("network"), e.label("sampler"), f"{r['alpha']:g}",
                     f"{e.nfe:g}", fmt(e.mean(primary), e.std(primary)) if primary else "-", mem,
                     fmt(float(np.mean(z)) if z else None), "MEMORISING" if e.flagged else "",
                     *[fmt(e.mean(m)) for m in secondary], str(len(e.rows))])
    return head, body


def _floor_line(floors: dict[str, Any] | None) -> str:
    if not floors:
        return "real-vs-real floors: not available"
    values = ", ".join(f"{k} {fmt(v)}" for k, v in floors.items() if k not in ("n", "run"))
    return f"real-vs-real floors (held-out vs reference, n = {floors.get('n')}): {values}"


def summary(rows: list[dict[str, Any]], floors: dict[str, dict[str, Any]], top: int = 10) -> str:
    """The plain-text table printed at the end of a bench."""
    out = []
    for dataset, part in by_dataset(rows).items():
        primary, entries = ranked(part)
        head, body = _table(entries[:top], primary, [])
        widths = [max(len(x) for x in col) for col in zip(head, *body)]
        failed = sum(r["status"] != "ok" for r in part)
        out.append(f"{dataset}: {len(entries)} configurations ranked by {primary or '-'}"
                   + (f", {failed} failed runs" if failed else ""))
        out.append(_floor_line(floors.get(dataset)))
        for line in [head, *body]:
            out.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- plots


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _subplots(count: int, width: float = 4.2, height: float = 3.2) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def _fields(entries: list[Entry]) -> dict[tuple[str, str], list[Entry]]:
    out: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        out[(e.label("law"), e.label("network"))].append(e)
    return dict(out)


def plot_nfe(entries: list[Entry], metric: str, floor: float | None) -> str | None:
    """Metric vs counted NFE, one panel per (law, network), one line per (sampler, alpha)."""
    panels = _fields(entries)
    if not panels:
        return None
    fig, axes = _subplots(len(panels))
    for ax, ((law, net), part) in zip(axes, sorted(panels.items())):
        lines: dict[str, list[Entry]] = defaultdict(list)
        for e in part:
            lines[f"{e.label('sampler')} α={e.first['alpha']:g}"].append(e)
        for label, es in sorted(lines.items()):
            es.sort(key=lambda e: e.nfe)
            ax.plot([e.nfe for e in es], [e.mean(metric) for e in es], "o-", label=label, ms=3)
        if floor is not None:
            ax.axhline(floor, color="k", ls="--", lw=1, label="real vs real")
        values = [v for e in part if (v := e.mean(metric)) is not None]
        if values and min(values) > 0 and max(values) > 30 * min(values):
            ax.set_yscale("log")  # a diverged run would flatten every other line
        ax.set(xscale="log", title=f"{law} / {net}", xlabel="NFE (counted)", ylabel=metric)
        ax.legend(fontsize=7)
    return _png(fig)


def budget(row: dict[str, Any]) -> str:
    """A row's NFE budget as shown: adaptive samplers (rk45) have none, their steps follow tolerances."""
    return "adaptive" if row["nfe_budget"] is None else str(row["nfe_budget"])


def plot_alpha(entries: list[Entry], metric: str) -> str | None:
    """Metric vs alpha for stochastic samplers: one panel per (law, network), one line per
    (sampler, NFE budget)."""
    panels: dict[tuple[str, str], dict[str, list[Entry]]] = defaultdict(lambda: defaultdict(list))
    for key, part in _fields(entries).items():
        for e in part:
            panels[key][f"{e.label('sampler')} NFE {budget(e.first)}"].append(e)
    panels = {k: {label: es for label, es in lines.items() if len({e.first["alpha"] for e in es}) > 1}
              for k, lines in panels.items()}
    panels = {k: v for k, v in panels.items() if v}
    if not panels:
        return None
    fig, axes = _subplots(len(panels))
    for ax, ((law, net), lines) in zip(axes, sorted(panels.items())):
        for label, es in sorted(lines.items()):
            es.sort(key=lambda e: e.first["alpha"])
            ax.plot([e.first["alpha"] for e in es], [e.mean(metric) for e in es], "o-", label=label, ms=3)
        ax.set(xlabel="alpha (noise strength)", ylabel=metric, title=f"{law} / {net}")
        ax.legend(fontsize=7)
    return _png(fig)


def _npz(results: Results, run: str, key: str) -> np.ndarray | None:
    folder = results.dirs.get(run)
    try:
        with np.load(folder / "samples.npz") as f:
            return f[key] if key in f else None
    except (OSError, TypeError, ValueError):
        return None


def _best(entries: list[Entry]) -> list[Entry]:
    """The best-ranked entry of each (law, network)."""
    return [part[0] for _, part in sorted(_fields(entries).items())]


def _best_arrays(entries: list[Entry], results: Results, key: str) -> list[tuple[Entry, np.ndarray]]:
    """(entry, its run's array ``key``) for the best entry of each (law, network) that stored one."""
    pairs = [(e, _npz(results, e.first["run"], key)) for e in _best(entries)]
    return [(e, x) for e, x in pairs if x is not None]


def plot_samples(entries: list[Entry], results: Results, floors: dict[str, Any] | None) -> str | None:
    """Scatter plots (low-dim, over the training points in grey) or image grids of the best entry
    of each (law, network)."""
    train = _npz(results, floors["run"], "train") if floors and "run" in floors else None
    shown = _best_arrays(entries, results, "samples")
    if not shown:
        return None
    fig, axes = _subplots(len(shown), 3.4, 3.4)
    for ax, (e, x) in zip(axes, shown):
        r = e.first
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
                ax.scatter(t[:, 0], t[:, j], s=1, c="0.8", label="train")
            ax.scatter(x[:, 0], x[:, j], s=1.5, alpha=0.4, label="generated")
            ax.set_aspect("equal", "datalim")
        flag = "  [MEMORISING]" if e.flagged else ""
        ax.set_title(f"{e.label('law')} / {e.label('network')}\n{e.label('sampler')} "
                     f"α={r['alpha']:g} NFE {e.nfe:g}{flag}", fontsize=8)
    return _png(fig)


def plot_memorisation(entries: list[Entry], results: Results, floors: dict[str, Any] | None) -> str | None:
    """Histograms of d1/d2 (nearest / second-nearest train distance): generated vs held-out."""
    held = _npz(results, floors["run"], "nn_ratio") if floors and "run" in floors else None
    shown = _best_arrays(entries, results, "nn_ratio")
    if not shown:
        return None
    fig, axes = _subplots(len(shown), 3.4, 2.8)
    bins = np.linspace(0, 1, 26)
    for ax, (e, ratio) in zip(axes, shown):
        ax.hist(ratio, bins=bins, alpha=0.6, density=True, label="generated")
        if held is not None:
            ax.hist(held, bins=bins, alpha=0.6, density=True, label="held-out")
        ax.axvline(1 / 3, color="k", ls="--", lw=1)
        ax.set(title=f"{e.label('law')} / {e.label('network')}\n{e.label('sampler')}", xlabel="d1 / d2")
        ax.title.set_fontsize(8)
        ax.legend(fontsize=7)
    return _png(fig)


# --------------------------------------------------------------------------- writers


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1500px}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:2px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;font-size:12px;margin:.6em 0}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:nth-child(2),td:nth-child(3),td:nth-child(4){text-align:left}
tr.mem td{background:#fde2e2}tr.mem td:nth-child(10){color:#b00;font-weight:bold}
.floor{background:#eef5ff;border-left:4px solid #4a7fd4;padding:.4em .8em;font-size:13px}
.note{color:#666;font-size:13px}img{max-width:100%;display:block;margin:.5em 0}
pre{font-size:11px;background:#f7f7f7;padding:.5em;white-space:pre-wrap;max-width:1100px}
details{margin:.2em 0}summary{cursor:pointer}td.err{text-align:left;color:#b00;white-space:normal}
"""


def _html_table(head: list[str], body: list[list[str]], flagged: list[bool]) -> str:
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for cells, mem in zip(body, flagged):
        cls = ' class="mem"' if mem else ""
        out.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in body]
    return "\n".join(lines)


def _img(b64: str | None, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">' if b64 else ""


def write_html(results: Results, path: Path) -> None:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>zoo leaderboard</title>"
             f"<style>{CSS}</style></head><body><h1>zoo leaderboard</h1>",
             f"<p class='note'>{len(results.rows)} runs. Rows are averaged over seeds and ranked per data set "
             f"by the primary metric. A row is flagged <b>MEMORISING</b> when its distance-ratio statistic "
             f"exceeds its held-out floor by more than {RATIO_MARGIN}, or by more than {Z_RATIO_SUPPORT} with "
             f"a nearest-neighbour Z below -{Z_LIMIT:g}: such a row copies its training set, whatever its "
             f"fidelity.</p>"]
    for dataset, rows in by_dataset(results.rows).items():
        primary, entries = ranked(rows)
        secondary = _secondary(rows, primary)
        floors = results.floors.get(dataset)
        parts.append(f"<h2>{html.escape(dataset)}</h2>")
        parts.append(f"<p class='floor'>{html.escape(_floor_line(floors))}</p>")
        head, body = _table(entries, primary, secondary)
        parts.append(_html_table(head, body, [e.flagged for e in entries]))
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            parts.append(f"<h3>Failed runs ({len(failed)})</h3><table><tr><th>law</th><th>network</th><th>sampler"
                         "</th><th>alpha</th><th>NFE</th><th>seed</th><th>error</th></tr>")
            for r in failed:
                parts.append("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                    short(r["law"]), short(r["network"]), short(r["sampler"]), r["alpha"], budget(r),
                    r["seed"])) + f"<td class='err'>{html.escape(str(r['error']))}</td></tr>")
            parts.append("</table>")
        if primary:
            floor = floors.get(primary) if floors else None
            parts.append(f"<h3>{html.escape(primary)} vs NFE</h3>" + _img(plot_nfe(entries, primary, floor), "nfe"))
            alpha = plot_alpha(entries, primary)
            if alpha:
                parts.append("<h3>alpha sweeps</h3>" + _img(alpha, "alpha"))
        parts.append("<h3>samples (best row of each law / network)</h3>" + _img(plot_samples(entries, results, floors), "samples"))
        parts.append("<h3>memorisation: nearest / second-nearest train distance</h3>"
                     "<p class='note'>generated vs held-out real data; the dashed line is the d1 &lt; d2/3 "
                     "threshold of the distance-ratio test.</p>" + _img(plot_memorisation(entries, results, floors), "mem"))
        parts.append("<h3>protocol of every run</h3>")
        for r in rows:
            label = (f"{short(r['law'])} / {short(r['network'])} / {r['sampler']} / NFE {budget(r)} "
                     f"/ seed {r['seed']}: {r['status']}")
            detail = {k: r[k] for k in ("run", "training", "law", "network", "sampler", "alpha", "nfe", "dataset",
                                        "seed", "metrics", "protocol")}
            parts.append(f"<details><summary>{html.escape(label)}</summary>"
                         f"<pre>{html.escape(json.dumps(detail, indent=1, sort_keys=True))}</pre></details>")
    parts.append("</body></html>")
    write_text(path, "\n".join(parts))


def write_md(results: Results, path: Path) -> None:
    out = ["# zoo leaderboard", "",
           f"Rows averaged over seeds, ranked per data set by the primary metric; MEMORISING flags copies "
           f"(distance ratio > floor + {RATIO_MARGIN}, or > floor + {Z_RATIO_SUPPORT} with NN Z < -{Z_LIMIT:g}). "
           f"Full protocol per run: results.json.", ""]
    for dataset, rows in by_dataset(results.rows).items():
        primary, entries = ranked(rows)
        head, body = _table(entries, primary, _secondary(rows, primary))
        out += [f"## {dataset}", "", _floor_line(results.floors.get(dataset)), "", _md_table(head, body), ""]
        failed = [r for r in rows if r["status"] != "ok"]
        if failed:
            out += [f"Failed runs ({len(failed)}):", ""]
            out += [f"- {short(r['law'])} / {short(r['network'])} / {r['sampler']} / NFE {budget(r)} / "
                    f"seed {r['seed']}: {r['error']}" for r in failed]
            out.append("")
    write_text(path, "\n".join(out))


CSV_BASE = ("run", "dataset", "law", "network", "reference", "sampler", "alpha", "nfe", "nfe_budget", "seed",
            "status", "memorising", "error")
CSV_PROTOCOL = ("n_generated", "n_reference", "reference_split", "training_steps", "ema", "device")


def write_csv(results: Results, path: Path) -> None:
    names = sorted({k for r in results.rows for k in r["metrics"]})
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow([*CSV_BASE, *names, *CSV_PROTOCOL, "time_grid"])
    for r in results.rows:
        p = r.get("protocol", {})
        grid = p.get("time_grid") or {}
        w.writerow([*(r.get(k) for k in CSV_BASE), *(r["metrics"].get(m) for m in names),
                    *(p.get(k) for k in CSV_PROTOCOL), f"{grid.get('kind')}:{grid.get('steps')}" if grid else ""])
    write_text(path, f.getvalue())


def write_report(dirs: list[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write the three report files for the bench folders ``dirs`` into ``out`` (default: the first)."""
    if not dirs:
        raise ZooError("zoo report needs at least one bench results folder")
    results = load(dirs)
    out = writable_dir(Path(out) if out is not None else Path(dirs[0]))
    paths = [out / "leaderboard.md", out / "leaderboard.html", out / "results.csv"]
    write_md(results, paths[0])
    write_html(results, paths[1])
    write_csv(results, paths[2])
    return paths
