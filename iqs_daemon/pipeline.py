"""The scoring pipeline: the stage list, built in one place, and ``Scorer``, which runs it.

    Candidate --read_stored--> Looked --reuse_verdict--> (unchanged | re-decided)
              --decode_photo--> Prepared --score_batch--> Scored [--bursts--] --write--> Outcome

``build_stages`` is where the order lives (the stages are in ``stages.py``, bursts in
``burst_stage.py`` and ``daemon_bursts.py``, the schedule in ``runner.py``). ``Scorer``
holds what is loaded once per process (the model, the exiv2 process, the threads) and
``process`` streams outcomes. The ``score`` command and the daemon both use it.

On a CPU, decoding and inference share the cores: ``jobs`` decode threads (one per core)
and ONNX Runtime's own threads (``threads``, by default half the cores) together keep
every core busy without oversubscribing it; see ``inference_threads`` and
benchmarks/README.md for the measurements behind the choice. With CUDA, inference leaves
the CPU to the decoders and runs larger batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from . import bursts
from .burst_stage import Framed, HoldBursts, order_by_capture
from .daemon_bursts import HandPicks, RegroupWithEarlier
from .metadata import MetadataWriter
from .model import QualityModel
from .records import Candidate
from .runner import Batch, Hold, Parallel, Serial, Source, Stage, run_concurrent, run_sequential
from .stages import (
    REDECIDED_SOURCE,
    Decided,
    Looked,
    Outcome,
    Pass,
    Prepared,
    Scored,
    ScoredBefore,
    Status,
    decode_photo,
    failing_alone,
    read_stored,
    reuse_verdict,
    score_batch,
    write,
)
from .verdict import Policy

if TYPE_CHECKING:
    from .config import Settings
    from .state import StateDB

__all__ = ["REDECIDED_SOURCE", "Outcome", "ScoredBefore", "Scorer", "Status", "build_stages"]

# Photos per inference unless ``batch_size`` is set. On a CPU a batch of one costs the
# least CPU time per photo and its activations stay small (EfficientNet-Lite0 at 512 px:
# 0.2 GB peak for 1, 0.8 GB for 8); a GPU needs large batches to be kept busy.
CPU_BATCH_SIZE = 1
GPU_BATCH_SIZE = 32
#: glibc's malloc: blocks from 32 MB are mapped (an 18 MB decode is not), and up to
#: 128 MB freed at the heap's top is kept (see ``limit_malloc_arenas``).
MALLOC_MMAP_THRESHOLD = 32 * 1024 * 1024
MALLOC_TRIM_THRESHOLD = 128 * 1024 * 1024


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (default: 8 per core), before the decode threads start.

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

    The decode threads are one per core already, and decoding a 24 MP JPEG costs
    more CPU than the model, so inference takes what is left. On 2 cores one inference
    thread beside two decoders also spent the least CPU time per photo: its threads never
    wait for each other at a barrier while a decoder holds the other core.
    """
    return settings.threads or max(1, default_jobs() // 2)


def batch_size_for(settings: Settings, providers: list[str]) -> int:
    """Photos per inference: ``batch_size`` where the user set it, else by device."""
    if settings.source_of("batch_size") != "default":
        return settings.batch_size
    return CPU_BATCH_SIZE if providers[0] == "CPUExecutionProvider" else GPU_BATCH_SIZE


def build_stages(p: Pass, batch_size: int, *, frames: StateDB | None = None,
                 hand_picks: HandPicks | None = None) -> list[Stage]:
    """The stages of a pass, in order: the one place that says what happens to a photo.

    ``p.rescore`` drops the reuse of stored verdicts; ``p.group_bursts`` adds the
    one-shot burst stages; ``frames`` (the daemon's state) the daemon's burst stage.
    """
    stages: list[Stage] = []
    if p.group_bursts:
        stages.append(Source(partial(order_by_capture,
                                     max_gap_seconds=p.burst_settings.max_gap_seconds)))
    stages.append(Parallel(failing_alone(partial(read_stored, p)), takes=(Candidate, Framed)))
    if not p.rescore:
        stages.append(Parallel(failing_alone(partial(reuse_verdict, p)), takes=Looked))
    stages.append(Parallel(failing_alone(partial(decode_photo, p)), takes=Looked))
    stages.append(Batch(partial(score_batch, p), takes=Prepared, size=batch_size))
    if p.group_bursts:
        stages.append(Hold(HoldBursts(p), takes=Scored))
    elif frames is not None and p.framing:
        stages.append(Hold(RegroupWithEarlier(p, frames, hand_picks), takes=Scored))
    stages.append(Serial(partial(write, p), takes=Decided))
    return stages


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
        keeps_frames: bool = False,
    ):
        """``rescore``: decode and score photos that already carry a current verdict;
        ``replace_hand_labels``: overwrite pick labels and ratings the user set;
        ``group_bursts``: hold each folder's verdicts until no later frame can join a
        burst, group them and pick the best of each (``burst_stage.py``; one-shot
        ``score``); ``keeps_frames``: the daemon's, whose frames are grouped with the
        earlier ones kept in its state (``daemon_bursts.py``) with ``bursts.group_bursts``."""
        self.settings = settings
        self.group_bursts = group_bursts
        self.dry_run = dry_run
        self.rescore = rescore
        self.replace_hand_labels = replace_hand_labels
        self.keeps_frames = keeps_frames and settings.group_bursts
        limit_malloc_arenas()
        self.jobs = settings.jobs or default_jobs()
        self.model = model or QualityModel.from_settings(
            settings, intra_op_threads=inference_threads(settings))
        self.batch_size = batch_size_for(settings, self.model.providers)
        self.policy = Policy.resolve(self.model.info.thresholds, settings)
        self.burst_settings = bursts.BurstSettings.from_settings(settings)
        self.metadata = MetadataWriter(settings)
        self._decoders = ThreadPoolExecutor(self.jobs, thread_name_prefix="iqs-decode")
        # One writer thread: exiv2 calls are serialised anyway, and writes then overlap
        # with decoding and inference instead of stalling them.
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="iqs-write")
        self._hand_picks = HandPicks()  # the daemon's earlier frames, across passes

    def close(self) -> None:
        self._decoders.shutdown(wait=True, cancel_futures=True)
        self._writer.shutdown(wait=True)
        self.metadata.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pass_for(self, *, changed_since: Mapping[Path, ScoredBefore] | None = None) -> Pass:
        """What the stages of one pass read."""
        return Pass(self.settings, self.model, self.policy, self.metadata, self.burst_settings,
                    dry_run=self.dry_run, rescore=self.rescore,
                    replace_hand_labels=self.replace_hand_labels,
                    group_bursts=self.group_bursts,
                    framing=self.group_bursts or self.keeps_frames,
                    changed_since=changed_since or {})

    def stages(self, *, changed_since: Mapping[Path, ScoredBefore] | None = None,
               frames: StateDB | None = None) -> list[Stage]:
        """This scorer's stage list; ``frames``: the daemon's state, for its bursts."""
        p = self.pass_for(changed_since=changed_since)
        return build_stages(p, self.batch_size, frames=frames if self.keeps_frames else None,
                            hand_picks=self._hand_picks)

    def process(self, candidates: Iterable[Candidate], *,
                changed_since: Mapping[Path, ScoredBefore] | None = None,
                frames: StateDB | None = None) -> Iterator[Outcome]:
        """Score every candidate; yields one Outcome each, in input order except that a
        photo scored now may come after the photos behind it that needed no inference
        (with bursts: folder by folder, a burst's frames when it is decided; with the
        daemon's ``frames``, earlier frames re-decided come out as outcomes of their own).
        ``changed_since``: the daemon's photos whose file changed since it scored them,
        decoded to compare their pixels (``stages.ScoredBefore``)."""
        return self.run(self.stages(changed_since=changed_since, frames=frames), candidates)

    def run(self, stages: list[Stage], candidates: Iterable[Candidate]) -> Iterator[Outcome]:
        """Run ``stages`` over ``candidates``: on this thread with one decode thread (``--jobs
        1``), else decodes on the pool, inference here, writes on the writer thread."""
        if self.jobs == 1:
            return run_sequential(stages, candidates)
        return run_concurrent(
            stages, candidates, pool=self._decoders, writer=self._writer,
            window=self.jobs * 2 + self.batch_size,  # decodes in flight: bounds memory
            writes_behind=2 * self.batch_size)  # written while inference goes on
