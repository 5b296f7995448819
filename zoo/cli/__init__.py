"""The `zoo` command line. Each command lives in its own module of this package and is
imported only when used, so `zoo plugins` does not pay for the bench's imports."""
from __future__ import annotations

import importlib
import os
import sys

import click

from zoo.errors import ZooError, one_line

COMMANDS = {
    "plugins": "List every plugin with its kind and provenance.",
    "data": "Export a data set split to an .npz file.",
    "train": "Train a velocity network for a law on a data set.",
    "sample": "Generate samples with a sampler.",
    "tune": "Search a sampler's time grid for a model and an NFE budget.",
    "forward": "Run the forward particle flow of a law (blob method).",
    "evaluate": "Evaluate samples with the metric suite.",
    "bench": "Train, sample and evaluate a sweep of plugins; write a leaderboard.",
    "report": "Write leaderboard reports from bench results.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"zoo.cli.{name}").command

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] not in COMMANDS and not args[0].startswith("-"):
            from zoo.registry import did_you_mean

            raise click.UsageError(f"no such command {args[0]!r}{did_you_mean(args[0], list(COMMANDS))} "
                                   f"(commands: {', '.join(COMMANDS)})")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(COMMANDS.items()))


@click.group(cls=LazyGroup)
@click.option("--plugins-dir", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Also load single-file plugins from this folder.")
@click.version_option(package_name="zoo")
def cli(plugins_dir: tuple[str, ...]) -> None:
    """zoo: compare diffusion laws, velocity networks and samplers side by side."""
    if plugins_dir:
        dirs = [d for d in os.environ.get("ZOO_PLUGINS_DIR", "").split(os.pathsep) if d]
        os.environ["ZOO_PLUGINS_DIR"] = os.pathsep.join(dirs + list(plugins_dir))


def fail(message: str) -> None:
    """Report a failed command: one printable line (a SPEC may hold an escape sequence), after
    removing the output folders it created and left empty."""
    from zoo import io

    io.remove_empty_outputs()
    click.echo(f"zoo: {one_line(message)}", err=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors are one line on stderr and exit status 2, never a traceback."""
    from zoo import io

    io.forget_created_outputs()
    try:
        cli.main(args=argv, prog_name="zoo", standalone_mode=False)
    except click.exceptions.Abort:
        fail("interrupted")
        sys.exit(130)
    except click.ClickException as exc:
        fail(exc.format_message())
        sys.exit(exc.exit_code)
    except ZooError as exc:
        fail(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        fail("interrupted")
        sys.exit(130)
    except Exception as exc:  # last resort: still one line; ZOO_DEBUG=1 shows the traceback
        if os.environ.get("ZOO_DEBUG"):
            raise
        fail(f"error: {type(exc).__name__}: {exc} (set ZOO_DEBUG=1 for the traceback)")
        sys.exit(1)
