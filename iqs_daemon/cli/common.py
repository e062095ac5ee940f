"""Options and helpers shared by several commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import SECTIONS, Paths, Settings, load_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib
from ..errors import ConfigError

CONFIG_OPTION = typer.Option(
    None, "--config", "-c", help="Read settings from this TOML file (on top of the user's file).",
    dir_okay=False,
)
SET_OPTION = typer.Option(
    None, "--set", metavar="KEY=VALUE",
    help="Override any setting, e.g. --set verdict.reject_below=25 (see `iqs-daemon config`).",
)


def parse_set_options(items: list[str] | None) -> dict[str, Any]:
    """``section.key=value`` pairs (TOML values; bare words are strings) -> overrides."""
    overrides: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        name = key.strip().rpartition(".")[2]
        if not sep or name not in SECTIONS or key.strip() not in (name, f"{SECTIONS[name]}.{name}"):
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE with a known key")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        overrides[name] = value
    return overrides


def settings_from(config: Path | None, sets: list[str] | None, **flags: Any) -> Settings:
    """Load settings once for a command: files, then --set, then dedicated flags."""
    overrides = parse_set_options(sets)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return load_settings(Paths.from_environment(), config, overrides)


def progress_bar(what: str, console: Console, *, quiet: bool = False) -> Progress:
    """The bar shown while photos are worked on: only for a person at a terminal, never
    with --json (``quiet``); it disappears when done."""
    return Progress(
        TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, disable=not interactive() or quiet, transient=True,
    )


def interactive() -> bool:
    """Progress bars and colour only for a person at a terminal (not journald, not pipes)."""
    return sys.stderr.isatty()
