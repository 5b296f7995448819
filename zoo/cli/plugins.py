from __future__ import annotations

import json

import click

from zoo.registry import get_registry


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {plugins: [...], problems: [...]}.")
def command(as_json: bool) -> None:
    """List every plugin with its kind, name, and the distribution and version it came from."""
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
    for p in problems:
        click.echo(f"broken plugin {p['plugin']}: {p['error']}", err=True)
