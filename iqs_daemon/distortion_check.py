"""Run the distortion protocol on any photos, through the product's own decode and model.

    run_protocol(scorer, candidates, min_megapixels=2.0) -> Iterator[ProtocolPhoto | ProtocolSkip]

For each photo of at least ``min_megapixels``: decode it at full resolution, apply each
family's three levels (``distortions.PROTOCOL``) to those pixels, write every copy to a
temporary folder - lossless PNG, except the ``jpeg`` family whose copy *is* the re-encoded
JPEG - and score the original file and its 15 copies with ``Scorer.process``, exactly as
``iqs-daemon score`` would read them. Then the counter-check: two copies whose background
is defocused around the sharp subject (``distortions.SOFT_BACKGROUND``), which must score
as the original does. One family's three copies exist at a time and are
deleted before the next, so memory and disk stay bounded whatever the folder holds.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from . import decoding
from .distortions import DIAGNOSTIC_OF_FAMILY, PROTOCOL, SOFT_BACKGROUND, distort, soft_background
from .errors import DecodeError, IqsError
from .evaluation import HeldScore, LevelScore
from .records import Candidate, PickLabel
from .vocabulary import REASONS

if TYPE_CHECKING:
    from .pipeline import Outcome, Scorer

PNG_COMPRESSION = 1  # fast; the copies live for seconds


@dataclass(frozen=True)
class ProtocolPhoto:
    """One photo's scores: per family, the original then each level, mildest first."""

    path: Path
    megapixels: float
    levels: dict[str, tuple[LevelScore, ...]]
    soft_background: tuple[HeldScore, ...]  # the original, then each SOFT_BACKGROUND level


@dataclass(frozen=True)
class ProtocolSkip:
    path: Path
    reason: str
    failed: bool  # True: could not be decoded or scored; False: too small


def candidate_for(path: Path) -> Candidate:
    st = path.stat()
    return Candidate(path, st.st_size, st.st_mtime_ns)


def write_copies(rgb: np.ndarray, family: str, folder: Path, seed: int) -> list[Path]:
    """The family's three protocol levels of ``rgb``, mildest first, written into ``folder``."""
    paths: list[Path] = []
    for index, level in enumerate(PROTOCOL[family], 1):
        if family == "jpeg":  # the copy is the re-encoded file itself, as a camera would write it
            path = folder / f"{family}-{index}.jpg"
            data = _encode(path, rgb, [cv2.IMWRITE_JPEG_QUALITY, int(level)])
        else:
            path = folder / f"{family}-{index}.png"
            damaged = distort(rgb, family, level, seed=seed)
            data = _encode(path, damaged, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION])
        path.write_bytes(data)
        paths.append(path)
    return paths


def _encode(path: Path, rgb: np.ndarray, params: list[int]) -> bytes:
    ok, buffer = cv2.imencode(path.suffix, np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:  # pragma: no cover - cv2 encodes any 8-bit BGR image
        raise DecodeError(path, "OpenCV could not encode the distorted copy")
    return buffer.tobytes()


def level_score(outcome: Outcome, family: str) -> LevelScore:
    verdict = outcome.verdict
    if verdict is None:  # decode or inference failed: no figure to use
        raise outcome.error or IqsError(f"{outcome.candidate.path}: not scored")
    diagnostic = verdict.diagnostics.get(DIAGNOSTIC_OF_FAMILY[family])
    return LevelScore(verdict.score, verdict.label is PickLabel.REJECTED, diagnostic)


def held_score(outcome: Outcome) -> HeldScore:
    verdict = outcome.verdict
    if verdict is None:
        raise outcome.error or IqsError(f"{outcome.candidate.path}: not scored")
    return HeldScore(
        verdict.score,
        int(verdict.label),
        verdict.diagnostics.get("blur"),
        REASONS["blur"] in verdict.reasons,
    )


def score_soft_background(
    scorer: Scorer, rgb: np.ndarray, folder: Path, seed: int
) -> list[Outcome]:
    """The soft-background copies (PNG), scored and deleted like a family's."""
    short_side = min(rgb.shape[:2])
    paths: list[Path] = []
    try:
        for index, share in enumerate(SOFT_BACKGROUND, 1):
            path = folder / f"soft-background-{index}.png"
            soft = soft_background(rgb, share * short_side, np.random.default_rng(seed))
            path.write_bytes(_encode(path, soft, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]))
            paths.append(path)
        return list(scorer.process(candidate_for(path) for path in paths))
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def score_family(
    scorer: Scorer, rgb: np.ndarray, family: str, folder: Path, seed: int
) -> list[Outcome]:
    """Write one family's copies, score them, delete them: three files on disk at most."""
    paths = write_copies(rgb, family, folder, seed)
    try:
        return list(scorer.process(candidate_for(path) for path in paths))
    finally:
        for path in paths:
            path.unlink(missing_ok=True)


def check_photo(
    scorer: Scorer, candidate: Candidate, min_megapixels: float, seed: int
) -> ProtocolPhoto | ProtocolSkip:
    try:
        decoded = decoding.decode(
            candidate.path, min_short_side=10**9, max_pixels=scorer.settings.max_pixels
        )
        width, height = decoded.original_size
        megapixels = width * height / 1e6
        if megapixels < min_megapixels:
            return ProtocolSkip(
                candidate.path,
                f"{width}x{height} is {megapixels:.1f} MP, under {min_megapixels:g} MP",
                failed=False,
            )
        (original,) = scorer.process([candidate])
        levels: dict[str, tuple[LevelScore, ...]] = {}
        with tempfile.TemporaryDirectory(prefix="iqs-distortions-") as folder:
            for family in PROTOCOL:
                outcomes = score_family(scorer, decoded.rgb, family, Path(folder), seed)
                levels[family] = tuple(level_score(o, family) for o in (original, *outcomes))
            softened = score_soft_background(scorer, decoded.rgb, Path(folder), seed)
            held = tuple(held_score(o) for o in (original, *softened))
    except IqsError as exc:
        return ProtocolSkip(candidate.path, _reason(exc, candidate.path), failed=True)
    return ProtocolPhoto(candidate.path, megapixels, levels, held)


def _reason(exc: IqsError, photo: Path) -> str:
    where = getattr(exc, "path", photo)
    reason = getattr(exc, "reason", str(exc))
    return reason if where == photo else f"distorted copy {where.name}: {reason}"


def run_protocol(
    scorer: Scorer, candidates: Iterable[Candidate], *, min_megapixels: float = 2.0
) -> Iterator[ProtocolPhoto | ProtocolSkip]:
    """One result per candidate, in order. The noise family's seed is the photo's index."""
    for seed, candidate in enumerate(candidates):
        yield check_photo(scorer, candidate, min_megapixels, seed)
