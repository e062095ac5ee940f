"""The distortion protocol: controlled, graded damage to a photo.

Five families, three levels each, applied to the full-resolution image (see
``models/README.md``). A quality score must fall at every step within a family, and the
strongest level must be Rejected. Training uses the same functions at random levels.
One change must not cost anything: a soft background behind a sharp subject.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from .views import most_detailed_window

#: family -> the protocol's three levels, mildest first.
PROTOCOL: dict[str, tuple[float, ...]] = {
    "blur": (1.5, 3.0, 6.0),  # Gaussian sigma, px
    "noise": (8.0, 16.0, 32.0),  # additive Gaussian sigma, of 255
    "jpeg": (40.0, 15.0, 5.0),  # re-encode quality
    "overexposure": (1.0, 2.0, 3.0),  # +EV in linear light
    "underexposure": (1.0, 2.0, 3.0),  # -EV in linear light
}

#: The counter-check: the background defocused around a sharp subject
#: (``soft_background``), the disk's radius as a share of the photo's short side (3 and
#: 6 px at 512 px). Not a defect: the score must hold and no "blurred" be given.
SOFT_BACKGROUND: tuple[float, ...] = (0.006, 0.012)

#: family -> the model diagnostic that must rise with its level.
DIAGNOSTIC_OF_FAMILY: dict[str, str] = {
    "blur": "blur",
    "noise": "noise",
    "jpeg": "compression",
    "overexposure": "overexposure",
    "underexposure": "underexposure",
}


def blur(rgb: np.ndarray, sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), sigmaX=sigma, sigmaY=sigma)


def noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator | None = None) -> np.ndarray:
    rng = rng or np.random.default_rng(0)
    noisy = rgb.astype(np.float32) + rng.standard_normal(rgb.shape, dtype=np.float32) * sigma
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: float, rng: np.random.Generator | None = None) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - cv2 always encodes uint8 RGB
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert decoded is not None  # what cv2 just encoded decodes
    return np.ascontiguousarray(decoded[:, :, ::-1])


def _srgb_to_linear_lut() -> np.ndarray:
    v = np.arange(256, dtype=np.float64) / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return np.clip(srgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def exposure(rgb: np.ndarray, ev: float) -> np.ndarray:
    """Scale linear light by 2**ev, clip, re-apply the sRGB curve (a 256-entry LUT)."""
    lut = _linear_to_srgb(_srgb_to_linear_lut() * (2.0**ev))
    return cv2.LUT(rgb, lut)


def overexposure(rgb: np.ndarray, ev: float, rng: np.random.Generator | None = None) -> np.ndarray:
    return exposure(rgb, abs(ev))


def underexposure(rgb: np.ndarray, ev: float, rng: np.random.Generator | None = None) -> np.ndarray:
    return exposure(rgb, -abs(ev))


def defocus(rgb: np.ndarray, radius: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """A lens out of focus: a uniform disk of ``radius`` px (anti-aliased edge)."""
    r = int(np.ceil(radius))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    kernel = np.clip(radius + 0.5 - np.hypot(yy, xx), 0, 1).astype(np.float32)
    blurred: np.ndarray = cv2.filter2D(
        rgb, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT
    )
    return blurred


def soft_background(
    rgb: np.ndarray, radius: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    """The photo as if shot wide open: sharp in an ellipse around its most detailed region
    (where the product's detail view looks), defocused by a disk of ``radius`` px outside,
    with a feathered edge. Not a defect: the score must hold and no blur be reported."""
    rng = rng or np.random.default_rng(0)
    h, w = rgb.shape[:2]
    window = max(1, min(h, w) // 2)
    top, left = most_detailed_window(rgb, window)
    cy, cx = top + window / 2, left + window / 2
    ay, ax = window * rng.uniform(0.5, 0.8), window * rng.uniform(0.5, 0.8)
    yy, xx = np.ogrid[0:h, 0:w]
    distance = np.sqrt(((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2)
    outside = np.clip((distance - 1.0) / 0.35, 0.0, 1.0).astype(np.float32)[..., None]
    soft = defocus(rgb, radius).astype(np.float32)
    mixed = rgb.astype(np.float32) * (1.0 - outside) + soft * outside
    result: np.ndarray = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
    return result


APPLY: dict[str, Callable[..., np.ndarray]] = {
    "blur": blur,
    "noise": noise,
    "jpeg": jpeg,
    "overexposure": overexposure,
    "underexposure": underexposure,
}


def distort(rgb: np.ndarray, family: str, level: float, seed: int = 0) -> np.ndarray:
    return APPLY[family](rgb, level, np.random.default_rng(seed))
