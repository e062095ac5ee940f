"""Step 2 for 2.0: fine-tune the backbone's last blocks and the heads from the cached maps.
``python -m training.finetune --help``

Two stages, both on our fit split only (training/split.py; the official test split is
never read here):

A. frozen heads, 1.1's recipe (training.train.train_head) on the cached frozen MLSP
   features and signals, with the five protocol families: the baseline, and the start
   of stage B;
B. blocks ``--first``-15 (default 15: stage 7 only; ``CUT`` = 13 reaches back into stage 6)
   and the 1x1 head of EfficientNet-Lite0 are trained together with the heads, from the
   cached output of block ``CUT - 1`` (blocks before ``--first`` run without gradients).
   Batch-norm statistics stay frozen (the backbone is kept in eval mode; its affine
   weights train). The pooled features of stages that end before ``CUT`` come from the
   cache. Losses as in stage A; the direction terms cover every family of
   cache_maps.ALL_FAMILIES (motion blur and disk defocus beside the protocol's five; both
   feed the blur diagnostic).

After stage B it also reports blends of both stages' predictions (W x fine-tuned +
(1 - W) x stage A), which ``training.export --blend W`` builds as one graph.

``--holdout ss01`` leaves one BIQ2021 subset out of training and reports on it, for
stage A and stage B alike: the generalisation check of models/README.md.

The 2.0 candidate of models/README.md (not shipped):
``python -m training.finetune --out training/runs/finetuned.pt`` (about 30 minutes on 2
cores), then ``python -m training.export --head training/runs/finetuned.pt --int8``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import train as frozen
from .backbone import MLSPBackbone, _mean_std, load_efficientnet_lite
from .cache_maps import ALL_FAMILIES, CUT, frozen_dim, maps_dir
from .features import FAMILIES, SOFT_ROWS, severity
from .head import DIAGNOSTICS, Ensemble
from .metrics import plcc, rmse, srocc
from .split import train_val_indices

log = logging.getLogger(__name__)

#: The diagnostic each family must raise; motion blur and defocus are blur.
DIAGNOSTIC_OF = {**frozen.DIAGNOSTIC_OF_FAMILY, "motion": 0, "defocus": 0}
SET_ROWS = 1 + 3 * len(ALL_FAMILIES)
PROTOCOL_ROWS = 1 + 3 * len(FAMILIES)  # the first rows of a set: clean + the protocol's five


@dataclass(frozen=True)
class FineTuneConfig:
    heads: int = 1
    head_epochs: int = 40  # stage A
    epochs: int = 1  # stage B
    batch: int = 32  # rated photos per step of stage B
    sets_per_step: int = 1  # distortion sets (22 copies each) per step of stage B
    first: int = 15  # first trained block (CUT: blocks 13-15; 15: stage 7 only)
    lr_backbone: float = 1e-4
    lr_head: float = 1e-4
    weight_decay: float = 1e-4  # backbone; heads keep stage A's 1e-2
    rank_margin: float = 0.03
    reject_margin: float = 0.05
    floor: float = 0.03
    direction_weight: float = 0.3  # ranking, reject and diagnostic terms, as 1.1
    correlation_weight: float = 0.1
    flip: bool = False  # mirror the cached maps left-right at random (see augment)
    soft_weight: float = 0.3  # soft-background term of stage A (train.TrainConfig)
    refine_lr: float = 2e-4  # stage A continuing given heads (--init-heads, --head-epochs)


class Cache:
    """The memory-mapped arrays of one cache folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.a = {
            k: np.load(folder / f"{k}.npy", mmap_mode="r")
            for k in (
                "map_image",
                "map_detail",
                "feat_image",
                "feat_detail",
                "sig_image",
                "sig_detail",
            )
        }

    def frozen_features(self, rows) -> np.ndarray:
        """1.1's head input: whole view's MLSP + signals, then the detail view's."""
        return np.concatenate(
            [
                self.a[k][rows].astype(np.float32)
                for k in ("feat_image", "sig_image", "feat_detail", "sig_detail")
            ],
            axis=1,
        )

    def batch(self, rows: np.ndarray, fdim: int) -> tuple[dict[str, torch.Tensor], np.ndarray]:
        rows = np.sort(rows)  # memmap reads in file order
        out = {}
        for view in ("image", "detail"):
            out[f"map_{view}"] = torch.from_numpy(self.a[f"map_{view}"][rows].astype(np.float32))
            out[f"frozen_{view}"] = torch.from_numpy(
                self.a[f"feat_{view}"][rows, :fdim].astype(np.float32)
            )
            out[f"sig_{view}"] = torch.from_numpy(
                np.asarray(self.a[f"sig_{view}"][rows], np.float32)
            )
        return out, rows


class Tail(nn.Module):
    """Blocks ``CUT``.. and the 1x1 head of the backbone, from a cached block output to the
    trainable part of the MLSP features (the same values MLSPBackbone pools)."""

    def __init__(self, backbone: MLSPBackbone, first: int = CUT):
        super().__init__()
        self.net = backbone.net
        self.first = first  # blocks CUT..first-1 run frozen, without gradients
        self.ends = [i for i in backbone.stage_ends if i >= CUT]

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        net, x, pooled = self.net, fmap, []
        for i in range(CUT, len(net._blocks)):
            with torch.set_grad_enabled(torch.is_grad_enabled() and i >= self.first):
                x = net._blocks[i](x)
            if i in self.ends:
                pooled.append(_mean_std(x))
        x = net._swish(net._bn1(net._conv_head(x)))
        pooled.append(_mean_std(x))
        return torch.cat(pooled, dim=1)


def head_input(tail: Tail, b: dict[str, torch.Tensor]) -> torch.Tensor:
    """Same layout as export.QualityModel: whole view's MLSP and signals, then the detail's."""
    parts = []
    for view in ("image", "detail"):
        parts += [b[f"frozen_{view}"], tail(b[f"map_{view}"]), b[f"sig_{view}"]]
    return torch.cat(parts, dim=1)


def augment(b: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """Mirror each cached map left-right at random. Not the map of the mirrored photo
    (the frozen convolutions are not symmetric), but a cheap, label-preserving jitter."""
    n = b["map_image"].shape[0]
    flip = torch.from_numpy(rng.random(n) < 0.5)[:, None, None, None]
    out = dict(b)
    for view in ("image", "detail"):
        m = b[f"map_{view}"]
        out[f"map_{view}"] = torch.where(flip, m.flip(3), m)
    return out


def direction_losses(score, diag, n_sets: int, cfg: FineTuneConfig, reject_below: float):
    """As train.direction_losses, over every family of a SET_ROWS-row set."""
    s = score.view(n_sets, SET_ROWS)
    clean, bands = s[:, :1], s[:, 1:].reshape(n_sets, len(ALL_FAMILIES), 3)
    chain = torch.cat([clean.unsqueeze(1).expand(-1, len(ALL_FAMILIES), 1), bands], dim=2)
    rank = torch.relu(cfg.rank_margin - (chain[:, :, :-1] - chain[:, :, 1:])).mean()
    reject = torch.relu(bands[:, :, 2] - (reject_below - cfg.reject_margin)).mean()
    reject = reject + torch.relu(cfg.floor - bands).mean()
    g = diag.view(n_sets, SET_ROWS, len(DIAGNOSTICS))
    rises = []
    for f, family in enumerate(ALL_FAMILIES):
        k = DIAGNOSTIC_OF[family]
        series = torch.cat([g[:, :1, k], g[:, 1 + 3 * f : 4 + 3 * f, k]], dim=1)
        rises.append(torch.relu(0.02 - (series[:, 1:] - series[:, :-1])))
    return rank, reject, torch.cat(rises, dim=1).mean()


def diagnostic_targets(plan: list[dict]) -> np.ndarray:
    targets = np.zeros((len(plan), len(DIAGNOSTICS)), np.float32)
    for row, entry in enumerate(plan):
        family = entry["family"]
        if family == "none":
            continue
        if family == "motion":  # streak length 28 px ~ Gaussian sigma 8
            level = entry["level"] / 3.5
        elif family == "defocus":  # disk radius r ~ Gaussian sigma r
            level = entry["level"]
        else:
            level = entry["level"]
        targets[row, DIAGNOSTIC_OF[family]] = severity(
            "blur" if family in ("motion", "defocus") else family, level
        )
    return targets


@torch.no_grad()
def predict_cache(
    tail: Tail, ensemble: Ensemble, cache: Cache, rows: np.ndarray, fdim: int, batch: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    scores, diags = [], []
    order = np.argsort(rows)
    for i in range(0, len(rows), batch):
        b, _ = cache.batch(rows[order][i : i + batch], fdim)
        s, d = ensemble(head_input(tail, b))
        scores.append(s.numpy())
        diags.append(d.numpy())
    s, d = np.concatenate(scores), np.concatenate(diags)
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return s[back], d[back]


@torch.no_grad()
def predict_frozen(ensemble: Ensemble, cache: Cache, rows: np.ndarray) -> np.ndarray:
    """Stage A's heads on the frozen backbone's features (1.1's recipe)."""
    order = np.argsort(rows)
    score = frozen.predict(ensemble, cache.frozen_features(rows[order]))[0]
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return score[back]


class SoftCache:
    """cache_maps.cache_soft's folder: the frozen features of clean and soft-background
    copies, in sets, split into fit photos (trained on) and validation photos."""

    def __init__(self, folder: Path):
        cache = Cache(folder)
        self.x = cache.frozen_features(slice(None))
        plan = json.loads((folder / "plan.json").read_text())
        sets = np.arange(len(plan)).reshape(-1, SOFT_ROWS)
        is_val = np.array([plan[row[0]]["val"] for row in sets])
        self.fit_sets, self.val_sets = sets[~is_val], sets[is_val]


def direction_report(score: np.ndarray, diag: np.ndarray, reject_below: float) -> dict:
    """score (n_sets, SET_ROWS), diag (n_sets, SET_ROWS, 5): per family, the share of steps
    where the score fell (and the diagnostic rose)."""
    report = {}
    for f, family in enumerate(ALL_FAMILIES):
        chain = np.concatenate([score[:, :1], score[:, 1 + 3 * f : 4 + 3 * f]], axis=1)
        k = DIAGNOSTIC_OF[family]
        dchain = np.concatenate([diag[:, :1, k], diag[:, 1 + 3 * f : 4 + 3 * f, k]], axis=1)
        report[family] = {
            "score_fell": round(float((np.diff(chain, axis=1) < 0).mean()), 3),
            "strongest_rejected": round(float((chain[:, -1] < reject_below).mean()), 3),
            "diagnostic_rose": round(float((np.diff(dchain, axis=1) > 0).mean()), 3),
        }
    return report


def run(
    biq_cache: Path,
    distorted: Path,
    cfg: FineTuneConfig,
    holdout: str | None,
    backbone: str,
    out: Path,
    threads: int,
    max_steps: int = 0,
    init_heads: Path | None = None,
    soft_cache: Path | None = None,
) -> dict:
    torch.set_num_threads(threads)
    rated, dist = Cache(biq_cache), Cache(distorted)
    soft = SoftCache(soft_cache) if soft_cache is not None else None
    mos = np.load(biq_cache / "mos.npy")
    names = json.loads((biq_cache / "names.json").read_text())
    plan = json.loads((distorted / "plan.json").read_text())
    fit, val = train_val_indices(len(mos))
    held_rows = np.array([], np.int64)
    if holdout:
        inside = frozen.in_subset(np.array(names), holdout)
        held_rows = np.flatnonzero(inside)
        fit, val = fit[~inside[fit]], val[~inside[val]]
    sets = np.arange(len(plan)).reshape(-1, SET_ROWS)
    set_names = [plan[s[0]]["name"] for s in sets]
    if holdout:
        sets = sets[~frozen.in_subset(np.array(set_names), holdout)]
    check = np.zeros(len(sets), bool)  # one set in ten held back for the direction report
    check[np.random.default_rng(0).permutation(len(sets))[: len(sets) // 10]] = True
    train_sets, check_sets = sets[~check], sets[check]
    targets = diagnostic_targets(plan)
    tertiles = np.quantile(mos, [1 / 3, 2 / 3])  # of the official train split, as 1.1
    reject_below = float(tertiles[0])
    started = time.perf_counter()

    # Stage A: 1.1's frozen heads on the cached frozen features (protocol families only).
    x_fit = rated.frozen_features(fit)
    x_dist = dist.frozen_features(slice(None))
    protocol_sets = train_sets[:, :PROTOCOL_ROWS]
    all_x = np.concatenate([x_fit, x_dist[protocol_sets.reshape(-1)]])
    mean, std = torch.from_numpy(all_x.mean(0)), torch.from_numpy(all_x.std(0) + 1e-3)
    del all_x
    tcfg = frozen.TrainConfig(heads=cfg.heads, epochs=cfg.head_epochs,
                              soft_weight=cfg.soft_weight)
    fit_set = frozen.Rated(x_fit, mos[fit])
    dist_set = frozen.Distorted(x_dist, protocol_sets, targets)
    soft_set = None
    if soft is not None and cfg.soft_weight > 0:
        soft_set = frozen.SoftSets(soft.x, soft.fit_sets)
    if init_heads is not None:  # e.g. 1.1's own heads, read back from its file
        from .export import frozen_heads

        ensemble = frozen_heads(init_heads)
        if cfg.head_epochs:  # ... trained on from there, at a lower learning rate
            refine = dataclasses.replace(tcfg, lr=cfg.refine_lr, heads=len(ensemble.heads))
            heads = [
                frozen.train_head(seed, fit_set, dist_set, mean, std, refine, reject_below,
                                  soft_set, init=head)
                for seed, head in enumerate(ensemble.heads)
            ]
            ensemble = Ensemble(heads).eval()
    else:
        heads = [
            frozen.train_head(seed, fit_set, dist_set, mean, std, tcfg, reject_below, soft_set)
            for seed in range(cfg.heads)
        ]
        ensemble = Ensemble(heads).eval()
    stage_a = copy.deepcopy(ensemble)  # kept as it is: the blend's frozen half
    figures: dict = {"stage_a_seconds": round(time.perf_counter() - started)}

    def evaluate(label: str, predict) -> None:
        p_val = predict(val)
        figures[f"{label}_val"] = {
            "srocc": srocc(p_val, mos[val]),
            "plcc": plcc(p_val, mos[val]),
            "rmse": rmse(p_val, mos[val]),
        }
        if holdout:
            p_held = predict(held_rows)
            figures[f"{label}_holdout_{holdout}"] = {
                "srocc": srocc(p_held, mos[held_rows]),
                "plcc": plcc(p_held, mos[held_rows]),
                "n": len(held_rows),
            }
        log.info("%s: %s", label, {k: v for k, v in figures.items() if k.startswith(label)})

    evaluate("frozen", lambda rows: frozen.predict(ensemble, rated.frozen_features(rows))[0])
    s_chk, d_chk = frozen.predict(ensemble, x_dist[check_sets.reshape(-1)])
    figures["frozen_direction"] = direction_report(
        s_chk.reshape(len(check_sets), -1),
        d_chk.reshape(len(check_sets), SET_ROWS, -1),
        reject_below,
    )
    if soft is not None:
        s_soft, d_soft = frozen.predict(ensemble, soft.x[soft.val_sets.reshape(-1)])
        figures["frozen_soft_background"] = frozen.soft_report(
            s_soft.reshape(soft.val_sets.shape), d_soft.reshape(*soft.val_sets.shape, -1)
        )
        log.info("soft background (validation photos): %s", figures["frozen_soft_background"])
    clean_diag = d_chk.reshape(len(check_sets), SET_ROWS, -1)[:, 0]
    del x_fit, x_dist

    if cfg.epochs == 0:  # stage A only: heads on the frozen backbone, as training.train's
        pred = frozen.predict(ensemble, rated.frozen_features(val))[0]
        thresholds = frozen.fit_thresholds(pred * 100, mos[val], tertiles, clean_diag)
        return save_checkpoint(out, ensemble, tcfg.hidden, tertiles, thresholds, cfg, figures,
                               holdout)

    # Stage B: fine-tune blocks CUT.. + 1x1 head + heads, batch norm in eval mode.
    bb = MLSPBackbone(load_efficientnet_lite(backbone))
    fdim = frozen_dim(bb)
    tail = Tail(bb, cfg.first)
    tail_params = [
        p for i in range(cfg.first, len(bb.net._blocks)) for p in bb.net._blocks[i].parameters()
    ]
    tail_params += [*bb.net._conv_head.parameters(), *bb.net._bn1.parameters()]
    for p in tail_params:
        p.requires_grad_(True)
    bb.eval()
    opt = torch.optim.AdamW(
        [
            {"params": tail_params, "lr": cfg.lr_backbone, "weight_decay": cfg.weight_decay},
            {"params": ensemble.parameters(), "lr": cfg.lr_head, "weight_decay": 1e-2},
        ]
    )
    steps_per_epoch = min(len(fit) // cfg.batch, max_steps or len(fit))
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, [cfg.lr_backbone, cfg.lr_head], total_steps=cfg.epochs * steps_per_epoch, pct_start=0.1
    )
    rng = np.random.default_rng(1)
    y_all, t_all = torch.from_numpy(mos), torch.from_numpy(targets)
    bce = nn.BCELoss()
    w = cfg.direction_weight
    tick = time.perf_counter()
    for epoch in range(cfg.epochs):
        order = rng.permutation(fit)
        for step in range(steps_per_epoch):
            ensemble.train()
            b_r, r_rows = rated.batch(order[step * cfg.batch : (step + 1) * cfg.batch], fdim)
            chosen = np.sort(
                train_sets[rng.choice(len(train_sets), cfg.sets_per_step, replace=False)], axis=0
            )
            d_rows = chosen.reshape(-1)
            b_d, _ = dist.batch(d_rows, fdim)  # sets are contiguous, already sorted
            b = {k: torch.cat([b_r[k], b_d[k]]) for k in b_r}
            if cfg.flip:
                b = augment(b, rng)
            score, diag = ensemble(head_input(tail, b))
            n = len(r_rows)
            y = y_all[r_rows]
            s_r, s_d, d_d = score[:n], score[n:], diag[n:]
            mos_loss = nn.functional.mse_loss(s_r, y) / 0.0373
            corr = frozen.correlation_loss(s_r, y)
            rank, reject, rise = direction_losses(s_d, d_d, len(chosen), cfg, reject_below)
            diag_loss = bce(d_d, t_all[d_rows])
            loss = (
                mos_loss
                + cfg.correlation_weight * corr
                + w * rank / cfg.rank_margin
                + w * reject / cfg.reject_margin
                + w * (diag_loss + rise / 0.02)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % 50 == 0:
                log.info(
                    "epoch %d step %d/%d (%.2f s/step): mos %.3f rank %.3f reject %.3f diag %.3f",
                    epoch + 1,
                    step,
                    steps_per_epoch,
                    (time.perf_counter() - tick) / (step + 1 + epoch * steps_per_epoch),
                    mos_loss.item(),
                    rank.item(),
                    reject.item(),
                    diag_loss.item(),
                )
        ensemble.eval()
        evaluate(
            f"epoch{epoch + 1}", lambda rows: predict_cache(tail, ensemble, rated, rows, fdim)[0]
        )
    figures["stage_b_seconds"] = round(time.perf_counter() - tick)
    figures.update(
        {
            k.replace(f"epoch{cfg.epochs}", "finetuned"): v
            for k, v in list(figures.items())
            if k.startswith(f"epoch{cfg.epochs}_")
        }
    )

    s_chk, d_chk = predict_cache(tail, ensemble, dist, check_sets.reshape(-1), fdim)
    figures["finetuned_direction"] = direction_report(
        s_chk.reshape(len(check_sets), -1),
        d_chk.reshape(len(check_sets), SET_ROWS, -1),
        reject_below,
    )
    pred_val, _ = predict_cache(tail, ensemble, rated, val, fdim)
    frozen_val = predict_frozen(stage_a, rated, val)
    for weight in (0.25, 0.5, 0.75):
        blend = weight * pred_val + (1 - weight) * frozen_val
        figures[f"blend{weight}_val"] = {"srocc": srocc(blend, mos[val]),
                                         "plcc": plcc(blend, mos[val])}
        if holdout:
            p_held = (weight * predict_cache(tail, ensemble, rated, held_rows, fdim)[0]
                      + (1 - weight) * predict_frozen(stage_a, rated, held_rows))
            figures[f"blend{weight}_holdout_{holdout}"] = {
                "srocc": srocc(p_held, mos[held_rows]), "plcc": plcc(p_held, mos[held_rows])}
    log.info("blends: %s", {k: v for k, v in figures.items() if k.startswith("blend")})
    clean = d_chk.reshape(len(check_sets), SET_ROWS, -1)[:, 0]
    thresholds = frozen.fit_thresholds(pred_val * 100, mos[val], tertiles, clean)
    return save_checkpoint(
        out, ensemble, tcfg.hidden, tertiles, thresholds, cfg, figures, holdout,
        backbone=backbone,
        fine_tuned_from_block=cfg.first,
        backbone_state=bb.net.state_dict(),
        frozen_heads_state=stage_a.state_dict(),  # for training.export --blend
    )


def save_checkpoint(out: Path, ensemble: Ensemble, hidden: int, tertiles: np.ndarray,
                    thresholds: dict, cfg: FineTuneConfig, figures: dict, holdout: str | None,
                    **extra) -> dict:
    """Heads (and, from stage B, the fine-tuned backbone) in training.train's checkpoint
    format, which training.export reads; prints the thresholds and figures."""
    checkpoint = {
        "state": ensemble.state_dict(),
        "heads": len(ensemble.heads),
        "hidden": hidden,
        "signals": True,
        "mirrored": False,
        "feature_dim": int(ensemble.heads[0].mean.numel()),
        "mos_tertiles": tertiles.tolist(),
        "thresholds": thresholds,
        "config": asdict(cfg),
        "figures": figures,
        "holdout": holdout,
        **extra,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, out)
    print(json.dumps({"thresholds": thresholds, **figures}, indent=1))
    return checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--distorted", type=int, default=128, help="photos in the distortion cache")
    parser.add_argument("--holdout", default=None, help="a subset to leave out, e.g. ss01")
    parser.add_argument("--epochs", type=int, default=FineTuneConfig.epochs)
    parser.add_argument("--head-epochs", type=int, default=FineTuneConfig.head_epochs)
    parser.add_argument("--heads", type=int, default=FineTuneConfig.heads)
    parser.add_argument(
        "--first", type=int, default=FineTuneConfig.first, help="first trained block"
    )
    parser.add_argument("--lr-backbone", type=float, default=FineTuneConfig.lr_backbone)
    parser.add_argument("--flip", action="store_true", help="mirror cached maps at random")
    parser.add_argument("--soft", type=int, nargs=2, default=None, metavar=("FIT", "VAL"),
                        help="use cache_maps' soft-background cache of that size")
    parser.add_argument("--soft-weight", type=float, default=FineTuneConfig.soft_weight,
                        help="weight of the soft-background term (0: measure only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-steps", type=int, default=0, help="steps per epoch (0: all; smoke tests)"
    )
    parser.add_argument("--out", type=Path, default=frozen.RUNS / "finetuned.pt")
    parser.add_argument(
        "--init-heads", type=Path, default=None,
        help="stage A's heads from here instead of training them: training.train's head.pt "
             "or an exported .onnx (1.1's)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = FineTuneConfig(
        epochs=args.epochs,
        head_epochs=args.head_epochs,
        heads=args.heads,
        lr_backbone=args.lr_backbone,
        first=args.first,
        flip=args.flip,
        soft_weight=args.soft_weight,
    )
    folder = maps_dir(args.backbone)
    run(
        folder / "rated",
        folder / f"distorted-{args.distorted}",
        cfg,
        args.holdout,
        args.backbone,
        args.out,
        args.threads,
        args.max_steps,
        args.init_heads,
        folder / f"soft-{args.soft[0]}-{args.soft[1]}" if args.soft else None,
    )


if __name__ == "__main__":
    main()
