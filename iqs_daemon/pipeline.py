"""The scoring pipeline: decode (parallel) -> batched inference -> verdict -> write (serial).

    Candidate --decode_stage--> Prepared --model.run--> Scores --decide--> Verdict
              --metadata writer--> WriteResult, all reported as one Outcome per photo.

``Scorer`` holds what is loaded once per process (the model, the metadata worker) and
``process`` streams outcomes in input order. Work in flight is bounded, so memory stays
flat whatever the number of photos. The ``score`` command and the daemon both use it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from . import decoding
from .errors import IqsError
from .metadata import MetadataWriter
from .model import QualityModel
from .records import Candidate, Verdict, WriteResult
from .verdict import Thresholds, decide

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened to one photo. ``status``: scored | unchanged | failed."""

    candidate: Candidate
    status: str
    verdict: Verdict | None = None
    write: WriteResult | None = None
    error: IqsError | None = None
    fingerprint: str = ""
    decode_source: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass(frozen=True, eq=False)
class Prepared:
    candidate: Candidate
    views: dict[str, np.ndarray]
    fingerprint: str
    source: str


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class Scorer:
    """Loads the model and the metadata writer once; scores any number of photos."""

    def __init__(
        self,
        settings: Settings,
        *,
        dry_run: bool = False,
        force: bool = False,
        model: QualityModel | None = None,
    ):
        self.settings = settings
        self.dry_run = dry_run
        self.force = force
        self.workers = settings.jobs or default_workers()
        self.model = model or QualityModel.from_settings(settings)
        self.thresholds = Thresholds.resolve(self.model.info.thresholds, settings)
        self.metadata = MetadataWriter(settings)
        self._decoders = ThreadPoolExecutor(self.workers, thread_name_prefix="iqs-decode")
        # One writer thread: exiv2 calls are serialised anyway, and writes then overlap
        # with decoding and inference instead of stalling them.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="iqs-write")

    def close(self) -> None:
        self._decoders.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)
        self.metadata.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- stages ---------------------------------------------------------------------
    def already_scored(self, candidate: Candidate) -> bool:
        """True when the photo carries a verdict from the current model (and no --force)."""
        if self.force:
            return False
        try:
            stored = self.metadata.read_stored(candidate.path, self.settings)
        except IqsError:
            return False
        info = self.model.info
        return (stored.model_name, stored.model_version) == (info.name, info.version)

    def decode_stage(self, candidate: Candidate) -> Prepared | Outcome:
        try:
            if self.already_scored(candidate):
                return Outcome(candidate, "unchanged")
            decoded = decoding.decode(
                candidate.path,
                min_short_side=self.model.info.min_short_side,
                max_pixels=self.settings.max_pixels,
            )
            views = self.model.prepare(decoded.rgb)
        except IqsError as exc:
            return Outcome(candidate, "failed", error=exc)
        return Prepared(candidate, views, decoded.fingerprint, decoded.source)

    def write_stage(self, item: Prepared, verdict: Verdict) -> Outcome:
        try:
            result = self.metadata.write_verdict(
                item.candidate.path, verdict, item.fingerprint, self.settings,
                force=self.force, dry_run=self.dry_run,
            )
        except IqsError as exc:
            return Outcome(item.candidate, "failed", verdict=verdict, error=exc,
                           fingerprint=item.fingerprint, decode_source=item.source)
        return Outcome(item.candidate, "scored", verdict=verdict, write=result,
                       fingerprint=item.fingerprint, decode_source=item.source)

    def infer_stage(self, batch: list[Prepared]) -> list[Verdict]:
        scores = self.model.run([item.views for item in batch])
        info = self.model.info
        return [decide(item.candidate.path, s, info, self.thresholds) for item, s in zip(batch, scores)]

    # -- the pipeline ---------------------------------------------------------------
    def process(self, candidates: Iterable[Candidate]) -> Iterator[Outcome]:
        """Score every candidate; yields one Outcome each, in input order."""
        batch_size = self.settings.batch_size
        window = self.workers * 2 + batch_size  # decodes in flight: bounds memory
        decoding_: deque[Future[Prepared | Outcome]] = deque()
        results: deque[Future[Outcome] | Outcome] = deque()
        batch: list[Prepared] = []
        source = iter(candidates)
        exhausted = False

        def flush_batch() -> None:
            if not batch:
                return
            started = time.perf_counter()
            verdicts = self.infer_stage(batch)
            log.debug("inference: %d photos in %.0f ms", len(batch), 1e3 * (time.perf_counter() - started))
            for item, verdict in zip(batch, verdicts):
                results.append(self._writer.submit(self.write_stage, item, verdict))
            batch.clear()

        while True:
            while not exhausted and len(decoding_) < window:
                candidate = next(source, None)
                if candidate is None:
                    exhausted = True
                else:
                    decoding_.append(self._decoders.submit(self.decode_stage, candidate))
            if not decoding_:
                break
            prepared = decoding_.popleft().result()
            if isinstance(prepared, Outcome):
                results.append(prepared)
            else:
                batch.append(prepared)
                # Run a partial batch when nothing more is coming soon, so a lone photo in
                # the daemon is not held back waiting for seven others.
                if len(batch) >= batch_size or (not decoding_ and exhausted):
                    flush_batch()
            yield from self._drain(results, block=False)
        flush_batch()
        yield from self._drain(results, block=True)

    @staticmethod
    def _drain(results: deque[Future[Outcome] | Outcome], *, block: bool) -> Iterator[Outcome]:
        while results:
            head = results[0]
            if isinstance(head, Future):
                if not block and not head.done():
                    return
                results.popleft()
                yield head.result()
            else:
                results.popleft()
                yield head
