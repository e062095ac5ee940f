"""How well the model agrees with people, and with the distortion protocol: pure figures.

    read_labels(csv, folder) -> LabelSet           the rated photos, matched to files
    choose_scale(values, "auto") -> LabelScale     0..1, 1..5 or 0..100, mapped to 0..100
    summarise_labelled(scores, picks, labels) -> LabelledReport
    summarise_family(family, runs) -> FamilySummary
    summarise_soft_background(runs) -> HoldSummary

Only numpy and the standard library: ``iqs-daemon eval`` (``cli/eval_cmd.py``) and
``distortion_check.py`` do the scoring, this module the arithmetic, so it is tested by hand.

- SROCC is Spearman's rank correlation with average ranks for ties; PLCC is Pearson's
  correlation of the raw score with the label (no logistic fit first). Both are ``None``
  when undefined (fewer than two photos, or every value the same).
- RMSE is on the 0..100 scale of the score.
- Three classes: the true class is the label's tertile within the evaluated set (below the
  1/3 quantile, below the 2/3 quantile, the rest; a label on a cut goes up), the predicted
  class is the pick label the product gives (Rejected < Pending < Accepted).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import DatasetError

CLASS_NAMES = ("Rejected", "Pending", "Accepted")


# --- labels ------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelRow:
    """One rated photo as the CSV names it; ``line`` is 1-based, for messages."""

    name: str
    value: float
    line: int


@dataclass(frozen=True)
class LabelledPhoto:
    path: Path
    value: float  # as in the CSV, on its own scale
    name: str


@dataclass(frozen=True)
class ScoredPhoto:
    photo: LabelledPhoto
    score: float  # the product's score, 0..100
    pick: int  # the pick label as a class: 0 Rejected, 1 Pending, 2 Accepted


@dataclass(frozen=True)
class LabelSet:
    photos: tuple[LabelledPhoto, ...]
    missing: tuple[LabelRow, ...]  # named in the CSV, not found in the folder


def read_label_rows(csv_path: Path) -> tuple[LabelRow, ...]:
    """``NAME,SCORE`` rows; an optional header, a BOM and extra empty columns are allowed.

    The delimiter is the first of ``,`` ``;`` or a tab found in the first line.
    """
    text = _read_text(csv_path)
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = next((d for d in ",;\t" if d in first_line), ",")
    rows: list[LabelRow] = []
    seen_content = False
    for line_no, cells in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), 1):
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        row = _label_row(cells, line_no)
        if row is None and seen_content:
            shown = delimiter.join(cells).rstrip(delimiter)
            raise DatasetError(
                csv_path, f"line {line_no}: expected NAME{delimiter}SCORE, got {shown!r}"
            )
        seen_content = True
        if row is not None:  # the first line may be a header
            rows.append(row)
    if not rows:
        raise DatasetError(csv_path, "no labelled photos (expected rows of NAME,SCORE)")
    return tuple(rows)


def _read_text(csv_path: Path) -> str:
    try:
        return csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(csv_path, "not a UTF-8 text file") from exc
    except IsADirectoryError as exc:
        raise DatasetError(csv_path, "is a folder, expected a CSV file") from exc
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        raise DatasetError(csv_path, reason.lower()) from exc


def _label_row(cells: list[str], line_no: int) -> LabelRow | None:
    if len(cells) < 2 or not cells[0]:
        return None
    try:
        value = float(cells[1])
    except ValueError:
        return None
    return LabelRow(cells[0], value, line_no) if math.isfinite(value) else None


def match_photos(rows: Sequence[LabelRow], folder: Path, csv_path: Path) -> LabelSet:
    """Find each row's photo: an absolute path, else a path relative to ``folder``,
    compared case-insensitively (BIQ2021 lists ``ss02 (1014).jpg``, stored as ``.JPG``).
    """
    if not folder.is_dir():
        raise DatasetError(folder, "no such folder" if not folder.exists() else "not a folder")
    index: dict[str, Path] | None = None
    found: dict[Path, LabelRow] = {}
    photos: list[LabelledPhoto] = []
    missing: list[LabelRow] = []
    for row in rows:
        relative = PurePosixPath(row.name.replace("\\", "/"))
        path = Path(relative) if relative.is_absolute() else folder / relative
        if not path.is_file() and not relative.is_absolute():
            index = index if index is not None else _case_index(folder)
            path = index.get(str(relative).casefold(), path)
        if not path.is_file():
            missing.append(row)
            continue
        if path in found:
            raise DatasetError(
                csv_path,
                f"line {row.line}: {row.name} is the photo of line {found[path].line} again",
            )
        found[path] = row
        photos.append(LabelledPhoto(path, row.value, row.name))
    return LabelSet(tuple(photos), tuple(missing))


def _case_index(folder: Path) -> dict[str, Path]:
    """Every file under ``folder`` by its case-folded relative POSIX path."""
    index: dict[str, Path] = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath, name)
            index.setdefault(path.relative_to(folder).as_posix().casefold(), path)
    return index


def read_labels(csv_path: Path, folder: Path) -> LabelSet:
    return match_photos(read_label_rows(csv_path), folder, csv_path)


# --- label scales ------------------------------------------------------------------


@dataclass(frozen=True)
class LabelScale:
    """A rating scale, mapped linearly onto the score's 0..100."""

    name: str  # "0-1" | "1-5" | "0-100", as given to --label-scale
    low: float
    high: float

    def to_percent(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        return (np.asarray(values, float) - self.low) * (100.0 / (self.high - self.low))

    def contains(self, values: np.ndarray) -> bool:
        return bool(np.all((values >= self.low) & (values <= self.high)))

    @property
    def description(self) -> str:
        if (self.low, self.high) == (0.0, 100.0):
            return "labels on 0..100, used as they are"
        return f"labels on {self.low:g}..{self.high:g}, mapped to 0..100"


SCALES: dict[str, LabelScale] = {
    "0-1": LabelScale("0-1", 0.0, 1.0),
    "1-5": LabelScale("1-5", 1.0, 5.0),
    "0-100": LabelScale("0-100", 0.0, 100.0),
}


def choose_scale(values: Sequence[float], requested: str = "auto") -> LabelScale:
    """The scale ``requested``, or with "auto" the first of 0..1, 1..5, 0..100 that holds
    every value. Values outside the scale raise ``ValueError`` with the user's message.
    """
    array = np.asarray(values, float)
    span = f"{array.min():g}..{array.max():g}"
    if requested == "auto":
        for scale in SCALES.values():
            if scale.contains(array):
                return scale
        raise ValueError(f"labels span {span}, which fits no known scale; pass --label-scale")
    scale = SCALES[requested]
    if not scale.contains(array):
        raise ValueError(f"labels span {span}, outside --label-scale {requested}")
    return scale


# --- metrics -----------------------------------------------------------------------


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks ([5, 7, 7] -> [1, 2.5, 2.5])."""
    x = np.asarray(values, float)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts = np.r_[True, ordered[1:] != ordered[:-1]] if len(x) else np.zeros(0, bool)
    first = np.flatnonzero(starts)
    counts = np.diff(np.r_[first, len(x)])
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks


def plcc(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Pearson's linear correlation, or ``None`` when undefined."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    if len(x) < 2:
        return None
    dx, dy = x - x.mean(), y - y.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0.0:
        return None
    return max(-1.0, min(1.0, float(dx @ dy) / denominator))


def srocc(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties), or ``None`` when undefined."""
    return plcc(average_ranks(a), average_ranks(b))


def rmse(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    x, y = np.asarray(a, float), np.asarray(b, float)
    return float(np.sqrt(np.mean((x - y) ** 2))) if len(x) else None


def tertile_cuts(labels: Sequence[float] | np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(np.asarray(labels, float), [1 / 3, 2 / 3])
    return float(low), float(high)


def tertile_classes(labels: Sequence[float] | np.ndarray) -> np.ndarray:
    """0, 1 or 2 per label: below the 1/3 quantile, below the 2/3 quantile, the rest."""
    return np.searchsorted(
        np.asarray(tertile_cuts(labels)), np.asarray(labels, float), side="right"
    )


def confusion_matrix(
    true: Sequence[int] | np.ndarray, predicted: Sequence[int] | np.ndarray
) -> np.ndarray:
    """3 x 3 counts: row = true class, column = predicted class."""
    matrix = np.zeros((3, 3), int)
    np.add.at(matrix, (np.asarray(true, int), np.asarray(predicted, int)), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float | None:
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else None


def macro_f1(matrix: np.ndarray) -> float | None:
    """Mean F1 over the classes that occur (as truth or as prediction), as scikit-learn does."""
    tp = np.diag(matrix).astype(float)
    denominators = matrix.sum(axis=0) + matrix.sum(axis=1)  # 2tp + fp + fn
    present = denominators > 0
    if not present.any():
        return None
    return float(np.mean(2 * tp[present] / denominators[present]))


# --- reports -----------------------------------------------------------------------


@dataclass(frozen=True)
class LabelledReport:
    """The figures for a rated set; every score and label on 0..100."""

    photos: int
    srocc: float | None
    plcc: float | None
    rmse: float | None
    accuracy: float | None
    macro_f1: float | None
    confusion: tuple[tuple[int, ...], ...]  # row = MOS tertile, column = pick label
    tertile_cuts: tuple[float, float]


def summarise_labelled(
    scores: Sequence[float], picks: Sequence[int], labels_percent: Sequence[float] | np.ndarray
) -> LabelledReport:
    """``picks``: the predicted class per photo, 0 = Rejected, 1 = Pending, 2 = Accepted."""
    if not len(scores):
        raise ValueError("no scored photos to summarise")
    matrix = confusion_matrix(tertile_classes(labels_percent), picks)
    return LabelledReport(
        photos=len(scores),
        srocc=srocc(scores, labels_percent),
        plcc=plcc(scores, labels_percent),
        rmse=rmse(scores, labels_percent),
        accuracy=accuracy(matrix),
        macro_f1=macro_f1(matrix),
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
        tertile_cuts=tertile_cuts(labels_percent),
    )


@dataclass(frozen=True)
class LevelScore:
    """What the product said about one version of a photo in the protocol."""

    score: float
    rejected: bool
    diagnostic: float | None  # the family's matching diagnostic, if the model has it


@dataclass(frozen=True)
class FamilySummary:
    family: str
    photos: int
    steps: int  # 3 per photo: original -> L1 -> L2 -> L3
    score_fell: float | None  # share of steps where the score went down
    strongest_rejected: float | None  # share of photos whose strongest level is Rejected
    diagnostic_rose: float | None  # share of steps where the matching diagnostic went up
    mean_scores: tuple[float, ...]  # original, then each level


def summarise_family(family: str, runs: Sequence[Sequence[LevelScore]]) -> FamilySummary:
    """``runs``: per photo, the original then each level, mildest first."""
    if not runs:
        return FamilySummary(family, 0, 0, None, None, None, ())
    scores = np.array([[level.score for level in run] for run in runs], float)
    steps = scores.shape[0] * (scores.shape[1] - 1)
    diagnostics = [[level.diagnostic for level in run] for run in runs]
    rose: float | None = None
    if all(d is not None for run in diagnostics for d in run):
        values = np.array(diagnostics, float)
        rose = float(np.mean(np.diff(values, axis=1) > 0))
    return FamilySummary(
        family=family,
        photos=len(runs),
        steps=steps,
        score_fell=float(np.mean(np.diff(scores, axis=1) < 0)),
        strongest_rejected=float(np.mean([run[-1].rejected for run in runs])),
        diagnostic_rose=rose,
        mean_scores=tuple(float(v) for v in scores.mean(axis=0)),
    )


#: A soft-background copy "holds" when it scores at most this much below its original.
HOLD_POINTS = 5.0


@dataclass(frozen=True)
class HeldScore:
    """What the product said about a photo, or its copy with a soft background."""

    score: float
    label: int  # PickLabel value: 1 Rejected, 2 Pending, 3 Accepted
    blur: float | None  # the blur diagnostic, if the model has it
    says_blurred: bool  # "blurred" among the verdict's reasons


@dataclass(frozen=True)
class HoldSummary:
    photos: int
    copies: int
    held: float | None  # share of copies scoring at most HOLD_POINTS below the original
    label_kept: float | None  # share whose pick label is not below the original's
    new_blurred: float | None  # share that say "blurred" where the original did not
    mean_scores: tuple[float, ...]  # original, then each level


def summarise_soft_background(runs: Sequence[Sequence[HeldScore]]) -> HoldSummary:
    """``runs``: per photo, the original then each soft-background copy."""
    if not runs:
        return HoldSummary(0, 0, None, None, None, ())
    scores = np.array([[r.score for r in run] for run in runs], float)
    labels = np.array([[r.label for r in run] for run in runs])
    blurred = np.array([[r.says_blurred for r in run] for run in runs])
    return HoldSummary(
        photos=len(runs),
        copies=scores[:, 1:].size,
        held=float(np.mean(scores[:, 1:] >= scores[:, :1] - HOLD_POINTS)),
        label_kept=float(np.mean(labels[:, 1:] >= labels[:, :1])),
        new_blurred=float(np.mean(blurred[:, 1:] & ~blurred[:, :1])),
        mean_scores=tuple(float(v) for v in scores.mean(axis=0)),
    )
