"""``iqs-daemon show PHOTO...``: our verdict and the labels other tools wrote, per file."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .. import decoding
from ..config import Settings
from ..discovery import RAW_EXTENSIONS
from ..errors import IqsError
from ..metadata import MetadataWriter, StoredMetadata, hand_label
from ..records import PickLabel
from ..vocabulary import BY_NAME, KNOWN
from ..xmp_tags import READ_KEYS
from .app import ExitCode, app
from .common import CONFIG_OPTION, SET_OPTION, settings_from

_VERDICT_ROWS = (
    ("Score", "score"),
    ("Label", "label"),
    ("Reasons", "reasons"),
    *((d.title, d.name) for d in KNOWN),
    ("Model", "model_name"),
    ("Model version", "model_version"),
    ("Scored at", "scored_at"),
    ("Fingerprint", "fingerprint"),
)


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return value.title if isinstance(value, PickLabel) else str(value)


def _file_labels(stored: StoredMetadata) -> dict[Path, str]:
    """Short names for the From column: "embedded", "sidecar", or "sidecar NAME"."""
    labels = {}
    for file in stored.files:
        if file.kind == "embedded":
            labels[file.path] = "embedded"
        elif file.path.name == f"{stored.path.name}.xmp":
            labels[file.path] = "sidecar"
        else:
            labels[file.path] = f"sidecar {file.path.name}"
    return labels


def judged_from(photo: Path, settings: Settings) -> str | None:
    """For a RAW: "embedded preview WxH", the picture its verdict is judged from (the
    decode picks the same preview every time), or None for other formats."""
    if photo.suffix.lower() not in RAW_EXTENSIONS:
        return None
    try:
        decoded = decoding.decode(photo, min_short_side=decoding.MIN_PREVIEW_SHORT_SIDE,
                                  max_pixels=settings.max_pixels)
    except IqsError as exc:
        return f"no usable picture ({exc.reason})" if hasattr(exc, "reason") else str(exc)
    match = re.match(r"raw preview (\d+x\d+)", decoded.source)
    return f"embedded preview {match.group(1)}" if match else decoded.source


def render(stored: StoredMetadata, source: str | None = None) -> Group:
    """Per photo: its path, a table of what we wrote and every label or rating found in
    each file, then which file is which. ``source``: what a RAW was judged from."""
    labels = _file_labels(stored)
    table = Table()
    table.add_column("Tag", no_wrap=True)
    table.add_column("Value", overflow="fold")
    table.add_column("From", overflow="fold")
    if not stored.has_verdict:
        table.add_row("iqs-daemon verdict", "none", "")
    for title, name in _VERDICT_ROWS:
        value = stored.diagnostics.get(name) if name in BY_NAME else getattr(stored, name)
        if value not in (None, ()):
            table.add_row(title, _text(value), labels[stored.sources[name]])
    if stored.has_verdict and source is not None:
        table.add_row("Judged from", source, "")
    if stored.group_id:
        role = "its pick" if stored.group_pick else "not its pick"
        table.add_row("Burst", f"{stored.group_id}: {stored.group_size or '?'} photos, {role}",
                      labels[stored.sources["group_id"]])
    kept = hand_label(stored) if stored.has_verdict else None
    if kept is not None:
        where = stored.sources.get("pick_label") or stored.sources.get("rating")
        table.add_row("Hand label (kept)", f"{kept}, set by hand; ours is "
                      f"{_text(stored.label) if stored.label else 'not shown'}",
                      labels.get(where, "") if where else "")
    table.add_section()
    for file in stored.files:
        for key in READ_KEYS:
            value = file.get(key)
            if value is not None:
                table.add_row(key, _text(value), labels[file.path])
    if not any(file.get(key) is not None for file in stored.files for key in READ_KEYS):
        table.add_row("labels and ratings", "none", "")
    for problem in stored.problems:
        table.add_row("unreadable", problem, "")
    files = [Text(f"  {label}: {path}") for path, label in labels.items()]
    return Group(Text(str(stored.path), style="bold"), table, *files, Text(""))


@app.command("show")
def show(
    photos: Annotated[list[Path], typer.Argument(metavar="PHOTO...", help="Photos to inspect.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per photo.")
    ] = False,
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
) -> None:
    """Show the verdict and the labels and ratings stored in photos and their sidecars.

    Reads the embedded XMP and both sidecar names (photo.CR2.xmp and photo.xmp).

    Give the same --config / --set as to score: the file it writes to is listed first.
    """
    settings = settings_from(config, sets)
    console = Console(highlight=False)
    failed = 0
    with MetadataWriter() as writer:
        for photo in photos:
            try:
                stored = writer.read_stored(photo, settings)
            except IqsError as exc:
                failed += 1
                typer.echo(f"iqs-daemon: error: {exc}", err=True)
                continue
            source = judged_from(photo, settings)
            if as_json:
                record = stored.to_json()
                record.update(hand_label=hand_label(stored) if stored.has_verdict else None,
                              judged_from=source)
                typer.echo(json.dumps(record, ensure_ascii=False))
            else:
                console.print(render(stored, source))
    if failed:
        raise typer.Exit(ExitCode.SOME_FAILED)
