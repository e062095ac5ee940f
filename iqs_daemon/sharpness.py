"""A small per-photo sharpness signature, for choosing the sharpest frame of a burst.

Frames of one burst differ by a little motion blur, missed focus or exposure, which the
model's absolute score is too coarse to rank. So each photo gets, at decode time, a
``Signature`` of about 16 KB, on a grid of 48 cells on the long side:

* ``level``: the mean magnitude of the 3x3 Laplacian of the green channel at decode
  resolution, per cell: the finest detail, which blur of a pixel or two already lowers;
* ``contrast``: the same Laplacian on a 4x smaller copy, a band that blur of a few pixels
  barely reaches. Measured at the same places and tones as ``level``, it scales with it
  under an exposure or tone change, so a +-0.3 EV copy is not "sharper" (within 1 % on
  the sample photos). Cells with clipped highlights are 0: never compared;
* ``thumb``: a thumbnail (128 px on the long side) to align two frames of a hand-held
  burst with ``cv2.phaseCorrelate`` before their maps are compared.

``relative_sharpness(a, b)``: the log ratio of ``a``'s level-to-contrast ratio over
``b``'s, summed over the cells both frames share once aligned (> 0: ``a`` is sharper).
Sums over the whole shared region, not per-cell ratios: content that moves across a cell
border stays inside the region, so a mere shift changes nothing (a median of per-cell
ratios moved by up to 17 % for a 40 px shift). ``benchmarks/bursts.py`` measured the
rest: the untouched frame of a burst against its copies.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GRID_LONG_SIDE = 48  # cells on the long side of the signature's maps
THUMB_LONG_SIDE = 128
ANALYSIS_MAX_SHORT_SIDE = 1536  # larger decodes are halved first (a 24 MP JPEG at 1/2)
CLIPPED_FROM = 250  # green level: a cell with a pixel this bright (at 1/4 scale) is clipped
CONTRAST_FLOOR = 4.0  # the unaligned fallback compares cells with at least this contrast
DETAIL_SHARE = 0.3  # ... and of those, this share with the most
MIN_CELLS = 6


@dataclass(frozen=True, eq=False)
class Signature:
    level: np.ndarray  # float16 (rows, cols): mean Laplacian magnitude per cell
    contrast: np.ndarray  # float16 (rows, cols): standard deviation per cell (0: not usable)
    thumb: np.ndarray  # uint8 green thumbnail, same aspect as the maps

    @property
    def nbytes(self) -> int:
        return self.level.nbytes + self.contrast.nbytes + self.thumb.nbytes

    @property
    def fine(self) -> np.ndarray:
        """Sharpness per cell: the Laplacian level over the contrast (float32)."""
        return self.level.astype(np.float32) / (self.contrast.astype(np.float32) + 1.0)

    def to_bytes(self) -> bytes:
        """A compact serialisation (the state DB keeps it)."""
        rows, cols = self.level.shape
        th, tw = self.thumb.shape
        head = np.array([rows, cols, th, tw], np.uint16).tobytes()
        return head + self.level.tobytes() + self.contrast.tobytes() + self.thumb.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Signature:
        rows, cols, th, tw = (int(v) for v in np.frombuffer(blob[:8], np.uint16))
        cells = rows * cols * 2
        level = np.frombuffer(blob[8 : 8 + cells], np.float16).reshape(rows, cols)
        contrast = np.frombuffer(blob[8 + cells : 8 + 2 * cells], np.float16).reshape(rows, cols)
        thumb = np.frombuffer(blob[8 + 2 * cells :], np.uint8).reshape(th, tw)
        return cls(level, contrast, thumb)


def _grid(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(columns, rows) of a grid with ``long_side`` cells on the image's long side."""
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def signature_of(rgb: np.ndarray) -> Signature:
    """The signature of one decoded photo (8-bit RGB, HxWx3), in about 5 ms for 4 MP."""
    # The green channel: most of the luma, the sharpest channel of most cameras, and
    # half the cost of a grey conversion.
    green = cv2.extractChannel(rgb, 1)
    h, w = green.shape
    if min(h, w) > ANALYSIS_MAX_SHORT_SIDE:
        green = cv2.resize(green, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = green.shape
    cols, rows = _grid(h, w, GRID_LONG_SIDE)
    # The 3x3 Laplacian aperture smooths a little: quantisation and JPEG noise, which
    # rise in a darker or brighter copy, then weigh less against the blur being measured.
    # Its magnitude saturates at 255 (a hard black-white edge): rare and the same in
    # every frame. Integer-factor INTER_AREA first is OpenCV's fast path.
    magnitude = cv2.convertScaleAbs(cv2.Laplacian(green, cv2.CV_16S, ksize=3))
    eighth_size = (max(1, w // 8), max(1, h // 8))
    fine_eighth = cv2.resize(magnitude, eighth_size, interpolation=cv2.INTER_AREA)
    level = cv2.resize(fine_eighth.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    # Contrast: the same Laplacian on a 4x smaller copy, a band that blur of a few pixels
    # barely reaches, measured at the same places and tones as the fine one, so a tone
    # curve or exposure change scales both alike.
    quarter = cv2.resize(green, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    mid = cv2.convertScaleAbs(cv2.Laplacian(quarter, cv2.CV_16S, ksize=3))
    contrast = cv2.resize(mid.astype(np.float32), (cols, rows), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(quarter, eighth_size, interpolation=cv2.INTER_AREA).astype(np.float32)
    # Cells with clipped highlights say nothing reliable: clipping turns a soft highlight
    # into a hard edge, so a brighter frame looks sharper there. Marked 0: never compared.
    # Found on the 4x smaller copy: a clipped patch of 4x4 pixels or more shows there.
    _, clipped = cv2.threshold(quarter, CLIPPED_FROM - 1, 255, cv2.THRESH_BINARY)
    clipped = cv2.resize(clipped, (cols, rows), interpolation=cv2.INTER_AREA)
    contrast[clipped > 0] = 0.0
    tcols, trows = _grid(h, w, THUMB_LONG_SIDE)
    thumb = cv2.resize(coarse, (tcols, trows), interpolation=cv2.INTER_AREA)
    return Signature(level.astype(np.float16), contrast.astype(np.float16),
                     np.clip(thumb + 0.5, 0, 255).astype(np.uint8))


def shift_between(a: Signature, b: Signature) -> tuple[float, float] | None:
    """(dx, dy) in cells such that ``b``'s content at (x, y) is ``a``'s at (x + dx, y + dy);
    None when the frames cannot be aligned (other sizes)."""
    if a.thumb.shape != b.thumb.shape or a.level.shape != b.level.shape:
        return None
    ta, tb = a.thumb.astype(np.float32), b.thumb.astype(np.float32)
    window = cv2.createHanningWindow((ta.shape[1], ta.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(tb, ta, window)
    scale = a.level.shape[1] / a.thumb.shape[1]
    return dx * scale, dy * scale


def _aligned(s: Signature, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``s``'s level and contrast maps moved by (-dx, -dy) cells, with bilinear
    interpolation (box sums of a shifted window are close to the interpolated sums), and
    the cells where both are valid."""
    rows, cols = s.level.shape
    m = np.array([[1, 0, -dx], [0, 1, -dy]], np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

    def warp(x: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(x.astype(np.float32), m, (cols, rows), flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    # Inside the frame and clear of unusable (clipped) cells, which are 0 and would
    # otherwise bleed into their neighbours through the interpolation.
    inside = warp((s.contrast > 0).astype(np.float32)) > 0.999
    return warp(s.level), warp(s.contrast), inside


def relative_sharpness(a: Signature, b: Signature) -> float:
    """Median log ratio of ``a``'s sharpness over ``b``'s on their shared high-detail
    cells (0.1: ``a`` about 10 % sharper). Frames that cannot be aligned are compared
    on their most detailed cells instead."""
    shift = shift_between(a, b)
    rows, cols = a.level.shape
    if shift is None or abs(shift[0]) >= cols / 2 or abs(shift[1]) >= rows / 2:
        return _unaligned(a, b)
    level_b, contrast_b, inside = _aligned(b, *shift)
    level_a, contrast_a = a.level.astype(np.float32), a.contrast.astype(np.float32)
    # The whole shared region (less clipped cells), as sums: what moves across a cell
    # border between two frames stays inside it. (A median of per-cell ratios on the
    # most detailed cells, tried first, moved by 5-17 % for a mere 40 px shift.)
    chosen = inside & (np.minimum(contrast_a, contrast_b) > 0)
    if int(chosen.sum()) < MIN_CELLS:
        return _unaligned(a, b)
    sharp_a = level_a[chosen].sum() / (contrast_a[chosen].sum() + 1e-3)
    sharp_b = level_b[chosen].sum() / (contrast_b[chosen].sum() + 1e-3)
    return float(np.log(sharp_a + 1e-6) - np.log(sharp_b + 1e-6))


def _detail_level(s: Signature) -> float:
    fine = s.fine
    contrast = s.contrast.astype(np.float32)
    usable = contrast >= CONTRAST_FLOOR
    if not usable.any():
        return float(np.log(np.median(fine) + 1e-3))
    cut = np.quantile(contrast[usable], 1.0 - DETAIL_SHARE)
    return float(np.log(np.median(fine[usable & (contrast >= cut)]) + 1e-3))


def _unaligned(a: Signature, b: Signature) -> float:
    return _detail_level(a) - _detail_level(b)
