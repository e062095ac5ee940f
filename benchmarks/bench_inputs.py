"""The benchmark's photos, made from the sample photos in ``<repo>/../shared/samples/photos``.

- ``jpeg/``: 24 MP (6000x4000) JPEGs at quality 92. Each is a sample photo, flipped and
  cropped differently, upscaled, with a mild sensor-like grain added: upscaling alone
  leaves the image so smooth that the files come out at a third of a camera JPEG's size
  and decode unrealistically fast. With the grain they are 7-9 MB, like a camera's.
- ``heic/``: 20 MP (5472x3648) HEIC, quality 90, through pillow-heif.
- ``raw/``: RAW-preview case: a TIFF-structured ``.nef`` (no sensor data LibRaw accepts)
  holding 12 MB of incompressible filler and a full-size 24 MP preview JPEG, which the
  product finds by scanning the bytes, as it does for RAWs LibRaw cannot open.

Generation is the slow part of a benchmark run, so a ``--work-dir`` keeps the files
(``manifest.json`` says what was made) and a later run with the same counts reuses them.
"""

from __future__ import annotations

import json
import struct
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

JPEG_SIZE = (6000, 4000)
HEIC_SIZE = (5472, 3648)
JPEG_QUALITY = 92
HEIC_QUALITY = 90
GRAIN_SIGMA = 8.0


@dataclass(frozen=True)
class InputSet:
    jpeg: list[Path]
    heic: list[Path]
    raw: list[Path]

    @property
    def jpeg_mb(self) -> float:
        return sum(p.stat().st_size for p in self.jpeg) / len(self.jpeg) / 1e6 if self.jpeg else 0.0


@dataclass(frozen=True)
class _Counts:
    jpeg: int
    heic: int
    raw: int
    samples: str
    version: int = 2


def make_inputs(folder: Path, samples: Path, *, jpeg: int, heic: int, raw: int,
                workers: int) -> InputSet:
    """Create (or reuse) the photos in ``folder``."""
    sources = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not sources:
        raise SystemExit(f"no sample photos in {samples} (use --samples DIR)")
    counts = _Counts(jpeg, heic, raw, str(samples.resolve()))
    manifest = folder / "manifest.json"
    jobs = ([("jpeg", i) for i in range(jpeg)] + [("heic", i) for i in range(heic)]
            + [("raw", i) for i in range(raw)])
    names = {kind: [folder / kind / _name(kind, i) for i in range(n)]
             for kind, n in (("jpeg", jpeg), ("heic", heic), ("raw", raw))}
    if manifest.is_file() and json.loads(manifest.read_text()) == asdict(counts):
        return InputSet(**names)
    for kind in names:
        (folder / kind).mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_make_one, [(kind, i, str(sources[i % len(sources)]),
                                   str(names[kind][i])) for kind, i in jobs]))
    manifest.write_text(json.dumps(asdict(counts)))
    return InputSet(**names)


def _name(kind: str, index: int) -> str:
    return {"jpeg": f"IMG_{index:04d}.jpg", "heic": f"IMG_{index:04d}.heic",
            "raw": f"DSC_{index:04d}.nef"}[kind]


def _make_one(job: tuple[str, int, str, str]) -> None:
    kind, index, source, target = job
    size = HEIC_SIZE if kind == "heic" else JPEG_SIZE
    # Phones denoise HEIC heavily: no grain there, which also keeps x265 quick.
    rgb = synthetic_photo(Path(source), index, size, grain=kind != "heic")
    if kind == "heic":
        import pillow_heif

        pillow_heif.from_bytes("RGB", size, rgb.tobytes()).save(target, quality=HEIC_QUALITY)
        return
    jpeg = _encode_jpeg(rgb)
    Path(target).write_bytes(fake_nef(jpeg) if kind == "raw" else jpeg)


def synthetic_photo(source: Path, index: int, size: tuple[int, int], *, grain: bool = True
                    ) -> np.ndarray:
    """A ``size`` RGB photo from ``source``: a per-index flip and crop, upscaled, with grain."""
    bgr = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if index // 12 % 2:
        bgr = cv2.flip(bgr, 1)
    h, w = bgr.shape[:2]
    inset = (index // 24) % 8 * 0.01  # up to 7 % cropped off each side
    bgr = bgr[int(h * inset): h - int(h * inset), int(w * inset): w - int(w * inset)]
    big = cv2.resize(bgr, size, interpolation=cv2.INTER_CUBIC)
    if grain:
        cv2.setRNGSeed(index)
        noise = cv2.randn(np.empty(big.shape, np.int16), (0.0,) * 3, (GRAIN_SIGMA,) * 3)
        big = cv2.add(big, noise, dtype=cv2.CV_8U)
    return cv2.cvtColor(big, cv2.COLOR_BGR2RGB)


def _encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    assert ok
    return data.tobytes()


def fake_nef(preview: bytes, filler_bytes: int = 12_000_000) -> bytes:
    """A little-endian TIFF: IFD0 (a 160x120 thumbnail's size, Make/Model), then filler
    standing in for the sensor data, then the preview JPEG."""
    entries = [(0x00FE, 4, 1, 1), (0x0100, 3, 1, 160), (0x0101, 3, 1, 120),
               (0x0112, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + struct.pack("<I", value)
        for tag, kind, count, value in entries) + struct.pack("<I", 0)
    filler = np.random.default_rng(len(preview)).integers(0, 255, filler_bytes, np.uint8)
    filler[filler == 0xFF] = 0xFE  # no accidental JPEG markers in the "sensor data"
    return b"II*\0" + struct.pack("<I", 8) + ifd + filler.tobytes() + preview
