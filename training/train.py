"""Step 2: train the head ensemble on cached features.  ``python -m training.train --help``

Three signals, one network:

* opinion scores: MSE plus a batch correlation term on the rated training photos;
* direction: on each distorted copy set (clean, then three bands of growing damage per
  family) the score must fall at every step (pairwise hinge), and the strongest band must
  sit below the Rejected threshold but above zero (hinges);
* diagnostics: each diagnostic regresses the severity of its own family (0 elsewhere and
  on the clean copy) and must also rise step by step.

Only our validation photos (carved from the official train split) are used to report;
the official test split is never read here.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .extract import CACHE
from .features import FAMILIES, severity
from .head import DIAGNOSTICS, Ensemble, QualityHead
from .metrics import plcc, rmse, srocc
from .split import train_val_indices

log = logging.getLogger(__name__)

RUNS = Path(__file__).parent / "runs"
DIAGNOSTIC_OF_FAMILY = {"blur": 0, "noise": 1, "jpeg": 2, "underexposure": 3, "overexposure": 4}


@dataclass(frozen=True)
class TrainConfig:
    heads: int = 3
    epochs: int = 40
    hidden: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch: int = 128  # rated photos per step; as many distortion sets ride along
    sets_per_step: int = 8
    rank_margin: float = 0.03  # MOS units (0..1)
    reject_margin: float = 0.05
    floor: float = 0.03  # lowest score (MOS units) the ranking may push a copy to
    # 0.3: at 1.0 validation SROCC fell from 0.841 to 0.824 with no gain in direction.
    rank_weight: float = 0.3
    reject_weight: float = 0.3
    diagnostic_weight: float = 0.3
    correlation_weight: float = 0.1
    # Extra weight of the ranking hinge per family (FAMILIES order); 1.0 each by default.
    family_rank_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    signals: bool = True  # measured pixel signals beside the backbone features (signals.py)
    # Soft-background sets (cache_maps.cache_soft): the score may not fall more than
    # soft_margin below the clean copy's, nor the blur diagnostic rise, when only the
    # background is defocused.
    soft_weight: float = 0.1  # 0.3 cost 0.02 validation SROCC (models/README.md, E4)
    soft_margin: float = 0.02
    soft_sets_per_step: int = 8


def in_subset(names: np.ndarray, subset: str) -> np.ndarray:
    """Which of ``names`` are photos of the BIQ2021 ``subset`` (their names start with it)."""
    return np.char.startswith(np.asarray(names).astype(str), subset)


@dataclass
class Rated:
    x: np.ndarray  # float32 features, both views
    mos: np.ndarray
    mirrored: np.ndarray | None = None  # the same photos mirrored, when extracted
    names: np.ndarray | None = None  # file names (their prefix is the BIQ2021 subset)

    def without(self, subset: str) -> tuple[Rated, Rated]:
        """(this set without ``subset``'s photos, those photos alone)."""
        assert self.names is not None
        inside = in_subset(self.names, subset)

        def rows(keep: np.ndarray) -> Rated:
            mirrored = None if self.mirrored is None else self.mirrored[keep]
            return Rated(self.x[keep], self.mos[keep], mirrored, self.names[keep])

        return rows(~inside), rows(inside)


@dataclass
class Distorted:
    x: np.ndarray
    sets: np.ndarray  # (n_sets, 16) row indices: clean, then family-major bands
    targets: np.ndarray  # (n_rows, 5) diagnostic severities
    names: np.ndarray | None = None  # per row: the photo it was made from

    def without(self, subset: str) -> Distorted:
        assert self.names is not None
        inside = in_subset(self.names[self.sets[:, 0]], subset)
        return Distorted(self.x, self.sets[~inside], self.targets, self.names)


def features(
    d: np.lib.npyio.NpzFile, rows: np.ndarray | slice = slice(None), signals: bool = True
) -> np.ndarray:
    """Per photo: whole view's backbone features and signals, then the detail view's (the
    order export.QualityModel concatenates them in)."""
    parts = (
        ("image", "image_signals", "detail", "detail_signals") if signals else ("image", "detail")
    )
    return np.concatenate([d[key][rows].astype(np.float32) for key in parts], axis=1)


@dataclass
class SoftSets:
    x: np.ndarray
    sets: np.ndarray  # (n_sets, 1 + bands) row indices: clean, then soft backgrounds
    names: np.ndarray | None = None  # per row: the photo it was made from

    def without(self, subset: str) -> SoftSets:
        assert self.names is not None
        inside = in_subset(self.names[self.sets[:, 0]], subset)
        return SoftSets(self.x, self.sets[~inside], self.names)


def soft_losses(
    score: torch.Tensor, diag: torch.Tensor, n_sets: int, margin: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score moved more than ``margin`` from the clean copy's, blur diagnostic rose).

    Both ways: a one-sided hinge (no fall) let the heads score soft copies 11 points
    above their originals, and validation SROCC fell by 0.02."""
    s = score.view(n_sets, -1)
    blur = diag.view(n_sets, s.shape[1], len(DIAGNOSTICS))[:, :, 0]
    hold = torch.relu((s[:, :1] - s[:, 1:]).abs() - margin).mean()
    calm = torch.relu(blur[:, 1:] - blur[:, :1] - 0.02).mean()
    return hold, calm


def load_rated(name: str, signals: bool = True, mirrored: bool = True) -> tuple[Rated, Rated]:
    """(fit, validation), both from the official train split; the fit photos come with
    their mirrored copies' features when ``mirrored-NAME.npz`` was extracted."""
    d = np.load(CACHE / f"rated-{name}.npz")
    train = np.flatnonzero(d["split"] == 0)
    fit, val = train_val_indices(len(train))
    fit_set, val_set = (
        Rated(features(d, train[i], signals), d["mos"][train[i]].astype(np.float32),
              names=d["names"][train[i]])
        for i in (fit, val)
    )
    mirror_path = CACHE / f"mirrored-{name}.npz"
    if mirrored and mirror_path.exists():
        m = np.load(mirror_path)  # rows follow the official train list, as ``train`` does
        assert list(m["names"][fit]) == list(d["names"][train[fit]])
        fit_set.mirrored = features(m, fit, signals)
    return fit_set, val_set


def load_distorted(path: Path, signals: bool = True) -> Distorted:
    d = np.load(path)
    plan = json.loads(str(d["plan"]))
    x = features(d, signals=signals)
    targets = np.zeros((len(plan), len(DIAGNOSTICS)), np.float32)
    groups: dict[int, list[int]] = {}
    for row, entry in enumerate(plan):
        groups.setdefault(entry["group"], []).append(row)
        if entry["family"] != "none":
            targets[row, DIAGNOSTIC_OF_FAMILY[entry["family"]]] = severity(
                entry["family"], entry["level"]
            )
    sets = np.array([rows for rows in groups.values()], np.int64)
    return Distorted(x, sets, targets, d["names"])


def load_soft(path: Path, signals: bool = True) -> tuple[SoftSets, SoftSets]:
    """(fit sets, validation sets) of an extract_soft cache."""
    from .features import SOFT_ROWS

    d = np.load(path)
    plan = json.loads(str(d["plan"]))
    x = features(d, signals=signals)
    sets = np.arange(len(plan)).reshape(-1, SOFT_ROWS)
    is_val = np.array([plan[row[0]]["val"] for row in sets])
    names = np.array([entry["name"] for entry in plan])
    return SoftSets(x, sets[~is_val], names), SoftSets(x, sets[is_val], names)


def direction_losses(
    score: torch.Tensor, diag: torch.Tensor, n_sets: int, cfg: TrainConfig, reject_below: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """score, diag: rows of ``n_sets`` distortion sets, each clean then 5 families x 3 bands."""
    s = score.view(n_sets, 1 + 3 * len(FAMILIES))
    clean, bands = s[:, :1], s[:, 1:].reshape(n_sets, len(FAMILIES), 3)
    chain = torch.cat([clean.unsqueeze(1).expand(-1, len(FAMILIES), 1), bands], dim=2)
    family_weights = torch.tensor(cfg.family_rank_weights).view(1, -1, 1)
    rank = (
        torch.relu(cfg.rank_margin - (chain[:, :, :-1] - chain[:, :, 1:])) * family_weights
    ).mean()
    reject = torch.relu(bands[:, :, 2] - (reject_below - cfg.reject_margin)).mean()
    # ... but not below zero: the exported score is clipped to 0..100, and two copies
    # clipped to 0 would tie instead of keeping their order.
    reject = reject + torch.relu(cfg.floor - bands).mean()
    # The matching diagnostic rises along the same chain.
    g = diag.view(n_sets, 1 + 3 * len(FAMILIES), len(DIAGNOSTICS))
    rises = []
    for f, family in enumerate(FAMILIES):
        k = DIAGNOSTIC_OF_FAMILY[family]
        series = torch.cat([g[:, :1, k], g[:, 1 + 3 * f : 4 + 3 * f, k]], dim=1)
        rises.append(torch.relu(0.02 - (series[:, 1:] - series[:, :-1])))
    return rank, reject, torch.cat(rises, dim=1).mean()


def correlation_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = pred - pred.mean(), target - target.mean()
    return 1 - (p * t).sum() / (p.norm() * t.norm() + 1e-8)


def train_head(
    seed: int,
    fit: Rated,
    dist: Distorted,
    mean: torch.Tensor,
    std: torch.Tensor,
    cfg: TrainConfig,
    reject_below: float,
    soft: SoftSets | None = None,
    init: QualityHead | None = None,
) -> QualityHead:
    """One head from ``seed``; from ``init``'s weights (and its standardisation) when given."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    head = QualityHead(mean, std, hidden=cfg.hidden) if init is None else copy.deepcopy(init)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = len(fit.mos) // cfg.batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, cfg.lr, total_steps=cfg.epochs * steps_per_epoch
    )
    x_fit, y_fit = torch.from_numpy(fit.x), torch.from_numpy(fit.mos)
    x_mirror = None if fit.mirrored is None else torch.from_numpy(fit.mirrored)
    x_dist, t_dist = torch.from_numpy(dist.x), torch.from_numpy(dist.targets)
    bce = nn.BCELoss()
    for epoch in range(cfg.epochs):
        order = rng.permutation(len(y_fit))
        head.train()
        for step in range(steps_per_epoch):
            idx = torch.from_numpy(order[step * cfg.batch : (step + 1) * cfg.batch])
            sets = dist.sets[rng.choice(len(dist.sets), cfg.sets_per_step, replace=False)]
            rows = torch.from_numpy(sets.reshape(-1))
            x = x_fit[idx]
            if x_mirror is not None:  # each photo as shot or mirrored, at random
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
                x = torch.where(flip[:, None], x_mirror[idx], x)
            parts = [x, x_dist[rows]]
            if soft is not None:
                soft_sets = soft.sets[
                    rng.choice(len(soft.sets), cfg.soft_sets_per_step, replace=False)
                ]
                parts.append(torch.from_numpy(soft.x[soft_sets.reshape(-1)]))
            score, diag = head(torch.cat(parts))
            n_d = len(idx) + len(rows)
            s_r, s_d, d_d = score[: len(idx)], score[len(idx) : n_d], diag[len(idx) : n_d]
            mos_loss = nn.functional.mse_loss(s_r, y_fit[idx]) / 0.0373  # MOS variance
            corr = correlation_loss(s_r, y_fit[idx])
            rank, reject, rise = direction_losses(s_d, d_d, len(sets), cfg, reject_below)
            diag_loss = bce(d_d, t_dist[rows])
            loss = (
                mos_loss
                + cfg.correlation_weight * corr
                + cfg.rank_weight * rank / cfg.rank_margin
                + cfg.reject_weight * reject / cfg.reject_margin
                + cfg.diagnostic_weight * (diag_loss + rise / 0.02)
            )
            if soft is not None:
                hold, calm = soft_losses(
                    score[n_d:], diag[n_d:], cfg.soft_sets_per_step, cfg.soft_margin
                )
                loss = loss + cfg.soft_weight * (hold / cfg.soft_margin + calm / 0.02)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if epoch % 10 == 9 or epoch == cfg.epochs - 1:
            log.info(
                "head %d epoch %d: mos %.3f rank %.3f reject %.3f diag %.3f rise %.3f",
                seed,
                epoch + 1,
                mos_loss.item(),
                rank.item(),
                reject.item(),
                diag_loss.item(),
                rise.item(),
            )
    return head.eval()


@torch.no_grad()
def predict(model: nn.Module, x: np.ndarray, batch: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    outs = [model(torch.from_numpy(x[i : i + batch])) for i in range(0, len(x), batch)]
    return (torch.cat([o[0] for o in outs]).numpy(), torch.cat([o[1] for o in outs]).numpy())


def soft_report(score: np.ndarray, diag: np.ndarray, reason_threshold: float = 0.2) -> dict:
    """score (n_sets, SOFT_ROWS), diag (n_sets, SOFT_ROWS, 5): what a soft background did."""
    change = (score[:, 1:] - score[:, :1]) * 100
    blur = diag[:, :, 0]
    return {
        "score_change_mean": round(float(change.mean()), 2),
        "score_change_p10": round(float(np.percentile(change, 10)), 2),
        "fell_over_5_points": round(float((change < -5).mean()), 3),
        "blur_change_mean": round(float((blur[:, 1:] - blur[:, :1]).mean()), 3),
        "blur_reason_new": round(
            float(((blur[:, 1:] >= reason_threshold) & (blur[:, :1] < reason_threshold)).mean()),
            3,
        ),
    }


def direction_report(
    model: nn.Module, dist: Distorted, reject_below: float
) -> dict[str, dict[str, float]]:
    """On held-back distortion sets: share of steps where the score fell, per family."""
    score, diag = predict(model, dist.x)
    s = score[dist.sets]
    report = {}
    for f, family in enumerate(FAMILIES):
        chain = np.concatenate([s[:, :1], s[:, 1 + 3 * f : 4 + 3 * f]], axis=1)
        k = DIAGNOSTIC_OF_FAMILY[family]
        g = diag[dist.sets][:, :, k]
        dchain = np.concatenate([g[:, :1], g[:, 1 + 3 * f : 4 + 3 * f]], axis=1)
        report[family] = {
            "score_fell": float((np.diff(chain, axis=1) < 0).mean()),
            "strongest_rejected": float((chain[:, -1] < reject_below).mean()),
            "diagnostic_rose": float((np.diff(dchain, axis=1) > 0).mean()),
        }
    return report


def macro_f1(truth: np.ndarray, pred: np.ndarray, classes: int = 3) -> float:
    f1 = []
    for c in range(classes):
        tp = np.sum((pred == c) & (truth == c))
        denom = np.sum(pred == c) + np.sum(truth == c)
        f1.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1))


def fit_thresholds(
    score: np.ndarray, mos: np.ndarray, tertiles: np.ndarray, clean_diagnostics: np.ndarray
) -> dict:
    """Verdict thresholds on the 0..100 score, chosen on training-split photos.

    Rejected / Pending / Accepted should match the MOS tertiles (best macro-F1); stars
    split the range further; a diagnostic becomes a reason above what 95 % of clean
    (undistorted) photos show.
    """
    truth = np.digitize(mos, tertiles)
    grid = np.quantile(score, np.linspace(0.1, 0.9, 81))
    best = max(
        (macro_f1(truth, np.digitize(score, [r, a])), r, a)
        for i, r in enumerate(grid)
        for a in grid[i + 1 :]
    )
    _, reject_below, accept_from = best
    top = np.quantile(score, [0.8, 0.95])
    stars = [
        reject_below,
        (reject_below + accept_from) / 2,
        accept_from,
        max(top[0], accept_from + 1),
        max(top[1], accept_from + 2),
    ]
    reason = float(np.clip(np.quantile(clean_diagnostics, 0.95), 0.2, 0.6))
    return {
        "reject_below": round(float(reject_below), 1),
        "accept_from": round(float(accept_from), 1),
        "stars": [round(float(v), 1) for v in stars],
        "reason_threshold": round(reason, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--distorted", type=Path, required=True, help="distorted-*.npz cache")
    parser.add_argument("--heads", type=int, default=TrainConfig.heads)
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--hidden", type=int, default=TrainConfig.hidden)
    parser.add_argument(
        "--direction-weight",
        type=float,
        default=TrainConfig.rank_weight,
        help="weight of the ranking, reject and diagnostic terms",
    )
    parser.add_argument(
        "--no-signals", action="store_true", help="backbone features only (ablation)"
    )
    parser.add_argument(
        "--no-mirrored", action="store_true", help="ignore the mirrored photos (ablation)"
    )
    parser.add_argument(
        "--family-weight",
        action="append",
        default=[],
        metavar="FAMILY=W",
        help="extra ranking weight for one family, e.g. overexposure=3",
    )
    parser.add_argument(
        "--soft", type=Path, default=None, help="soft-background cache (extract_soft) to train on"
    )
    parser.add_argument("--soft-weight", type=float, default=TrainConfig.soft_weight)
    parser.add_argument(
        "--holdout", metavar="SUBSET", default=None,
        help="leave one BIQ2021 subset (ss01, ss02, ss03) out of training and report on its "
             "official-train photos: a check of generalisation, not a model to ship",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RUNS / "head.pt")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    w = args.direction_weight
    family_weights = dict.fromkeys(FAMILIES, 1.0)
    for item in args.family_weight:
        family, weight = item.split("=")
        family_weights[family] = float(weight)
    cfg = TrainConfig(
        heads=args.heads,
        epochs=args.epochs,
        hidden=args.hidden,
        rank_weight=w,
        reject_weight=w,
        diagnostic_weight=w,
        signals=not args.no_signals,
        family_rank_weights=tuple(family_weights[f] for f in FAMILIES),
        soft_weight=args.soft_weight,
    )

    fit, val = load_rated(args.backbone, cfg.signals, not args.no_mirrored)
    dist = load_distorted(args.distorted, cfg.signals)
    held_out = None
    if args.holdout:
        (fit, held_fit), (val, held_val) = fit.without(args.holdout), val.without(args.holdout)
        held_out = Rated(np.concatenate([held_fit.x, held_val.x]),
                         np.concatenate([held_fit.mos, held_val.mos]))
        dist = dist.without(args.holdout)
    # Hold back one distortion set in ten to check direction on photos the heads never saw.
    held = np.zeros(len(dist.sets), bool)
    held[np.random.default_rng(0).permutation(len(dist.sets))[: len(dist.sets) // 10]] = True
    train_dist = Distorted(dist.x, dist.sets[~held], dist.targets, dist.names)
    check_dist = Distorted(dist.x, dist.sets[held], dist.targets, dist.names)

    all_x = np.concatenate([fit.x, dist.x[dist.sets[~held].reshape(-1)]])
    mean, std = torch.from_numpy(all_x.mean(0)), torch.from_numpy(all_x.std(0) + 1e-3)
    del all_x
    tertiles = np.quantile(np.concatenate([fit.mos, val.mos]), [1 / 3, 2 / 3])
    started = time.perf_counter()
    soft_fit = soft_val = None
    if args.soft is not None:
        soft_fit, soft_val = load_soft(args.soft, cfg.signals)
        if args.holdout:
            soft_fit, soft_val = soft_fit.without(args.holdout), soft_val.without(args.holdout)
    heads = [
        train_head(seed, fit, train_dist, mean, std, cfg, float(tertiles[0]),
                   soft_fit if cfg.soft_weight > 0 else None)
        for seed in range(cfg.heads)
    ]
    model = Ensemble(heads).eval()
    pred, _ = predict(model, val.x)
    _, clean_diag = predict(model, dist.x[check_dist.sets[:, 0]])
    thresholds = fit_thresholds(pred * 100, val.mos, tertiles, clean_diag)
    figures = {
        "val_srocc": srocc(pred, val.mos),
        "val_plcc": plcc(pred, val.mos),
        "val_rmse": rmse(pred, val.mos),
        "per_head_val_srocc": [srocc(predict(h, val.x)[0], val.mos) for h in heads],
        "val_macro_f1": macro_f1(
            np.digitize(val.mos, tertiles),
            np.digitize(pred * 100, [thresholds["reject_below"], thresholds["accept_from"]]),
        ),
        "direction_held_back": direction_report(
            model, check_dist, thresholds["reject_below"] / 100
        ),
        "train_seconds": round(time.perf_counter() - started),
    }
    if held_out is not None:
        pred_held, _ = predict(model, held_out.x)
        figures[f"holdout_{args.holdout}"] = {
            "photos": len(held_out.mos),
            "srocc": srocc(pred_held, held_out.mos),
            "plcc": plcc(pred_held, held_out.mos),
        }
    if soft_val is not None:
        s_soft, d_soft = predict(model, soft_val.x[soft_val.sets.reshape(-1)])
        figures["soft_background_val"] = soft_report(
            s_soft.reshape(soft_val.sets.shape), d_soft.reshape(*soft_val.sets.shape, -1),
            thresholds["reason_threshold"],
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "state": model.state_dict(),
            "heads": cfg.heads,
            "hidden": cfg.hidden,
            "signals": cfg.signals,
            "mirrored": fit.mirrored is not None,
            "feature_dim": int(mean.numel()),
            "mos_tertiles": tertiles.tolist(),
            "thresholds": thresholds,
            "config": asdict(cfg),
            "figures": figures,
        },
        args.out,
    )
    print(json.dumps({"thresholds": thresholds, **figures}, indent=2))


if __name__ == "__main__":
    main()
