from __future__ import annotations

import json
import math
import sys

import click
import numpy as np
import torch
from tqdm import tqdm

from zoo import io, tuning
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.sampling import generate
from zoo.training import load_trained, untrained

DEFAULT_NFE = 50


@click.command("sample")
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None, help="A `zoo train` run folder.")
@click.option("--law", default=None, help="Law SPEC, with a non-learned --network instead of --checkpoint.")
@click.option("--network", default=None, help="A non-learned network: exact, empirical, perturbed:eps=E.")
@click.option("--dataset", default=None, help="Data set SPEC, with --law and --network.")
@click.option("--sampler", required=True, help="Sampler SPEC, e.g. heun or em:alpha=0.5.")
@click.option("--nfe", type=click.IntRange(min=1), default=None,
              help=f"Network evaluations per sample [default: {DEFAULT_NFE}]; not for an adaptive sampler "
                   f"(rk45), whose tolerances set its steps.")
@click.option("--n", "n", type=click.IntRange(min=1), default=1000, show_default=True, help="Number of samples.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Samples integrated at once (results do not depend on it).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--grids", type=click.Path(dir_okay=False), default=None,
              help="For a grid=tuned sampler: the `zoo tune` grids file [default: CHECKPOINT/grids.json].")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npz.")
def command(checkpoint: str | None, law: str | None, network: str | None, dataset: str | None, sampler: str,
            nfe: int | None, n: int, seed: int, batch_size: int, device: str, grids: str | None, out: str) -> None:
    """Generate samples: writes `samples` (float32, (n, *data_shape)), `nfe` (counted per sample),
    `grid` (the forward times used) and `protocol` (a JSON string) to OUT. A sampler with
    grid=tuned runs on the times `zoo tune` stored for this model, sampler and --nfe."""
    direct = [law, network, dataset]
    if checkpoint is not None and any(v is not None for v in direct):
        raise ZooError("give either --checkpoint DIR or --law/--network/--dataset, not both")
    if checkpoint is None and not all(v is not None for v in direct):
        raise ZooError("give --checkpoint DIR, or all of --law, --network (a non-learned one: exact, empirical, perturbed) and --dataset")
    io.writable_file(out)
    sampler_ = get_registry().create("sampler", sampler)
    if sampler_.adaptive and nfe is not None:
        raise ZooError(f"sampler {sampler_.name!r} is adaptive: its tolerances, not --nfe, set its steps "
                       f"(the NFE it spends is recorded); drop --nfe")
    budget = None if sampler_.adaptive else nfe or DEFAULT_NFE
    trained = load_trained(checkpoint, device) if checkpoint is not None else untrained(law, network, dataset, device)
    if trained.steps_done < trained.config.steps:
        click.echo(f"zoo: warning: the checkpoint has {trained.steps_done} of {trained.config.steps} steps", err=True)
    times, tuned = None, None
    if sampler_.grid == "tuned":
        source = f"--checkpoint {checkpoint}" if checkpoint else f"--law {law} --network {network} --dataset {dataset}"
        times, tuned = tuning.tuned_times(trained, sampler_, budget, checkpoint, grids, source, sampler)
        sampler_ = tuning.with_options(sampler_, tuned)
    shape = tuple(trained.dataset.shape)
    io.check_free_space(out, n * math.prod(shape) * 4, f"{n} samples of shape {shape}")
    # samples go to the file batch by batch: memory is one batch's, whatever --n; progress and the
    # time left show on a terminal from the first finished batch on
    bar = tqdm(total=n, desc="sample", unit="sample", file=sys.stderr, dynamic_ncols=True, disable=None, delay=0.5)
    with io.npz_stream(out) as npz, bar:
        with npz.rows("samples", (n, *shape), np.float32) as write:
            def on_batch(samples: torch.Tensor) -> None:
                write(samples.numpy())
                bar.update(len(samples))

            result = generate(trained.law, trained.field, sampler_, n=n, nfe=budget, shape=shape, seed=seed,
                              batch_size=batch_size, device=trained.device, on_batch=on_batch, times=times)
        protocol = {"law": trained.config.law, "network": trained.config.network, "dataset": trained.config.dataset,
                    "sampler": sampler_.spec, "nfe_budget": budget, "nfe": result.nfe, "n": n, "seed": seed,
                    "checkpoint": checkpoint, "training": trained.config.to_json() if checkpoint else None,
                    "steps_done": trained.steps_done, "grid": result.grid.tolist(),
                    "grid_kind": sampler_.grid, **({"tuned_grid": tuned} if tuned else {})}
        npz.array("nfe", result.nfe)
        npz.array("grid", result.grid.numpy())
        npz.array("protocol", json.dumps(protocol))
    click.echo(f"wrote {n} samples ({result.nfe} NFE each) to {out}", err=True)
