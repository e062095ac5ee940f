"""Scores -> Verdict: a pure function of the model's outputs, the exposure facts and a policy.

The default policy rejects failures, not the lower third of a dataset:

* **Rejected** needs evidence: a score so low that photographers agree the photo failed
  (``reject_below``), or a named defect clearly present (a diagnostic at or above
  ``defect_threshold``) on a photo the model does not rate good.
* **Accepted** means good: a score from ``accept_from`` up, with no clear defect.
* **Pending** is everything else, with the reasons that are true.

A reason is given only when it is true: a diagnostic at or above ``reason_threshold``,
and for exposure also confirmed by the pixels (``exposure.py``): no "underexposed" on a
photo whose median brightness is that of a sunny beach, no "overexposed" without clipped
highlights or a bright median. "low overall quality" is said only of a photo below
``reject_below`` that no diagnostic explains.

The cut-offs were chosen on data by ``benchmarks/verdict_policy.py`` (its output and the
trade-off are in ``docs/verdicts.md``). ``Policy.identity`` hashes them; it is stored with
every verdict (``Xmp.iqs.Policy`` and the state DB), so a policy change is noticed and the
photo re-labelled from its stored score, without decoding it again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .errors import ConfigError
from .exposure import ExposureFacts
from .records import PickLabel, Scores, Verdict
from .vocabulary import LOW_QUALITY, REASONS

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .config import Settings
    from .model import ModelInfo

#: Bump when the rules below change meaning, so every stored verdict is re-decided.
POLICY_VERSION = 2


#: The default cut-offs on the 0..100 score (a predicted mean opinion score) and on the
#: 0..1 diagnostics; ``benchmarks/verdict_policy.py`` shows how they were chosen. A model
#: may carry its own in its metadata (``iqs.thresholds`` -> ``policy``).
DEFAULT_POLICY: dict[str, float] = {
    "reject_below": 35.0,
    "accept_from": 55.0,
    "defect_threshold": 0.6,
    "reason_threshold": 0.2,
}

# What the pixels must show for an exposure reason to be true (median luma 0..255,
# shares 0..1). Chosen wide: they veto plainly untrue reasons, not borderline ones.
UNDEREXPOSED_MEDIAN_BELOW = 100.0
OVEREXPOSED_MEDIAN_FROM = 165.0
OVEREXPOSED_HIGHLIGHTS_FROM = 0.02


@dataclass(frozen=True)
class Policy:
    reject_below: float  # score < this: Rejected (a failure whatever else is said)
    accept_from: float  # score >= this and no clear defect: Accepted
    defect_threshold: float  # a confirmed diagnostic this strong is a failure: Rejected
    reason_threshold: float  # a confirmed diagnostic this strong is named as a reason
    stars: tuple[float, ...]  # five ascending cut points: stars = how many the score reaches

    @classmethod
    def resolve(cls, model_defaults: dict[str, Any], settings: Settings) -> Policy:
        """The product's defaults < the model's own < the user's settings (calibration,
        file, flags: ``config.load_settings`` layers those)."""
        base = {**DEFAULT_POLICY, **model_defaults.get("policy", {})}

        def pick(name: str) -> float:
            value = getattr(settings, name)
            return float(base[name] if value is None else value)

        policy = cls(
            reject_below=pick("reject_below"),
            accept_from=pick("accept_from"),
            defect_threshold=pick("defect_threshold"),
            reason_threshold=pick("reason_threshold"),
            stars=tuple(float(s) for s in model_defaults["stars"]),
        )
        policy.check()
        return policy

    def check(self) -> None:
        check_cut_offs(
            self.reject_below, self.accept_from, self.reason_threshold, self.defect_threshold
        )

    @property
    def identity(self) -> str:
        """Short hash of everything that decides a label, e.g. ``p2-3f9c01ab``."""
        blob = json.dumps({"version": POLICY_VERSION, **asdict(self)}, sort_keys=True)
        return f"p{POLICY_VERSION}-{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def check_cut_offs(
    reject_below: float, accept_from: float, reason_threshold: float, defect_threshold: float
) -> None:
    """The one place the verdict settings are validated (``config`` and ``score`` alike)."""
    if not 0 <= reject_below <= accept_from <= 100:
        raise ConfigError(
            f"need 0 <= verdict.reject_below ({reject_below:g}) <= verdict.accept_from "
            f"({accept_from:g}) <= 100"
        )
    # A defect threshold above 1 (the diagnostics' top) turns defect rejection off.
    if not 0 < reason_threshold <= defect_threshold:
        raise ConfigError(
            f"need 0 < verdict.reason_threshold ({reason_threshold:g}) <= "
            f"verdict.defect_threshold ({defect_threshold:g})"
        )


def confirmed(name: str, facts: ExposureFacts | None) -> bool:
    """Whether the pixels agree with an exposure diagnostic (others: nothing to check).

    Without facts (a verdict stored by an older version) an exposure reason cannot be
    checked, so it is not given.
    """
    if name == "underexposure":
        return facts is not None and facts.median < UNDEREXPOSED_MEDIAN_BELOW
    if name == "overexposure":
        return facts is not None and (
            facts.median >= OVEREXPOSED_MEDIAN_FROM
            or facts.highlights >= OVEREXPOSED_HIGHLIGHTS_FROM
        )
    return True


def true_defects(
    diagnostics: dict[str, float], facts: ExposureFacts | None, at_least: float
) -> list[tuple[float, str]]:
    """(strength, diagnostic) at or above ``at_least`` that the pixels confirm, strongest first."""
    return sorted(
        (
            (value, name)
            for name, value in diagnostics.items()
            if value >= at_least and confirmed(name, facts)
        ),
        reverse=True,
    )


def label_for(
    score: float, diagnostics: dict[str, float], facts: ExposureFacts | None, p: Policy
) -> PickLabel:
    if score < p.reject_below:
        return PickLabel.REJECTED
    if score >= p.accept_from:
        clear = true_defects(diagnostics, facts, p.defect_threshold)
        return PickLabel.PENDING if clear else PickLabel.ACCEPTED
    if true_defects(diagnostics, facts, p.defect_threshold):
        return PickLabel.REJECTED
    return PickLabel.PENDING


def labels_for_many(score: np.ndarray, clear_defect: np.ndarray, reject_below: float,
                    accept_from: float) -> np.ndarray:
    """``label_for``'s pick label values over many photos at once, given whether each has a
    clear defect: for fitting and sweeping cut-offs (calibration, the policy benchmark)."""
    out = np.full(len(score), PickLabel.PENDING.value)
    out[(score >= accept_from) & ~clear_defect] = PickLabel.ACCEPTED.value
    out[(score < accept_from) & clear_defect] = PickLabel.REJECTED.value
    out[score < reject_below] = PickLabel.REJECTED.value
    return out


def stars_for(score: float, label: PickLabel, p: Policy) -> int:
    """0 for Rejected; else how many star cuts the score reaches, at least 1, and at
    least 3 for an Accepted photo (Accepted means good), at most 3 for a Pending one."""
    if label is PickLabel.REJECTED:
        return 0
    reached = sum(score >= cut for cut in p.stars)
    if label is PickLabel.ACCEPTED:
        return max(3, reached)
    return min(max(1, reached), 3)


def reasons_for(
    score: float,
    diagnostics: dict[str, float],
    facts: ExposureFacts | None,
    label: PickLabel,
    p: Policy,
) -> tuple[str, ...]:
    """Why a photo is not Accepted, strongest first; only true reasons."""
    if label is PickLabel.ACCEPTED:
        return ()
    reasons = tuple(
        REASONS[name] for _, name in true_defects(diagnostics, facts, p.reason_threshold)
    )
    if not reasons and score < p.reject_below:
        return (LOW_QUALITY,)
    return reasons


def decide(
    path: Path,
    scores: Scores,
    info: ModelInfo,
    p: Policy,
    exposure: ExposureFacts | None = None,
    scored_at: str | None = None,
) -> Verdict:
    """The verdict for one photo. ``scored_at``: keep the time of an earlier scoring when
    only the policy changed (re-deciding is not re-scoring).

    The label, stars and reasons follow the score and diagnostics as they are shown and
    stored (rounded), so that ``redecide`` of the stored verdict under the same policy
    gives the same verdict: a score of 59.98 is stored as 60.0, and judged as 60.0.
    """
    score = round(scores.score, 1)
    diagnostics = {k: round(v, 3) for k, v in scores.diagnostics.items()}
    label = label_for(score, diagnostics, exposure, p)
    return Verdict(
        path=path,
        score=score,
        label=label,
        stars=stars_for(score, label, p),
        reasons=reasons_for(score, diagnostics, exposure, label, p),
        diagnostics=diagnostics,
        model_name=info.name,
        model_version=info.version,
        scored_at=scored_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        policy=p.identity,
        exposure=exposure,
    )


class StoredScores(Protocol):
    """A verdict kept earlier: in a photo's XMP (``xmp_tags.StoredMetadata``) or in the
    state (``restore.verdict_from_json``, a ``Verdict``)."""

    @property
    def score(self) -> float | None: ...
    @property
    def diagnostics(self) -> Mapping[str, float]: ...
    @property
    def exposure(self) -> ExposureFacts | None: ...
    @property
    def scored_at(self) -> str | None: ...


def redecide(path: Path, stored: StoredScores, info: ModelInfo, p: Policy) -> Verdict | None:
    """The verdict a kept score gets under policy ``p``, without decoding or inference,
    keeping the time it was scored; None when the score or one of the model's
    diagnostics is missing (kept by an older version: the photo must be scored again)."""
    if stored.score is None or not set(info.diagnostics) <= set(stored.diagnostics):
        return None
    scores = Scores(score=stored.score, diagnostics=dict(stored.diagnostics))
    return decide(path, scores, info, p, exposure=stored.exposure, scored_at=stored.scored_at)
