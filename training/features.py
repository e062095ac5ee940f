"""Frozen-backbone features for the rated photos and their distorted copies.

Extraction runs the exported backbone with ONNX Runtime (about 10x faster than eager
torch on a 2-core CPU) and caches float16 arrays under ``training/cache/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from iqs_daemon import distortions
from iqs_daemon.views import make_views

from .data import Rated, read_rgb
from .signals import PixelSignals

log = logging.getLogger(__name__)

IMAGE_SIZE = 512
DETAIL_SIZE = 256
#: The product decodes a photo to a short side of at least this (JPEG DCT scaling, else
#: ``views.working_image``); the detail view is a crop at that scale. 1024 keeps a 2-5 MP
#: photo at 100 % and a 24 MP one at 50 %, where a slight missed focus still shows.
MIN_SHORT_SIDE = 1024
FAMILIES = list(distortions.PROTOCOL)

# Three severity bands per family, sampled uniformly inside each band. Units as in
# distortions.PROTOCOL; jpeg bands run from mild (high quality) to strong.
BANDS: dict[str, tuple[tuple[float, float], ...]] = {
    "blur": ((1.0, 2.0), (2.0, 4.0), (4.0, 8.0)),
    "noise": ((5.0, 12.0), (12.0, 24.0), (24.0, 45.0)),
    "jpeg": ((25.0, 50.0), (10.0, 25.0), (3.0, 10.0)),
    "overexposure": ((0.3, 1.2), (1.2, 2.2), (2.2, 3.5)),
    "underexposure": ((0.3, 1.2), (1.2, 2.2), (2.2, 3.5)),
}


def severity(family: str, level: float) -> float:
    """Map a distortion level to 0..1 (0 = none), monotone in damage: diagnostic targets."""
    if family == "blur":
        return float(np.clip(np.log1p(level) / np.log1p(8.0), 0, 1))
    if family == "noise":
        return float(np.clip(np.log1p(level / 2) / np.log1p(45.0 / 2), 0, 1))
    if family == "jpeg":
        return float(np.clip((95.0 - level) / 92.0, 0, 1) ** 2)
    return float(np.clip(level / 3.5, 0, 1))


@dataclass(frozen=True)
class Sample:
    image: np.ndarray
    detail: np.ndarray


def session(onnx_path: Path, threads: int = 2) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def extract(
    sess: ort.InferenceSession, samples: Iterator[Sample], total: int, batch: int = 16
) -> dict[str, np.ndarray]:
    """Run views through the backbone; returns image/detail features, their measured
    signals (``*_signals``, training/signals.py) and the whole view's embeddings."""
    out: dict[str, list[np.ndarray]] = {
        key: [] for key in ("image", "detail", "image_signals", "detail_signals", "embedding")
    }
    signals = PixelSignals().eval()
    pending: list[Sample] = []
    done, started = 0, time.perf_counter()

    def flush() -> None:
        nonlocal done
        for view in ("image", "detail"):
            pixels = np.stack([getattr(s, view) for s in pending])
            feats, emb = sess.run(None, {"pixels": pixels})
            out[view].append(feats.astype(np.float16))
            with torch.no_grad():
                out[f"{view}_signals"].append(signals(torch.from_numpy(pixels)).numpy())
            if view == "image":
                out["embedding"].append(emb.astype(np.float16))
        done += len(pending)
        pending.clear()
        if done % (batch * 20) == 0 or done == total:
            rate = done / (time.perf_counter() - started)
            log.info(
                "features: %d/%d (%.1f/s, %.0f s left)", done, total, rate, (total - done) / rate
            )

    for sample in samples:
        pending.append(sample)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    return {k: np.concatenate(v) for k, v in out.items()}


def views_of(rgb: np.ndarray) -> Sample:
    v = make_views(rgb, IMAGE_SIZE, DETAIL_SIZE, MIN_SHORT_SIDE)
    return Sample(v["image"], v["detail"])


def rated_samples(items: list[Rated], mirrored: bool = False) -> Iterator[Sample]:
    for item in items:
        rgb = read_rgb(item.path)
        yield views_of(np.ascontiguousarray(rgb[:, ::-1]) if mirrored else rgb)


def upscale(rgb: np.ndarray, factor: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC)


def distortion_plan(items: list[Rated], seed: int, families: Sequence[str] = FAMILIES,
                    bands: Mapping[str, Sequence[tuple[float, float]]] = BANDS) -> list[dict]:
    """For each photo: a scale, the clean reference and one random level in each band of
    each family. Scale 1 distorts the rated 512 px photo; scales 2-4 upscale it first
    (to 1-4 MP) and the views are then made as the product makes them (scale 4 is halved
    again, as a 24 MP JPEG is by DCT scaling), so that, as in a camera-resolution photo,
    the damage is seen mostly by the detail view and hardly by the shrunken whole view."""
    rng = np.random.default_rng(seed)
    plan = []
    for idx in range(len(items)):
        scale = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.25, 0.2, 0.25]))
        group = len(plan)
        plan.append(dict(item=idx, scale=scale, family="none", band=-1, level=0.0, group=group))
        for family in families:
            for band, (lo, hi) in enumerate(bands[family]):
                plan.append(
                    dict(
                        item=idx,
                        scale=scale,
                        family=family,
                        band=band,
                        level=float(rng.uniform(lo, hi)),
                        group=group,
                    )
                )
    return plan


def planned_samples(items: list[Rated], plan: list[dict]) -> Iterator[Sample]:
    cached_idx, base = -1, None
    for n, entry in enumerate(plan):
        if entry["item"] != cached_idx:
            cached_idx = entry["item"]
            base = read_rgb(items[cached_idx].path)
            if entry["scale"] > 1:
                base = upscale(base, entry["scale"])
        if entry["family"] == "none":
            rgb = base
        elif entry["family"] == "soft":
            rgb = distortions.soft_background(base, entry["level"], np.random.default_rng(n))
        else:
            rgb = distortions.distort(base, entry["family"], entry["level"], seed=n)
        yield views_of(rgb)


#: Background defocus radii (px at the 512 px training size, times the copy's scale):
#: a soft background behind a sharp subject, which must not lower the score.
SOFT_BANDS = ((2.0, 4.0), (4.0, 8.0))
SOFT_ROWS = 1 + len(SOFT_BANDS)


def soft_plan(items: list[Rated], seed: int) -> list[dict]:
    """Per photo one scale (as distortion_plan draws it), the clean copy, then one soft
    background per band."""
    rng = np.random.default_rng(seed)
    plan = []
    for idx in range(len(items)):
        scale = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.25, 0.2, 0.25]))
        plan.append(dict(item=idx, scale=scale, family="none", band=-1, level=0.0))
        for band, (lo, hi) in enumerate(SOFT_BANDS):
            level = float(rng.uniform(lo, hi)) * scale
            plan.append(dict(item=idx, scale=scale, family="soft", band=band, level=level))
    return plan


def soft_photos(
    train: list[Rated], count: int, val_count: int, seed: int
) -> tuple[list[int], list[dict]]:
    """``count`` fit photos (trained on) and ``val_count`` validation photos (only ever
    measured), all rated at or above the train split's median - a soft background is a
    choice behind a sharp subject, not behind a photo blurred all over - and their plan,
    each entry naming its photo, its row in the official train list and its side."""
    from .split import train_val_indices

    rng = np.random.default_rng(seed)
    fit, val = train_val_indices(len(train))
    mos = np.array([i.mos for i in train])
    fit, val = fit[mos[fit] >= np.median(mos)], val[mos[val] >= np.median(mos)]
    picked = [int(i) for i in (*sorted(rng.choice(fit, size=count, replace=False)),
                               *sorted(rng.choice(val, size=val_count, replace=False)))]
    plan = soft_plan([train[i] for i in picked], seed)
    for entry in plan:
        entry["name"] = train[picked[entry["item"]]].path.name
        entry["rated_row"] = picked[entry["item"]]
        entry["val"] = entry["item"] >= count
    return picked, plan
