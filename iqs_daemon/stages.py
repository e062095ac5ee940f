"""The stages a photo goes through, each a plain function over frozen records.

    Candidate --read_stored--> Looked --reuse_verdict--> Outcome (unchanged)
                                                    or  Decided (re-decided, to write)
              --decode_photo--> Prepared --score_batch--> Scored --write--> Outcome
                            or  Outcome (the daemon's: touched, the same pixels)

``pipeline.build_stages`` puts them in a list, and ``runner.py`` runs it. Each stage
reads the ``Pass`` it is given (the model, the policy, the flags of this pass) and
changes nothing in it. A photo's XMP is read once, by ``read_stored``; what was read
travels with the photo to the writer, which reuses it while the file is unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from . import bursts, decoding
from .burst_stage import Framed
from .errors import InputError, IqsError
from .exposure import ExposureFacts, measure
from .metadata import hand_label
from .records import Burst, Candidate, Decoded, PickLabel, Scores, Verdict, WriteResult
from .sharpness import Signature, signature_of
from .verdict import decide, redecide

if TYPE_CHECKING:
    from .config import Settings
    from .metadata import MetadataWriter
    from .model import QualityModel
    from .verdict import Policy
    from .xmp_tags import StoredMetadata

log = logging.getLogger(__name__)

#: ``Decided.source`` of a photo re-decided from its stored verdict (not decoded).
REDECIDED_SOURCE = "stored verdict"


class Status(str, Enum):
    """What happened to a photo; the values are those of ``--json`` and the reports."""

    SCORED = "scored"
    REDECIDED = "redecided"  # re-labelled from its stored scores under a new policy
    UNCHANGED = "unchanged"  # it carries a verdict of this model and policy
    # The daemon's: the file changed since its verdict, its pixels did not (a metadata edit).
    TOUCHED = "touched"
    FAILED = "failed"

    # Printed, and found in a count, by its value, as a StrEnum (Python 3.11) would be.
    __str__ = str.__str__
    __hash__ = str.__hash__


@dataclass(frozen=True)
class Outcome:
    """What happened to one photo: the last record of every pass."""

    candidate: Candidate
    status: Status
    verdict: Verdict | None = None
    write: WriteResult | None = None
    error: IqsError | None = None
    fingerprint: str = ""
    decode_source: str = ""
    stored: StoredMetadata | None = None  # unchanged: what it carries, as read this pass

    @property
    def ok(self) -> bool:
        return self.status != Status.FAILED


@dataclass(frozen=True)
class ScoredBefore:
    """What the daemon's state keeps of a photo it scored whose file changed since (its
    size or mtime): the pass decodes it and compares its pixels (``decode_photo``)."""

    fingerprint: str  # of the pixels scored
    current: bool  # that verdict is of this pass's model and policy
    restorable: bool  # the state keeps the verdict, to write back if the XMP lost it


@dataclass(frozen=True)
class Pass:
    """What the stages of one pass read: loaded once, never changed by a stage."""

    settings: Settings
    model: QualityModel
    policy: Policy
    metadata: MetadataWriter
    burst_settings: bursts.BurstSettings
    dry_run: bool = False
    rescore: bool = False
    replace_hand_labels: bool = False
    group_bursts: bool = False  # one-shot: hold a folder's frames and decide its bursts
    # Scored photos get what burst grouping needs: capture time, signature, hand label.
    framing: bool = False
    # The daemon's photos whose file changed since their verdict: decoded, never reused
    # unseen; the same pixels under a current verdict end as TOUCHED, other pixels are scored.
    changed_since: Mapping[Path, ScoredBefore] = field(default_factory=dict)

    @property
    def whole_view(self) -> str:
        return next(s.name for s in self.model.info.inputs if s.view == "whole")


# --- reading what is there ------------------------------------------------------------


@dataclass(frozen=True)
class Looked:
    """A photo and what its XMP carries, read once this pass (None: nothing readable)."""

    candidate: Candidate
    stored: StoredMetadata | None
    captured_at: float | None = None  # known already when bursts ordered the folder
    alone: bool = False  # no other photo taken near it: it cannot be in a burst


def read_stored(p: Pass, item: Candidate | Framed) -> Looked:
    candidate = item if isinstance(item, Candidate) else item.candidate
    try:
        stored: StoredMetadata | None = p.metadata.read_stored(candidate.path, p.settings)
    except IqsError:
        stored = None  # unreadable: the photo is simply scored, and the writer says why
    if isinstance(item, Framed):
        return Looked(candidate, stored, item.captured_at, item.alone)
    return Looked(candidate, stored)


@dataclass(frozen=True)
class Decided:
    """A verdict ready to write, and what the writer needs beside it."""

    candidate: Candidate
    verdict: Verdict
    fingerprint: str
    source: str  # how the pixels were obtained, or REDECIDED_SOURCE
    status: Status
    stored: StoredMetadata | None = None  # the XMP as read this pass, for the writer


def reuse_verdict(p: Pass, looked: Looked) -> Looked | Outcome | Decided:
    """A photo carrying a verdict of the current model is not decoded: with the same
    policy it is unchanged; with another it is re-decided from its stored scores."""
    stored = looked.stored
    info = p.model.info
    if (stored is None or looked.candidate.path in p.changed_since
            or (stored.model_name, stored.model_version) != (info.name, info.version)):
        return looked
    # Replacing hand labels needs no new scores: the stored ones are re-applied.
    if stored.policy == p.policy.identity and not p.replace_hand_labels:
        return Outcome(looked.candidate, Status.UNCHANGED, stored=stored)
    verdict = redecide(looked.candidate.path, stored, info, p.policy)
    if verdict is None or not stored.fingerprint or stored.exposure is None:
        return looked  # kept by an older version: scored again
    burst = stored_burst(stored) if p.settings.group_bursts else None
    if burst is not None:
        verdict = bursts.apply_burst(verdict, burst, p.policy, p.burst_settings.others_label)
    return Decided(looked.candidate, verdict, stored.fingerprint, REDECIDED_SOURCE,
                   Status.REDECIDED, stored)


def stored_burst(stored: StoredMetadata) -> Burst | None:
    """The burst a stored verdict was decided in (``Xmp.iqs.Group*``), if any."""
    if not stored.group_id or (stored.group_size or 0) < 2:
        return None
    named = [r for r in stored.reasons if r.startswith(bursts.WEAKER_DUPLICATE)]
    pick_name = named[0][len(bursts.WEAKER_DUPLICATE):] if named else stored.path.name
    return Burst(stored.group_id, stored.group_size or 0, bool(stored.group_pick), pick_name)


# --- decoding and scoring ---------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Prepared:
    """A decoded photo: the model's views, the pixel fingerprint, the exposure facts."""

    candidate: Candidate
    views: dict[str, np.ndarray]
    fingerprint: str
    source: str
    exposure: ExposureFacts | None = None
    stored: StoredMetadata | None = None
    # With ``Pass.framing`` only:
    signature: Signature | None = None
    captured_at: float | None = None
    hand_label: PickLabel | None = None  # a pick label the user set, from the stored read


def decode_photo(p: Pass, looked: Looked) -> Prepared | Outcome:
    candidate = looked.candidate
    decoded = decoding.decode(candidate.path, min_short_side=p.model.info.min_short_side,
                              max_pixels=p.settings.max_pixels)
    if (before := p.changed_since.get(candidate.path)) is not None:
        touched = _same_pixels(before, looked, decoded)
        if touched is not None:
            return touched
    views = p.model.prepare(decoded.rgb)
    exposure = measure(views[p.whole_view])
    if not p.framing:
        return Prepared(candidate, views, decoded.fingerprint, decoded.source, exposure,
                        looked.stored)
    captured = looked.captured_at
    if captured is None:
        captured = bursts.capture_time(candidate.path, candidate.mtime_ns)
    return Prepared(candidate, views, decoded.fingerprint, decoded.source, exposure,
                    looked.stored, signature=None if looked.alone else signature_of(decoded.rgb),
                    captured_at=captured, hand_label=_hand_pick(p, looked.stored))


def _same_pixels(before: ScoredBefore, looked: Looked,
                 decoded: Decoded) -> Outcome | None:
    """A TOUCHED outcome when the daemon's photo kept the pixels of its current verdict
    (another program edited its metadata), else None: it is scored."""
    if not before.current or not decoding.same_pixels(before.fingerprint, decoded):
        return None
    stripped = looked.stored is not None and looked.stored.model_name is None
    if stripped and not before.restorable:
        return None  # the verdict is in neither the XMP nor the state: scored again
    return Outcome(looked.candidate, Status.TOUCHED, fingerprint=before.fingerprint,
                   decode_source=decoded.source, stored=looked.stored)


def _hand_pick(p: Pass, stored: StoredMetadata | None) -> PickLabel | None:
    if stored is None or p.replace_hand_labels:
        return None
    by_hand = hand_label(stored)
    return next((pick for pick in PickLabel if pick.title == by_hand), None)


@dataclass(frozen=True, kw_only=True)
class Scored(Decided):
    """A photo the model scored now: its verdict, and what burst grouping needs."""

    scores: Scores
    frame: bursts.Frame | None = field(default=None, compare=False)  # with Pass.framing

    def as_decided(self, verdict: Verdict) -> Decided:
        """The record to write, with ``verdict`` (its burst's) instead of its own."""
        return Decided(self.candidate, verdict, self.fingerprint, self.source, self.status,
                       self.stored)


def score_batch(p: Pass, batch: list[Prepared]) -> list[Scored]:
    """The model's scores and the policy's verdict for each photo of a batch; the views
    are let go of here, so a queued write holds only the small record."""
    started = time.perf_counter()
    scores = p.model.run([item.views for item in batch])
    log.debug("inference: %d photos in %.0f ms", len(batch),
              1e3 * (time.perf_counter() - started))
    info = p.model.info
    return [Scored(item.candidate, decide(item.candidate.path, s, info, p.policy,
                                          exposure=item.exposure),
                   item.fingerprint, item.source, Status.SCORED, item.stored, scores=s,
                   frame=frame_of(item, s) if item.captured_at is not None else None)
            for item, s in zip(batch, scores, strict=True)]


def frame_of(item: Prepared, scores: Scores) -> bursts.Frame:
    """The small record grouping needs of a scored photo."""
    captured = item.captured_at
    return bursts.Frame(
        path=item.candidate.path,
        captured_at=captured if captured is not None else item.candidate.mtime_ns / 1e9,
        embedding=np.asarray(scores.embedding, np.float32), signature=item.signature,
        exposure=item.exposure, score=scores.score, hand_label=item.hand_label,
    )


# --- writing ---------------------------------------------------------------------------


def write(p: Pass, decided: Decided) -> Outcome:
    candidate = decided.candidate
    try:
        result = p.metadata.write_verdict(
            candidate.path, decided.verdict, decided.fingerprint, p.settings,
            force=p.replace_hand_labels, dry_run=p.dry_run,
            expected=(candidate.size_bytes, candidate.mtime_ns), stored=decided.stored,
        )
    except IqsError as exc:
        return Outcome(candidate, Status.FAILED, verdict=decided.verdict, error=exc,
                       fingerprint=decided.fingerprint, decode_source=decided.source)
    return Outcome(candidate, decided.status, verdict=decided.verdict, write=result,
                   fingerprint=decided.fingerprint, decode_source=decided.source)


# --- one photo's failure ------------------------------------------------------------------

In = TypeVar("In", Candidate, Framed, Looked)
Out = TypeVar("Out")


def failing_alone(stage: Callable[[In], Out]) -> Callable[[In], Out | Outcome]:
    """``stage``, with a failure costing only that photo: it becomes a failed Outcome."""

    def run(record: In) -> Out | Outcome:
        try:
            return stage(record)
        except IqsError as exc:
            return Outcome(_candidate_of(record), Status.FAILED, error=exc)
        except Exception as exc:  # a library bug tripped by one file must not end the run
            candidate = _candidate_of(record)
            log.debug("unexpected error on %s", candidate.path, exc_info=True)
            error = InputError(candidate.path, f"unexpected error: {exc}")
            return Outcome(candidate, Status.FAILED, error=error)

    return run


def _candidate_of(record: Candidate | Framed | Looked) -> Candidate:
    return record if isinstance(record, Candidate) else record.candidate
