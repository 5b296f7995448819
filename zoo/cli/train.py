from __future__ import annotations

import os

import click

from zoo import io
from zoo.registry import get_registry
from zoo.training import TrainConfig, train

DEFAULTS = TrainConfig("", "", "")


@click.command("train")
@click.option("--law", required=True, help="Law SPEC, e.g. heat or pme:m=2.")
@click.option("--network", default=None, help="Network SPEC (default: the data set's default network).")
@click.option("--dataset", required=True, help="Data set SPEC, e.g. gmm8, digits, file:PATH.")
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULTS.steps, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.lr, show_default=True)
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=DEFAULTS.ema, show_default=True,
              help="EMA decay of the weights used for sampling.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=DEFAULTS.checkpoint_every, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder; resumed if it holds the same run.")
def command(law: str, network: str | None, dataset: str, steps: int, batch_size: int, lr: float, ema: float,
            seed: int, device: str, checkpoint_every: int, out: str) -> None:
    """Train a velocity network for a law on a data set, with progress, checkpoints and a loss log
    (OUT/log.jsonl). Rerunning the same command resumes from OUT/checkpoint.pt."""
    io.writable_dir(out)
    if network is None:
        network = get_registry().create("dataset", dataset).default_network
    config = TrainConfig(law, network, dataset, steps=steps, batch_size=batch_size, lr=lr, ema=ema,
                         seed=seed, device=device, checkpoint_every=checkpoint_every)
    trained = train(config, out)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun, rank 0 speaks for the job
    last = trained.losses[-1] if trained.losses else float("nan")
    click.echo(f"trained {trained.config.network} for {trained.config.law} on {trained.config.dataset}: "
               f"{trained.steps_done} steps, final loss {last:.4g}, checkpoint in {out}", err=True)
