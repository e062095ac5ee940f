"""In-process measurements: the decode floor, the model floor and the naive pipeline.

Each returns a ``Rate`` over its whole set (after one warm-up item): wall-clock time and
the CPU time of this process and of the children it reaped (the exiv2 process), which
contention from other programs on a shared machine hardly changes. Measured with the
product's own functions: ``decoding.decode`` + ``QualityModel.prepare`` for the
decode floor, ``QualityModel.run`` for the model floor, the real ``MetadataWriter``.
"""

from __future__ import annotations

import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from iqs_daemon import decoding
from iqs_daemon.config import Settings
from iqs_daemon.metadata import MetadataWriter
from iqs_daemon.model import QualityModel
from iqs_daemon.verdict import Policy, decide

if TYPE_CHECKING:
    from pathlib import Path

MAX_PIXELS = Settings().max_pixels


def cpu_seconds() -> float:
    """CPU time of this process (every thread) and of its reaped children."""
    own, children = (resource.getrusage(w) for w in (resource.RUSAGE_SELF,
                                                     resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU time from creation to ``rate()``."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()

    def rate(self, photos: int) -> Rate:
        return Rate(photos, time.perf_counter() - self.wall, cpu_seconds() - self.cpu)


@dataclass(frozen=True)
class Rate:
    photos: int
    seconds: float
    cpu_seconds: float

    @property
    def per_second(self) -> float:
        return self.photos / self.seconds if self.seconds else 0.0

    @property
    def ms_per_photo(self) -> float:
        return 1e3 * self.seconds / self.photos if self.photos else 0.0

    @property
    def cpu_ms_per_photo(self) -> float:
        return 1e3 * self.cpu_seconds / self.photos if self.photos else 0.0


def load_model(path: Path, threads: int, device: str = "cpu") -> QualityModel:
    return QualityModel(path, device=device, intra_op_threads=threads)


def decode_views(model: QualityModel, path: Path) -> dict[str, np.ndarray]:
    """The product's decoding path for one photo: reduced decode, then the model's views."""
    decoded = decoding.decode(path, min_short_side=model.info.min_short_side,
                              max_pixels=MAX_PIXELS)
    return model.prepare(decoded.rgb)


def decode_floor(model: QualityModel, files: list[Path], workers: int) -> Rate:
    """Photos/s of decode + views alone, ``workers`` threads (all cores)."""
    decode_views(model, files[0])
    with ThreadPoolExecutor(workers) as pool:
        clock = Clock()
        for _ in pool.map(lambda p: decode_views(model, p), files):
            pass
        return clock.rate(len(files))


def model_floor(model: QualityModel, views: list[dict[str, np.ndarray]], batch_size: int,
                repeats: int = 1) -> Rate:
    """Photos/s of inference alone on pre-decoded views, in batches of ``batch_size``."""
    model.run(views[:batch_size])
    batches = [views[i:i + batch_size] for i in range(0, len(views), batch_size)]
    clock = Clock()
    for _ in range(repeats):
        for batch in batches:
            model.run(batch)
    return clock.rate(len(views) * repeats)


def naive_pipeline(model: QualityModel, files: list[Path], settings: Settings) -> Rate:
    """What a first attempt does: full-size ``cv2.imread``, resize, one photo per
    inference, write the metadata, one photo after the other."""
    thresholds = Policy.resolve(model.info.thresholds, settings)
    clock = Clock()
    with MetadataWriter(settings) as writer:  # closing it reaps the exiv2 process: CPU counted
        for path in files:
            rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            views = model.prepare(rgb)
            scores = model.run([views])[0]
            verdict = decide(path, scores, model.info, thresholds)
            writer.write_verdict(path, verdict, decoding.fingerprint(rgb), settings)
    return clock.rate(len(files))


# --- the hardware's floors: what the libraries allow, not what our code path costs ------


def library_decode_floor(kind: str, files: list[Path], workers: int) -> Rate:
    """Photos/s of the bare library decode at the smallest size the model allows, on every
    core: JPEG ``cv2.imread(IMREAD_REDUCED_COLOR_2)`` (the DCT scale that still gives a
    1024 px short side to a 24 MP photo), HEIC libheif's full decode (it has no reduced
    decode), RAW the preview JPEG located by the product and decoded as JPEG."""

    def jpeg(path: Path) -> None:
        cv2.imread(str(path), cv2.IMREAD_REDUCED_COLOR_2)

    def heic(path: Path) -> None:
        import pillow_heif

        pillow_heif.open_heif(str(path), convert_hdr_to_8bit=True)[0].data  # noqa: B018

    previews: dict[Path, bytes] = {}
    if kind == "raw":  # locating the preview is our code; decoding it is the floor
        for path in files:
            data = path.read_bytes()
            start = data.find(b"\xff\xd8\xff", 1024)
            previews[path] = data[start:]

    def raw(path: Path) -> None:
        buffer = np.frombuffer(previews[path], np.uint8)
        cv2.imdecode(buffer, cv2.IMREAD_REDUCED_COLOR_2)

    work = {"jpeg": jpeg, "heic": heic, "raw": raw}[kind]
    work(files[0])
    with ThreadPoolExecutor(workers) as pool:
        clock = Clock()
        for _ in pool.map(work, files):
            pass
        return clock.rate(len(files))


def library_model_floor(path: Path, views: list[dict[str, np.ndarray]], threads: int,
                        batch_sizes: tuple[int, ...] = (1, 8)) -> tuple[Rate, int]:
    """The model file alone in ONNX Runtime with its default session options (CPU arena
    on, ``threads`` intra-op threads), at the best of ``batch_sizes``: (rate, batch)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    best: tuple[Rate, int] | None = None
    for batch_size in batch_sizes:
        batches = [{n: np.stack([v[n] for v in views[i:i + batch_size]]) for n in names}
                   for i in range(0, len(views) - batch_size + 1, batch_size)]
        session.run(None, batches[0])
        clock = Clock()
        for _ in range(2):
            for feed in batches:
                session.run(None, feed)
        rate = clock.rate(2 * batch_size * len(batches))
        if best is None or rate.per_second > best[0].per_second:
            best = (rate, batch_size)
    assert best is not None
    return best
