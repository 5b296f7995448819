from __future__ import annotations

import json
import math
from pathlib import Path

import click
import numpy as np

from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.safe import load_array
from zoo.spec import split_list


def load_samples(path: str) -> np.ndarray:
    """The ``samples`` array of an .npz file (or a bare .npy array), read without pickle."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise ZooError(f"no such samples file: {path}")
    return load_array(file, "samples", "samples file")


def table(values: dict[str, float], floors: dict[str, float], better: dict[str, bool]) -> str:
    """Rows: metric, value, real-vs-real floor (or the metric's own ``*_floor`` value), direction."""
    shown = [k for k in values if not (k.endswith("_floor") and k[: -len("_floor")] in values)]
    width = max(len(k) for k in shown)
    lines = [f"{'metric':<{width}}  {'value':>12}  {'floor':>12}  better"]
    for key in shown:
        floor = floors.get(key, values.get(f"{key}_floor"))
        arrow = {True: "higher", False: "lower"}.get(better.get(key), "")
        floor_text = f"{floor:12.5g}" if floor is not None else f"{'-':>12}"
        lines.append(f"{key:<{width}}  {values[key]:12.5g}  {floor_text}  {arrow}")
    return "\n".join(lines)


@click.command("evaluate")
@click.option("--dataset", "dataset_spec", required=True, help="Data set SPEC the samples imitate (e.g. gmm8, digits).")
@click.option("--samples", "samples_path", required=True, help="An .npz file with key 'samples' (n, *shape).")
@click.option("--metrics", multiple=True, help="Metric SPECs, comma-separated or repeated (default: all that apply).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object {metric: value}.")
@click.option("--floors/--no-floors", default=True, help="Table: also measure real-vs-real floors at the same n.")
@click.option("--seed", default=0, show_default=True, help="Seed of the metrics' subsampling.")
@click.option("--device", default="cpu", show_default=True, help="Device for the extractor networks.")
def command(dataset_spec: str, samples_path: str, metrics: tuple[str, ...], as_json: bool, floors: bool,
            seed: int, device: str) -> None:
    """Evaluate samples, from zoo or any other tool, with the metric suite (docs/METRICS.md)."""
    from zoo import evaluation
    from zoo.devices import resolve_device

    dataset = get_registry().create("dataset", dataset_spec)
    samples = evaluation.check_samples(load_samples(samples_path), dataset)
    ctx = evaluation.context(dataset, seed=seed, device=str(resolve_device(device)))
    chosen = evaluation.select(ctx, split_list(metrics) if metrics else None)
    if metrics and not chosen:
        raise ZooError(f"none of the metrics {', '.join(split_list(metrics))} can run on a samples file "
                       f"(velocity_error needs a trained field)")
    values = evaluation.evaluate(samples, ctx, chosen)
    if as_json:
        click.echo(json.dumps({k: (v if math.isfinite(v) else None) for k, v in values.items()}))
        return
    info = evaluation.protocol(ctx, len(samples), chosen)
    lows = evaluation.floors(ctx, chosen, n=len(samples)) if floors else {}
    better = {k: v for m in chosen for k, v in m.higher_is_better.items()}
    click.echo(f"{dataset.spec}: {len(samples)} samples vs {info['n_reference']} held-out "
               f"({info['n_train']} train)")
    if floors:
        click.echo(f"floors: {info['floor_source']}, n = {info['floor_n']}, mean of {info['floor_seeds']} seeds")
    if "extractor" in info:
        click.echo(f"extractor: {info['extractor']} sha256 {info['extractor_sha256']}")
    click.echo(table(values, lows, better))
