"""Bursts in the daemon: frames arrive one at a time, and a burst's best may come last.

Each scored frame's small record (capture time, embedding, sharpness signature) is kept in
the state DB (``burst_frames``), so a later frame, after a restart or a later import into
the same folder, is grouped with the earlier ones. When a frame arrives, the frames of its
folder taken within ``max_gap_seconds`` of it (and of those, chained) are grouped again
(``bursts.decide_bursts``) from their stored scores: the new frame is written with its
place in the burst, and every earlier frame whose label, reasons or place changed is
re-decided and written again without decoding (status ``redecided``). The writer keeps a
label set by hand, and a frame the user accepted is the group's pick.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from . import bursts
from .errors import IqsError, StateError
from .metadata import hand_label
from .records import Burst, Candidate, PickLabel, Verdict
from .restore import verdict_from_json
from .sharpness import Signature
from .stages import REDECIDED_SOURCE, Decided, Status
from .state import SCORED
from .verdict import redecide

if TYPE_CHECKING:
    from pathlib import Path

    from .stages import Pass, Scored
    from .state import StateDB

log = logging.getLogger(__name__)

MAX_FRAMES = 200  # the most earlier frames looked at for one new frame


def _hand_pick(p: Pass, path: Path) -> PickLabel | None:
    if p.replace_hand_labels:
        return None
    try:
        by_hand = hand_label(p.metadata.read_stored(path, p.settings))
    except IqsError:
        return None
    return next((pick for pick in PickLabel if pick.title == by_hand), None)


class HandPicks:
    """The pick labels users set on earlier frames, read again only when a file that holds
    them (the photo or a sidecar) changed: each new frame looks at up to ``MAX_FRAMES``
    neighbours, and reading every one's XMP made a 1,000-photo burst quadratic."""

    LIMIT = 4096  # photos remembered; then it starts afresh

    def __init__(self) -> None:
        self._known: dict[Path, tuple[object, PickLabel | None]] = {}

    def of(self, p: Pass, path: Path) -> PickLabel | None:
        if p.replace_hand_labels:
            return None
        files = p.metadata.read_identity(path, p.settings)
        known = self._known.get(path)
        if known is not None and known[0] == files:
            return known[1]
        pick = _hand_pick(p, path)
        if len(self._known) >= self.LIMIT:
            self._known.clear()
        self._known[path] = (files, pick)
        return pick


def _neighbours(db: StateDB, folder: Path, at: float, gap: float
                ) -> list[tuple[Path, float, bytes, bytes | None]]:
    """The folder's frames chained to ``at`` by gaps of at most ``gap`` seconds."""
    low, high = at - gap, at + gap
    while True:
        rows = db.frames_between(folder, low, high)[:MAX_FRAMES]
        times = [t for _, t, _, _ in rows] or [at]
        wider = (min(min(times) - gap, low), max(max(times) + gap, high))
        if wider == (low, high) or len(rows) >= MAX_FRAMES:
            return rows
        low, high = wider


def _earlier(p: Pass, db: StateDB, hand_picks: HandPicks, path: Path, at: float,
             embedding: bytes, signature: bytes | None
             ) -> tuple[bursts.Frame, Verdict, Verdict, Candidate, str] | None:
    """An earlier frame: its Frame, policy verdict, stored verdict, candidate and
    fingerprint; None when it is gone or carries no verdict of ours in the state."""
    row = db.get(path)
    if row is None or row.status != SCORED or not row.fingerprint:
        return None
    stored = verdict_from_json(path, row.verdict)
    try:
        st = path.stat()
    except OSError:
        return None
    if stored is None or stored.model_version != p.model.info.version:
        return None
    base = redecide(path, stored, p.model.info, p.policy)
    if base is None:
        return None
    frame = bursts.Frame(path, at, np.frombuffer(embedding, np.float16).astype(np.float32),
                         Signature.from_bytes(signature) if signature else None,
                         stored.exposure, stored.score, hand_picks.of(p, path))
    return frame, base, stored, Candidate(path, st.st_size, st.st_mtime_ns), row.fingerprint


class RegroupWithEarlier:
    """The daemon's burst stage (a ``runner.Hold`` that holds nothing): each scored frame
    is kept in the state and grouped with its folder's recent frames; it goes to the
    writer with its place in the burst, followed by every earlier frame whose verdict
    changed. Grouping is a bonus: when it fails, the frame's own verdict goes out."""

    def __init__(self, p: Pass, db: StateDB, hand_picks: HandPicks | None = None):
        self.p = p
        self.db = db
        self.hand_picks = hand_picks or HandPicks()

    def push(self, scored: Scored) -> list[Decided]:
        try:
            return self._regroup(scored)
        except (IqsError, StateError) as exc:
            log.warning("%s: not grouped: %s", scored.candidate.path, exc)
            return [scored]

    def flush(self) -> list[Decided]:
        return []

    def _regroup(self, scored: Scored) -> list[Decided]:
        p, db = self.p, self.db
        frame = scored.frame
        assert frame is not None, "RegroupWithEarlier needs Pass.framing"
        path = frame.path
        signature = frame.signature.to_bytes() if frame.signature is not None else None
        db.put_frame(path, frame.captured_at, frame.embedding.astype(np.float16).tobytes(),
                     signature)
        config = p.burst_settings
        found = [_earlier(p, db, self.hand_picks, other, t, e, s)
                 for other, t, e, s in _neighbours(db, path.parent, frame.captured_at,
                                                   config.max_gap_seconds) if other != path]
        earlier = [f for f in found if f is not None]
        frames = [frame, *(f[0] for f in earlier)]
        decided = bursts.decide_bursts(frames, [scored.verdict, *(f[1] for f in earlier)],
                                       p.policy, config)
        out: list[Decided] = [scored.as_decided(decided[0])]
        for (_, _, stored, candidate, fingerprint), new in zip(earlier, decided[1:],
                                                               strict=True):
            alone = Burst("")
            if (new.label, new.reasons, new.burst or alone) == (
                    stored.label, stored.reasons, stored.burst or alone):
                continue
            log.info("re-deciding %s: %s in burst %s", candidate.path, new.label.title,
                     new.burst.id if new.burst else "-")
            out.append(Decided(candidate, new, fingerprint, REDECIDED_SOURCE,
                               Status.REDECIDED))
        return out
