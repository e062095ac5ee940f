"""Exposure facts measured on the pixels, so that an exposure reason is never untrue.

The model's under- and over-exposure diagnostics are learnt, and a learnt diagnostic can
call a sunny beach or a white sheet of paper "underexposed". A reason the pixels plainly
contradict costs the user's trust more than a missing one, so the verdict gives an
exposure reason only when these measurements agree (``verdict.py``). They are taken on
the model's whole view (512 px), which costs well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Rec. 709 luma weights on the 8-bit sRGB values (no linearisation: these are
#: thresholds on what the eye sees, not physics).
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
CLIPPED_HIGH = 250  # a pixel at or above this luma has lost its highlight detail
CRUSHED_LOW = 6  # ... at or below this, its shadow detail


@dataclass(frozen=True)
class ExposureFacts:
    """``median``: median luma 0..255; ``highlights`` / ``shadows``: share of pixels
    clipped at the top / crushed at the bottom, 0..1."""

    median: float
    highlights: float
    shadows: float

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "highlights": self.highlights, "shadows": self.shadows}


def measure(rgb: np.ndarray) -> ExposureFacts:
    """Facts of one uint8 RGB image (HxWx3)."""
    small = rgb[::2, ::2] if min(rgb.shape[:2]) >= 256 else rgb
    luma = small.reshape(-1, 3).astype(np.float32) @ LUMA
    return ExposureFacts(
        median=round(float(np.median(luma)), 1),
        highlights=round(float(np.mean(luma >= CLIPPED_HIGH)), 4),
        shadows=round(float(np.mean(luma <= CRUSHED_LOW)), 4),
    )
