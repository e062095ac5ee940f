"""Bursts and near-duplicates: group the frames of a folder and pick the best of each group.

Pure functions over frozen ``Frame`` records (no file access but ``capture_time``):

* ``group_frames``: frames form a group when taken close in time (``max_gap_seconds``
  from the group's latest frame) and alike (embedding cosine to the group's mean at
  least ``min_similarity``). Several groups may be open at once, so a different shot
  taken between two frames of a burst does not split it.
* ``rank``: best first, by *relative* quality. Frames of one burst differ by a little
  motion blur, missed focus or exposure, which the absolute score cannot rank, so the
  frames' sharpness signatures (``sharpness.py``) are compared pairwise on the same
  aligned, high-detail cells. Near-ties are ties, broken by exposure closeness to the
  group's median, then by the score.
* ``decide_group``: the pick is Accepted unless the policy rejects it as a failure; the
  other frames are Pending (``others_label``: or Rejected) with the reason
  "weaker duplicate of NAME". A frame the user accepted by hand is the group's pick, and
  a frame they rejected is never chosen; their labels are kept by the writer anyway.

The defaults were chosen with ``benchmarks/bursts.py`` (see docs/bursts.md).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING

import numpy as np

from .imageheaders import exif_capture_time
from .records import Burst, PickLabel, Verdict
from .sharpness import Signature, relative_sharpness
from .verdict import stars_for

if TYPE_CHECKING:
    from .config import Settings
    from .exposure import ExposureFacts
    from .verdict import Policy

#: Frames whose relative sharpness differs by less than this (log ratio: 5.5 %) are tied.
#: On benchmarks/bursts.py's frames, a +-0.3 EV copy (re-encoded) measured up to 4.4 %
#: sharper than the untouched original, and every blurred or defocused copy at least
#: 6.5 % less sharp.
SHARPNESS_TIE = 0.055
#: Exposure distances to the group's median (median luma, 0..255) this close are tied.
EXPOSURE_TIE = 2.0
#: An embedding shorter than this cannot tell scenes apart (a test model's channel
#: means): its frames are never grouped.
MIN_EMBEDDING_SIZE = 16
WEAKER_DUPLICATE = "weaker duplicate of "
FIRST_READ_BYTES = 1 << 16
HEAD_BYTES = 1 << 20  # where EXIF sits in JPEG, TIFF-based RAW, CR3 and most HEIF files
TAIL_BYTES = 1 << 19  # ... and where some HEIF writers put it


@dataclass(frozen=True)
class BurstSettings:
    max_gap_seconds: float
    min_similarity: float
    others_label: PickLabel

    @classmethod
    def from_settings(cls, settings: Settings) -> BurstSettings:
        others = PickLabel.REJECTED if settings.others_label == "rejected" else PickLabel.PENDING
        return cls(settings.max_gap_seconds, settings.min_similarity, others)


@dataclass(frozen=True, eq=False)
class Frame:
    """What grouping needs of one scored photo (a few kilobytes)."""

    path: Path
    captured_at: float  # seconds: EXIF capture time, else the file's modification time
    embedding: np.ndarray  # float32, L2-normalised; empty: the model has none
    signature: Signature | None
    exposure: ExposureFacts | None
    score: float
    hand_label: PickLabel | None = None  # a pick label the user set, kept by the writer


# --- capture time --------------------------------------------------------------------


def parse_exif_time(when: str, subsec: str = "") -> float | None:
    """Seconds of an EXIF "YYYY:MM:DD HH:MM:SS" (+ sub-seconds digits), read as UTC:
    only differences within a folder matter, and EXIF has no time zone here."""
    try:
        moment = datetime.strptime(when.strip()[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    digits = "".join(c for c in subsec if c.isdigit())
    fraction = int(digits) / 10 ** len(digits) if digits else 0.0
    return moment.replace(tzinfo=timezone.utc).timestamp() + fraction


def capture_time(path: Path, mtime_ns: int) -> float:
    """When the photo was taken: EXIF ``DateTimeOriginal`` + ``SubSecTimeOriginal`` read
    from the file's first megabyte (or its end), else its modification time."""
    try:
        with path.open("rb") as fh:
            head = fh.read(FIRST_READ_BYTES)  # a JPEG's EXIF is in its first 64 KB
            found = exif_capture_time(head)
            if found is None and len(head) == FIRST_READ_BYTES:
                head += fh.read(HEAD_BYTES - FIRST_READ_BYTES)
                found = exif_capture_time(head)
            if found is None and len(head) == HEAD_BYTES:
                fh.seek(max(HEAD_BYTES, os.fstat(fh.fileno()).st_size - TAIL_BYTES))
                found = exif_capture_time(fh.read(TAIL_BYTES))
    except OSError:
        found = None
    seconds = parse_exif_time(*found) if found else None
    return seconds if seconds is not None else mtime_ns / 1e9


# --- grouping ------------------------------------------------------------------------


def group_frames(frames: Sequence[Frame], max_gap_seconds: float, min_similarity: float
                 ) -> list[list[int]]:
    """Indices of ``frames`` per group, each in time order; a lone frame is its own group."""
    order = sorted(range(len(frames)), key=lambda i: (frames[i].captured_at, frames[i].path.name))
    groups: list[list[int]] = []
    sums: list[np.ndarray] = []
    for i in order:
        frame = frames[i]
        best, best_similarity = -1, min_similarity
        if frame.embedding.size >= MIN_EMBEDDING_SIZE:
            for g, members in enumerate(groups):
                last = frames[members[-1]]
                if frame.captured_at - last.captured_at > max_gap_seconds:
                    continue
                if sums[g].shape != frame.embedding.shape:
                    continue
                centre = sums[g] / (np.linalg.norm(sums[g]) or 1.0)
                similarity = float(centre @ frame.embedding)
                if similarity >= best_similarity:
                    best, best_similarity = g, similarity
        if best == -1:
            groups.append([i])
            sums.append(frame.embedding.astype(np.float64))
        else:
            groups[best].append(i)
            sums[best] = sums[best] + frame.embedding
    return groups


# --- choosing ------------------------------------------------------------------------


def sharpness_scores(frames: Sequence[Frame], members: Sequence[int]) -> dict[int, float]:
    """Each member's mean relative sharpness against the others (log ratio, 0 = average)."""
    signed = [m for m in members if frames[m].signature is not None]
    totals = dict.fromkeys(members, 0.0)
    for a_pos, a in enumerate(signed):
        for b in signed[a_pos + 1 :]:
            sig_a, sig_b = frames[a].signature, frames[b].signature
            assert sig_a is not None
            assert sig_b is not None
            ratio = relative_sharpness(sig_a, sig_b)
            totals[a] += ratio
            totals[b] -= ratio
    others = max(1, len(signed) - 1)
    return {m: totals[m] / others for m in members}


def rank(frames: Sequence[Frame], members: Sequence[int]) -> list[int]:
    """``members`` best first: the sharpest, where frames are near-tied the one exposed
    closest to the group's median, then the higher score."""
    sharp = sharpness_scores(frames, members)
    facts = [frames[m].exposure for m in members]
    medians = [f.median for f in facts if f is not None]
    centre = median(medians) if medians else 0.0

    def distance(m: int) -> float:
        facts = frames[m].exposure
        return abs(facts.median - centre) if facts is not None else 0.0

    remaining = sorted(members, key=lambda m: (-sharp[m], -frames[m].score))
    ranked: list[int] = []
    while remaining:
        top = sharp[remaining[0]]
        tied = [m for m in remaining if sharp[m] >= top - SHARPNESS_TIE]
        closest = min(distance(m) for m in tied)
        near = [m for m in tied if distance(m) <= closest + EXPOSURE_TIE]
        best = max(near, key=lambda m: (frames[m].score, sharp[m]))
        ranked.append(best)
        remaining.remove(best)
    return ranked


def choose_pick(frames: Sequence[Frame], members: Sequence[int],
                verdicts: Sequence[Verdict]) -> int:
    """The group's pick: a frame the user accepted, else the best frame that is not a
    failure (policy Rejected) nor rejected by the user, else the best frame."""
    ranked = rank(frames, members)
    accepted = [m for m in ranked if frames[m].hand_label is PickLabel.ACCEPTED]
    if accepted:
        return accepted[0]
    fine = [m for m in ranked if verdicts[m].label is not PickLabel.REJECTED
            and frames[m].hand_label is not PickLabel.REJECTED]
    return (fine or ranked)[0]


def burst_id(frames: Sequence[Frame], members: Sequence[int]) -> str:
    """Stable for the same first frame: its capture time and a hash of its path, e.g.
    ``20260501-101112-3fa9``."""
    first = frames[members[0]]
    moment = datetime.fromtimestamp(first.captured_at, timezone.utc).strftime("%Y%m%d-%H%M%S")
    digest = hashlib.blake2b(os.fsencode(first.path.resolve()), digest_size=2).hexdigest()
    return f"{moment}-{digest}"


def as_pick(verdict: Verdict, burst: Burst, policy: Policy) -> Verdict:
    """The pick: Accepted unless the policy rejects it as a failure."""
    if verdict.label is PickLabel.REJECTED:
        return replace(verdict, burst=burst)
    label = PickLabel.ACCEPTED
    return replace(verdict, label=label, stars=stars_for(verdict.score, label, policy),
                   reasons=(), burst=burst)


def as_duplicate(verdict: Verdict, burst: Burst, policy: Policy, others_label: PickLabel
                 ) -> Verdict:
    """Another frame: ``others_label`` (a failure stays Rejected), the pick named first."""
    label = PickLabel.REJECTED if verdict.label is PickLabel.REJECTED else others_label
    own = tuple(r for r in verdict.reasons if not r.startswith(WEAKER_DUPLICATE))
    return replace(verdict, label=label, stars=stars_for(verdict.score, label, policy),
                   reasons=(WEAKER_DUPLICATE + burst.pick_name, *own), burst=burst)


def apply_burst(verdict: Verdict, burst: Burst, policy: Policy, others_label: PickLabel
                ) -> Verdict:
    """The verdict of one frame given its place in a burst (also for re-deciding a
    stored verdict under a new policy, from its stored group tags)."""
    if not burst.id or burst.size < 2:
        return replace(verdict, burst=Burst(""))
    if burst.pick:
        return as_pick(verdict, burst, policy)
    return as_duplicate(verdict, burst, policy, others_label)


def decide_bursts(frames: Sequence[Frame], verdicts: Sequence[Verdict], policy: Policy,
                  config: BurstSettings) -> list[Verdict]:
    """The verdicts of one folder's frames (same order), each with its ``burst``."""
    out = list(verdicts)
    for members in group_frames(frames, config.max_gap_seconds, config.min_similarity):
        if len(members) == 1:
            out[members[0]] = replace(verdicts[members[0]], burst=Burst(""))
            continue
        pick = choose_pick(frames, members, verdicts)
        gid, size, name = burst_id(frames, members), len(members), frames[pick].path.name
        for m in members:
            burst = Burst(gid, size, m == pick, name)
            out[m] = apply_burst(verdicts[m], burst, policy, config.others_label)
    return out
