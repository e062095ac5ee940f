"""``iqs-daemon calibrate``: fit the verdict cut-offs to the labels you set by hand."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from ..calibration import (
    CLASSES,
    Agreement,
    Calibration,
    LabelledScore,
    calibrate,
    calibration_toml,
    labelled_score,
    taught_label,
)
from ..config import Paths
from ..discovery import iter_candidates
from ..errors import IqsError
from ..pipeline import Scorer
from ..records import Candidate, PickLabel
from .app import ExitCode, app
from .common import CONFIG_OPTION, SET_OPTION, progress_bar, settings_from


@app.command("calibrate")
def calibrate_command(
    paths: list[Path] = typer.Argument(
        ..., help="Photos and folders you labelled (searched recursively)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Fit and report, but save nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fit / held-out split."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="Decode threads (default: CPU cores)."
    ),
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
) -> None:
    """Learn where your line between Rejected, Pending and Accepted lies.

    Reads the labels you set yourself - digiKam pick labels, else star ratings
    (rejected or 1 star: Rejected, 2-3: Pending, 4-5: Accepted) - scores those
    photos (no file is changed; photos we scored before are not decoded again),
    fits the Rejected and Accepted cut-offs to your labels on one half and shows
    the agreement before and after on the other half. The cut-offs, fitted on
    all of them, are saved as the calibration layer of your settings
    (`iqs-daemon config` shows them; your own config file still wins). The
    next `score` or daemon rescan re-labels your photos without re-scoring them.

    Example: iqs-daemon calibrate ~/Pictures/2025
    """
    settings = settings_from(config, sets, jobs=jobs)
    err = Console(stderr=True)
    missing = [p for p in paths if not p.exists()]
    for path in missing:
        err.print(
            f"iqs-daemon: error: {path}: no such file or folder", markup=False, highlight=False
        )
    if missing:
        raise typer.Exit(ExitCode.USAGE)
    candidates = list(iter_candidates(paths, follow_symlinks=settings.follow_symlinks))
    with Scorer(settings, dry_run=True, rescore=True) as scorer:
        items, to_score = _read_hand_labels(scorer, candidates)
        if not items and not to_score:
            raise IqsError(
                f"none of the {len(candidates)} photos carries a label or rating you set"
            )
        items += _score(scorer, to_score, err, quiet=as_json)
        policy = scorer.policy
    result = calibrate(items, policy, seed=seed)
    target = Paths.from_environment().calibration_file
    if not dry_run:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(calibration_toml(result, policy), encoding="utf-8")
        tmp.replace(target)
    if as_json:
        typer.echo(
            json.dumps(_json(result, policy.reject_below, policy.accept_from, target, dry_run))
        )
    else:
        _print(Console(), result, policy.reject_below, policy.accept_from, target, dry_run)


def _read_hand_labels(
    scorer: Scorer, candidates: list[Candidate]
) -> tuple[list[LabelledScore], list[tuple[Candidate, PickLabel]]]:
    """Photos with a hand label: those whose stored verdict of this model can be reused,
    and those that need scoring."""
    info = scorer.model.info
    reused: list[LabelledScore] = []
    to_score: list[tuple[Candidate, PickLabel]] = []
    for candidate in candidates:
        try:
            stored = scorer.metadata.read_stored(candidate.path, scorer.settings)
        except IqsError:
            continue
        truth = taught_label(stored)
        if truth is None:
            continue
        current = (stored.model_name, stored.model_version) == (info.name, info.version)
        if current and stored.score is not None and stored.exposure is not None:
            reused.append(
                labelled_score(
                    candidate.path,
                    truth,
                    stored.score,
                    stored.diagnostics,
                    stored.exposure,
                    scorer.policy,
                )
            )
        else:
            to_score.append((candidate, truth))
    return reused, to_score


def _score(
    scorer: Scorer, to_score: list[tuple[Candidate, PickLabel]], err: Console, quiet: bool
) -> list[LabelledScore]:
    truths = {c.path: t for c, t in to_score}
    items: list[LabelledScore] = []
    progress = progress_bar("scoring", err, quiet=quiet)
    with progress:
        task = progress.add_task("score", total=len(to_score))
        for outcome in scorer.process([c for c, _ in to_score]):
            progress.advance(task)
            v = outcome.verdict
            if v is None:
                if outcome.error:
                    err.print(f"failed {outcome.error}", markup=False, highlight=False)
                continue
            items.append(
                labelled_score(
                    v.path, truths[v.path], v.score, v.diagnostics, v.exposure, scorer.policy
                )
            )
    return items


def _agreement_json(a: Agreement) -> dict[str, object]:
    return {
        "macro_f1": round(a.macro_f1, 4),
        "accuracy": round(a.accuracy, 4),
        "confusion": [list(row) for row in a.confusion],
    }


def _json(
    r: Calibration, old_reject: float, old_accept: float, target: Path, dry_run: bool
) -> dict[str, object]:
    return {
        "photos": r.photos,
        "held_out": r.held_out,
        "before": {
            "reject_below": old_reject,
            "accept_from": old_accept,
            **_agreement_json(r.before),
        },
        "after": {
            "reject_below": r.reject_below,
            "accept_from": r.accept_from,
            **_agreement_json(r.after),
        },
        "saved_to": None if dry_run else str(target),
    }


def _print(
    console: Console,
    r: Calibration,
    old_reject: float,
    old_accept: float,
    target: Path,
    dry_run: bool,
) -> None:
    console.print(
        f"{r.photos} photos labelled by hand; fitted on half, checked on the other {r.held_out}."
    )
    for title, agreement, reject, accept in (
        ("before", r.before, old_reject, old_accept),
        ("after", r.after, r.reject_below, r.accept_from),
    ):
        table = Table(
            title=f"{title}: Rejected below {reject:g}, Accepted from {accept:g}: "
            f"macro-F1 {agreement.macro_f1:.3f}",
            title_justify="left",
        )
        table.add_column("your label \\ ours")
        for c in CLASSES:
            table.add_column(c.title, justify="right")
        for c, row in zip(CLASSES, agreement.confusion, strict=False):
            table.add_row(c.title, *map(str, row))
        console.print(table)
    if dry_run:
        console.print("Dry run: nothing saved.")
    else:
        console.print(
            f"Saved to {target}; the next `iqs-daemon score` re-labels your photos from "
            "their stored scores, keeping every label you set."
        )
