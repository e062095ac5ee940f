"""The subset hold-out of training (``python -m training.train --holdout ss01``): no photo of
the held-out subset, nor any copy made from one, is left to train on."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch", reason="torch is the training extra (.[train])")

from training.train import Distorted, Rated, SoftSets


def test_a_held_out_subset_leaves_the_rated_photos_with_their_mirrored_copies():
    names = np.array(["ss01_a.jpg", "ss03_b.jpg", "ss01_c.jpg", "ss02_d.jpg"])
    x = np.arange(8, dtype=np.float32).reshape(4, 2)
    rated = Rated(x, np.array([0.1, 0.2, 0.3, 0.4], np.float32), -x, names)
    kept, held = rated.without("ss01")
    assert list(kept.names) == ["ss03_b.jpg", "ss02_d.jpg"]
    assert list(held.names) == ["ss01_a.jpg", "ss01_c.jpg"]
    assert kept.mos.tolist() == pytest.approx([0.2, 0.4])
    assert held.mirrored is not None and (held.mirrored == -held.x).all()
    assert kept.mirrored is not None and (kept.mirrored == -kept.x).all()


def test_copies_made_from_a_held_out_photo_are_dropped_set_by_set():
    # two distortion sets of three rows: one from an ss01 photo, one from ss03
    names = np.array(["ss01_a.jpg"] * 3 + ["ss03_b.jpg"] * 3)
    sets = np.arange(6).reshape(2, 3)
    dist = Distorted(np.zeros((6, 2), np.float32), sets, np.zeros((6, 5), np.float32), names)
    assert dist.without("ss01").sets.tolist() == [[3, 4, 5]]
    soft = SoftSets(np.zeros((6, 2), np.float32), sets, names)
    assert soft.without("ss03").sets.tolist() == [[0, 1, 2]]
