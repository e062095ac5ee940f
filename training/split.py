"""Our own validation split, carved out of the official training split (fixed seed)."""

from __future__ import annotations

import numpy as np

VALIDATION_SHARE = 0.1
SEED = 2021


def train_val_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(SEED).permutation(n)
    n_val = round(n * VALIDATION_SHARE)
    return np.sort(order[n_val:]), np.sort(order[:n_val])
