"""The immutable records passed between pipeline stages.

    Candidate -> Decoded -> Scores -> Verdict -> WriteResult

Each stage is a plain function from one record to the next (see ``pipeline.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np

from .exposure import ExposureFacts


class PickLabel(int, Enum):
    """digiKam's pick label values as stored in ``Xmp.digiKam.PickLabel``."""

    NONE = 0
    REJECTED = 1
    PENDING = 2
    ACCEPTED = 3

    @property
    def title(self) -> str:
        return self.name.capitalize()


@dataclass(frozen=True)
class Candidate:
    """A file that looks like a photo we support, found by discovery or the watcher."""

    path: Path
    size_bytes: int
    mtime_ns: int


@dataclass(frozen=True, eq=False)
class Decoded:
    """A photo's pixels: 8-bit RGB (HxWx3, C-contiguous), orientation applied.

    ``rgb`` is decoded at reduced size where the format allows (JPEG DCT scaling,
    RAW previews) but keeps at least the short side the model asked for.
    ``fingerprint`` hashes the decoded pixels (a JPEG's: what they are decoded from,
    metadata left out), so it survives metadata edits and moves, and changes when the
    picture itself changes.
    """

    path: Path
    rgb: np.ndarray
    original_size: tuple[int, int]  # (width, height) of the full photo, after orientation
    fingerprint: str
    source: str = ""  # how the pixels were obtained, e.g. "jpeg 1/2", "raw preview"


@dataclass(frozen=True)
class Scores:
    """What the model says about one photo."""

    score: float  # 0..100
    diagnostics: dict[str, float]  # defect name -> 0..1 (higher = more of that defect)
    embedding: tuple[float, ...] = ()


@dataclass(frozen=True)
class Burst:
    """A photo's place in a burst (``bursts.py``). ``id`` "" means: grouping ran and the
    photo is in no group, so an earlier group's tags are removed."""

    id: str
    size: int = 1
    pick: bool = False  # this frame is the group's pick
    pick_name: str = ""  # the pick's file name


@dataclass(frozen=True)
class Verdict:
    path: Path
    score: float
    label: PickLabel
    stars: int  # 0..5 (Rejected photos get the configured rejected rating on write)
    reasons: tuple[str, ...]
    diagnostics: dict[str, float]
    model_name: str
    model_version: str
    scored_at: str  # ISO 8601 UTC
    policy: str = ""  # verdict.Policy.identity of the cut-offs that chose the label
    exposure: ExposureFacts | None = None  # the pixels' exposure facts the reasons were checked on
    burst: Burst | None = None  # None: not grouped in this run, group tags left as they are


@dataclass(frozen=True)
class WriteResult:
    path: Path
    target: Path  # the file that received the XMP: the photo itself or its sidecar
    written: bool  # False for --dry-run, or when nothing needed writing
    kept_user_label: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    rating: int | None = None  # the xmp:Rating the target holds (or, dry run, would hold)
    read_only_fallback: bool = False  # a sidecar only because the photo is read-only
