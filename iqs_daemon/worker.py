"""What the daemon's scoring thread does with each changed path: triage, score, record.

    Change --triage (state, lstat, pixels)--> Candidate --Scorer.process--> Outcome
           --record--> a state row (after the XMP write)

Deciding what to score (``triage``), for a changed path with stat ``s``:

- it is not a photo we may read: a symbolic link while links are not followed, a link or
  a path that leads outside the watched folders, not a regular file. It is recorded as
  ``skipped`` with the reason, never scored;
- its row has stat ``s``: nothing to do (this is how our own XMP writes are ignored: the
  row is written after the write, with the photo's new size and mtime), unless the row
  is from an older model or a failure is due for a retry;
- it was renamed from a path with a row: the row moves with it (the XMP travelled too);
- no row: a row for a vanished file with the same size and mtime and the same pixel
  fingerprint is a move made while we were not watching; otherwise it is scored;
- its row has another stat: it is scored, and the pass decodes it once and compares its
  pixel fingerprint with the row's (``stages.ScoredBefore``, ``stages.decode_photo``).
  The same pixels under a verdict of this model and policy (another program edited the
  metadata) end as ``touched``: only the stat is updated, or the verdict is written back
  if the edit stripped it. Other pixels are scored again. A metadata edit, by far the
  common case, so costs one decode and no model run or XMP write.
"""

from __future__ import annotations

import errno
import logging
import os
import stat as stat_mod
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import decoding, discovery, sidecars
from .errors import (
    FileChanged,
    InputError,
    IqsError,
    StateError,
)
from .metadata import target_for
from .pipeline import Outcome, ScoredBefore, Scorer, Status
from .records import Candidate, Decoded
from .restore import stored_verdict_json, verdict_from_json, verdict_json
from .state import FAILED, GONE, SCORED, SKIPPED, FileStat, PhotoRecord, StateDB
from .watching import Change, Skipped, StateMessage, Vanished, is_photo_name

if TYPE_CHECKING:
    from .config import Settings
    from .xmp_tags import StoredMetadata

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # transient failures in a row before a photo waits for the file to change
MAX_RETRY_DELAY_SECONDS = 6 * 3600.0
OUTSIDE_ROOTS = "leads outside the watched folders"


def retry_delay_seconds(error: IqsError, attempts: int, base_seconds: float) -> float | None:
    """Seconds until the next try after ``attempts`` failures, or None: wait for a change.
    Which errors are worth retrying is their class's ``transient`` (errors.py)."""
    if not error.transient or attempts >= MAX_ATTEMPTS:
        return None
    return min(base_seconds * 2.0 ** (attempts - 1), MAX_RETRY_DELAY_SECONDS)


class Worker:
    """Owns the Scorer and every state write (the scoring thread, the state's one writer).

    Its Scorer keeps burst frames (``keeps_frames``): each scored frame is grouped with
    the recent frames of its folder kept in the state (``daemon_bursts``), and earlier
    frames whose verdict changes are written again, as ``redecided`` outcomes of their
    own. A photo whose file changed since its verdict is decoded even though its XMP
    carries a current verdict (``changed_since``, found by ``triage`` and handed to each
    pass), to tell a metadata edit from a pixel edit. A file
    replaced between its decode and the write is left alone by the writer
    (``MetadataWriter.write_verdict``'s ``expected``), and looked at again."""

    def __init__(self, db: StateDB, scorer: Scorer, settings: Settings, roots: list[Path],
                 *, retry_base_seconds: float, look_again: Callable[[Path], None]):
        self.db = db
        self.scorer = scorer
        self.settings = settings
        self.roots = roots
        self.real_roots = [Path(os.path.realpath(r)) for r in roots]
        self.retry_base_seconds = retry_base_seconds
        self.look_again = look_again  # the path changed under us: settle and triage again
        self.counts = {"scored": 0, "redecided": 0, "unchanged": 0, "failed": 0, "moved": 0,
                       "touched": 0,
                       "skipped": 0}
        self.in_flight = 0
        self.heartbeat = time.monotonic()
        self.scored_times: deque[float] = deque()
        self._counts_lock = threading.Lock()
        self.changed_since: dict[Path, ScoredBefore] = {}  # found by triage, until scored

    @property
    def model_label(self) -> str:
        return self.scorer.model.info.model_label

    def _count(self, key: str) -> None:
        with self._counts_lock:
            self.counts[key] = self.counts.get(key, 0) + 1  # "restored" appears when it happens

    # -- triage ----------------------------------------------------------------------------
    def triage(self, change: Change) -> Candidate | None:
        """The Candidate to score for ``change``, or None (see the module docstring)."""
        path = change.path
        found = self.inspect(path)
        if found is None:
            self.gone(path)
            return None
        if isinstance(found, str):
            self.skip(path, found)
            return None
        stat = found
        row = self.db.get(path)
        if row is not None and row.status == SKIPPED:
            row = None  # the reason no longer holds
        if change.moved_from is not None and (row is None or row.stat != stat):
            row = self._follow_move(change.moved_from, path) or row
        if row is None or row.status == GONE:
            row = self._find_moved(path, stat) or row
        if row is not None and row.stat == stat:
            if (row.status == SCORED and row.model == self.model_label
                    and row.policy == self.scorer.policy.identity):
                # The same file: its pixels are the ones scored. Its sidecar may be gone.
                return self._restore(row, stat) if self.verdict_missing(path) else None
            if row.status == FAILED and (row.next_attempt_at is None or (
                    change.reason != "retry" and row.next_attempt_at > time.time())):
                return None
        elif row is not None and row.status == SCORED and row.fingerprint:
            current = (row.model == self.model_label
                       and row.policy == self.scorer.policy.identity)
            self.changed_since[path] = ScoredBefore(
                row.fingerprint, current, verdict_from_json(path, row.verdict) is not None)
        return Candidate(path, stat.size_bytes, stat.mtime_ns)

    def handle(self, message: StateMessage) -> None:
        """Write what the scanner thread asked of the state."""
        if isinstance(message, Vanished):
            if not os.path.lexists(message.path):  # not back since the scanner looked
                self.gone(message.path)
        elif isinstance(message, Skipped):
            self.skip(message.path, message.reason)
        else:
            self.db.forget_skipped(message.root, before=message.before)

    def inspect(self, path: Path) -> FileStat | str | None:
        """The stat of a photo we may score, a reason to skip it, or None: no such file."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not is_photo_name(path):
            return None
        if stat_mod.S_ISLNK(st.st_mode):
            if not self.settings.follow_symlinks:
                return discovery.SYMLINK_SKIPPED
            try:
                st = os.stat(path)
            except OSError as exc:
                return "symbolic link loop" if exc.errno == errno.ELOOP else "broken symbolic link"
        if not stat_mod.S_ISREG(st.st_mode):
            return "not a regular file"
        if not self.confined(path):
            return OUTSIDE_ROOTS
        return FileStat(st.st_size, st.st_mtime_ns)

    def confined(self, path: Path) -> bool:
        """The file itself (links resolved) lies below one of the watched folders."""
        real = Path(os.path.realpath(path))
        return any(real.is_relative_to(root) for root in self.real_roots)

    def skip(self, path: Path, reason: str) -> None:
        """Record why ``path`` is not scored (renewed at every scan; logged once)."""
        stat = _lstat(path)
        if stat is None:
            return
        row = self.db.get(path)
        self.db.record_skipped(path, stat, reason)
        if row is None or row.status != SKIPPED or row.error != reason:
            self._count("skipped")
            log.info("skipped %s: %s", path, reason)

    def _follow_move(self, old: Path, new: Path) -> PhotoRecord | None:
        row = self.db.get(old)
        if row is None or os.path.lexists(old):
            return None
        self.db.move(old, new)
        self._count("moved")
        log.info("moved %s -> %s", old, new)
        sidecar = sidecars.move_sidecar(old, new, self.settings)
        if sidecar is not None:
            log.info("moved its sidecar too: %s", sidecar)
        return self.db.get(new)

    def gone(self, path: Path) -> None:
        """The photo is no longer there: keep its row for a move, drop a sidecar of ours."""
        row = self.db.get(path)
        self.db.mark_gone(path)
        if row is not None and row.status == SCORED:
            removed = sidecars.remove_if_only_ours(path, self.settings)
            if removed is not None:
                log.info("%s is gone; removed its sidecar %s", path, removed.name)

    # -- restoring deleted metadata --------------------------------------------------------
    def verdict_missing(self, path: Path) -> bool:
        return verdict_missing(path, self.settings)

    def _restore(self, row: PhotoRecord, stat: FileStat) -> Candidate | None:
        """Write the verdict kept in the state back into a photo whose pixels are the
        ones scored; a row without one (an older state) means scoring it again."""
        path = row.path
        verdict = verdict_from_json(path, row.verdict)
        if verdict is None:
            log.info("%s lost its verdict and the state keeps none: scoring it again", path)
            return Candidate(path, stat.size_bytes, stat.mtime_ns)
        try:
            self.scorer.metadata.write_verdict(path, verdict, row.fingerprint, self.settings,
                                               expected=(stat.size_bytes, stat.mtime_ns))
        except IqsError as exc:
            log.warning("cannot restore the verdict of %s: %s", path, exc)
            return None
        self.db.record_scored(path, FileStat.of(path) or stat, fingerprint=row.fingerprint,
                              score=verdict.score, label=verdict.label.title,
                              model=row.model or "", policy=row.policy, verdict=row.verdict)
        self._count("restored")
        log.info("restored the verdict of %s from the state: %s %.1f", path,
                 verdict.label.title, verdict.score)
        return None

    def _find_moved(self, path: Path, stat: FileStat) -> PhotoRecord | None:
        """A row for a vanished file with this stat and these pixels: moved while unwatched."""
        rows = [r for r in self.db.find_by_stat(stat)
                if r.path != path and r.fingerprint and not os.path.lexists(r.path)]
        if not rows:
            return None
        decoded = self._decode(path)
        for row in rows:
            if decoded is not None and decoding.same_pixels(row.fingerprint, decoded):
                return self._follow_move(row.path, path)
        return None

    def _decode(self, path: Path) -> Decoded | None:
        """The pixels to compare with a stored fingerprint (``decoding.same_pixels``)."""
        try:
            return decoding.decode(path, min_short_side=self.scorer.model.info.min_short_side,
                                   max_pixels=self.settings.max_pixels)
        except IqsError:
            return None  # scoring will fail the same way and record why

    # -- scoring and recording ---------------------------------------------------------------
    def score(self, candidates: list[Candidate], stopping: threading.Event) -> None:
        """Score and record ``candidates``. An unexpected error (a bug, a file that trips a
        library in a way we do not translate) costs that photo, never the batch."""
        done: set[Path] = set()
        asked = {c.path for c in candidates}
        self.in_flight = len(candidates)
        changed = {p: b for p, b in self.changed_since.items() if p in asked}
        try:
            for outcome in self.scorer.process(candidates, changed_since=changed,
                                               frames=self.db):
                self.heartbeat = time.monotonic()
                if outcome.candidate.path in asked:  # not an earlier burst frame re-decided
                    self.in_flight -= 1
                done.add(outcome.candidate.path)
                self._record_guarded(outcome)
                if stopping.is_set():
                    return  # the rest is found again by the next start's backlog
        except Exception as exc:
            rest = [c for c in candidates if c.path not in done]
            if len(rest) == 1:
                log.debug("scoring %s failed", rest[0].path, exc_info=True)
                error = InputError(rest[0].path, f"unexpected error: {exc}")
                self._record_guarded(Outcome(rest[0], Status.FAILED, error=error))
            else:
                log.warning("scoring %d photos failed (%s); trying them one by one",
                            len(rest), exc)
                for candidate in rest:
                    if not stopping.is_set():
                        self.score([candidate], stopping)
        finally:
            self.in_flight = 0
            for path in asked:
                self.changed_since.pop(path, None)

    def _record_guarded(self, outcome: Outcome) -> None:
        try:
            self.record(outcome)
        except StateError as exc:
            # The XMP is written; the next scan finds it there and records it.
            log.error("%s: not recorded: %s", outcome.candidate.path, exc)

    def record(self, outcome: Outcome) -> None:
        """Remember what happened, with the photo's stat *after* our write."""
        path = outcome.candidate.path
        stat = FileStat.of(path)
        if stat is None:
            self.db.mark_gone(path)
            return
        if isinstance(outcome.error, FileChanged):
            log.debug("%s changed while it was scored; looking at it again", path)
            self.look_again(path)
            return
        if outcome.status in (Status.SCORED, Status.REDECIDED) and outcome.verdict is not None:
            v = outcome.verdict
            written = outcome.write is not None and outcome.write.written
            self.db.record_scored(path, stat, fingerprint=outcome.fingerprint, score=v.score,
                                  label=v.label.title, model=f"{v.model_name} {v.model_version}",
                                  policy=v.policy, counted=written, verdict=verdict_json(v))
            self._count(outcome.status)
            self.scored_times.append(time.monotonic())
            reasons = f" ({', '.join(v.reasons)})" if v.reasons else ""
            log.info("scored %s: %s %.1f%s", path, v.label.title, v.score, reasons)
        elif outcome.status == Status.UNCHANGED:
            self._adopt(path, stat, outcome.stored)
        elif outcome.status == Status.TOUCHED:
            self._touched(outcome)
        else:
            self._record_failure(path, stat, outcome.error)

    def _touched(self, outcome: Outcome) -> None:
        """The file changed, its pixels did not: remember the stat the pass compared (a
        later change is looked at again), or write back a verdict the edit stripped."""
        candidate = outcome.candidate
        stat = FileStat(candidate.size_bytes, candidate.mtime_ns)
        stored = outcome.stored
        row = self.db.get(candidate.path)
        if row is not None and stored is not None and stored.model_name is None:
            self._restore(row, stat)  # stripped, e.g. exiftool -all=
            return
        self.db.touch(candidate.path, stat)
        self._count("touched")
        log.debug("metadata changed, pixels did not: %s", candidate.path)

    def _adopt(self, path: Path, stat: FileStat, stored: StoredMetadata | None) -> None:
        """The photo already carries a current verdict (scored before the state knew);
        ``stored``: what the pass read of it."""
        if stored is None:
            try:
                stored = self.scorer.metadata.read_stored(path, self.settings)
            except IqsError as exc:
                log.warning("cannot read the verdict of %s: %s", path, exc)
                return
        label = stored.label.title if stored.label is not None else None
        self.db.record_scored(path, stat, fingerprint=stored.fingerprint or "", score=stored.score,
                              label=label, model=f"{stored.model_name} {stored.model_version}",
                              policy=stored.policy, counted=False,
                              verdict=stored_verdict_json(stored))
        self._count("unchanged")
        log.info("already scored %s: %s", path, label)

    def _record_failure(self, path: Path, stat: FileStat, error: IqsError | None) -> None:
        error = error or IqsError("unknown error")
        row = self.db.get(path)
        previous = row.attempts if row is not None and row.status == FAILED else 0
        delay = retry_delay_seconds(error, previous + 1, self.retry_base_seconds)
        self.db.record_failure(path, stat, getattr(error, "reason", str(error)),
                               retry_in_seconds=delay)
        self._count("failed")
        when = f"retry in {delay:.3g} s" if delay is not None else "not retried until it changes"
        log.warning("failed %s (%s)", error, when)

    def photos_per_second(self, window_seconds: float, uptime_seconds: float) -> float:
        now = time.monotonic()
        while self.scored_times and self.scored_times[0] < now - window_seconds:
            self.scored_times.popleft()
        return len(self.scored_times) / min(window_seconds, max(uptime_seconds, 1.0))


def _lstat(path: Path) -> FileStat | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return FileStat(st.st_size, st.st_mtime_ns)


def verdict_missing(path: Path, settings: Settings) -> bool:
    """Cheap: the photo's verdict lives in a sidecar that is gone or no longer ours.

    An embedded verdict cannot go missing without the photo's stat changing, which
    the pass looks at with the pixels (``stages.ScoredBefore``).
    """
    try:
        target = target_for(path, settings)
    except IqsError:
        return False
    return target != path and not sidecars.carries_our_record(target)
