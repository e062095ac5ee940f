"""``iqs-daemon eval``: how well the model agrees with rated photos, or with the protocol.

Both modes score through ``Scorer`` in dry-run mode, so they see the photos exactly as
``iqs-daemon score`` does and change no file. The figures come from ``evaluation.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress

from ..config import Settings
from ..discovery import describe_os_error, iter_candidates
from ..distortion_check import ProtocolPhoto, ProtocolSkip, candidate_for, run_protocol
from ..distortions import PROTOCOL
from ..errors import DatasetError
from ..evaluation import (
    LabelledPhoto,
    LabelScale,
    ScoredPhoto,
    choose_scale,
    read_labels,
    summarise_family,
    summarise_labelled,
    summarise_soft_background,
)
from ..pipeline import Scorer
from ..records import Candidate
from .app import ExitCode, app
from .common import CONFIG_OPTION, SET_OPTION, progress_bar, settings_from
from .eval_output import (
    labelled_json,
    print_labelled,
    print_protocol,
    protocol_json,
    save_labelled,
    save_protocol,
)


class ScaleChoice(str, Enum):
    auto = "auto"
    unit = "0-1"
    five = "1-5"
    percent = "0-100"


@app.command("eval")
def eval_command(
    folder: Path = typer.Argument(..., help="The folder of photos (the labels name files in it)."),
    labels: Path | None = typer.Option(
        None,
        "--labels",
        "-l",
        dir_okay=False,
        help="CSV of NAME,SCORE rows (optional header); NAME is relative to FOLDER.",
    ),
    distortions: bool = typer.Option(
        False, "--distortions", help="Run the distortion protocol on FOLDER instead."
    ),
    label_scale: ScaleChoice = typer.Option(
        ScaleChoice.auto,
        "--label-scale",
        help="Scale of the labels; auto picks 0-1, else 1-5, else 0-100.",
    ),
    min_megapixels: float = typer.Option(
        2.0, "--min-megapixels", min=0.0, help="--distortions: skip smaller photos."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object with every figure."),
    save_scores: Path | None = typer.Option(
        None, "--save-scores", dir_okay=False, help="Also write every photo's score to this CSV."
    ),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda."),
    jobs: int | None = typer.Option(
        None, "--jobs", "-j", help="Decode threads (default: CPU cores)."
    ),
    config: Path | None = CONFIG_OPTION,
    sets: list[str] | None = SET_OPTION,
) -> None:
    """Check the model on your own rated photos, or on the distortion protocol.

    With --labels: scores every photo the CSV names and prints how well the
    scores agree with the ratings (SROCC, PLCC, RMSE on 0..100) and how often
    the pick label matches the rating's tertile (accuracy, macro-F1, confusion
    matrix). Ratings may be on 0-1, 1-5 or 0-100.

    With --distortions: blurs, adds noise, re-compresses, over- and
    under-exposes each photo of at least 2 MP at three levels, and prints per
    family how often the score fell from one level to the next and how often
    the strongest level is Rejected. Then defocuses each photo's background
    around its sharp subject, which must change neither score nor reasons.

    No file is changed. Exit code 3 when some photos were missing or failed.

    Examples:

      iqs-daemon eval ~/Pictures/rated --labels ratings.csv --json

      iqs-daemon eval BIQ2021/Images --labels "BIQ2021/Test (Images and MOS).csv"

      iqs-daemon eval --distortions ~/Pictures/2026-trip
    """
    if (labels is None) == (not distortions):
        raise typer.BadParameter(
            "give either --labels CSV or --distortions", param_hint="'--labels'"
        )
    settings = settings_from(config, sets, device=device, jobs=jobs)
    if distortions:
        code = evaluate_distortions(settings, folder, min_megapixels, as_json, save_scores)
    else:
        assert labels is not None
        code = evaluate_labels(settings, folder, labels, label_scale.value, as_json, save_scores)
    if code != ExitCode.OK:
        raise typer.Exit(code)


# One console for the progress bar and the lines printed while it runs, so they do not
# garble each other. It resolves sys.stderr at each write (CliRunner swaps it).
_err = Console(stderr=True)


def _progress(what: str, as_json: bool) -> Progress:
    return progress_bar(what, _err, quiet=as_json)


def _say(line: str) -> None:
    _err.print(line, markup=False, highlight=False, soft_wrap=True)


# --- rated photos ------------------------------------------------------------------


def evaluate_labels(
    settings: Settings,
    folder: Path,
    labels: Path,
    scale_name: str,
    as_json: bool,
    save_scores: Path | None,
) -> ExitCode:
    labelled = read_labels(labels, folder)
    scale = _scale(
        labels, [p.value for p in labelled.photos] + [r.value for r in labelled.missing], scale_name
    )
    for row in labelled.missing:
        _say(f"missing {row.name} (line {row.line} of {labels.name}): not found in {folder}")
    if not labelled.photos:
        raise DatasetError(labels, f"none of its {len(labelled.missing)} photos is in {folder}")
    with (
        Scorer(settings, dry_run=True, rescore=True) as scorer,
        _progress("scoring", as_json) as bar,
    ):
        task = bar.add_task("score", total=len(labelled.photos))
        scored, failed = _score_labelled(scorer, labelled.photos, lambda: bar.advance(task))
        model = {
            "name": scorer.model.info.model_label,
            "reject_below": scorer.policy.reject_below,
            "accept_from": scorer.policy.accept_from,
        }
    if not scored:
        raise DatasetError(folder, "none of the labelled photos could be scored")
    report = summarise_labelled(
        [s.score for s in scored],
        [s.pick for s in scored],
        scale.to_percent([s.photo.value for s in scored]),
    )
    counts = {"missing": len(labelled.missing), "failed": failed}
    if as_json:
        typer.echo(json.dumps(labelled_json(report, scale, model, counts)))
    else:
        print_labelled(Console(), report, scale, model, counts)
    if save_scores:
        save_labelled(save_scores, scored, scale)
    return ExitCode.SOME_FAILED if failed or labelled.missing else ExitCode.OK


def _scale(labels: Path, values: list[float], requested: str) -> LabelScale:
    try:
        return choose_scale(values, requested)
    except ValueError as exc:
        raise DatasetError(labels, str(exc)) from exc


def _score_labelled(
    scorer: Scorer, photos: Iterable[LabelledPhoto], advance: Callable[[], None]
) -> tuple[list[ScoredPhoto], int]:
    """Scores in input order; a photo that vanished, or whose decode or inference failed,
    is reported and counted.
    """
    by_path: dict[Path, LabelledPhoto] = {}
    candidates: list[Candidate] = []
    failed = 0
    for photo in photos:
        try:
            candidates.append(candidate_for(photo.path))
            by_path[photo.path] = photo
        except OSError as exc:
            failed += 1
            advance()
            _say(f"failed {photo.path}: {describe_os_error(exc)}")
    scored: list[ScoredPhoto] = []
    for outcome in scorer.process(candidates):
        advance()
        # A dry run still plans the XMP write; a verdict is a score even if that failed.
        if outcome.verdict is None:
            failed += 1
            _say(f"failed {outcome.error}")
            continue
        verdict = outcome.verdict
        scored.append(
            ScoredPhoto(by_path[outcome.candidate.path], verdict.score, verdict.label.value - 1)
        )
    return scored, failed


# --- the distortion protocol ---------------------------------------------------------


def evaluate_distortions(
    settings: Settings,
    folder: Path,
    min_megapixels: float,
    as_json: bool,
    save_scores: Path | None,
) -> ExitCode:
    if not folder.exists():
        raise DatasetError(folder, "no such file or folder")
    candidates = list(
        iter_candidates(
            [folder],
            follow_symlinks=settings.follow_symlinks,
            on_skip=lambda path, reason: _say(f"skipped {path}: {reason}"),
        )
    )
    if not candidates:
        raise DatasetError(folder, "no photos found")
    photos: list[ProtocolPhoto] = []
    skips: list[ProtocolSkip] = []
    with (
        Scorer(settings, dry_run=True, rescore=True) as scorer,
        _progress("distorting", as_json) as bar,
    ):
        task = bar.add_task("protocol", total=len(candidates))
        for result in run_protocol(scorer, candidates, min_megapixels=min_megapixels):
            bar.advance(task)
            if isinstance(result, ProtocolSkip):
                skips.append(result)
                _say(f"{'failed' if result.failed else 'skipped'} {result.path}: {result.reason}")
            else:
                photos.append(result)
        model = scorer.model.info.model_label
    if not photos:
        raise DatasetError(folder, f"no photo of at least {min_megapixels:g} MP could be checked")
    summaries = [
        summarise_family(family, [p.levels[family] for p in photos]) for family in PROTOCOL
    ]
    soft = summarise_soft_background([p.soft_background for p in photos])
    if as_json:
        typer.echo(
            json.dumps(protocol_json(summaries, photos, skips, model, min_megapixels, soft))
        )
    else:
        print_protocol(Console(), summaries, model, len(photos), len(skips), soft)
    if save_scores:
        save_protocol(save_scores, photos)
    return ExitCode.SOME_FAILED if any(s.failed for s in skips) else ExitCode.OK
