"""The scoring pipeline: decode (parallel) -> batched inference -> verdict -> write (serial).

    Candidate --decode_stage--> Prepared --model.run--> Scores --decide--> Verdict
              --metadata writer--> WriteResult, all reported as one Outcome per photo.

A photo that carries a verdict of the current model but of another policy (the user
changed a threshold, or calibrated) skips decoding and inference: ``decode_stage``
re-decides it from its stored score, diagnostics and exposure facts, and it goes
straight to the writer (status ``redecided``).

``Scorer`` holds what is loaded once per process (the model, the metadata worker) and
``process`` streams outcomes in input order. Work in flight is bounded (decodes ahead of
inference, writes behind it), so memory stays flat whatever the number of photos. The
``score`` command and the daemon both use it.

On a CPU, decoding and inference share the cores: ``jobs`` decode workers (one per core)
and ONNX Runtime's own threads (``threads``, by default half the cores) together keep
every core busy without oversubscribing it; see ``inference_threads`` and
benchmarks/README.md for the measurements behind the choice. With CUDA, inference leaves
the CPU to the decoders and runs larger batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import bursts, decoding
from .errors import InputError, IqsError
from .exposure import ExposureFacts, measure
from .metadata import MetadataWriter, hand_label
from .model import QualityModel
from .records import Burst, Candidate, PickLabel, Scores, Verdict, WriteResult
from .sharpness import Signature, signature_of
from .verdict import Policy, decide
from .xmp_tags import StoredMetadata

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

# Photos per inference unless ``batch_size`` is set. On a CPU a batch of one costs the
# least CPU time per photo and its activations stay small (EfficientNet-Lite0 at 512 px:
# 0.2 GB peak for 1, 0.8 GB for 8); a GPU needs large batches to be kept busy.
#: ``Prepared.source`` of a photo re-decided from its stored verdict (not decoded).
REDECIDED_SOURCE = "stored verdict"

CPU_BATCH_SIZE = 1
GPU_BATCH_SIZE = 32
#: glibc's malloc: blocks from 32 MB are mapped (an 18 MB decode is not), and up to
#: 128 MB freed at the heap's top is kept (see ``limit_malloc_arenas``).
MALLOC_MMAP_THRESHOLD = 32 * 1024 * 1024
MALLOC_TRIM_THRESHOLD = 128 * 1024 * 1024


@dataclass(frozen=True)
class Outcome:
    """What happened to one photo. ``status``: scored | redecided | unchanged | failed
    (redecided: re-labelled from its stored scores under a new policy, not re-scored)."""

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
    exposure: ExposureFacts | None = None
    # Only when bursts are grouped (``Scorer(group_bursts=True)``):
    signature: Signature | None = None
    captured_at: float | None = None
    hand_label: PickLabel | None = None  # a pick label the user set, from the stored read


@dataclass(frozen=True, eq=False)
class Redecided:
    """A verdict re-decided from stored scores: ready to write, nothing to infer."""

    item: Prepared
    verdict: Verdict


#: What the pipeline does with a scored photo: the writes now pending (none while it is
#: held back, several when holding it releases others).
Emit = Callable[[Prepared, Verdict, Scores], "list[Future[Outcome]]"]


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (default: 8 per core), before the worker threads start.

    Each decode thread otherwise gets its own arena, and every arena keeps some of the
    freed 18 MB decode buffers: the daemon idled at 350 MB and peaked at 430 MB after 500
    photos; with 2 arenas, 300 and 375 MB, at the same speed. Not glibc: nothing to do.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_arena_max = -8
    mallopt(m_arena_max, arenas)
    # Keep freed decode buffers for the next photo instead of handing them back to the
    # kernel and having it zero-fill them again: 7,600 page faults per 24 MP photo fell to
    # 2,500 and CPU time by ~5 %, peak RSS unchanged (it is bounded by the work in flight).
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD)
    mallopt(m_trim_threshold, MALLOC_TRIM_THRESHOLD)


def release_free_memory() -> None:
    """Hand the memory malloc keeps for the next photo (``MALLOC_TRIM_THRESHOLD``) back to
    the system: the daemon calls it when its queue runs dry, so it idles at the size it
    would have without the thresholds. Not glibc: nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return


def inference_threads(settings: Settings) -> int:
    """ONNX Runtime's threads per inference: ``settings.threads``, else half the cores.

    The decode workers already make one thread per core, and decoding a 24 MP JPEG costs
    more CPU than the model, so inference takes what is left. On 2 cores one inference
    thread beside two decoders also spent the least CPU time per photo: its threads never
    wait for each other at a barrier while a decoder holds the other core.
    """
    return settings.threads or max(1, default_workers() // 2)


def batch_size_for(settings: Settings, providers: list[str]) -> int:
    """Photos per inference: ``batch_size`` where the user set it, else by device."""
    if settings.source_of("batch_size") != "default":
        return settings.batch_size
    return CPU_BATCH_SIZE if providers[0] == "CPUExecutionProvider" else GPU_BATCH_SIZE


class Scorer:
    """Loads the model and the metadata writer once; scores any number of photos."""

    def __init__(
        self,
        settings: Settings,
        *,
        dry_run: bool = False,
        rescore: bool = False,
        replace_hand_labels: bool = False,
        model: QualityModel | None = None,
        group_bursts: bool = False,
    ):
        """``rescore``: decode and score photos that already carry a current verdict;
        ``replace_hand_labels``: overwrite pick labels and ratings the user set;
        ``group_bursts``: hold each folder's verdicts until all its frames are scored,
        group its bursts and pick the best of each (``bursts.py``; one-shot ``score``)."""
        self.settings = settings
        self.group_bursts = group_bursts
        self.burst_settings = bursts.BurstSettings.from_settings(settings)
        self._capture_times: dict[Path, float] = {}  # of the folder being grouped
        self._alone: set[Path] = set()  # ... and its photos no other was taken near
        # The daemon's scorer: every scored photo also gets its burst record (signature,
        # capture time) for ``daemon_bursts``, while writes go out one by one.
        self.keeps_frames = False
        self.dry_run = dry_run
        self.rescore = rescore
        self.replace_hand_labels = replace_hand_labels
        limit_malloc_arenas()
        self.workers = settings.jobs or default_workers()
        self.model = model or QualityModel.from_settings(
            settings, intra_op_threads=inference_threads(settings))
        self.batch_size = batch_size_for(settings, self.model.providers)
        self.policy = Policy.resolve(self.model.info.thresholds, settings)
        self._whole_view = next(s.name for s in self.model.info.inputs if s.view == "whole")
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
    def stored_verdict(self, candidate: Candidate) -> StoredMetadata | None:
        """The verdict the photo carries from the current model, if any (None with
        ``rescore``, or when it cannot be read: then the photo is simply scored)."""
        if self.rescore:
            return None
        return self._of_current_model(self._read_stored(candidate))

    def _read_stored(self, candidate: Candidate) -> StoredMetadata | None:
        try:
            return self.metadata.read_stored(candidate.path, self.settings)
        except IqsError:
            return None

    def _of_current_model(self, stored: StoredMetadata | None) -> StoredMetadata | None:
        info = self.model.info
        if stored is None or (stored.model_name, stored.model_version) != (info.name, info.version):
            return None
        return stored

    def already_scored(self, candidate: Candidate) -> bool:
        """True when the photo carries a verdict of the current model and policy."""
        stored = self.stored_verdict(candidate)
        return stored is not None and stored.policy == self.policy.identity

    def redecide(self, candidate: Candidate, stored: StoredMetadata) -> Redecided | None:
        """The stored scores under the current policy; None when they are incomplete
        (written by an older version), and the photo must be scored again."""
        complete = (stored.score is not None and stored.fingerprint and stored.exposure is not None
                    and set(self.model.info.diagnostics) <= set(stored.diagnostics))
        if not complete:
            return None
        assert stored.score is not None
        assert stored.fingerprint
        scores = Scores(score=stored.score, diagnostics=dict(stored.diagnostics))
        verdict = decide(candidate.path, scores, self.model.info, self.policy,
                         exposure=stored.exposure, scored_at=stored.scored_at)
        burst = stored_burst(stored) if self.settings.group_bursts else None
        if burst is not None:
            verdict = bursts.apply_burst(verdict, burst, self.policy,
                                         self.burst_settings.others_label)
        item = Prepared(candidate, {}, stored.fingerprint, REDECIDED_SOURCE, stored.exposure)
        return Redecided(item, verdict)

    def decode_stage(self, candidate: Candidate) -> Prepared | Redecided | Outcome:
        try:
            hand_pick: PickLabel | None = None
            if self.group_bursts and not self.rescore:
                found = self._read_stored(candidate)  # one read serves both questions
                stored = self._of_current_model(found)
                if found is not None and not self.replace_hand_labels:
                    by_hand = hand_label(found)
                    hand_pick = next((p for p in PickLabel if p.title == by_hand), None)
            else:
                stored = self.stored_verdict(candidate)
            if stored is not None:
                # Replacing hand labels needs no new scores: the stored ones are re-applied.
                if stored.policy == self.policy.identity and not self.replace_hand_labels:
                    return Outcome(candidate, "unchanged")
                redecided = self.redecide(candidate, stored)
                if redecided is not None:
                    return redecided
            decoded = decoding.decode(
                candidate.path,
                min_short_side=self.model.info.min_short_side,
                max_pixels=self.settings.max_pixels,
            )
            views = self.model.prepare(decoded.rgb)
            exposure = measure(views[self._whole_view])
            if self.group_bursts or self.keeps_frames:
                captured = self._capture_times.get(candidate.path)
                if captured is None:
                    captured = bursts.capture_time(candidate.path, candidate.mtime_ns)
                # A photo no other was taken near cannot be in a burst: no signature.
                alone = candidate.path in self._alone
                return Prepared(candidate, views, decoded.fingerprint, decoded.source, exposure,
                                signature=None if alone else signature_of(decoded.rgb),
                                captured_at=captured, hand_label=hand_pick)
        except IqsError as exc:
            return Outcome(candidate, "failed", error=exc)
        except Exception as exc:  # a library bug tripped by one file must not end the run
            log.debug("unexpected error decoding %s", candidate.path, exc_info=True)
            error = InputError(candidate.path, f"unexpected error: {exc}")
            return Outcome(candidate, "failed", error=error)
        return Prepared(candidate, views, decoded.fingerprint, decoded.source, exposure)

    def write_stage(self, item: Prepared, verdict: Verdict) -> Outcome:
        candidate = item.candidate
        try:
            result = self.metadata.write_verdict(
                candidate.path, verdict, item.fingerprint, self.settings,
                force=self.replace_hand_labels, dry_run=self.dry_run,
                expected=(candidate.size_bytes, candidate.mtime_ns),
            )
        except IqsError as exc:
            return Outcome(candidate, "failed", verdict=verdict, error=exc,
                           fingerprint=item.fingerprint, decode_source=item.source)
        status = "redecided" if item.source == REDECIDED_SOURCE else "scored"
        return Outcome(candidate, status, verdict=verdict, write=result,
                       fingerprint=item.fingerprint, decode_source=item.source)

    def infer_stage(self, batch: list[Prepared]) -> list[Verdict]:
        return [verdict for verdict, _ in self.score_stage(batch)]

    def score_stage(self, batch: list[Prepared]) -> list[tuple[Verdict, Scores]]:
        """The model's scores and the policy's verdict for each photo of a batch."""
        scores = self.model.run([item.views for item in batch])
        info = self.model.info
        return [(decide(item.candidate.path, s, info, self.policy, exposure=item.exposure), s)
                for item, s in zip(batch, scores, strict=True)]

    # -- the pipeline ---------------------------------------------------------------
    def process(self, candidates: Iterable[Candidate]) -> Iterator[Outcome]:
        """Score every candidate; yields one Outcome each, in input order (with
        ``group_bursts``: folder by folder, each folder's scored photos last)."""
        if self.group_bursts:
            yield from self._process_grouped(candidates)
            return
        yield from self._stream(candidates, self._submit_write)

    def _submit_write(self, item: Prepared, verdict: Verdict, scores: Scores
                      ) -> list[Future[Outcome]]:
        return [self._writer.submit(self.write_stage, item, verdict)]

    def _stream(self, candidates: Iterable[Candidate], emit: Emit) -> Iterator[Outcome]:
        """Decode, infer and hand each scored photo to ``emit`` (which returns the writes it
        started); yields outcomes in the order they are handed over."""
        batch_size = self.batch_size
        window = self.workers * 2 + batch_size  # decodes in flight: bounds memory
        writes_behind = 2 * batch_size  # written while inference goes on; then it waits
        decoding_: deque[Future[Prepared | Redecided | Outcome]] = deque()
        results: deque[Future[Outcome] | Outcome] = deque()
        batch: list[Prepared] = []
        source = iter(candidates)
        exhausted = False

        def flush_batch() -> None:
            if not batch:
                return
            started = time.perf_counter()
            scored = self.score_stage(batch)
            elapsed_ms = 1e3 * (time.perf_counter() - started)
            log.debug("inference: %d photos in %.0f ms", len(batch), elapsed_ms)
            for item, (verdict, scores) in zip(batch, scored, strict=True):
                # The views are done with: a queued write holds only the small record.
                done = dataclasses.replace(item, views={})
                results.extend(emit(done, verdict, scores))
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
            elif isinstance(prepared, Redecided):
                write = self._writer.submit(self.write_stage, prepared.item, prepared.verdict)
                results.append(write)
            else:
                batch.append(prepared)
                # Run a partial batch when nothing more is coming soon, so a lone photo in
                # the daemon is not held back waiting for seven others.
                if len(batch) >= batch_size or (not decoding_ and exhausted):
                    flush_batch()
            yield from self._drain(results, keep=writes_behind)
        flush_batch()
        yield from self._drain(results, keep=0)

    # -- bursts (one-shot score) ----------------------------------------------------
    def _process_grouped(self, candidates: Iterable[Candidate]) -> Iterator[Outcome]:
        """Folder by folder, in capture-time order: hold each scored photo's small record
        (views dropped) until no later frame can join its group, that is until a frame
        comes more than ``max_gap_seconds`` after all the held ones; then group them, pick
        the best of each burst and write, while the folder's next frames are scored."""
        folders: dict[Path, list[Candidate]] = {}
        for candidate in candidates:
            folders.setdefault(candidate.path.parent, []).append(candidate)
        gap = self.burst_settings.max_gap_seconds
        for members in folders.values():
            times = {c.path: bursts.capture_time(c.path, c.mtime_ns) for c in members}
            members.sort(key=lambda c: (times[c.path], c.path.name))
            self._capture_times = times
            self._alone = alone_in_time([times[c.path] for c in members], members, gap)
            held: list[tuple[Prepared, Verdict, bursts.Frame]] = []

            def hold(item: Prepared, verdict: Verdict, scores: Scores,
                     held: list[tuple[Prepared, Verdict, bursts.Frame]] = held
                     ) -> list[Future[Outcome]]:
                frame = frame_of(item, scores)
                released: list[Future[Outcome]] = []
                # Held in capture-time order: the last one is the latest.
                if held and frame.captured_at - held[-1][2].captured_at > gap:
                    released = self._write_held(held)
                held.append((dataclasses.replace(item, signature=None), verdict, frame))
                return released

            yield from self._stream(members, hold)
            for future in self._write_held(held):
                yield future.result()
        self._capture_times, self._alone = {}, set()

    def _write_held(self, held: list[tuple[Prepared, Verdict, bursts.Frame]]
                    ) -> list[Future[Outcome]]:
        """Group the held frames, submit their writes and let go of them."""
        if not held:
            return []
        frames = [frame for _, _, frame in held]
        verdicts = bursts.decide_bursts(frames, [v for _, v, _ in held], self.policy,
                                        self.burst_settings)
        pending = [self._writer.submit(self.write_stage, item, verdict)
                   for (item, _, _), verdict in zip(held, verdicts, strict=True)]
        held.clear()
        return pending

    @staticmethod
    def _drain(results: deque[Future[Outcome] | Outcome], *, keep: int) -> Iterator[Outcome]:
        """Yield the finished outcomes in order, waiting for writes while over ``keep``."""
        while results:
            head = results[0]
            if isinstance(head, Future) and not head.done() and len(results) <= keep:
                return
            results.popleft()
            yield head.result() if isinstance(head, Future) else head



def frame_of(item: Prepared, scores: Scores) -> bursts.Frame:
    """The small record grouping needs of a scored photo."""
    embedding = np.asarray(scores.embedding, np.float32)
    captured = item.captured_at
    return bursts.Frame(
        path=item.candidate.path,
        captured_at=captured if captured is not None else item.candidate.mtime_ns / 1e9,
        embedding=embedding, signature=item.signature, exposure=item.exposure,
        score=scores.score, hand_label=item.hand_label,
    )


def alone_in_time(times: list[float], members: list[Candidate], gap: float) -> set[Path]:
    """The photos (``times`` sorted, as ``members``) with no other taken within ``gap``."""
    alone = set()
    for i, candidate in enumerate(members):
        before = i > 0 and times[i] - times[i - 1] <= gap
        after = i + 1 < len(times) and times[i + 1] - times[i] <= gap
        if not (before or after):
            alone.add(candidate.path)
    return alone


def stored_burst(stored: StoredMetadata) -> Burst | None:
    """The burst a stored verdict was decided in (``Xmp.iqs.Group*``), if any."""
    if not stored.group_id or (stored.group_size or 0) < 2:
        return None
    named = [r for r in stored.reasons if r.startswith(bursts.WEAKER_DUPLICATE)]
    pick_name = named[0][len(bursts.WEAKER_DUPLICATE):] if named else stored.path.name
    return Burst(stored.group_id, stored.group_size or 0, bool(stored.group_pick), pick_name)
