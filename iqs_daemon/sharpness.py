"""A small per-photo sharpness signature, for choosing the sharpest frame of a burst.

Frames of one burst differ by a little motion blur, missed focus or exposure, which the
model's absolute score is too coarse to rank. So each photo gets, at decode time, a
``Signature`` of a few kilobytes:

* ``fine``: per cell of a grid (48 cells on the long side), the RMS of the 3x3
  Laplacian at decode resolution divided by the cell's contrast (the standard deviation of a 4x
  smaller copy). Blur lowers the first and hardly the second; an exposure change of
  +-0.3 EV scales both alike, so a brighter copy is not "sharper".
* ``contrast``: that contrast, to compare frames on their high-detail cells only;
* ``thumb``: a grey thumbnail (128 px on the long side) to align two frames of a
  hand-held burst with ``cv2.phaseCorrelate`` before their cells are compared.

``relative_sharpness(a, b)`` is the median log ratio of ``a``'s cells over ``b``'s on the
same, aligned, high-detail cells: > 0 when ``a`` is the sharper frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

GRID_LONG_SIDE = 48  # cells on the long side of the signature's maps
THUMB_LONG_SIDE = 128
ANALYSIS_MAX_SHORT_SIDE = 1536  # larger decodes are halved first (a 24 MP JPEG at 1/2)
CONTRAST_FLOOR = 4.0  # grey levels: flatter cells (sky, walls) say nothing about focus
DETAIL_SHARE = 0.3  # compare frames on this share of the cells with the most contrast
MIN_CELLS = 6


@dataclass(frozen=True, eq=False)
class Signature:
    fine: np.ndarray  # float16 (rows, cols): Laplacian RMS / contrast per cell
    contrast: np.ndarray  # float16 (rows, cols): grey-level standard deviation per cell
    thumb: np.ndarray  # uint8 grey thumbnail, same aspect as the maps

    @property
    def nbytes(self) -> int:
        return self.fine.nbytes + self.contrast.nbytes + self.thumb.nbytes

    def to_bytes(self) -> bytes:
        """A compact serialisation (the state DB keeps it)."""
        rows, cols = self.fine.shape
        th, tw = self.thumb.shape
        head = np.array([rows, cols, th, tw], np.uint16).tobytes()
        return head + self.fine.tobytes() + self.contrast.tobytes() + self.thumb.tobytes()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Signature:
        rows, cols, th, tw = (int(v) for v in np.frombuffer(blob[:8], np.uint16))
        cells = rows * cols * 2
        fine = np.frombuffer(blob[8 : 8 + cells], np.float16).reshape(rows, cols)
        contrast = np.frombuffer(blob[8 + cells : 8 + 2 * cells], np.float16).reshape(rows, cols)
        thumb = np.frombuffer(blob[8 + 2 * cells :], np.uint8).reshape(th, tw)
        return cls(fine, contrast, thumb)


def _grid(h: int, w: int, long_side: int) -> tuple[int, int]:
    """(columns, rows) of a grid with ``long_side`` cells on the image's long side."""
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def signature_of(rgb: np.ndarray) -> Signature:
    """The signature of one decoded photo (8-bit RGB, HxWx3)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    if min(h, w) > ANALYSIS_MAX_SHORT_SIDE:
        grey = cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        h, w = grey.shape
    cols, rows = _grid(h, w, GRID_LONG_SIDE)
    # The 3x3 Laplacian aperture smooths a little: quantisation and JPEG noise, which
    # rise in a darker or brighter copy, then weigh less against the blur being measured.
    lap = cv2.Laplacian(grey, cv2.CV_16S, ksize=3)
    squared = cv2.multiply(lap, lap, dtype=cv2.CV_32F)
    # Integer-factor INTER_AREA first: OpenCV's fast path (a direct resize to the grid
    # costs twice the Laplacian).
    eighth = cv2.resize(squared, (max(1, w // 8), max(1, h // 8)), interpolation=cv2.INTER_AREA)
    energy = cv2.resize(eighth, (cols, rows), interpolation=cv2.INTER_AREA)
    coarse = cv2.resize(grey, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    coarse = coarse.astype(np.float32)
    mean = cv2.resize(coarse, (cols, rows), interpolation=cv2.INTER_AREA)
    square = cv2.resize(cv2.multiply(coarse, coarse), (cols, rows), interpolation=cv2.INTER_AREA)
    contrast = np.sqrt(np.maximum(square - mean * mean, 0.0))
    fine = np.sqrt(energy) / (contrast + 1.0)
    tcols, trows = _grid(h, w, THUMB_LONG_SIDE)
    thumb = cv2.resize(coarse, (tcols, trows), interpolation=cv2.INTER_AREA)
    return Signature(fine.astype(np.float16), contrast.astype(np.float16),
                     np.clip(thumb + 0.5, 0, 255).astype(np.uint8))


def shift_between(a: Signature, b: Signature) -> tuple[float, float] | None:
    """(dx, dy) in cells such that ``b``'s content at (x, y) is ``a``'s at (x + dx, y + dy);
    None when the frames cannot be aligned (other sizes)."""
    if a.thumb.shape != b.thumb.shape or a.fine.shape != b.fine.shape:
        return None
    ta, tb = a.thumb.astype(np.float32), b.thumb.astype(np.float32)
    window = cv2.createHanningWindow((ta.shape[1], ta.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(tb, ta, window)
    scale = a.fine.shape[1] / a.thumb.shape[1]
    return dx * scale, dy * scale


def _overlap(length: int, shift: int) -> tuple[slice, slice]:
    """Slices of the same cells in ``a`` and ``b`` when ``b[i] = a[i + shift]``."""
    if shift >= 0:
        return slice(shift, length), slice(0, length - shift)
    return slice(0, length + shift), slice(-shift, length)


def relative_sharpness(a: Signature, b: Signature) -> float:
    """Median log ratio of ``a``'s sharpness over ``b``'s on their shared high-detail
    cells (0.1: ``a`` about 10 % sharper). Frames that cannot be aligned are compared
    on the upper quantiles of their detailed cells instead."""
    shift = shift_between(a, b)
    if shift is None:
        return _unaligned(a, b)
    rows, cols = a.fine.shape
    dx, dy = round(shift[0]), round(shift[1])
    if abs(dx) >= cols // 2 or abs(dy) >= rows // 2:
        return _unaligned(a, b)
    ya, yb = _overlap(rows, dy)
    xa, xb = _overlap(cols, dx)
    fa, fb = a.fine[ya, xa].astype(np.float32), b.fine[yb, xb].astype(np.float32)
    ca = a.contrast[ya, xa].astype(np.float32)
    cb = b.contrast[yb, xb].astype(np.float32)
    both = np.minimum(ca, cb)
    usable = both >= CONTRAST_FLOOR
    if int(usable.sum()) < MIN_CELLS:
        return _unaligned(a, b)
    cut = np.quantile(both[usable], 1.0 - DETAIL_SHARE)
    chosen = usable & (both >= cut)
    if int(chosen.sum()) < MIN_CELLS:
        chosen = usable
    ratio = np.log(fa[chosen] + 1e-3) - np.log(fb[chosen] + 1e-3)
    return float(np.median(ratio))


def _detail_level(s: Signature) -> float:
    fine = s.fine.astype(np.float32)
    contrast = s.contrast.astype(np.float32)
    usable = contrast >= CONTRAST_FLOOR
    if not usable.any():
        return float(np.log(np.median(fine) + 1e-3))
    cut = np.quantile(contrast[usable], 1.0 - DETAIL_SHARE)
    return float(np.log(np.median(fine[usable & (contrast >= cut)]) + 1e-3))


def _unaligned(a: Signature, b: Signature) -> float:
    return _detail_level(a) - _detail_level(b)
