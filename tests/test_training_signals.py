"""The measured pixel signals the heads see beside the backbone (training/signals.py).

They are part of the shipped graph, so each must move the way its defect does on a real
photo. torch is the training extra: without it (as in CI) these are skipped.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the training extra (.[train])")

from iqs_daemon.decoding import decode  # noqa: E402
from iqs_daemon.distortions import distort  # noqa: E402
from iqs_daemon.views import make_views  # noqa: E402
from training.signals import LEVELS, SIGNAL_DIM, PixelSignals  # noqa: E402

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos"
CLIPPED_HIGH = len(LEVELS)
GRADIENT = len(LEVELS) + 2
PHASE = len(LEVELS) + 4


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return decode(PHOTOS / "Storm.jpg", min_short_side=1024, max_pixels=50_000_000).rgb


def signals_of(rgb: np.ndarray, view: str) -> np.ndarray:
    pixels = make_views(rgb, 512, 256, 1024)[view]
    with torch.no_grad():
        return PixelSignals()(torch.from_numpy(pixels[None]))[0].numpy()


def test_one_value_per_signal_and_all_finite(photo):
    values = signals_of(photo, "image")
    assert values.shape == (SIGNAL_DIM,)
    assert np.isfinite(values).all()


def test_brightening_clips_more_highlights(photo):
    clipped = [signals_of(distort(photo, "overexposure", ev), "image")[CLIPPED_HIGH]
               for ev in (0, 1, 2)]
    assert clipped[0] < clipped[1] < clipped[2]


def test_jpeg_blocks_make_one_phase_stand_out(photo):
    clean = signals_of(photo, "detail")[PHASE]
    blocky = signals_of(distort(photo, "jpeg", 10), "detail")[PHASE]
    assert blocky > 2 * clean


def test_noise_raises_and_blur_lowers_the_gradient(photo):
    clean = signals_of(photo, "detail")[GRADIENT]
    assert signals_of(distort(photo, "noise", 16), "detail")[GRADIENT] > clean
    assert signals_of(distort(photo, "blur", 3), "detail")[GRADIENT] < clean


@pytest.mark.parametrize(("family", "levels"), [("motion", (3, 10, 28)), ("defocus", (1, 3, 8))])
def test_training_only_blurs_keep_brightness_and_lower_the_gradient(photo, family, levels):
    """Motion blur and disk defocus (training/cache_maps.py) are extra training damage:
    normalised kernels (no brightness change), each level softer than the one before."""
    from training.cache_maps import distort as training_distort

    gradients = [signals_of(photo, "detail")[GRADIENT]]
    for level in levels:
        damaged = training_distort(photo, family, level, seed=1)
        assert damaged.shape == photo.shape and damaged.dtype == np.uint8
        assert abs(float(damaged.mean()) - float(photo.mean())) < 1.0
        gradients.append(signals_of(damaged, "detail")[GRADIENT])
    assert all(a > b for a, b in itertools.pairwise(gradients)), gradients
