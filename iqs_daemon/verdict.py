"""Scores -> Verdict: a pure function of the model's outputs and the thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .records import PickLabel, Scores, Verdict

if TYPE_CHECKING:
    from .config import Settings
    from .model import ModelInfo

#: diagnostic output -> the reason shown to the user and written to XMP.
REASONS: dict[str, str] = {
    "blur": "blurred",
    "noise": "noisy",
    "compression": "compressed",
    "underexposure": "underexposed",
    "overexposure": "overexposed",
}
LOW_QUALITY = "low overall quality"


@dataclass(frozen=True)
class Thresholds:
    reject_below: float  # score < this: Rejected
    accept_from: float  # score >= this: Accepted
    stars: tuple[float, ...]  # five ascending cut points: stars = how many the score reaches
    reason_threshold: float  # a diagnostic at or above this is given as a reason

    @classmethod
    def resolve(cls, model_defaults: dict[str, Any], settings: Settings) -> Thresholds:
        """The model's fitted defaults, overridden by the user's settings."""

        def pick(name: str) -> float:
            value = getattr(settings, name)
            return float(model_defaults[name] if value is None else value)

        thresholds = cls(
            reject_below=pick("reject_below"),
            accept_from=pick("accept_from"),
            stars=tuple(float(s) for s in model_defaults["stars"]),
            reason_threshold=pick("reason_threshold"),
        )
        if thresholds.reject_below > thresholds.accept_from:
            from .errors import ConfigError

            raise ConfigError(
                f"verdict.reject_below ({thresholds.reject_below}) is above "
                f"verdict.accept_from ({thresholds.accept_from})"
            )
        return thresholds


def label_for(score: float, t: Thresholds) -> PickLabel:
    if score < t.reject_below:
        return PickLabel.REJECTED
    if score >= t.accept_from:
        return PickLabel.ACCEPTED
    return PickLabel.PENDING


def stars_for(score: float, t: Thresholds) -> int:
    return sum(score >= cut for cut in t.stars)


def reasons_for(diagnostics: dict[str, float], label: PickLabel, t: Thresholds) -> tuple[str, ...]:
    """Why a photo is not Accepted, strongest first."""
    if label is PickLabel.ACCEPTED:
        return ()
    found = sorted(
        ((value, name) for name, value in diagnostics.items() if value >= t.reason_threshold),
        reverse=True,
    )
    reasons = tuple(REASONS.get(name, name) for _, name in found)
    if not reasons and label is PickLabel.REJECTED:
        return (LOW_QUALITY,)
    return reasons


def decide(path: Path, scores: Scores, info: ModelInfo, t: Thresholds) -> Verdict:
    label = label_for(scores.score, t)
    return Verdict(
        path=path,
        score=round(scores.score, 1),
        label=label,
        stars=0 if label is PickLabel.REJECTED else stars_for(scores.score, t),
        reasons=reasons_for(scores.diagnostics, label, t),
        diagnostics={k: round(v, 3) for k, v in scores.diagnostics.items()},
        model_name=info.name,
        model_version=info.version,
        scored_at=datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
    )
