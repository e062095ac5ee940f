"""Watching the photo folders: events -> pending changes -> a bounded queue of ``Change``.

    watchdog thread --PhotoEventHandler--> PendingChanges --settle (main loop)--> WorkQueue

The handler runs on watchdog's thread and only records "this path changed at t" in a
dict, so a burst of thousands of files never blocks it. ``PendingChanges.pop_ready``
promotes a path once it is complete:

- inotify's close-after-write (``FileClosedEvent``) or a rename into place: at once;
- otherwise when its size and mtime stayed the same for ``settle_seconds`` and no write
  is in progress (data written without its close seen waits up to ``stale_write_seconds``).

``WatchSet`` runs one observer per root: inotify, or polling when asked
(``settings.polling``, network shares) or when inotify runs out of watches. An inotify
queue overflow is reported so the daemon can rescan that root instead of missing files.
A root that disappears (a card pulled out, a share unmounted) is "absent" until it comes
back; then it is watched again and rescanned.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers.polling import PollingObserver

from . import discovery
from .state import FileStat

if TYPE_CHECKING:
    from watchdog.observers.api import BaseObserver

log = logging.getLogger(__name__)

WATCH_LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)
WATCH_LIMIT_ADVICE = (
    "inotify watches ran out; {root} is now polled every {interval:g} s. To watch it "
    "instantly, raise the limit: sudo sysctl fs.inotify.max_user_watches=524288 and, to "
    "keep it, echo fs.inotify.max_user_watches=524288 | sudo tee /etc/sysctl.d/90-iqs-daemon.conf"
)


@dataclass(frozen=True)
class Change:
    """A path to look at again. ``moved_from``: the file was renamed from there."""

    path: Path
    moved_from: Path | None = None
    reason: str = "event"  # event | backlog | rescan | retry


# What the scanner thread asks of the scoring thread, the state's one writer, on the same
# queue as the changes (so a scan's skips come before its ForgetSkipped).


@dataclass(frozen=True)
class Vanished:
    """A path with a row whose file is no longer there (``Worker.gone``)."""

    path: Path


@dataclass(frozen=True)
class Skipped:
    """A path not scored on purpose, and why (``Worker.skip``)."""

    path: Path
    reason: str


@dataclass(frozen=True)
class ForgetSkipped:
    """Drop the skip rows below ``root`` not renewed since ``before``, a scan's start."""

    root: Path
    before: float


StateMessage = Vanished | Skipped | ForgetSkipped
Work = Change | StateMessage


def is_photo_name(path: Path) -> bool:
    """A supported photo, not a temporary file (ours, a browser's, a copy tool's)."""
    return discovery.is_supported_name(path.name)


def in_ignored_folder(path: Path, root: Path) -> bool:
    """Below a hidden folder or a NAS thumbnail/trash folder, which discovery skips too."""
    try:
        parts = path.parent.relative_to(root).parts
    except ValueError:
        return False
    return any(p.startswith(".") or p in discovery.IGNORED_FOLDERS for p in parts)


# --- pending changes ------------------------------------------------------------------


@dataclass
class _Pending:
    last_event: float
    ready: bool = False  # closed after writing, moved into place, or deleted
    writing: bool = False  # a write was seen and its close was not (inotify only)
    moved_from: Path | None = None
    stat: FileStat | None = None
    stat_since: float = 0.0
    version: int = 0


class PendingChanges:
    """Changed paths waiting to be complete. Thread-safe; every call is O(1) but ``pop_ready``."""

    def __init__(self, settle_seconds: float, *, stale_write_seconds: float = 60.0,
                 max_entries: int = 20_000, clock: Callable[[], float] = time.monotonic):
        self.settle_seconds = settle_seconds
        self.max_entries = max_entries
        self.stale_write_seconds = max(stale_write_seconds, settle_seconds)
        self.clock = clock
        self._entries: dict[Path, _Pending] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def changed(self, path: Path, *, ready: bool = False, writing: bool = False,
                moved_from: Path | None = None) -> bool:
        """Note a change; False when the set is full (the caller rescans instead)."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                if len(self._entries) >= self.max_entries:
                    return False  # memory stays flat whatever the burst
                entry = self._entries[path] = _Pending(last_event=now)
            entry.last_event = now
            entry.version += 1
            # A close or rename ends a write; a later write starts a new one.
            entry.ready = ready
            entry.writing = writing or (entry.writing and not ready)
            if moved_from is not None:
                entry.moved_from = moved_from
        return True

    def pop_ready(self, limit: int) -> list[Change]:
        """Up to ``limit`` complete changes, removed from the set (files stat'ed unlocked)."""
        if limit <= 0:
            return []
        with self._lock:
            snapshot = [(p, e, e.version) for p, e in self._entries.items()]
        now = self.clock()
        ready: list[tuple[Path, _Pending, int]] = []
        for path, entry, version in snapshot:
            if len(ready) >= limit:
                break
            if entry.ready or self._settled(path, entry, now):
                ready.append((path, entry, version))
        changes = []
        with self._lock:
            for path, entry, version in ready:
                if entry.version == version and self._entries.get(path) is entry:
                    del self._entries[path]
                    changes.append(Change(path, entry.moved_from))
        return changes

    def _settled(self, path: Path, entry: _Pending, now: float) -> bool:
        stat = FileStat.of(path)
        if stat is None:
            return True  # gone: the scoring thread forgets it
        if stat != entry.stat:
            entry.stat, entry.stat_since = stat, now
            return False
        quiet = now - max(entry.stat_since, entry.last_event)
        return quiet >= (self.stale_write_seconds if entry.writing else self.settle_seconds)


# --- the queue to the scoring thread ----------------------------------------------------


class WorkQueue:
    """A bounded FIFO of ``Change`` (each path at most once) and ``StateMessage``."""

    def __init__(self, maxsize: int):
        self._queue: queue.Queue[Work] = queue.Queue(maxsize)
        self._queued: set[Path] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._queue.qsize()

    def free(self) -> int:
        return self._queue.maxsize - self._queue.qsize()

    def put(self, item: Work, *, timeout: float | None = None) -> bool:
        """Queue ``item``, a change unless its path is queued already; False if still
        full at timeout."""
        change = item if isinstance(item, Change) else None
        if change is not None:
            with self._lock:
                if change.path in self._queued:
                    return True
                self._queued.add(change.path)
        try:
            self._queue.put(item, timeout=timeout)
        except queue.Full:
            if change is not None:
                with self._lock:
                    self._queued.discard(change.path)
            return False
        return True

    def take(self, max_items: int, *, wait_seconds: float, gather_seconds: float) -> list[Work]:
        """Block up to ``wait_seconds`` for one item, then gather more for ``gather_seconds``."""
        items: list[Work] = []
        try:
            items.append(self._queue.get(timeout=wait_seconds))
            deadline = time.monotonic() + gather_seconds
            while len(items) < max_items:
                items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
            pass
        with self._lock:
            self._queued.difference_update(c.path for c in items if isinstance(c, Change))
        return items


# --- events -----------------------------------------------------------------------------


class PhotoEventHandler(FileSystemEventHandler):
    """Turns watchdog events into pending changes; never blocks, never touches the files."""

    def __init__(self, pending: PendingChanges, root: Path, *, close_events: bool,
                 on_overflow: Callable[[], None]):
        self.pending = pending
        self.root = root
        self.close_events = close_events  # this backend reports close-after-write (inotify)
        self.on_overflow = on_overflow
        self._overflowed = False

    def _changed(self, path: Path, **kwargs: object) -> None:
        if self.pending.changed(path, **kwargs):  # type: ignore[arg-type]
            self._overflowed = False
        elif not self._overflowed:  # once per overflow, not once per event
            self._overflowed = True
            self.on_overflow()

    def _photo(self, raw: bytes | str) -> Path | None:
        if not raw:
            return None
        path = Path(os.fsdecode(raw))
        return path if is_photo_name(path) and not in_ignored_folder(path, self.root) else None

    def on_created(self, event: FileSystemEvent) -> None:
        # Not "writing": in a new folder watchdog reports the files already there as
        # created, with no close to follow. A writer's data shows as on_modified.
        if not event.is_directory and (path := self._photo(event.src_path)):
            self._changed(path)

    on_attrib = on_created

    def on_modified(self, event: FileSystemEvent) -> None:
        if not event.is_directory and (path := self._photo(event.src_path)):
            self._changed(path, writing=self.close_events)

    def on_closed(self, event: FileSystemEvent) -> None:
        if path := self._photo(event.src_path):
            self._changed(path, ready=True)

    def on_deleted(self, event: FileSystemEvent) -> None:
        if not event.is_directory and (path := self._photo(event.src_path)):
            self._changed(path, ready=True)

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.is_directory:
            return  # watchdog follows with one event per file inside
        src, dest = self._photo(event.src_path), self._photo(event.dest_path)
        if dest is not None:
            # Renamed into place: complete. From a photo name: its row can follow it.
            self._changed(dest, ready=True, moved_from=src)
        elif src is not None:
            self._changed(src, ready=True)  # renamed away: the scoring thread forgets it


# --- observers ----------------------------------------------------------------------------


class _LimitAwareInotifyObserver:
    """Builds an InotifyObserver whose inotify instance reports overflows and watch limits.

    watchdog 7 handles ``IN_Q_OVERFLOW`` itself (it rebuilds the watches and logs a
    warning) but tells no handler, and it swallows errors when adding watches below
    the root. Both are seen here, on the observer's ``InotifyFD``, and passed on.
    """

    @staticmethod
    def create(on_overflow: Callable[[], None],
               on_limit: Callable[[OSError], None]) -> BaseObserver:
        from watchdog.observers.inotify import InotifyObserver

        observer = InotifyObserver()
        fd = observer._inotify_fd  # one inotify instance per observer
        add_callback, handle_event = fd.add_callback, fd.handle_event

        def add_callback_checked(*args, **kwargs):  # type: ignore[no-untyped-def]
            try:
                return add_callback(*args, **kwargs)
            except OSError as exc:
                if exc.errno in WATCH_LIMIT_ERRNOS:
                    on_limit(exc)
                raise

        def handle_event_checked(event):  # type: ignore[no-untyped-def]
            handle_event(event)
            if event.is_queue_overflow:
                on_overflow()

        # watchdog has no hook for a full watch table or a queue overflow: wrap its own.
        fd.add_callback = add_callback_checked  # type: ignore[method-assign]
        fd.handle_event = handle_event_checked  # type: ignore[method-assign]
        return observer


@dataclass
class _RootWatch:
    root: Path
    observer: BaseObserver | None  # None while the root is absent
    backend: str  # inotify | polling | absent
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the folder watched
    limit_hit: bool = False

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()

    def alive(self) -> bool:
        """False once watchdog gave up on the root (it stops when the root is deleted)."""
        return self.observer is not None and all(e.is_alive() for e in self.observer.emitters)


def folder_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the folder at ``path``, or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if os.path.isdir(path) else None


class WatchSet:
    """One observer per root, inotify unless polling is asked for or inotify runs out.

    ``on_rescan(root)`` is called (from any thread) when events for ``root`` may have
    been lost: an inotify queue overflow, or a switch to polling.
    """

    def __init__(self, roots: list[Path], pending: PendingChanges, *, polling: bool,
                 poll_interval_seconds: float, follow_symlinks: bool,
                 on_rescan: Callable[[Path], None]):
        self.roots = roots
        self.pending = pending
        self.polling = polling
        self.poll_interval_seconds = poll_interval_seconds
        self.follow_symlinks = follow_symlinks
        self.on_rescan = on_rescan
        self._watches: dict[Path, _RootWatch] = {}
        self._advised = False

    @property
    def backends(self) -> dict[str, str]:
        return {str(root): w.backend for root, w in self._watches.items()}

    def start(self) -> None:
        for root in self.roots:
            self._watches[root] = self._start_root(root, polling=self.polling)

    def stop(self) -> None:
        for watch in self._watches.values():
            watch.stop()
        for watch in self._watches.values():
            if watch.observer is not None and watch.observer.is_alive():
                watch.observer.join(timeout=5)
        self._watches.clear()

    def check(self) -> None:
        """Follow roots that vanish or come back, and move roots whose inotify watches ran
        out to polling (call it from one thread, every few seconds)."""
        for root, watch in list(self._watches.items()):
            identity = folder_identity(root)
            if identity is None and watch.backend != "absent":
                watch.stop()
                self._watches[root] = _RootWatch(root, None, "absent")
                log.warning("%s disappeared (unmounted?); waiting for it to come back", root)
            elif identity is not None and (identity != watch.identity or not watch.alive()):
                # Back, or deleted and made again between two checks (perhaps with the same
                # inode number): the old watches follow a folder that is no longer there.
                watch.stop()
                self._watches[root] = self._start_root(root, polling=self.polling)
                log.info("%s is there again; watching and rescanning it", root)
                self.on_rescan(root)
            elif watch.limit_hit and watch.backend == "inotify":
                watch.stop()
                self._watches[root] = self._start_root(root, polling=True)
                self._advise(root)
                self.on_rescan(root)

    def _start_root(self, root: Path, *, polling: bool) -> _RootWatch:
        identity = folder_identity(root)
        if identity is None:
            log.warning("%s is not there (yet); watching for it to appear", root)
            return _RootWatch(root, None, "absent")
        try:
            watch = self._start_observer(root, polling=polling)
        except FileNotFoundError:  # vanished between the stat and the watch
            return _RootWatch(root, None, "absent")
        watch.identity = identity
        return watch

    def _start_observer(self, root: Path, *, polling: bool) -> _RootWatch:
        if not polling:
            watch: _RootWatch | None = None

            def on_limit(exc: OSError) -> None:
                if watch is not None:
                    watch.limit_hit = True

            inotify: BaseObserver | None = None
            try:
                inotify = _LimitAwareInotifyObserver.create(
                    on_overflow=lambda: self._overflowed(root), on_limit=on_limit)
                watch = _RootWatch(root, inotify, "inotify")
                self._schedule(inotify, root, close_events=True)
                inotify.start()
                if not watch.limit_hit:
                    return watch
            except OSError as exc:
                if exc.errno not in WATCH_LIMIT_ERRNOS:
                    raise
            if inotify is not None:  # some folders below the root got no watch
                inotify.stop()
            self._advise(root)
        observer = PollingObserver(timeout=self.poll_interval_seconds)
        self._schedule(observer, root, close_events=False)
        observer.start()
        return _RootWatch(root, observer, "polling")

    def _schedule(self, observer: BaseObserver, root: Path, *, close_events: bool) -> None:
        handler = PhotoEventHandler(self.pending, root, close_events=close_events,
                                    on_overflow=lambda: self._overflowed(root))
        # Never into linked folders: watchdog follows a link loop until the path is too long.
        # With follow_symlinks, linked folders are read by the scans (start, rescans).
        observer.schedule(handler, str(root), recursive=True, follow_symlink=False)

    def _overflowed(self, root: Path) -> None:
        log.warning("too many changes at once below %s; rescanning it", root)
        self.on_rescan(root)

    def _advise(self, root: Path) -> None:
        if not self._advised:  # one line per daemon, however many roots
            self._advised = True
            log.warning(WATCH_LIMIT_ADVICE.format(root=root, interval=self.poll_interval_seconds))
