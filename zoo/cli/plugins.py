from __future__ import annotations

import json

import click

from zoo.registry import Entry, get_registry
from zoo.spec import format_value


def options_text(entry: Entry) -> str:
    """``alpha=1.0, schedule=const``; the positional option as ``PATH`` (``file:PATH``)."""
    positional = entry.cls.positional
    return ", ".join(name.upper() + " (positional, required)" if name == positional and default is None
                     else f"{name}={format_value(default)}" for name, default in entry.options().items())


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {plugins: [...], problems: [...]}.")
def command(as_json: bool) -> None:
    """List every plugin with its kind, name, the distribution and version it came from, and its
    options with their defaults (a SPEC sets them: em:alpha=0.5)."""
    registry = get_registry()
    entries = [e.as_dict() for e in registry.all_entries()]
    problems = [p.as_dict() for p in registry.problems]
    if as_json:
        click.echo(json.dumps({"plugins": entries, "problems": problems}, indent=2))
        return
    width = max((len(e["name"]) for e in entries), default=4)
    for kind in registry.entries:
        rows = [e for e in entries if e["kind"] == kind]
        if not rows:
            continue
        click.echo(f"{kind}s:")
        for e in rows:
            click.echo(f"  {e['name']:<{width}}  {e['distribution']} {e['version']} ({e['plugin']})  {e['summary']}")
            if e["options"]:
                click.echo(f"  {'':<{width}}  options: {options_text(registry.entry(kind, e['name']))}")
    for p in problems:
        click.echo(f"broken plugin {p['plugin']}: {p['error']}", err=True)
