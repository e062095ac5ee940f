"""The daemon: watch folders, score what arrives, remember what was done.

    scanner thread (backlog, rescans) --Change, Vanished, Skipped, ForgetSkipped--.
    watchdog threads -> PendingChanges --settle (main thread)--> WorkQueue --> scoring thread
                                                        Worker.triage (state) -> Scorer.process
                                                        -> Worker.record (after the XMP write)

The main thread settles pending changes, re-queues due retries, follows roots that come
and go, writes the status file, pings systemd and handles signals (TERM/INT: stop; HUP:
reload the configuration). The scoring thread owns the ``Worker`` (``worker.py``: what to
score, and the state rows) and its ``Scorer`` (model loaded once); it is the only one
scoring and the state database's one writer: the scanner and the main thread only read
it, and the scanner asks for its writes on the queue (``watching.StateMessage``).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import discovery
from .errors import IqsError, ModelError
from .model import default_model_path, expected_sha256
from .pipeline import Scorer, release_free_memory
from .service import (
    DaemonLock,
    StatusFile,
    remember_roots,
    sd_notify,
    status_file_for,
    watchdog_interval_seconds,
)
from .state import GONE, SKIPPED, FileStat, StateDB
from .watching import (
    Change,
    ForgetSkipped,
    PendingChanges,
    Skipped,
    Vanished,
    WatchSet,
    Work,
    WorkQueue,
)
from .worker import Worker, verdict_missing

if TYPE_CHECKING:
    from .config import Paths, Settings
    from .records import Candidate

log = logging.getLogger(__name__)

STATUS_INTERVAL_SECONDS = 2.0
PRUNE_INTERVAL_SECONDS = 3600.0
# Settings the running daemon cannot change (SIGHUP): they shape the watches.
RESTART_SETTINGS = ("polling", "poll_interval_seconds", "follow_symlinks")
MODEL_SETTINGS = ("model_path", "device")


@dataclass(frozen=True)
class ScanView:
    """What the scanner thread reads of the settings and the scorer. The scoring thread
    owns both and publishes a new view, whole, when a reload replaces them."""

    settings: Settings
    model_label: str
    policy: str

    @classmethod
    def of(cls, scorer: Scorer) -> ScanView:
        return cls(scorer.settings, scorer.model.info.model_label, scorer.policy.identity)


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
        self.worker: Worker | None = None
        self.watches: WatchSet | None = None
        self.lock = DaemonLock(paths.state_dir)
        self.status = StatusFile(status_file_for(paths.state_dir, paths.runtime_dir))
        self.started_at = time.time()
        self.ready = threading.Event()  # set once watching (tests wait on it)
        self._scanner_phase = "watching"  # written by the scanner thread only
        self._scan_view: ScanView | None = None  # written by the scoring thread only (reload)
        self._stopping = threading.Event()
        self._reload = threading.Event()
        self._scan_requests: queue.Queue[Path] = queue.Queue()

    # What tests and the status look at.
    @property
    def phase(self) -> str:
        """starting, then backlog (the scanner walks the roots, or what it queued is not
        taken yet) or watching."""
        return self._scanner_phase if self.ready.is_set() else "starting"

    @property
    def db(self) -> StateDB | None:
        return self.worker.db if self.worker else None

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.worker.counts) if self.worker else {}

    @property
    def in_flight(self) -> int:
        return self.worker.in_flight if self.worker else 0

    # -- control ------------------------------------------------------------------------
    def stop(self) -> None:
        self._stopping.set()

    def reload(self) -> None:
        self._reload.set()

    def request_rescan(self, root: Path) -> None:
        """Look at every photo below ``root`` again (thread-safe)."""
        self._scan_requests.put(root)

    # -- the main thread ----------------------------------------------------------------
    def run(self) -> int:
        self.lock.acquire(self.status.path)
        remember_roots(self.paths.state_dir, self.roots)
        threads: list[threading.Thread] = []
        db: StateDB | None = None
        try:
            db = StateDB.open(self.paths.database, recover=True)
            self._install_signal_handlers()
            self.worker = Worker(db, self._load_scorer(self.settings), self.settings, self.roots,
                                 retry_base_seconds=self.retry_base_seconds,
                                 look_again=self._look_again)
            self._scan_view = ScanView.of(self.worker.scorer)
            self.watches = WatchSet(
                self.roots, self.pending, polling=self.settings.polling,
                poll_interval_seconds=self.settings.poll_interval_seconds,
                follow_symlinks=self.settings.follow_symlinks, on_rescan=self.request_rescan)
            self.watches.start()
            threads = [threading.Thread(target=self._score_loop, name="iqs-scoring", daemon=True),
                       threading.Thread(target=self._scan, name="iqs-scanner", daemon=True)]
            for thread in threads:
                thread.start()
            if self.settings.backlog:
                for root in self.roots:
                    self.request_rescan(root)
            log.info("watching %s (%s)", ", ".join(map(str, self.roots)), self._backend_summary())
            sd_notify("READY=1\nSTATUS=watching")
            self.ready.set()
            return self._loop(threads[0])
        finally:
            self._shutdown(threads, db)

    def _load_scorer(self, settings: Settings, *, reuse: Scorer | None = None) -> Scorer:
        try:
            return Scorer(settings, model=reuse.model if reuse else None, keeps_frames=True)
        except ModelError as exc:
            raise ModelError(_with_expected_digest(str(exc), settings)) from exc

    def _loop(self, scoring: threading.Thread) -> int:
        assert self.watches is not None and self.worker is not None
        watchdog_every = watchdog_interval_seconds()
        next_status = next_ping = next_check = 0.0
        while not self._stopping.wait(self.tick_seconds):
            now = time.monotonic()
            self._promote_pending()
            if not scoring.is_alive():
                log.error("the scoring thread died; stopping (systemd restarts the service)")
                return 1
            if now >= next_check:
                next_check = now + 2.0
                self.watches.check()
                self._guarded(self._queue_retries)
            if now >= next_status:
                next_status = now + STATUS_INTERVAL_SECONDS
                self.status.write(self.snapshot())
                sd_notify(f"STATUS={self._status_line()}")
            # Ping systemd only while the scoring thread shows signs of life.
            if (watchdog_every and now >= next_ping
                    and now - self.worker.heartbeat < 4 * watchdog_every):
                next_ping = now + watchdog_every
                sd_notify("WATCHDOG=1")
        return 0

    def _look_again(self, path: Path) -> None:
        """The scoring thread saw ``path`` change under it: let it settle, then triage it again."""
        self.pending.changed(path)

    @staticmethod
    def _guarded(action: Callable[[], object]) -> None:
        """Run a housekeeping step; a busy or failing state database only delays it."""
        try:
            action()
        except IqsError as exc:
            log.error("%s", exc)

    def _promote_pending(self) -> None:
        for change in self.pending.pop_ready(self.queue.free()):
            if not self.queue.put(change, timeout=0):
                self.pending.changed(change.path, ready=True, moved_from=change.moved_from)

    def _queue_retries(self) -> None:
        assert self.worker is not None
        for path in self.worker.db.due_retries(time.time(), limit=self.queue.free()):
            self.queue.put(Change(path, reason="retry"), timeout=0)

    def _shutdown(self, threads: list[threading.Thread], db: StateDB | None) -> None:
        sd_notify("STOPPING=1")
        self._stopping.set()
        if self.watches is not None:
            self.watches.stop()
        for thread in threads:
            thread.join(timeout=30)
        if self.worker is not None:
            self.worker.scorer.close()
        if db is not None:
            db.close()
        self.status.remove()
        self.lock.release()
        if self.ready.is_set():  # a start that failed says why in one line, and only that
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
                if self._scanner_phase == "backlog" and len(self.queue) == 0:
                    self._scanner_phase = "watching"
                continue
            self._scanner_phase = "backlog"
            try:
                self._scan_root(root)
            except IqsError as exc:
                log.error("scanning %s failed: %s", root, exc)

    def _scan_root(self, root: Path) -> None:
        """Queue every photo below ``root`` that the state says needs a look."""
        assert self.worker is not None and self._scan_view is not None
        if not root.is_dir():
            log.info("not scanning %s: it is not there", root)  # its rows stay as they are
            return
        view = self._scan_view  # one reload's settings for the whole walk
        started, started_epoch, queued = time.monotonic(), time.time(), 0
        recent = time.time() - max(view.settings.settle_seconds, 2.0)
        def on_skip(path: Path, reason: str) -> None:
            self._send(Skipped(path, reason))

        for candidate in discovery.iter_candidates(
                [root], follow_symlinks=view.settings.follow_symlinks, on_skip=on_skip):
            if self._stopping.is_set():
                return
            if not self._needs_look(candidate, view):
                continue
            queued += 1
            if candidate.mtime_ns / 1e9 > recent:  # may still be copying: let it settle
                self.pending.changed(candidate.path)
                continue
            if not self._send(Change(candidate.path, reason="backlog")):
                return
        self._forget_vanished(root)
        self._send(ForgetSkipped(root, before=started_epoch))
        log.info("scanned %s: %d photos to look at (%.1f s)", root, queued,
                 time.monotonic() - started)

    def _needs_look(self, candidate: Candidate, view: ScanView) -> bool:
        assert self.worker is not None
        row = self.worker.db.get(candidate.path)
        if row is None or row.status in (GONE, SKIPPED):
            return True
        if row.stat != FileStat(candidate.size_bytes, candidate.mtime_ns):
            return True
        return row.status == "scored" and (row.model != view.model_label
                                           or row.policy != view.policy
                                           or verdict_missing(candidate.path, view.settings))

    def _send(self, item: Work) -> bool:
        """Queue ``item`` for the scoring thread, waiting for room; False: stopping."""
        while not self.queue.put(item, timeout=0.5):
            if self._stopping.is_set():
                return False
        return True

    def _forget_vanished(self, root: Path) -> None:
        assert self.worker is not None
        for path, status in self.worker.db.iter_paths():
            if status != GONE and path.is_relative_to(root) and not os.path.lexists(path):
                if not self._send(Vanished(path)):
                    return

    # -- the scoring thread -----------------------------------------------------------------
    def _score_loop(self) -> None:
        assert self.worker is not None
        scored_since_idle = False
        next_prune = time.monotonic() + PRUNE_INTERVAL_SECONDS
        while not self._stopping.is_set():
            self.worker.heartbeat = now = time.monotonic()
            if self._reload.is_set():
                self._reload.clear()
                self._apply_reload()
            if now >= next_prune:
                next_prune = now + PRUNE_INTERVAL_SECONDS
                self._guarded(self.worker.db.prune_gone)
            items = self.queue.take(self.settings.batch_size * 4, wait_seconds=0.2,
                                    gather_seconds=0.05)
            candidates: dict[Path, Candidate] = {}
            for item in items:
                try:
                    if not isinstance(item, Change):
                        self.worker.handle(item)
                    elif (candidate := self.worker.triage(item)) is not None:
                        candidates[candidate.path] = candidate
                except IqsError as exc:
                    where = item.root if isinstance(item, ForgetSkipped) else item.path
                    log.error("%s: %s", where, exc)
            if candidates:
                self.worker.score(list(candidates.values()), self._stopping)
                scored_since_idle = True
            elif not items and scored_since_idle:  # the queue ran dry: idle at our size
                release_free_memory()
                scored_since_idle = False

    def _apply_reload(self) -> None:
        """SIGHUP: read the configuration again; rebuild the Scorer (the model only if needed)."""
        assert self.worker is not None and self.reload_settings is not None
        old_scorer = self.worker.scorer
        try:
            new = self.reload_settings()
            keep_model = all(getattr(new, k) == getattr(self.settings, k) for k in MODEL_SETTINGS)
            scorer = self._load_scorer(new, reuse=old_scorer if keep_model else None)
        except IqsError as exc:
            log.error("reload failed, keeping the old settings: %s", exc)
            return
        for key in RESTART_SETTINGS:
            if getattr(new, key) != getattr(self.settings, key):
                log.warning("%s changed: restart the daemon to apply it", key)
        model_changed = scorer.model.info.model_label != old_scorer.model.info.model_label
        policy_changed = scorer.policy.identity != old_scorer.policy.identity
        self.worker.scorer, self.worker.settings, self.settings = scorer, new, new
        self._scan_view = ScanView.of(scorer)
        old_scorer.close()  # after the swap: nothing reaches the old one any more
        self.pending.settle_seconds = new.settle_seconds
        log.info("configuration reloaded (model %s, policy %s)", scorer.model.info.model_label,
                 scorer.policy.identity)
        # A new policy re-labels from the stored scores (no decode); a new model re-scores.
        if model_changed or policy_changed:
            for root in self.roots:
                self.request_rescan(root)

    # -- status -------------------------------------------------------------------------
    def photos_per_second(self, window_seconds: float = 60.0) -> float:
        if self.worker is None:
            return 0.0
        return self.worker.photos_per_second(window_seconds, time.time() - self.started_at)

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "started_at": datetime.fromtimestamp(self.started_at, timezone.utc).isoformat(),
            "started_epoch": self.started_at,
            "updated_epoch": time.time(),
            "phase": self.phase,
            "roots": [str(r) for r in self.roots],
            "backends": self.watches.backends if self.watches else {},
            "model": self.worker.model_label if self.worker else None,
            "queue_depth": len(self.queue),
            "settling": len(self.pending),
            "in_flight": self.in_flight,
            "photos_per_second": round(self.photos_per_second(), 3),
            "session": self.counts,
        }

    def _status_line(self) -> str:
        return (f"{self.phase}: {len(self.queue)} queued, {len(self.pending)} settling, "
                f"{self.photos_per_second():.1f} photos/s")

    def _backend_summary(self) -> str:
        kinds = sorted(set(self.watches.backends.values())) if self.watches else []
        return "/".join(kinds) or "no watches"


def _with_expected_digest(message: str, settings: Settings) -> str:
    """The model error, naming the sha256 the file should have (start refuses with it)."""
    path = Path(settings.model_path).expanduser() if settings.model_path else default_model_path()
    try:
        expected = expected_sha256(path)
    except OSError:
        expected = None
    if expected is None:
        return f"{message} (expected sha256: none published, no {path.name}.sha256 beside it)"
    return message if expected in message else f"{message} (expected sha256 {expected})"
