"""The protocol's damage functions that have no model in them: what they do to pixels."""

from __future__ import annotations

import cv2
import numpy as np

from iqs_daemon.distortions import defocus, soft_background
from iqs_daemon.views import most_detailed_window


def textured_photo() -> np.ndarray:
    """Soft grain everywhere and one patch of checkerboard: the subject in focus."""
    rng = np.random.default_rng(3)
    grain = cv2.GaussianBlur(rng.uniform(60, 200, (600, 900)).astype(np.float32), (0, 0), 1.0)
    photo = np.repeat(grain[..., None], 3, axis=2)
    yy, xx = np.mgrid[0:120, 0:120]
    photo[300:420, 560:680] = (((yy // 8 + xx // 8) % 2) * 200 + 25)[..., None]
    return np.clip(photo, 0, 255).astype(np.uint8)


def detail(rgb: np.ndarray) -> float:
    return float(np.abs(cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_32F)).mean())


def test_a_disk_defocus_keeps_brightness_and_removes_fine_detail():
    photo = textured_photo()
    soft = defocus(photo, 4.0)
    assert abs(float(soft.mean()) - float(photo.mean())) < 1.0
    assert detail(soft) < 0.3 * detail(photo)


def test_a_soft_background_keeps_the_subject_sharp_and_softens_the_rest():
    photo = textured_photo()
    window = min(photo.shape[:2]) // 2
    top, left = most_detailed_window(photo, window)
    assert top <= 300 and 420 <= top + window and left <= 560 and 680 <= left + window
    soft = soft_background(photo, 6.0, np.random.default_rng(0))
    assert soft.shape == photo.shape and soft.dtype == np.uint8
    subject = (slice(330, 390), slice(590, 650))  # well inside the sharp ellipse
    assert np.array_equal(soft[subject], photo[subject])
    corner = (slice(0, 120), slice(0, 160))  # far outside it
    assert detail(soft[corner]) < 0.5 * detail(photo[corner])
    assert abs(float(soft.mean()) - float(photo.mean())) < 1.5
