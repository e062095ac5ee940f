"""Choose the backbone by measurement: ridge on cached features, validation split only."""

from __future__ import annotations

import sys

import numpy as np

from .extract import CACHE
from .metrics import plcc, srocc
from .split import train_val_indices


def ridge_fit_predict(x_tr, y_tr, x_va, alpha):
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    a, b = (x_tr - mu) / sd, (x_va - mu) / sd
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y_tr - y_tr.mean()))
    return b @ w + y_tr.mean()


def main() -> None:
    for name in sys.argv[1:]:
        d = np.load(CACHE / f"rated-{name}.npz")
        train = np.flatnonzero(d["split"] == 0)
        tr, va = train_val_indices(len(train))
        tr, va = train[tr], train[va]
        for views in (("image",), ("image", "detail")):
            x = np.concatenate([d[v].astype(np.float32) for v in views], axis=1)
            y = d["mos"]
            best = max(
                (
                    (
                        srocc(p := ridge_fit_predict(x[tr], y[tr], x[va], a), y[va]),
                        plcc(p, y[va]),
                        a,
                    )
                    for a in (1e3, 3e3, 1e4, 3e4, 1e5)
                ),
            )
            print(
                f"{name} {'+'.join(views):13s} val SROCC {best[0]:.4f} "
                f"PLCC {best[1]:.4f} (alpha {best[2]})"
            )


if __name__ == "__main__":
    main()
