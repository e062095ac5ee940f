"""``iqs-daemon score``: one-shot scoring of files and folders."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..discovery import iter_candidates
from ..pipeline import Scorer
from ..report import RunSummary, outcome_json
from .app import ExitCode, app
from .common import CONFIG_OPTION, SET_OPTION, progress_bar, settings_from


@app.command("score")
def score_command(
    paths: list[Path] = typer.Argument(..., help="Photos and folders (searched recursively)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Score, but change no file at all."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per photo on stdout."),
    rescore: bool = typer.Option(
        False, "--rescore", help="Decode and score again photos that already carry a "
        "verdict of this model (a changed threshold needs no --rescore: photos are "
        "re-labelled from their stored scores)."),
    replace_hand_labels: bool = typer.Option(
        False, "--replace-hand-labels", help="Overwrite pick labels and ratings you set "
        "yourself (by default they are kept)."),
    force: bool = typer.Option(
        False, "--force", hidden=True, help="Old spelling of --rescore --replace-hand-labels."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="Decode threads (default: CPU cores)."),
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
) -> None:
    """Score photos and write the verdict into their metadata.

    Each photo gets a digiKam pick label (Rejected / Pending / Accepted), a star rating,
    its score and, when not Accepted, the reasons (blurred, noisy, under/over-exposed,
    compressed). RAW and HEIC photos get an .xmp sidecar; the rest embedded XMP.

    Examples:

      iqs-daemon score ~/Pictures/2026-trip

      iqs-daemon score --dry-run --json card/DCIM > verdicts.jsonl
    """
    missing = [path for path in paths if not os.path.lexists(path)]
    for path in missing:  # before the model loads: a typo costs no wait
        typer.echo(f"iqs-daemon: error: no such file or folder: {path}", err=True)
    if missing:
        raise typer.Exit(ExitCode.USAGE)
    settings = settings_from(config, sets, device=device, jobs=jobs)
    err = Console(stderr=True)
    skipped: list[tuple[Path, str]] = []

    def on_skip(path: Path, reason: str) -> None:
        skipped.append((path, reason))
        err.print(f"skipped {path}: {reason}", markup=False, highlight=False)

    candidates = list(iter_candidates(paths, follow_symlinks=settings.follow_symlinks,
                                      on_skip=on_skip))
    summary = RunSummary()
    started = time.perf_counter()
    with Scorer(settings, dry_run=dry_run, rescore=rescore or force,
                replace_hand_labels=replace_hand_labels or force,
                group_bursts=settings.group_bursts) as scorer:
        progress = progress_bar("scoring", err, quiet=as_json)
        with progress:
            task = progress.add_task("score", total=len(candidates))
            for outcome in scorer.process(candidates):
                summary.add(outcome, lambda path: scorer.metadata.read_stored(path, settings))
                progress.advance(task)
                if outcome.error:
                    err.print(f"failed {outcome.error}", markup=False, highlight=False)
                if as_json:
                    typer.echo(json.dumps(outcome_json(outcome)))
        model_label = scorer.model.info.model_label
    elapsed = time.perf_counter() - started
    if not as_json:
        _print_summary(Console(), summary, elapsed, model_label, dry_run)
    if summary.failures or skipped:
        raise typer.Exit(ExitCode.SOME_FAILED)


def _print_summary(
    console: Console, s: RunSummary, elapsed: float, model: str, dry_run: bool
) -> None:
    if s.total == 0:
        console.print("No photos found.")
        return
    # The title on its own line: a table title wraps at the (narrow) table's width.
    console.print(f"{s.total} photos, model {model}", highlight=False)
    labels = Table()
    labels.add_column("label the photos show")
    labels.add_column("ours", justify="right")
    labels.add_column("set by hand, kept", justify="right")
    for label in s.label_order:
        labels.add_row(label, str(s.labels.get(label, 0)), str(s.hand_labels.get(label, 0)))
    if s.statuses.get("unchanged"):
        labels.add_row("(already scored, not changed)", str(s.statuses["unchanged"]), "")
    if s.failures:
        labels.add_row("[red]failed[/red]", str(len(s.failures)), "")
    console.print(labels)
    worst = s.worst()
    if worst:
        table = Table(title="Lowest scores", title_justify="left")
        table.add_column("score", justify="right")
        table.add_column("label")
        table.add_column("reasons")
        table.add_column("photo", overflow="fold")
        for o in worst:
            v = o.verdict
            assert v is not None
            table.add_row(f"{v.score:.1f}", v.label.title, ", ".join(v.reasons) or "-",
                          str(o.candidate.path))
        console.print(table)
    if s.bursts:
        frames = sum(s.bursts.values())
        groups = f"{len(s.bursts)} group{'s' if len(s.bursts) != 1 else ''}"
        console.print(f"Bursts: {groups} of near-duplicates ({frames} photos); each group's "
                      "best frame is its pick, the others are weaker duplicates.")
    scored = s.statuses.get("scored", 0)
    if scored:
        console.print(f"Throughput: {scored / elapsed:.1f} photos/s "
                      f"({scored} scored in {elapsed:.1f} s)")
    if dry_run:
        console.print("Dry run: no file was changed.")
    else:
        where = ", ".join(f"{n} {kind}" for kind, n in sorted(s.targets.items())) or "nothing"
        console.print(f"Written: {where}")
        if s.read_only:
            console.print(f"{len(s.read_only)} read-only, so written to a sidecar beside them:")
        for photo in s.read_only[:10]:  # a path is never broken across lines
            console.print(f"  {photo}", highlight=False, soft_wrap=True)
        if len(s.read_only) > 10:
            console.print(f"  and {len(s.read_only) - 10} more")
        if s.kept_user_labels:
            console.print(f"Kept {s.kept_user_labels} labels or ratings set by hand "
                          "(use --replace-hand-labels to replace).")
        if len(s.folders) <= 3:
            for folder in sorted(s.folders):
                console.print(f"  in {folder}")
