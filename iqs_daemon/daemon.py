"""The daemon: watch folders, score what arrives, remember what was done.

    scanner thread (backlog, rescans) ----------------------------.
    watchdog threads -> PendingChanges --settle (main thread)--> WorkQueue --> worker thread
                                                        triage (state) -> Scorer.process
                                                        -> record in state (after the XMP write)

The main thread settles pending changes, re-queues due retries, writes the status file,
pings systemd and handles signals (TERM/INT: stop; HUP: reload the configuration). The
worker thread owns the ``Scorer`` (model loaded once) and is the only one scoring.

Deciding what to score (``triage``), for a changed path with stat ``s``:

- its row has stat ``s``: nothing to do (this is how our own XMP writes are ignored: the
  row is written after the write, with the photo's new size and mtime), unless the row
  is from an older model or a failure is due for a retry;
- it was renamed from a path with a row: the row moves with it (the XMP travelled too);
- no row: a row for a vanished file with the same size and mtime and the same pixel
  fingerprint is a move made while we were not watching; otherwise it is scored;
- its row has another stat: the photo is decoded here to compare its pixel fingerprint.
  The same pixels (another program edited the metadata) only update the stat; other
  pixels are scored again. Decoding first costs one decode, but spares the model run and
  the XMP write for every metadata edit, by far the common case.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import stat as stat_mod
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import decoding, discovery
from .errors import DecodeError, ImageTooLarge, IqsError, MetadataError, UnsupportedFormat
from .pipeline import Outcome, Scorer
from .records import Candidate
from .service import DaemonLock, StatusFile, sd_notify, status_file_for, watchdog_interval_seconds
from .state import FAILED, GONE, SCORED, FileStat, PhotoRecord, StateDB
from .watching import Change, PendingChanges, WatchSet, WorkQueue, is_photo_name

if TYPE_CHECKING:
    from .config import Paths, Settings

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 6  # transient failures in a row before a photo waits for the file to change
MAX_RETRY_DELAY_SECONDS = 6 * 3600.0
STATUS_INTERVAL_SECONDS = 2.0
# Settings the running daemon cannot change (SIGHUP): they shape the watches.
RESTART_SETTINGS = ("polling", "poll_interval_seconds", "follow_symlinks")
MODEL_SETTINGS = ("model_path", "device")


def retry_delay_seconds(error: IqsError, attempts: int, base_seconds: float) -> float | None:
    """Seconds until the next try after ``attempts`` failures, or None: wait for a change.

    Transient: a decode error (the file may still be copying), a metadata error (a busy or
    read-only file), an OS error. Permanent: an unsupported format, a decompression bomb,
    a file that crashed exiv2.
    """
    if isinstance(error, (UnsupportedFormat, ImageTooLarge)) or attempts >= MAX_ATTEMPTS:
        return None
    if isinstance(error, MetadataError) and "crash" in error.reason:
        return None
    if isinstance(error, (DecodeError, MetadataError)) or isinstance(error.__cause__, OSError):
        return min(base_seconds * 2 ** (attempts - 1), MAX_RETRY_DELAY_SECONDS)
    return None


class DaemonScorer(Scorer):
    """A Scorer that re-scores photos whose pixels changed although their XMP is current."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.pixels_changed: set[Path] = set()

    def already_scored(self, candidate: Candidate) -> bool:
        return candidate.path not in self.pixels_changed and super().already_scored(candidate)


class Daemon:
    """``run()`` blocks until SIGTERM/SIGINT or ``stop()``; returns an exit code."""

    def __init__(
        self,
        settings: Settings,
        paths: Paths,
        roots: list[Path],
        *,
        reload_settings: Callable[[], Settings] | None = None,
        retry_base_seconds: float = 30.0,
        tick_seconds: float = 0.1,
    ):
        self.settings = settings
        self.paths = paths
        self.roots = [Path(os.path.abspath(r)) for r in roots]
        self.reload_settings = reload_settings
        self.retry_base_seconds = retry_base_seconds
        self.tick_seconds = tick_seconds
        self.pending = PendingChanges(settings.settle_seconds)
        self.queue = WorkQueue(maxsize=max(64, settings.batch_size * 8))
        self.scorer: DaemonScorer | None = None
        self.db: StateDB | None = None
        self.watches: WatchSet | None = None
        self.lock = DaemonLock(paths.state_dir)
        self.status = StatusFile(status_file_for(paths.state_dir, paths.runtime_dir))
        self.started_at = time.time()
        self.phase = "starting"
        self.ready = threading.Event()  # set once watching (tests wait on it)
        self._stopping = threading.Event()
        self._reload = threading.Event()
        self._scan_requests: queue.Queue[Path] = queue.Queue()
        self._scanning: set[Path] = set()
        self._scored_times: deque[float] = deque()
        self.counts = {"scored": 0, "unchanged": 0, "failed": 0, "moved": 0, "touched": 0}
        self._heartbeat = time.monotonic()
        self._in_flight = 0

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def reload(self) -> None:
        self._reload.set()

    def request_rescan(self, root: Path) -> None:
        """Look at every photo below ``root`` again (thread-safe; repeated requests merge)."""
        self._scan_requests.put(root)

    # -- the main thread ----------------------------------------------------------------
    def run(self) -> int:
        self.lock.acquire(self.status.path)
        threads: list[threading.Thread] = []
        try:
            self.db = StateDB(self.paths.database)
            self._install_signal_handlers()
            self.scorer = DaemonScorer(self.settings)
            self.watches = WatchSet(
                self.roots, self.pending, polling=self.settings.polling,
                poll_interval_seconds=self.settings.poll_interval_seconds,
                follow_symlinks=self.settings.follow_symlinks, on_rescan=self.request_rescan)
            self.watches.start()
            threads = [threading.Thread(target=self._work, name="iqs-worker", daemon=True),
                       threading.Thread(target=self._scan, name="iqs-scanner", daemon=True)]
            for thread in threads:
                thread.start()
            if self.settings.backlog:
                for root in self.roots:
                    self.request_rescan(root)
            self.phase = "watching"
            log.info("watching %s (%s)", ", ".join(map(str, self.roots)), self._backend_summary())
            sd_notify("READY=1\nSTATUS=watching")
            self.ready.set()
            return self._loop(threads[0])
        finally:
            self._shutdown(threads)

    def _loop(self, worker: threading.Thread) -> int:
        watchdog_every = watchdog_interval_seconds()
        next_status = next_ping = next_check = 0.0
        while not self._stopping.wait(self.tick_seconds):
            now = time.monotonic()
            self._promote_pending()
            if not worker.is_alive():
                log.error("the worker thread died; stopping (systemd restarts the service)")
                return 1
            if now >= next_check:
                next_check = now + 2.0
                assert self.watches is not None
                self.watches.check()
                self._queue_retries()
            if now >= next_status:
                next_status = now + STATUS_INTERVAL_SECONDS
                self.status.write(self.snapshot())
                sd_notify(f"STATUS={self._status_line()}")
            # Ping systemd only while the worker shows signs of life.
            if watchdog_every and now >= next_ping and now - self._heartbeat < 4 * watchdog_every:
                next_ping = now + watchdog_every
                sd_notify("WATCHDOG=1")
        return 0

    def _promote_pending(self) -> None:
        for change in self.pending.pop_ready(self.queue.free()):
            if not self.queue.put(change, timeout=0):
                self.pending.changed(change.path, ready=True, moved_from=change.moved_from)

    def _queue_retries(self) -> None:
        assert self.db is not None
        for path in self.db.due_retries(time.time(), limit=self.queue.free()):
            self.queue.put(Change(path, reason="retry"), timeout=0)

    def _shutdown(self, threads: list[threading.Thread]) -> None:
        sd_notify("STOPPING=1")
        self._stopping.set()
        if self.watches is not None:
            self.watches.stop()
        for thread in threads:
            thread.join(timeout=30)
        if self.scorer is not None:
            self.scorer.close()
        if self.db is not None:
            self.db.close()
        self.status.remove()
        self.lock.release()
        log.info("stopped")

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): the caller stops us
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())
        signal.signal(signal.SIGHUP, lambda *_: self.reload())

    # -- the scanner thread: backlog and rescans -------------------------------------------
    def _scan(self) -> None:
        while not self._stopping.is_set():
            try:
                root = self._scan_requests.get(timeout=0.2)
            except queue.Empty:
                if self.phase == "backlog" and len(self.queue) == 0:
                    self.phase = "watching"
                continue
            self.phase = "backlog"
            try:
                self._scan_root(root)
            except IqsError as exc:
                log.error("scanning %s failed: %s", root, exc)

    def _scan_root(self, root: Path) -> None:
        """Queue every photo below ``root`` that the state says needs a look."""
        assert self.db is not None
        started, queued = time.monotonic(), 0
        recent = time.time() - max(self.settings.settle_seconds, 2.0)
        for candidate in discovery.iter_candidates(
                [root], follow_symlinks=self.settings.follow_symlinks,
                on_skip=lambda path, why: log.debug("skipped %s: %s", path, why)):
            if self._stopping.is_set():
                return
            if not self._needs_look(candidate):
                continue
            queued += 1
            if candidate.mtime_ns / 1e9 > recent:  # may still be copying: let it settle
                self.pending.changed(candidate.path)
                continue
            while not self.queue.put(Change(candidate.path, reason="backlog"), timeout=0.5):
                if self._stopping.is_set():
                    return
        self._forget_vanished(root)
        log.info("scanned %s: %d photos to look at (%.1f s)", root, queued,
                 time.monotonic() - started)

    def _needs_look(self, candidate: Candidate) -> bool:
        assert self.db is not None and self.scorer is not None
        row = self.db.get(candidate.path)
        if row is None or row.status == GONE:
            return True
        if row.stat != FileStat(candidate.size_bytes, candidate.mtime_ns):
            return True
        return row.status == SCORED and row.model != self.scorer.model.info.label

    def _forget_vanished(self, root: Path) -> None:
        assert self.db is not None
        for path, status in self.db.iter_paths():
            if status != GONE and path.is_relative_to(root) and not os.path.lexists(path):
                self.db.mark_gone(path)

    # -- the worker thread ------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            self._heartbeat = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload()
            changes = self.queue.take(self.settings.batch_size * 4, wait_seconds=0.2,
                                      gather_seconds=0.05)
            if not changes:
                continue
            candidates: dict[Path, Candidate] = {}
            for change in changes:
                try:
                    candidate = self.triage(change)
                except IqsError as exc:
                    log.error("%s: %s", change.path, exc)
                    continue
                if candidate is not None:
                    candidates[candidate.path] = candidate
            if candidates:
                self._score(list(candidates.values()))

    def triage(self, change: Change) -> Candidate | None:
        """The Candidate to score for ``change``, or None (see the module docstring)."""
        assert self.db is not None and self.scorer is not None
        path = change.path
        stat = _regular_file_stat(path)
        if stat is None:
            self.db.mark_gone(path)
            return None
        row = self.db.get(path)
        if change.moved_from is not None and (row is None or row.stat != stat):
            row = self._follow_move(change.moved_from, path) or row
        if row is None or row.status == GONE:
            row = self._find_moved(path, stat) or row
        if row is not None and row.stat == stat:
            if row.status == SCORED and row.model == self.scorer.model.info.label:
                return None
            if row.status == FAILED and (row.next_attempt_at is None or (
                    change.reason != "retry" and row.next_attempt_at > time.time())):
                return None
        elif row is not None and row.status == SCORED and row.fingerprint:
            fingerprint = self._fingerprint(path)
            if fingerprint == row.fingerprint:
                self.db.touch(path, stat)
                self.counts["touched"] += 1
                log.debug("metadata changed, pixels did not: %s", path)
                return None
            if fingerprint is not None:
                self.scorer.pixels_changed.add(path)
        return Candidate(path, stat.size_bytes, stat.mtime_ns)

    def _follow_move(self, old: Path, new: Path) -> PhotoRecord | None:
        assert self.db is not None
        row = self.db.get(old)
        if row is None or os.path.lexists(old):
            return None
        self.db.move(old, new)
        self.counts["moved"] += 1
        log.info("moved %s -> %s", old, new)
        return self.db.get(new)

    def _find_moved(self, path: Path, stat: FileStat) -> PhotoRecord | None:
        """A row for a vanished file with this stat and these pixels: moved while unwatched."""
        assert self.db is not None
        rows = [r for r in self.db.find_by_stat(stat)
                if r.path != path and r.fingerprint and not os.path.lexists(r.path)]
        if not rows:
            return None
        fingerprint = self._fingerprint(path)
        for row in rows:
            if row.fingerprint == fingerprint:
                return self._follow_move(row.path, path)
        return None

    def _fingerprint(self, path: Path) -> str | None:
        assert self.scorer is not None
        try:
            return decoding.decode(path, min_short_side=self.scorer.model.info.min_short_side,
                                   max_pixels=self.settings.max_pixels).fingerprint
        except IqsError:
            return None  # scoring will fail the same way and record why

    def _score(self, candidates: list[Candidate]) -> None:
        assert self.scorer is not None
        self._in_flight = len(candidates)
        try:
            for outcome in self.scorer.process(candidates):
                self._heartbeat = time.monotonic()
                self._in_flight -= 1
                self.record(outcome)
                if self._stopping.is_set():
                    break  # the rest is found again by the next start's backlog
        except Exception:  # a bug or a broken model: log it, keep the daemon alive
            log.exception("scoring %d photos failed", len(candidates))
        finally:
            self._in_flight = 0
            self.scorer.pixels_changed.difference_update(c.path for c in candidates)

    def record(self, outcome: Outcome) -> None:
        """Remember what happened, with the photo's stat *after* our write."""
        assert self.db is not None and self.scorer is not None
        path = outcome.candidate.path
        stat = FileStat.of(path)
        if stat is None:
            self.db.mark_gone(path)
            return
        if outcome.status == "scored" and outcome.verdict is not None:
            v = outcome.verdict
            written = outcome.write is not None and outcome.write.written
            self.db.record_scored(path, stat, fingerprint=outcome.fingerprint, score=v.score,
                                  label=v.label.title, model=f"{v.model_name} {v.model_version}",
                                  counted=written)
            self.counts["scored"] += 1
            self._scored_times.append(time.monotonic())
            reasons = f" ({', '.join(v.reasons)})" if v.reasons else ""
            log.info("scored %s: %s %.1f%s", path, v.label.title, v.score, reasons)
        elif outcome.status == "unchanged":
            self._adopt(path, stat)
        else:
            self._record_failure(path, stat, outcome.error)

    def _adopt(self, path: Path, stat: FileStat) -> None:
        """The photo already carries a current verdict (scored before the state knew)."""
        assert self.db is not None and self.scorer is not None
        try:
            stored = self.scorer.metadata.read_stored(path, self.settings)
        except IqsError as exc:
            log.warning("cannot read the verdict of %s: %s", path, exc)
            return
        label = stored.label.title if stored.label is not None else None
        self.db.record_scored(path, stat, fingerprint=stored.fingerprint or "", score=stored.score,
                              label=label, model=f"{stored.model_name} {stored.model_version}",
                              counted=False)
        self.counts["unchanged"] += 1
        log.info("already scored %s: %s", path, label)

    def _record_failure(self, path: Path, stat: FileStat, error: IqsError | None) -> None:
        assert self.db is not None
        error = error or IqsError("unknown error")
        row = self.db.get(path)
        previous = row.attempts if row is not None and row.status == FAILED else 0
        delay = retry_delay_seconds(error, previous + 1, self.retry_base_seconds)
        self.db.record_failure(path, stat, getattr(error, "reason", str(error)),
                               retry_in_seconds=delay)
        self.counts["failed"] += 1
        when = f"retry in {delay:.3g} s" if delay is not None else "not retried until it changes"
        log.warning("failed %s (%s)", error, when)

    def _apply_reload(self) -> None:
        """SIGHUP: read the configuration again; rebuild the Scorer (the model only if needed)."""
        assert self.scorer is not None and self.reload_settings is not None
        try:
            new = self.reload_settings()
        except IqsError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
            return
        old, keep_model = self.settings, all(
            getattr(new, k) == getattr(self.settings, k) for k in MODEL_SETTINGS)
        for key in RESTART_SETTINGS:
            if getattr(new, key) != getattr(old, key):
                log.warning("%s changed: restart the daemon to apply it", key)
        try:
            scorer = DaemonScorer(new, model=self.scorer.model if keep_model else None)
        except IqsError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
            return
        model_changed = scorer.model.info.label != self.scorer.model.info.label
        self.scorer.close()
        self.scorer, self.settings = scorer, new
        self.pending.settle_seconds = new.settle_seconds
        log.info("configuration reloaded (model %s)", scorer.model.info.label)
        if model_changed:
            for root in self.roots:
                self.request_rescan(root)

    # -- status -------------------------------------------------------------------------
    def photos_per_second(self, window_seconds: float = 60.0) -> float:
        now = time.monotonic()
        while self._scored_times and self._scored_times[0] < now - window_seconds:
            self._scored_times.popleft()
        span = min(window_seconds, max(time.time() - self.started_at, 1.0))
        return len(self._scored_times) / span

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started_at": datetime.fromtimestamp(self.started_at, timezone.utc).isoformat(),
            "started_epoch": self.started_at,
            "updated_epoch": time.time(),
            "phase": self.phase,
            "roots": [str(r) for r in self.roots],
            "backends": self.watches.backends if self.watches else {},
            "model": self.scorer.model.info.label if self.scorer else None,
            "queue_depth": len(self.queue),
            "settling": len(self.pending),
            "in_flight": self._in_flight,
            "photos_per_second": round(self.photos_per_second(), 3),
            "session": dict(self.counts),
        }

    def _status_line(self) -> str:
        return (f"{self.phase}: {len(self.queue)} queued, {len(self.pending)} settling, "
                f"{self.photos_per_second():.1f} photos/s")

    def _backend_summary(self) -> str:
        kinds = sorted(set(self.watches.backends.values())) if self.watches else []
        return "/".join(kinds) or "no watches"


def _regular_file_stat(path: Path) -> FileStat | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat_mod.S_ISREG(st.st_mode) or not is_photo_name(path):
        return None
    return FileStat(st.st_size, st.st_mtime_ns)
