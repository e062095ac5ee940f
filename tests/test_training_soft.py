"""The soft-background term of training (training/train.py): what it penalises."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is the training extra (.[train])")

from training.data import Rated  # noqa: E402
from training.features import SOFT_BANDS, SOFT_ROWS, soft_plan  # noqa: E402
from training.train import soft_losses, soft_report  # noqa: E402


def test_only_a_move_past_the_margin_and_a_rising_blur_diagnostic_cost_anything():
    # two sets: clean, then two soft copies
    score = torch.tensor([0.70, 0.69, 0.60, 0.40, 0.45, 0.41])
    diag = torch.zeros(6, 5)
    diag[:, 0] = torch.tensor([0.1, 0.1, 0.4, 0.2, 0.2, 0.21])
    hold, calm = soft_losses(score, diag, 2, margin=0.02)
    # 0.70 -> 0.60 falls past the margin, 0.40 -> 0.45 rises past it: both cost, over 4 copies
    assert hold.item() == pytest.approx((0.08 + 0.03) / 4)
    # only 0.1 -> 0.4 rises past 0.02: (0.3 - 0.02) / 4
    assert calm.item() == pytest.approx(0.28 / 4)


def test_the_plan_gives_each_photo_a_clean_copy_and_one_copy_per_band(tmp_path):
    items = [Rated(tmp_path / f"{i}.jpg", 0.8) for i in range(5)]
    plan = soft_plan(items, seed=1)
    assert len(plan) == 5 * SOFT_ROWS
    for start in range(0, len(plan), SOFT_ROWS):
        clean, *copies = plan[start : start + SOFT_ROWS]
        assert clean["family"] == "none"
        assert len({entry["scale"] for entry in plan[start : start + SOFT_ROWS]}) == 1
        for (lo, hi), entry in zip(SOFT_BANDS, copies, strict=True):
            assert entry["family"] == "soft"
            assert lo * entry["scale"] <= entry["level"] <= hi * entry["scale"]


def test_the_report_counts_falls_and_new_blur_reasons():
    score = np.array([[0.70, 0.69, 0.60], [0.40, 0.45, 0.41]])
    diag = np.zeros((2, 3, 5))
    diag[0, :, 0] = [0.1, 0.1, 0.4]
    report = soft_report(score, diag)
    assert report["fell_over_5_points"] == pytest.approx(0.25)
    assert report["blur_reason_new"] == pytest.approx(0.25)
    assert report["score_change_mean"] == pytest.approx((-1 - 10 + 5 + 1) / 4)
