from __future__ import annotations

import math

import click
import numpy as np
import torch

from zoo import io
from zoo.blob import flow
from zoo.contracts import seeded_generator
from zoo.errors import ZooError
from zoo.registry import get_registry


@click.command("forward")
@click.option("--law", "law_spec", required=True, help="Law SPEC with a particle flow (pme, custom: route blob or mckean; heat:route=blob).")
@click.option("--dataset", "data_spec", required=True, help="Data set SPEC; the flow starts from its train split.")
@click.option("--n", "n", type=click.IntRange(min=2), default=None,
              help="Particles: a seeded random subset of N train points [default: the law's `particles` option "
                   "(pme and custom: 500 on the blob route, 4000 on mckean), else every train point]. "
                   "The cost grows as N^2.")
@click.option("--t-end", type=float, default=None, help="Final time (default: the law's T).")
@click.option("--snapshots", type=click.IntRange(min=1), default=11, show_default=True,
              help="Number of equally spaced times from 0 to T-END.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the subset.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (keys: times, positions, widths).")
def command(law_spec: str, data_spec: str, n: int | None, t_end: float | None, snapshots: int, seed: int, out: str) -> None:
    """Run the particle flow of a law from a data set's train split (docs/MATH.md sections 5 and 8:
    the blob flow, or McKean-Vlasov particles on route mckean) and write `times` (K,) and
    `positions` (K, n, *shape), float32, the first snapshot at t = 0, and `widths` (K,), the blob
    mollifier's width at each (the density the flow sees is positions blurred by it; NaN on mckean)."""
    io.writable_file(out)
    registry = get_registry()
    law = registry.create("law", law_spec)
    dataset = registry.create("dataset", data_spec)
    if not hasattr(law, "energy"):
        raise ZooError(f"law {law.name!r} has no particle flow (use pme, custom or heat:route=blob)")
    data = dataset.train()
    route = law.route_for(math.prod(data.shape[1:])) if hasattr(law, "route_for") else "blob"
    if route not in ("blob", "mckean"):
        raise ZooError(f"law {law.name!r} on route {route} has no particle flow (use route=blob or route=mckean)")
    if n is not None and n > len(data):
        raise ZooError(f"--n {n} is more than the {len(data)} train samples of {dataset.name!r}")
    # the flow is O(N^2) per step: all 5000 points of gmm8 took 14.5 minutes, the 500 a law trains on seconds
    n = n if n is not None else min(law.particle_count(route) if hasattr(law, "particle_count") else len(data), len(data))
    if n < len(data):
        data = data[torch.randperm(len(data), generator=seeded_generator(seed))[:n]]
    t_end = law.T if t_end is None else t_end
    if not (t_end > 0 and math.isfinite(t_end)):
        raise ZooError(f"--t-end must be a positive number, got {t_end}")
    click.echo(f"forward flow of {law.name} (route {route}): {n} particles (of {len(dataset.train())} train points; --n sets it, "
               f"the cost grows as n^2) in dimension {math.prod(data.shape[1:])}, to t = {t_end:g}, "
               f"{snapshots} snapshots", err=True)
    times = torch.linspace(0.0, t_end, snapshots, dtype=torch.float64) if snapshots > 1 else torch.zeros(1, dtype=torch.float64)
    energy = law.energy(math.prod(data.shape[1:]))
    with click.progressbar(length=1000, label="forward flow", file=click.get_text_stream("stderr")) as bar:
        done = [0]

        def progress(t: float) -> None:
            now = int(1000 * t / t_end)
            bar.update(now - done[0])
            done[0] = now

        options = law.flow_options(data, seeded_generator(seed)) if hasattr(law, "flow_options") else {}
        snaps = list(flow(data, energy, times, progress=progress, **options))
    positions = np.stack([s.x.reshape(data.shape).float().numpy() for s in snaps])
    io.write_npz(out, times=np.array([s.t for s in snaps], dtype=np.float32), positions=positions,
                 widths=np.array([s.eps for s in snaps], dtype=np.float32))
    click.echo(f"wrote {len(snaps)} snapshots of {len(data)} particles to {out}", err=True)
