from __future__ import annotations

import click


@click.command("report")
@click.argument("dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Where to write the report (default: the first DIR).")
def command(dirs: tuple[str, ...], out: str | None) -> None:
    """Write leaderboard.md, a self-contained leaderboard.html and results.csv from bench results DIR(s)."""
    from zoo.report import write_report

    for path in write_report(list(dirs), out):
        click.echo(str(path))
