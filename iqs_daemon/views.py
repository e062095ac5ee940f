"""What the model looks at: a whole-photo view and a detail crop.

A 24 MP photo shrunk to the network's 512 px input loses exactly the defects a
photographer checks at 100 %: slight missed focus, sensor noise, JPEG artefacts. So the
model gets two views of every photo:

* ``image``: the whole photo resized to ``image_size`` squared (aspect not kept; the
  training photos are square and the score is about defects, not composition);
* ``detail``: a ``detail_size`` squared crop at decoding resolution (at least
  ``min_short_side`` on the short side, see ``decoding.decode``), taken where the photo
  has the most fine detail - usually the subject in focus.

Both are uint8 RGB, HxWx3; the model normalises inside its graph. The training code
calls these same functions, so training and the product see identical pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

from .decoding import reduction_factor


def working_image(rgb: np.ndarray, min_short_side: int) -> np.ndarray:
    """Shrink a decode that is still twice ``min_short_side`` or more by the power of two
    that JPEG's DCT scaling would have used, so a PNG, TIFF or HEIC photo reaches the
    detail view at the same scale as a JPEG of the same size (the model learnt that scale).
    """
    h, w = rgb.shape[:2]
    factor = reduction_factor(min(h, w), min_short_side) if min_short_side else 1
    if factor == 1:
        return rgb
    size = (-(-w // factor), -(-h // factor))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def whole_view(rgb: np.ndarray, size: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return np.ascontiguousarray(rgb)
    shrinking = h >= size and w >= size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interpolation)


def detail_view(rgb: np.ndarray, size: int) -> np.ndarray:
    """The ``size`` x ``size`` crop with the most fine detail, at full decoded resolution."""
    h, w = rgb.shape[:2]
    if h < size or w < size:
        # Tiny photo: enlarge just enough for one crop (only thumbnails get here).
        scale = size / min(h, w)
        rgb = cv2.resize(
            rgb, (max(size, round(w * scale)), max(size, round(h * scale))),
            interpolation=cv2.INTER_CUBIC,
        )
        h, w = rgb.shape[:2]
    top, left = most_detailed_window(rgb, size)
    return np.ascontiguousarray(rgb[top : top + size, left : left + size])


def most_detailed_window(rgb: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left corner of the window with the highest Laplacian energy.

    Searched on a shrunken grey copy (window ~64 px there), on a grid of quarter windows,
    so it costs well under a millisecond even for a 6 MP decode.
    """
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return 0, 0
    factor = max(1, size // 64)
    small = cv2.resize(
        cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (w // factor, h // factor),
        interpolation=cv2.INTER_AREA,
    )
    energy = np.abs(cv2.Laplacian(small, cv2.CV_32F, ksize=3))
    integral = cv2.integral(energy, sdepth=cv2.CV_64F)
    window = size // factor
    step = max(1, window // 4)
    sh, sw = small.shape
    ys = np.arange(0, max(1, sh - window + 1), step)
    xs = np.arange(0, max(1, sw - window + 1), step)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    y1, x1 = y0 + window, x0 + window
    sums = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    best = np.unravel_index(int(np.argmax(sums)), sums.shape)
    top = min(int(ys[best[0]]) * factor, h - size)
    left = min(int(xs[best[1]]) * factor, w - size)
    return top, left


def make_views(rgb: np.ndarray, image_size: int, detail_size: int, min_short_side: int = 0
               ) -> dict[str, np.ndarray]:
    rgb = working_image(rgb, min_short_side)
    return {"image": whole_view(rgb, image_size), "detail": detail_view(rgb, detail_size)}
