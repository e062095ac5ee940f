"""``iqs-daemon config``: the effective settings and where each came from."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..config import Paths, Settings, describe
from ..errors import IqsError
from ..verdict import DEFAULT_POLICY, Policy
from .app import app
from .common import CONFIG_OPTION, SET_OPTION, settings_from


@app.command("config")
def config_command(
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print every setting's effective value and its source.

    Sources, lowest first: default (the product's), model (the model file's own
    verdict cut-offs), calibration (written by `iqs-daemon calibrate`), your
    config file, --config, flag.

    Example: iqs-daemon config --set verdict.reject_below=25
    """
    settings = settings_from(config, sets)
    paths = Paths.from_environment()
    rows = _effective(settings)
    if as_json:
        typer.echo(json.dumps({
            "config_file": str(paths.config_file),
            "calibration_file": str(paths.calibration_file),
            "state_dir": str(paths.state_dir),
            "settings": {key: {"value": value, "source": source} for key, value, source in rows},
        }, indent=2))
        return
    console = Console()
    exists = "" if paths.config_file.is_file() else " (not present: all defaults)"
    console.print(f"User config file: {paths.config_file}{exists}")
    calibrated = "" if paths.calibration_file.is_file() else " (not present)"
    console.print(f"Calibration:      {paths.calibration_file}{calibrated}")
    console.print(f"State directory:  {paths.state_dir}")
    table = Table("setting", "value", "source")
    for key, value, source in rows:
        table.add_row(key, "(unknown: model not loaded)" if value is None else repr(value), source)
    console.print(table)


def _effective(settings: Settings) -> list[tuple[str, object, str]]:
    """``describe``, with the verdict cut-offs the user left unset shown as the values the
    policy will use (from the model file, or the product's defaults)."""
    from ..model import QualityModel

    rows = describe(settings)
    try:
        model_defaults = QualityModel.from_settings(settings).info.thresholds
    except IqsError:
        return rows
    policy = Policy.resolve(model_defaults, settings)
    own = model_defaults.get("policy", {})
    out = []
    for key, value, source in rows:
        name = key.rpartition(".")[2]
        if value is None and name in DEFAULT_POLICY:
            value, source = getattr(policy, name), "model" if name in own else "default"
        out.append((key, value, source))
    return out
