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
from .errors import IqsError
from .metadata import hand_label
from .records import Burst, Candidate, PickLabel, Scores, Verdict
from .restore import verdict_from_json
from .sharpness import Signature
from .state import SCORED
from .verdict import decide

if TYPE_CHECKING:
    from concurrent.futures import Future
    from pathlib import Path

    from .pipeline import Outcome, Prepared, Scorer
    from .state import StateDB

log = logging.getLogger(__name__)

MAX_FRAMES = 200  # the most earlier frames looked at for one new frame


def _hand_pick(scorer: Scorer, path: Path) -> PickLabel | None:
    if scorer.replace_hand_labels:
        return None
    try:
        by_hand = hand_label(scorer.metadata.read_stored(path, scorer.settings))
    except IqsError:
        return None
    return next((p for p in PickLabel if p.title == by_hand), None)


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


def _earlier(scorer: Scorer, db: StateDB, path: Path, at: float, embedding: bytes,
             signature: bytes | None) -> tuple[bursts.Frame, Verdict, Verdict, Candidate,
                                               str] | None:
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
    if stored is None or stored.model_version != scorer.model.info.version:
        return None
    base = decide(path, Scores(stored.score, dict(stored.diagnostics)), scorer.model.info,
                  scorer.policy, exposure=stored.exposure, scored_at=stored.scored_at)
    frame = bursts.Frame(path, at, np.frombuffer(embedding, np.float16).astype(np.float32),
                         Signature.from_bytes(signature) if signature else None,
                         stored.exposure, stored.score, _hand_pick(scorer, path))
    return frame, base, stored, Candidate(path, st.st_size, st.st_mtime_ns), row.fingerprint


def regroup_and_write(scorer: Scorer, db: StateDB, item: Prepared, verdict: Verdict,
                      scores: Scores) -> list[Future[Outcome]]:
    """Keep the new frame, group it with its folder's recent frames, write it and every
    earlier frame whose verdict changed."""
    from .pipeline import REDECIDED_SOURCE, Prepared, frame_of

    frame = frame_of(item, scores)
    path = frame.path
    signature = item.signature.to_bytes() if item.signature is not None else None
    embedding = frame.embedding.astype(np.float16).tobytes()
    db.put_frame(path, frame.captured_at, embedding, signature)
    frame = bursts.Frame(path, frame.captured_at, frame.embedding, frame.signature,
                         frame.exposure, frame.score, _hand_pick(scorer, path))
    config = scorer.burst_settings
    found = [_earlier(scorer, db, p, t, e, s)
             for p, t, e, s in _neighbours(db, path.parent, frame.captured_at,
                                           config.max_gap_seconds) if p != path]
    earlier = [f for f in found if f is not None]
    frames = [frame, *(f[0] for f in earlier)]
    decided = bursts.decide_bursts(frames, [verdict, *(f[1] for f in earlier)], scorer.policy,
                                   config)
    pending = [scorer._writer.submit(scorer.write_stage, item, decided[0])]
    for (_, _, stored, candidate, fingerprint), new in zip(earlier, decided[1:], strict=True):
        alone = Burst("")
        if (new.label, new.reasons, new.burst or alone) == (
                stored.label, stored.reasons, stored.burst or alone):
            continue
        log.info("re-deciding %s: %s in burst %s", candidate.path, new.label.title,
                 new.burst.id if new.burst else "-")
        again = Prepared(candidate, {}, fingerprint, REDECIDED_SOURCE, new.exposure)
        pending.append(scorer._writer.submit(scorer.write_stage, again, new))
    return pending
