from __future__ import annotations

import sys
from pathlib import Path

import click

from zoo.errors import printable
from zoo.spec import split_list


DEFAULT_BUDGET = "quick"

# options of other commands that a bench takes from its budget instead
FROM_BUDGET = {"--nfe": "nfe", "--alpha": "alpha", "--n": "n", "--steps": "steps", "--batch-size": "batch_size",
               "--lr": "lr", "--ema": "ema"}


class BenchCommand(click.Command):
    """Points an option that `zoo sample` or `zoo train` has, but a bench takes from its budget, to
    --budget and a suite's [overrides]."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            key = FROM_BUDGET.get(exc.option_name)
            if key is None:
                raise
            from zoo.bench import BUDGETS

            values = "; ".join(f"{b.name}: {_show(getattr(b, key))}" for b in BUDGETS.values())
            raise click.UsageError(
                f"no such option {exc.option_name}: a bench takes {key} from --budget ({values}) or from a suite "
                f"file's [overrides] table ({key} = ...), e.g. --suite benchmarks/suites/toy.toml", ctx) from None


def _show(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@click.command("bench", cls=BenchCommand)
@click.option("--plugins", "plugins", multiple=True, metavar="LIST",
              help="Laws, networks, samplers, metrics to compare (comma-separated SPECs, repeatable, "
                   "e.g. heat,pme:m=3,heun; KIND/NAME where two kinds share a name). Kinds left out use their "
                   "defaults.")
@click.option("--dataset", "datasets", multiple=True, metavar="SPEC", help="Data set(s) (repeatable; default gmm8).")
@click.option("--budget", "budget_name", default=None,
              help="smoke | quick | small | full (default quick: about 5 CPU-minutes, benchmarks/default_time.md).")
@click.option("--executor", default=None, metavar="SPEC", help="Executor plugin (default local; e.g. local:workers=2).")
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Results folder (default zoo-bench).")
@click.option("--resume", is_flag=True, help="Continue the sweep already in --out, skipping finished runs.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per configuration (overrides the budget).")
@click.option("--suite", type=click.Path(dir_okay=False), default=None,
              help="A TOML suite file (benchmarks/suites/*.toml); command-line options override it.")
@click.option("--device", default=None, help="auto | cpu | cuda[:N] (default auto).")
@click.option("--no-report", is_flag=True, help="Do not write the leaderboard at the end.")
def command(plugins: tuple[str, ...], datasets: tuple[str, ...], budget_name: str | None, executor: str | None,
            out: str | None, resume: bool, seeds: int | None, suite: str | None, device: str | None,
            no_report: bool) -> None:
    """Train every selected law and network, sample with every compatible sampler over an NFE x alpha
    grid (an adaptive sampler once per tolerance setting; a stochastic sampler's point that equals a
    deterministic one, em at alpha = 0, is left out), evaluate every applicable metric, and write
    results.json and a leaderboard.

    `zoo bench` alone compares heat and pme on gmm8 at the quick budget. Exit status: 0 when every run
    finished, 1 when some failed (the others are kept and reported), 2 for bad input, 130 on Ctrl-C."""
    from zoo.bench import budget, load_suite, make_sweep, run_bench
    from zoo.devices import resolve_device
    from zoo.registry import get_registry
    from zoo.report import load, summary, write_report

    s = load_suite(suite) if suite else {}
    b = budget(budget_name or s.get("budget", DEFAULT_BUDGET))
    b = b.replace(**s.get("overrides", {}))
    if seeds or s.get("seeds"):
        b = b.replace(seeds=seeds or s["seeds"])
    notes: list[str] = []
    sweep = make_sweep(split_list(plugins) or s.get("plugins", []), split_list(datasets) or s.get("datasets", []),
                       b, str(resolve_device(device or s.get("device", "auto"))), notes)
    for note in notes:
        click.echo(f"note: {printable(note)}", err=True)
    engine = get_registry().create("executor", executor or s.get("executor", "local"))
    folder = Path(out or s.get("out", "zoo-bench"))
    rows = run_bench(sweep, folder, engine, resume=resume, echo=lambda m: click.echo(m, err=True))
    results = load([folder])
    click.echo(summary(results.rows, results.floors))
    if not no_report:
        paths = write_report([folder])
        click.echo(f"report: {', '.join(str(p) for p in paths)}")
    failed = sum(r["status"] != "ok" for r in rows)
    if failed:  # the rows that worked are kept; the exit status says not all did
        click.echo(f"zoo: {failed} of {len(rows)} runs failed (their errors are in the report); exit status 1",
                   err=True)
        sys.exit(1)
