"""What ``iqs-daemon eval`` prints: rich tables for people, one JSON object, a scores CSV."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..distortion_check import ProtocolPhoto, ProtocolSkip
from ..distortions import DIAGNOSTIC_OF_FAMILY, PROTOCOL, SOFT_BACKGROUND
from ..evaluation import (
    CLASS_NAMES,
    HOLD_POINTS,
    FamilySummary,
    HoldSummary,
    LabelledReport,
    LabelScale,
    ScoredPhoto,
)
from ..records import PickLabel


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def labelled_json(
    report: LabelledReport, scale: LabelScale, model: dict[str, Any], counts: dict[str, int]
) -> dict[str, Any]:
    figures = asdict(report)
    confusion = figures.pop("confusion")
    return {
        **figures,
        **counts,
        "model": model,
        "label_scale": {"name": scale.name, "description": scale.description},
        "confusion": {
            "rows": "label tertile",
            "columns": "pick label",
            "classes": list(CLASS_NAMES),
            "matrix": confusion,
        },
    }


def print_labelled(
    console: Console,
    report: LabelledReport,
    scale: LabelScale,
    model: dict[str, Any],
    counts: dict[str, int],
) -> None:
    console.print(f"{report.photos} rated photos, model {model['name']}; {scale.description}")
    figures = Table(title="Agreement with the ratings", title_justify="left")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    for name, value in (
        ("SROCC", report.srocc),
        ("PLCC", report.plcc),
        ("RMSE (0..100)", report.rmse),
        ("3-class accuracy", report.accuracy),
        ("3-class macro-F1", report.macro_f1),
    ):
        figures.add_row(name, _fmt(value, 2 if name.startswith("RMSE") else 3))
    console.print(figures)
    low, high = report.tertile_cuts
    matrix = Table(title="Rating tertile (rows) vs pick label (columns)", title_justify="left")
    matrix.add_column("rating tertile")
    for name in CLASS_NAMES:
        matrix.add_column(name, justify="right")
    for name, row in zip(("low", "middle", "high"), report.confusion, strict=False):
        matrix.add_row(name, *(str(v) for v in row))
    console.print(matrix)
    console.print(
        f"Tertile cuts {low:.1f} and {high:.1f} of 100; Rejected below "
        f"{model['reject_below']:g}, Accepted from {model['accept_from']:g}."
    )
    if counts["missing"] or counts["failed"]:
        console.print(
            f"Not evaluated: {counts['missing']} missing, {counts['failed']} failed (listed above)."
        )


def save_labelled(path: Path, scored: list[ScoredPhoto], scale: LabelScale) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "label_0_100", "score", "pick_label"])
        for s in scored:
            percent = float(scale.to_percent([s.photo.value])[0])
            out.writerow(
                [str(s.photo.path), s.photo.value, f"{percent:.2f}", s.score, CLASS_NAMES[s.pick]]
            )


def protocol_json(
    summaries: list[FamilySummary],
    photos: list[ProtocolPhoto],
    skips: list[ProtocolSkip],
    model: str,
    min_megapixels: float,
    soft: HoldSummary,
) -> dict[str, Any]:
    families = {}
    for s in summaries:
        figures = asdict(s)
        del figures["family"]
        families[s.family] = {
            "levels": list(PROTOCOL[s.family]),
            "diagnostic": DIAGNOSTIC_OF_FAMILY[s.family],
            **figures,
        }
    return {
        "model": model,
        "photos": len(photos),
        "min_megapixels": min_megapixels,
        "families": families,
        "soft_background": {
            "levels": list(SOFT_BACKGROUND),
            "hold_points": HOLD_POINTS,
            **asdict(soft),
        },
        "skipped": [{"path": str(s.path), "reason": s.reason} for s in skips if not s.failed],
        "failed": [{"path": str(s.path), "reason": s.reason} for s in skips if s.failed],
    }


def print_protocol(
    console: Console,
    summaries: list[FamilySummary],
    model: str,
    photos: int,
    skipped: int,
    soft: HoldSummary,
) -> None:
    table = Table(
        title=f"Distortion protocol: {photos} photos ({3 * photos} steps per family), "
        f"model {model}",
        title_justify="left",
    )
    table.add_column("family")
    for name in ("fell", "Rejected", "diag. rose", "orig.", "L1", "L2", "L3"):
        table.add_column(name, justify="right")
    for s in summaries:
        table.add_row(
            s.family,
            _percent(s.score_fell),
            _percent(s.strongest_rejected),
            _percent(s.diagnostic_rose),
            *(f"{v:.1f}" for v in s.mean_scores),
        )
    console.print(table)
    console.print(
        "fell: steps (original -> L1 -> L2 -> L3) where the score fell; Rejected: strongest "
        "levels labelled Rejected; diag. rose: steps where the matching diagnostic rose; then "
        "the mean score per level. Levels: "
        + "; ".join(f"{f} {'/'.join(f'{v:g}' for v in levels)}" for f, levels in PROTOCOL.items())
        + ". A good model shows 100% in all three."
    )
    table = Table(
        title=f"Soft background, which must cost nothing: {soft.copies} copies",
        title_justify="left",
    )
    for name in ("held", "label kept", "new \"blurred\"", "orig.", "L1", "L2"):
        table.add_column(name, justify="right")
    table.add_row(
        _percent(soft.held),
        _percent(soft.label_kept),
        _percent(soft.new_blurred),
        *(f"{v:.1f}" for v in soft.mean_scores),
    )
    console.print(table)
    console.print(
        "Each photo with its background defocused around the sharp subject (disk radius "
        + " / ".join(f"{v:g}" for v in SOFT_BACKGROUND)
        + f" of the short side). held: copies scoring at most {HOLD_POINTS:g} below the "
        "original; label kept: pick label not lower; new \"blurred\": copies given a blur "
        "reason the original was not. A good model shows 100%, 100% and 0%."
    )
    if skipped:
        console.print(f"Not checked: {skipped} photo(s), listed above.")


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"


def save_protocol(path: Path, photos: list[ProtocolPhoto]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "family", "level", "score", "rejected", "diagnostic"])
        for photo in photos:
            for family, levels in photo.levels.items():
                for level, result in zip(("original", *PROTOCOL[family]), levels, strict=False):
                    out.writerow(
                        [
                            str(photo.path),
                            family,
                            level,
                            result.score,
                            result.rejected,
                            result.diagnostic,
                        ]
                    )
            names = ("original", *SOFT_BACKGROUND)
            for name, held in zip(names, photo.soft_background, strict=False):
                rejected = held.label == PickLabel.REJECTED
                row = [str(photo.path), "soft_background", name, held.score, rejected, held.blur]
                out.writerow(row)
