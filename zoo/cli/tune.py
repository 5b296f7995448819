from __future__ import annotations

import click

from zoo import io, tuning
from zoo.errors import ZooError
from zoo.registry import get_registry
from zoo.training import load_trained, untrained


@click.command("tune")
@click.option("--checkpoint", type=click.Path(file_okay=False), default=None, help="A `zoo train` run folder.")
@click.option("--law", default=None, help="Law SPEC, with a non-learned --network instead of --checkpoint.")
@click.option("--network", default=None, help="A non-learned network: exact, empirical, perturbed:eps=E.")
@click.option("--dataset", default=None, help="Data set SPEC, with --law and --network.")
@click.option("--sampler", required=True, help="A deterministic sampler's SPEC, e.g. unipc or dpmpp:final=none.")
@click.option("--nfe", type=click.IntRange(min=1), required=True, help="The NFE budget the grid is tuned for.")
@click.option("--grids", type=click.Path(dir_okay=False), default=None,
              help=f"The tuned grids file written (others in it are kept) [default: CHECKPOINT/{tuning.GRIDS_FILE}; "
                   f"required with --network].")
@click.option("--n", "n", type=click.IntRange(min=1), default=tuning.SEARCH_N, show_default=True,
              help="Prior draws in the search batch.")
@click.option("--seed", type=int, default=tuning.SEARCH_SEED, show_default=True,
              help="The search batch's seed (keep it apart from the seeds samples are measured on).")
@click.option("--evals", type=click.IntRange(min=1), default=tuning.EVALS, show_default=True,
              help="Objective evaluations at most (each one generates the search batch).")
@click.option("--device", default="auto", show_default=True, help="auto (CUDA when present), cpu or cuda.")
def command(checkpoint: str | None, law: str | None, network: str | None, dataset: str | None, sampler: str,
            nfe: int, grids: str | None, n: int, seed: int, evals: int, device: str) -> None:
    """Search the time grid of a deterministic sampler at an NFE budget for one model: the interior
    times that bring its samples closest to an accurate solution of the same field's flow (rk45) on
    a search batch of prior draws. Stores them in GRIDS, where `zoo sample --sampler SPEC:grid=tuned`
    and the same --nfe find them."""
    direct = [law, network, dataset]
    if checkpoint is not None and any(v is not None for v in direct):
        raise ZooError("give either --checkpoint DIR or --law/--network/--dataset, not both")
    if checkpoint is None and not all(v is not None for v in direct):
        raise ZooError("give --checkpoint DIR, or all of --law, --network (a non-learned one: exact, empirical, perturbed) and --dataset")
    path = tuning.grids_file(checkpoint, grids, "zoo tune")
    io.writable_file(path)
    sampler_ = get_registry().create("sampler", sampler)
    trained = load_trained(checkpoint, device) if checkpoint is not None else untrained(law, network, dataset, device)
    if trained.steps_done < trained.config.steps:
        click.echo(f"zoo: warning: the checkpoint has {trained.steps_done} of {trained.config.steps} steps", err=True)
    c = trained.config
    entry = tuning.search(trained.law, trained.field, sampler_, nfe, tuple(trained.dataset.shape), n=n, seed=seed,
                          evals=evals, device=trained.device)
    entry["search"]["training_steps"] = trained.steps_done
    key = tuning.grid_key(c.law, c.network, c.dataset, sampler_, nfe)
    tuning.store(path, key, entry)
    s = entry["search"]
    starts = ", ".join(f"{k} {v:.4g}" for k, v in s["starts"].items())
    click.echo(f"tuned {tuning.tuned_spec(sampler_)} at {nfe} NFE: search RMS {starts} -> {s['rms']:.4g} "
               f"({s['evaluations']} evaluations, {s['seconds']:.0f} s); wrote {path}", err=True)
