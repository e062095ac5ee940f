"""``iqs-daemon config``: the effective settings and where each came from."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..config import Paths, describe
from .app import app
from .common import CONFIG_OPTION, SET_OPTION, settings_from


@app.command("config")
def config_command(
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print every setting's effective value and its source (default, file or flag).

    Example: iqs-daemon config --set verdict.reject_below=25
    """
    settings = settings_from(config, sets)
    paths = Paths.from_environment()
    rows = describe(settings)
    if as_json:
        typer.echo(json.dumps({
            "config_file": str(paths.config_file),
            "state_dir": str(paths.state_dir),
            "settings": {key: {"value": value, "source": source} for key, value, source in rows},
        }, indent=2))
        return
    console = Console()
    exists = "" if paths.config_file.is_file() else " (not present: all defaults)"
    console.print(f"User config file: {paths.config_file}{exists}")
    console.print(f"State directory:  {paths.state_dir}")
    table = Table("setting", "value", "source")
    for key, value, source in rows:
        table.add_row(key, "(model default)" if value is None else repr(value), source)
    console.print(table)
