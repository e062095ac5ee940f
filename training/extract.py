"""Step 1: export the backbone and cache features.  ``python -m training.extract --help``"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

from .backbone import MLSPBackbone, export_backbone_onnx, load_efficientnet_lite
from .data import load_split
from .features import (
    distortion_plan,
    extract,
    planned_samples,
    rated_samples,
    session,
    soft_photos,
)
from .split import train_val_indices

CACHE = Path(__file__).parent / "cache"


def backbone_onnx(name: str) -> Path:
    path = CACHE / f"backbone-{name}.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        export_backbone_onnx(MLSPBackbone(load_efficientnet_lite(name)), str(path))
    return path


def extract_rated(biq: Path, name: str) -> Path:
    out = CACHE / f"rated-{name}.npz"
    if out.exists():
        return out
    train, test = load_split(biq)
    items = train + test
    feats = extract(session(backbone_onnx(name)), rated_samples(items), len(items))
    np.savez(out, **feats, mos=np.array([i.mos for i in items], np.float32),
             split=np.array([0] * len(train) + [1] * len(test), np.int8),
             names=np.array([i.path.name for i in items]))
    return out


def extract_mirrored(biq: Path, name: str) -> Path:
    """Features of the official train photos mirrored left-right: a second, equally rated
    copy of each for the heads to train on (augmentation the frozen backbone cannot do)."""
    out = CACHE / f"mirrored-{name}.npz"
    if out.exists():
        return out
    train, _ = load_split(biq)
    feats = extract(session(backbone_onnx(name)), rated_samples(train, mirrored=True), len(train))
    np.savez(out, **feats, names=np.array([i.path.name for i in train]))
    return out


def extract_distorted(biq: Path, name: str, count: int, seed: int = 7) -> Path:
    out = CACHE / f"distorted-{name}-{count}.npz"
    if out.exists():
        return out
    train, _ = load_split(biq)
    rng = np.random.default_rng(seed)
    fit, _ = train_val_indices(len(train))  # never distort validation photos
    chosen = [train[i] for i in sorted(rng.choice(fit, size=count, replace=False))]
    plan = distortion_plan(chosen, seed)
    feats = extract(session(backbone_onnx(name)), planned_samples(chosen, plan), len(plan))
    names = np.array([chosen[p["item"]].path.name for p in plan])
    np.savez(out, **feats, names=names, plan=json.dumps(plan))
    return out


def extract_soft(biq: Path, name: str, count: int, val_count: int, seed: int = 11) -> Path:
    """Soft-background copies of well-rated photos (features.soft_photos): ``count`` fit
    photos to train on, ``val_count`` validation photos to measure on."""
    out = CACHE / f"soft-{name}-{count}-{val_count}.npz"
    if out.exists():
        return out
    train, _ = load_split(biq)
    picked, plan = soft_photos(train, count, val_count, seed)
    chosen = [train[i] for i in picked]
    feats = extract(session(backbone_onnx(name)), planned_samples(chosen, plan), len(plan))
    np.savez(out, **feats, plan=json.dumps(plan))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--biq", type=Path, required=True, help="local copy of BIQ2021")
    parser.add_argument("--backbone", default="lite0", choices=["lite0", "lite1", "lite2"])
    parser.add_argument("--distorted", type=int, default=0, help="photos to distort (0: none)")
    parser.add_argument("--mirrored", action="store_true", help="also the mirrored train photos")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(extract_rated(args.biq, args.backbone))
    if args.distorted:
        print(extract_distorted(args.biq, args.backbone, args.distorted))
    if args.mirrored:
        print(extract_mirrored(args.biq, args.backbone))


if __name__ == "__main__":
    main()
