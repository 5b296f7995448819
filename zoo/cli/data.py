from __future__ import annotations

import click
import torch

from zoo import io
from zoo.contracts import seeded_generator
from zoo.errors import ZooError
from zoo.registry import get_registry


@click.command("data")
@click.argument("spec")
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--n", "n", type=click.IntRange(min=1), default=None, help="Keep a seeded random subset of N samples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (keys: samples, labels).")
def command(spec: str, split: str, n: int | None, seed: int, out: str) -> None:
    """Export a split of data set SPEC to an .npz file: `samples` (float32, (n, *shape)) and,
    where the data set has them, `labels`."""
    io.writable_file(out)
    dataset = get_registry().create("dataset", spec)
    samples = dataset.train() if split == "train" else dataset.test()
    labels = dataset.labels(split)
    if n is not None:
        if n > len(samples):
            raise ZooError(f"--n {n} is more than the {len(samples)} samples of the {split} split of {dataset.name!r}")
        keep = torch.randperm(len(samples), generator=seeded_generator(seed))[:n]
        samples = samples[keep]
        labels = labels[keep] if labels is not None else None
    arrays = {"samples": samples.float().numpy()}
    if labels is not None:
        arrays["labels"] = labels.numpy()
    io.write_npz(out, **arrays)
    click.echo(f"wrote {len(samples)} {split} samples of shape {tuple(samples.shape[1:])} to {out}", err=True)
