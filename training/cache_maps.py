"""Step 1 for 2.0: run the frozen part of the backbone once and cache what the fine-tuning
needs.  ``python -m training.cache_maps --biq PATH [--distorted 256]``

For every view (the 512 px whole view and the 256 px detail crop) the cache holds

* ``map_*``: the output of the last frozen block (block ``CUT - 1``; 192 x 16 x 16 and
  192 x 8 x 8 for lite0), float16, the input of the stages that are fine-tuned;
* ``feat_*``: the frozen backbone's full MLSP features (4,128 values, as 1.1 pools them);
  the first ``frozen_dim`` of them come from stages that stay frozen and are reused as is;
* ``sig_*``: the measured pixel signals (training/signals.py);
* ``emb``: 1.1's embedding of the whole view.

Arrays are memory-mapped ``.npy`` files under ``training/cache/maps-NAME/``; a run that is
stopped resumes where it stopped (``progress.json``).
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from iqs_daemon import distortions

from .backbone import MLSPBackbone, _mean_std, load_efficientnet_lite
from .data import Rated, load_split, read_rgb
from .extract import CACHE
from .features import (
    BANDS,
    Sample,
    distortion_plan,
    rated_samples,
    session,
    soft_photos,
    upscale,
    views_of,
)
from .signals import PixelSignals
from .split import train_val_indices

log = logging.getLogger(__name__)

#: First fine-tuned block: lite0's blocks 13-15 (the end of stage 6 and stage 7) and its
#: 1x1 head are trained, blocks 0-12 stay frozen.
CUT = 13

#: Damage beside the protocol's five families, closer to real capture failures; both
#: feed the blur diagnostic.  Levels: motion = streak length in px, defocus = disk radius.
EXTRA_BANDS: dict[str, tuple[tuple[float, float], ...]] = {
    "motion": ((3.0, 7.0), (7.0, 14.0), (14.0, 28.0)),
    "defocus": ((1.0, 2.0), (2.0, 4.0), (4.0, 8.0)),
}
ALL_FAMILIES = [*distortions.PROTOCOL, *EXTRA_BANDS]
ALL_BANDS = {**BANDS, **EXTRA_BANDS}


class FrozenPart(MLSPBackbone):
    """uint8 NHWC -> (1.1's MLSP features, embedding, output of block ``CUT - 1``)."""

    def forward(self, pixels: torch.Tensor):  # type: ignore[override]
        x = pixels.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        pooled, ends, last_stage, cut = [], set(self.stage_ends), None, None
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i == CUT - 1:
                cut = x
            if i in ends:
                pooled.append(_mean_std(x))
                last_stage = x
        x = net._swish(net._bn1(net._conv_head(x)))
        pooled.append(_mean_std(x))
        embedding = torch.nn.functional.normalize(last_stage.mean(dim=(2, 3)), dim=1)
        return torch.cat(pooled, dim=1), embedding, cut


def frozen_dim(backbone: MLSPBackbone) -> int:
    """How many leading MLSP values come from stages that end before ``CUT``."""
    blocks = list(backbone.net._blocks)
    return 2 * sum(blocks[i]._block_args.output_filters for i in backbone.stage_ends if i < CUT)


def frozen_onnx(name: str) -> Path:
    path = CACHE / f"frozen-{name}-cut{CUT}.onnx"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        model = FrozenPart(load_efficientnet_lite(name)).eval()
        torch.onnx.export(
            model,
            (torch.zeros(1, 256, 256, 3, dtype=torch.uint8),),
            str(path),
            input_names=["pixels"],
            output_names=["features", "embedding", "map"],
            dynamic_axes={
                "pixels": {0: "n", 1: "h", 2: "w"},
                "features": {0: "n"},
                "embedding": {0: "n"},
                "map": {0: "n", 2: "mh", 3: "mw"},
            },
            opset_version=17,
            dynamo=False,
        )
    return path


def motion_blur(rgb: np.ndarray, length: float, rng: np.random.Generator) -> np.ndarray:
    """A straight streak of ``length`` px at a random angle (camera shake, moving subject)."""
    size = int(np.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c = size // 2
    angle = rng.uniform(0, np.pi)
    for t in np.linspace(-length / 2, length / 2, 4 * size):
        x, y = c + t * np.cos(angle), c + t * np.sin(angle)
        kernel[round(min(max(y, 0), size - 1)), round(min(max(x, 0), size - 1))] = 1.0
    return cv2.filter2D(rgb, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


def distort(rgb: np.ndarray, family: str, level: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if family == "motion":
        return motion_blur(rgb, level, rng)
    if family == "defocus":
        return distortions.defocus(rgb, level, rng)
    if family == "soft":
        return distortions.soft_background(rgb, level, rng)
    return distortions.distort(rgb, family, level, seed=seed)


def planned_samples(items: list[Rated], plan: list[dict], start: int = 0) -> Iterator[Sample]:
    cached_idx, base = -1, None
    for n, entry in enumerate(plan[start:], start):
        if entry["item"] != cached_idx:
            cached_idx = entry["item"]
            base = read_rgb(items[cached_idx].path)
            if entry["scale"] > 1:
                base = upscale(base, entry["scale"])
        rgb = (
            base if entry["family"] == "none" else distort(base, entry["family"], entry["level"], n)
        )
        yield views_of(rgb)


def _prefetch(samples: Iterator[Sample], depth: int = 32) -> Iterator[Sample]:
    """Decode and distort in a second thread while ONNX Runtime runs the batch."""
    q: queue.Queue = queue.Queue(depth)
    done = object()

    def work() -> None:
        for s in samples:
            q.put(s)
        q.put(done)

    threading.Thread(target=work, daemon=True).start()
    while (item := q.get()) is not done:
        yield item


def fill(
    folder: Path,
    samples: Iterator[Sample],
    total: int,
    name: str,
    batch: int = 16,
    threads: int = 2,
) -> None:
    """Write every cache array for ``total`` samples, resuming from ``progress.json``."""
    folder.mkdir(parents=True, exist_ok=True)
    sess = session(frozen_onnx(name), threads)
    signals = PixelSignals().eval()
    arrays: dict[str, np.ndarray] = {}
    progress = folder / "progress.json"
    done = json.loads(progress.read_text())["done"] if progress.exists() else 0

    def array(key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        if key not in arrays:
            path = folder / f"{key}.npy"
            arrays[key] = (
                np.lib.format.open_memmap(path, "r+")
                if path.exists()
                else np.lib.format.open_memmap(path, "w+", dtype, (total, *shape))
            )
        return arrays[key]

    pending: list[Sample] = []
    started, first = time.perf_counter(), done

    def flush() -> None:
        nonlocal done
        rows = slice(done, done + len(pending))
        for view in ("image", "detail"):
            pixels = np.stack([getattr(s, view) for s in pending])
            feats, emb, fmap = sess.run(None, {"pixels": pixels})
            array(f"feat_{view}", feats.shape[1:], np.float16)[rows] = feats
            array(f"map_{view}", fmap.shape[1:], np.float16)[rows] = fmap
            with torch.no_grad():
                sig = signals(torch.from_numpy(pixels)).numpy()
            array(f"sig_{view}", sig.shape[1:], np.float32)[rows] = sig
            if view == "image":
                array("emb", emb.shape[1:], np.float16)[rows] = emb
        done += len(pending)
        pending.clear()
        if done % (batch * 25) == 0 or done == total:
            for a in arrays.values():
                a.flush()
            progress.write_text(json.dumps({"done": done, "total": total}))
            rate = (done - first) / (time.perf_counter() - started)
            log.info(
                "%s: %d/%d (%.1f/s, %.0f s left)",
                folder.name,
                done,
                total,
                rate,
                (total - done) / rate,
            )

    for sample in _prefetch(samples):
        pending.append(sample)
        if len(pending) == batch:
            flush()
    if pending:
        flush()
    for a in arrays.values():
        a.flush()
    progress.write_text(json.dumps({"done": done, "total": total}))


def _rated_from(items: list[Rated], start: int) -> Iterator[Sample]:
    return rated_samples(items[start:])


def maps_dir(name: str) -> Path:
    return CACHE / f"maps-{name}-cut{CUT}"


def cache_rated(biq: Path, name: str) -> Path:
    """The official train split's 10,000 photos (the test split is never cached)."""
    folder = maps_dir(name) / "rated"
    train, _ = load_split(biq)
    done = _done(folder)
    if done < len(train):
        fill(folder, _rated_from(train, done), len(train), name)
    np.save(folder / "mos.npy", np.array([i.mos for i in train], np.float32))
    (folder / "names.json").write_text(json.dumps([i.path.name for i in train]))
    return folder


def cache_distorted(biq: Path, name: str, count: int, seed: int = 7) -> Path:
    folder = maps_dir(name) / f"distorted-{count}"
    train, _ = load_split(biq)
    rng = np.random.default_rng(seed)
    fit, _ = train_val_indices(len(train))  # never distort validation photos
    chosen = [train[i] for i in sorted(rng.choice(fit, size=count, replace=False))]
    # per photo one scale (1-4x), the clean copy, then one level in each band of each family
    plan = distortion_plan(chosen, seed, ALL_FAMILIES, ALL_BANDS)
    done = _done(folder)
    if done < len(plan):
        fill(folder, planned_samples(chosen, plan, done), len(plan), name)
    for entry in plan:
        entry["name"] = chosen[entry["item"]].path.name
    (folder / "plan.json").write_text(json.dumps(plan))
    return folder


def cache_soft(biq: Path, name: str, count: int, val_count: int, seed: int = 11) -> Path:
    """Soft-background copies (features.soft_photos) in the map cache's format."""
    folder = maps_dir(name) / f"soft-{count}-{val_count}"
    train, _ = load_split(biq)
    picked, plan = soft_photos(train, count, val_count, seed)
    chosen = [train[i] for i in picked]
    done = _done(folder)
    if done < len(plan):
        fill(folder, planned_samples(chosen, plan, done), len(plan), name)
    (folder / "plan.json").write_text(json.dumps(plan))
    return folder


def _done(folder: Path) -> int:
    progress = folder / "progress.json"
    return json.loads(progress.read_text())["done"] if progress.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--biq", type=Path, required=True)
    parser.add_argument("--backbone", default="lite0")
    parser.add_argument("--distorted", type=int, default=128)
    parser.add_argument("--soft", type=int, nargs=2, default=(600, 200), metavar=("FIT", "VAL"),
                        help="photos given soft-background copies: trained on, measured only")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(cache_rated(args.biq, args.backbone))
    print(cache_distorted(args.biq, args.backbone, args.distorted))
    print(cache_soft(args.biq, args.backbone, *args.soft))


if __name__ == "__main__":
    main()
