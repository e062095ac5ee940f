"""Agreement between predictions and opinion scores."""

from __future__ import annotations

import numpy as np
from scipy import stats


def srocc(pred: np.ndarray, mos: np.ndarray) -> float:
    return float(stats.spearmanr(pred, mos).statistic)


def plcc(pred: np.ndarray, mos: np.ndarray) -> float:
    return float(stats.pearsonr(pred, mos).statistic)


def rmse(pred: np.ndarray, mos: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred - mos) ** 2)))
