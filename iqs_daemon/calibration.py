"""Learn the user's cut-offs from the labels they set themselves (``iqs-daemon calibrate``).

A photographer's own picks say where their line between a failure, a plain photo and a
good one lies. From photos they labelled by hand (and that we scored), this fits
``reject_below`` and ``accept_from`` to their labels by macro-F1, measures the agreement
before and after on a held-out part the fit never saw, and writes the result as the
calibration settings layer (``config.py``: defaults < calibration < the user's file).

Which hand labels count (documented in README.md, "Teach it your taste"):

* a digiKam pick label (Rejected / Pending / Accepted) that we did not write;
* else a star rating we did not write: rejected (-1) or 1 star -> Rejected, 2-3 stars ->
  Pending, 4-5 stars -> Accepted; 0 means unrated and is ignored.

Only the two score cut-offs are fitted; the defect and reason thresholds keep their
meaning. A richer model (score, diagnostics and embedding) was not added: it must first
beat the two cut-offs on held-out labels, and the benchmark (``benchmarks/calibration.py``)
shows the cut-offs alone reach the target.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .exposure import ExposureFacts
from .records import PickLabel
from .verdict import Policy, labels_for_many, true_defects
from .xmp_tags import StoredMetadata

CLASSES = (PickLabel.REJECTED, PickLabel.PENDING, PickLabel.ACCEPTED)
MIN_PER_CLASS = 3  # fewer hand labels of one kind than this cannot place its cut-off


@dataclass(frozen=True)
class LabelledScore:
    """One photo the user labelled, with what the model said about it."""

    path: Path
    truth: PickLabel
    score: float
    clear_defect: bool  # a confirmed diagnostic at the policy's defect threshold


@dataclass(frozen=True)
class Agreement:
    macro_f1: float
    accuracy: float
    confusion: tuple[tuple[int, int, int], ...]  # rows: the user's label; columns: ours


@dataclass(frozen=True)
class Calibration:
    reject_below: float
    accept_from: float
    photos: int  # labelled photos used
    held_out: int  # of which the held-out part
    before: Agreement  # the current policy on the held-out part
    after: Agreement  # the fitted cut-offs on the held-out part (fitted without it)


def taught_label(stored: StoredMetadata) -> PickLabel | None:
    """What the user's own pick label or rating says this photo is, or None when they set
    neither (or what is there is ours). Unlike ``metadata.hand_label``, which names a kept
    hand label for display, a rating alone counts here: 4-5 stars teach Accepted."""
    pick = stored.pick_label
    if pick is not None and pick is not PickLabel.NONE and pick.value != stored.written_pick_label:
        return pick
    rating = stored.rating
    if rating is None or rating == 0 or rating == stored.written_rating:
        return None
    if rating < 0 or rating == 1:
        return PickLabel.REJECTED
    return PickLabel.ACCEPTED if rating >= 4 else PickLabel.PENDING


def labelled_score(
    path: Path,
    truth: PickLabel,
    score: float,
    diagnostics: dict[str, float],
    exposure: ExposureFacts | None,
    policy: Policy,
) -> LabelledScore:
    clear = bool(true_defects(diagnostics, exposure, policy.defect_threshold))
    return LabelledScore(path, truth, score, clear)


def labels_under(items: list[LabelledScore], reject_below: float, accept_from: float) -> np.ndarray:
    """The pick label values ``verdict.label_for`` gives ``items`` under these cut-offs."""
    score = np.array([i.score for i in items])
    clear = np.array([i.clear_defect for i in items], bool)
    return labels_for_many(score, clear, reject_below, accept_from)


def agreement(truth: np.ndarray, pred: np.ndarray) -> Agreement:
    f1s = []
    confusion = []
    for c in CLASSES:
        row = tuple(int(np.sum((truth == c.value) & (pred == d.value))) for d in CLASSES)
        confusion.append(row)
        tp = np.sum((truth == c.value) & (pred == c.value))
        denom = np.sum(truth == c.value) + np.sum(pred == c.value)
        f1s.append(2 * tp / denom if denom else 0.0)
    accuracy = float(np.mean(truth == pred)) if len(truth) else 0.0
    return Agreement(float(np.mean(f1s)), accuracy, tuple(confusion))  # type: ignore[arg-type]


def fit_cut_offs(items: list[LabelledScore]) -> tuple[float, float]:
    """(reject_below, accept_from) with the best macro-F1 on ``items``; ties go to the
    lower reject_below (reject less) and the higher accept_from (accept less)."""
    truth = np.array([i.truth.value for i in items])
    scores = np.array([i.score for i in items])
    grid = np.unique(np.round(np.concatenate([scores, [0.0, 100.0]]), 1))
    if len(grid) > 120:
        grid = np.unique(np.round(np.quantile(scores, np.linspace(0, 1, 121)), 1))
    grid = np.unique(np.concatenate([grid, [0.0, 100.0 + 1e-6]]))
    best: tuple[float, float, float] | None = None
    for i, r in enumerate(grid):
        for a in grid[i:]:
            f1 = agreement(truth, labels_under(items, r, a)).macro_f1
            key = (f1, -r, a)
            if best is None or key > (best[0], -best[1], best[2]):
                best = (f1, float(r), float(a))
    assert best is not None
    return round(best[1], 1), round(min(best[2], 100.0), 1)


def split_halves(
    items: list[LabelledScore], seed: int = 0
) -> tuple[list[LabelledScore], list[LabelledScore]]:
    """(fit, held out): every class split in two, at random but reproducibly."""
    fit: list[LabelledScore] = []
    held: list[LabelledScore] = []
    rng = random.Random(seed)
    for c in CLASSES:
        group = sorted((i for i in items if i.truth is c), key=lambda i: str(i.path))
        rng.shuffle(group)
        half = len(group) // 2
        fit += group[:half]
        held += group[half:]
    return fit, held


def calibrate(items: list[LabelledScore], current: Policy, seed: int = 0) -> Calibration:
    """Fit on one half, measure on the other; the stored cut-offs are then fitted on all."""
    from .errors import ConfigError

    counts = {c: sum(i.truth is c for i in items) for c in CLASSES}
    short = [
        f"{c.title} ({counts[c]})"
        for c in (PickLabel.REJECTED, PickLabel.ACCEPTED)
        if counts[c] < MIN_PER_CLASS
    ]
    if short:
        raise ConfigError(
            f"too few photos labelled by hand to calibrate: {', '.join(short)}; "
            f"label at least {MIN_PER_CLASS} Rejected and {MIN_PER_CLASS} Accepted"
        )
    fit, held = split_halves(items, seed)
    r, a = fit_cut_offs(fit)
    truth = np.array([i.truth.value for i in held])
    before = agreement(truth, labels_under(held, current.reject_below, current.accept_from))
    after = agreement(truth, labels_under(held, r, a))
    r_all, a_all = fit_cut_offs(items)
    return Calibration(r_all, a_all, len(items), len(held), before, after)


def calibration_toml(result: Calibration, policy: Policy) -> str:
    """The calibration settings layer (read by ``config.load_settings``)."""
    fitted = replace(policy, reject_below=result.reject_below, accept_from=result.accept_from)
    fitted.check()
    when = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return (
        f"# Written by `iqs-daemon calibrate` on {when} from {result.photos} photos you\n"
        f"# labelled. Held-out macro-F1: {result.before.macro_f1:.3f} before, "
        f"{result.after.macro_f1:.3f} after.\n"
        "# Your own config.toml and --set override these; delete this file to undo.\n"
        "[verdict]\n"
        f"reject_below = {result.reject_below}\n"
        f"accept_from = {result.accept_from}\n"
    )
