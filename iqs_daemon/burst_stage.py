"""Bursts in one pass (``score``): two stages around the others in the stage list.

``order_by_capture`` (a ``Source``) sorts each folder's photos by capture time and marks
those no other was taken near, which need no sharpness signature. ``HoldBursts`` (a
``Hold``) keeps each scored photo's small record (views dropped) until no later frame can
join its group: a frame from another folder, or one more than ``max_gap_seconds`` after
all the held ones. Then it groups them (``bursts.decide_bursts``), picks the best of each
burst and lets them go to the writer, while the next frames are scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import bursts
from .records import Candidate

if TYPE_CHECKING:
    from .stages import Decided, Pass, Scored


@dataclass(frozen=True)
class Framed:
    """A photo in capture-time order within its folder."""

    candidate: Candidate
    captured_at: float
    alone: bool  # no other photo of its folder was taken within the gap


def order_by_capture(candidates: Iterable[Candidate], max_gap_seconds: float
                     ) -> Iterator[Framed]:
    """Folder by folder (in order of first appearance), in capture-time order."""
    folders: dict[Path, list[Candidate]] = {}
    for candidate in candidates:
        folders.setdefault(candidate.path.parent, []).append(candidate)
    for members in folders.values():
        times = {c.path: bursts.capture_time(c.path, c.mtime_ns) for c in members}
        members.sort(key=lambda c: (times[c.path], c.path.name))
        alone = alone_in_time([times[c.path] for c in members], members, max_gap_seconds)
        for candidate in members:
            yield Framed(candidate, times[candidate.path], candidate.path in alone)


def alone_in_time(times: list[float], members: list[Candidate], gap: float) -> set[Path]:
    """The photos (``times`` sorted, as ``members``) with no other taken within ``gap``."""
    alone = set()
    for i, candidate in enumerate(members):
        before = i > 0 and times[i] - times[i - 1] <= gap
        after = i + 1 < len(times) and times[i + 1] - times[i] <= gap
        if not (before or after):
            alone.add(candidate.path)
    return alone


class HoldBursts:
    """Holds scored frames until a gap no frame can bridge, then decides their bursts."""

    def __init__(self, p: Pass):
        self.policy = p.policy
        self.config = p.burst_settings
        self.held: list[Scored] = []

    def push(self, scored: Scored) -> list[Decided]:
        frame = scored.frame
        assert frame is not None, "HoldBursts needs Pass.framing"
        released: list[Decided] = []
        if self.held:
            # Held in capture-time order: the last one is the latest.
            latest = self.held[-1].frame
            assert latest is not None
            if (frame.path.parent != latest.path.parent
                    or frame.captured_at - latest.captured_at > self.config.max_gap_seconds):
                released = self.release()
        self.held.append(scored)
        return released

    def flush(self) -> list[Decided]:
        return self.release()

    def release(self) -> list[Decided]:
        """Group the held frames and let go of them, with their burst's verdicts."""
        if not self.held:
            return []
        frames = [s.frame for s in self.held if s.frame is not None]
        verdicts = bursts.decide_bursts(frames, [s.verdict for s in self.held], self.policy,
                                        self.config)
        decided = [s.as_decided(v) for s, v in zip(self.held, verdicts, strict=True)]
        self.held = []
        return decided
