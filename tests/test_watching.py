"""watching.py with real watchdog observers on real folders (inotify on Linux)."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from iqs_daemon.watching import Change, PendingChanges, WatchSet, WorkQueue

JPEG_BYTES = b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9"  # content does not matter here


def wait_for(condition: Callable[[], object], timeout: float = 10.0,
             interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {condition}")
        time.sleep(interval)


class Collector:
    """Promotes pending changes in a thread, like the daemon's main loop, and keeps them."""

    def __init__(self, pending: PendingChanges):
        self.pending = pending
        self.changes: list[tuple[float, Change]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for change in self.pending.pop_ready(1000):
                self.changes.append((time.monotonic(), change))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def paths(self) -> list[Path]:
        return [c.path for _, c in self.changes]


@pytest.fixture
def watched(tmp_path) -> Iterator[tuple[Path, PendingChanges, Collector, list[Path], WatchSet]]:
    root = tmp_path / "photos"
    root.mkdir()
    pending = PendingChanges(settle_seconds=0.3, stale_write_seconds=5.0)
    rescans: list[Path] = []
    watches = WatchSet([root], pending, polling=False, poll_interval_seconds=0.2,
                       follow_symlinks=False, on_rescan=rescans.append)
    watches.start()
    collector = Collector(pending)
    try:
        yield root, pending, collector, rescans, watches
    finally:
        collector.stop()
        watches.stop()


# --- pending changes and the queue, on their own ------------------------------------------


def test_settles_on_a_stable_stat_when_no_close_is_reported(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    pending = PendingChanges(settle_seconds=0.3)
    pending.changed(photo)
    assert pending.pop_ready(10) == []  # first look: remembers the stat
    started = time.monotonic()
    wait_for(lambda: pending.pop_ready(10) and True, timeout=3)
    assert time.monotonic() - started >= 0.25
    assert len(pending) == 0


def test_a_write_without_its_close_waits_longer(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"x")
    pending = PendingChanges(settle_seconds=0.05, stale_write_seconds=0.6)
    pending.changed(photo, writing=True)
    pending.pop_ready(10)
    time.sleep(0.2)
    assert pending.pop_ready(10) == []  # settled, but a writer may still hold it open
    pending.changed(photo, ready=True)  # ... until its close arrives
    assert pending.pop_ready(10) == [Change(photo)]


def test_the_pending_set_is_bounded(tmp_path):
    pending = PendingChanges(settle_seconds=0.1, max_entries=3)
    assert all(pending.changed(tmp_path / f"{i}.jpg") for i in range(3))
    assert pending.changed(tmp_path / "1.jpg")  # a known path is always accepted
    assert not pending.changed(tmp_path / "new.jpg")


def test_work_queue_holds_a_path_once_and_is_bounded(tmp_path):
    q = WorkQueue(maxsize=2)
    a, b, c = (Change(tmp_path / n) for n in ("a.jpg", "b.jpg", "c.jpg"))
    assert q.put(a) and q.put(a) and q.put(b)
    assert len(q) == 2
    assert not q.put(c, timeout=0.05)
    assert q.take(10, wait_seconds=0.1, gather_seconds=0.05) == [a, b]
    assert q.put(a)  # taken: may be queued again
    assert q.take(10, wait_seconds=0.1, gather_seconds=0.0) == [a]
    assert q.take(10, wait_seconds=0.05, gather_seconds=0.0) == []


# --- real events -----------------------------------------------------------------------------


def test_a_slow_copy_is_ready_only_after_its_close(watched):
    root, _, collector, _, _ = watched
    photo = root / "slow.jpg"
    with photo.open("wb") as fh:
        for i in range(4):  # pauses longer than settle_seconds
            fh.write(JPEG_BYTES[i * 2000:(i + 1) * 2000])
            fh.flush()
            time.sleep(0.4)
        fh.write(JPEG_BYTES[8000:])
        closed_at = time.monotonic()
    wait_for(lambda: collector.paths() == [photo])
    assert collector.changes[0][0] >= closed_at
    time.sleep(0.5)
    assert collector.paths() == [photo]


def test_temporary_names_are_ignored_until_renamed_into_place(watched):
    root, _, collector, _, _ = watched
    tmp = root / ".IMG_0001.jpg.part"
    tmp.write_bytes(JPEG_BYTES)
    os.rename(tmp, root / "IMG_0001.jpg")
    wait_for(lambda: collector.paths() == [root / "IMG_0001.jpg"])
    assert collector.changes[0][1].moved_from is None  # from a temp name: nothing to follow


def test_a_move_between_folders_names_its_source(watched):
    root, _, collector, _, _ = watched
    (root / "a").mkdir()
    (root / "b").mkdir()
    photo = root / "a" / "p.jpg"
    photo.write_bytes(JPEG_BYTES)
    wait_for(lambda: collector.paths() == [photo])
    os.rename(photo, root / "b" / "p.jpg")
    wait_for(lambda: len(collector.changes) == 2)
    assert collector.changes[1][1] == Change(root / "b" / "p.jpg", moved_from=photo)


def test_a_folder_moved_in_is_ready_without_waiting_for_a_close(watched, tmp_path):
    root, _, collector, _, _ = watched
    # mv ~/Downloads/trip ~/Pictures/: watchdog reports each file inside as created, and
    # no close follows (the same happens to files written into a folder before its watch).
    trip = tmp_path / "trip"
    trip.mkdir()
    for i in range(20):
        (trip / f"{i}.jpg").write_bytes(JPEG_BYTES)
    os.rename(trip, root / "trip")
    photos = sorted((root / "trip").iterdir())
    wait_for(lambda: sorted(collector.paths()) == photos, timeout=3)  # < stale_write_seconds


def test_deleted_and_non_photo_files(watched):
    root, _, collector, _, _ = watched
    (root / "notes.txt").write_text("x")
    (root / "@eaDir").mkdir()  # a NAS's thumbnails, skipped by discovery too
    (root / "@eaDir" / "SYNOPHOTO_THUMB_XL.jpg").write_bytes(JPEG_BYTES)
    photo = root / "gone.jpg"
    photo.write_bytes(JPEG_BYTES)
    wait_for(lambda: collector.paths() == [photo])
    photo.unlink()
    wait_for(lambda: collector.paths() == [photo, photo])


def test_an_inotify_queue_overflow_asks_for_a_rescan(watched):
    from watchdog.observers.inotify_c import InotifyConstants, InotifyEvent

    root, _, _, rescans, watches = watched
    observer = watches._watches[root].observer
    # The kernel's IN_Q_OVERFLOW (wd -1), fed to the real inotify reader.
    observer._inotify_fd.handle_event(InotifyEvent(-1, InotifyConstants.IN_Q_OVERFLOW, 0, b""))
    assert rescans == [root]
    (root / "after.jpg").write_bytes(JPEG_BYTES)  # watches were rebuilt: still watching
    wait_for(lambda: watched[2].paths() == [root / "after.jpg"])


def test_a_burst_beyond_the_pending_limit_asks_for_one_rescan(tmp_path):
    pending = PendingChanges(settle_seconds=0.1, max_entries=5)
    rescans: list[Path] = []
    watches = WatchSet([tmp_path], pending, polling=False, poll_interval_seconds=0.2,
                       follow_symlinks=False, on_rescan=rescans.append)
    watches.start()
    try:
        for i in range(30):
            (tmp_path / f"{i}.jpg").write_bytes(JPEG_BYTES)
        wait_for(lambda: rescans == [tmp_path])
        assert len(pending) == 5  # memory stays bounded; the rescan finds the rest
    finally:
        watches.stop()


@pytest.mark.parametrize("full_at", ["photos", "deep"])  # at the root, or below it
def test_out_of_watches_falls_back_to_polling_with_one_hint(
    tmp_path, monkeypatch, caplog, full_at
):
    from watchdog.observers import inotify_c

    root = tmp_path / "photos"
    (root / "deep").mkdir(parents=True)
    real_add_watch = inotify_c.inotify_add_watch

    def add_watch(fd, path, mask):  # the kernel's answer once max_user_watches is reached
        if path.endswith(full_at.encode()):
            inotify_c.ctypes.set_errno(errno.ENOSPC)
            return -1
        return real_add_watch(fd, path, mask)

    monkeypatch.setattr(inotify_c, "inotify_add_watch", add_watch)
    monkeypatch.setattr(inotify_c.ctypes, "get_errno", lambda: errno.ENOSPC)
    pending = PendingChanges(settle_seconds=0.1)
    rescans: list[Path] = []
    watches = WatchSet([root], pending, polling=False, poll_interval_seconds=0.2,
                       follow_symlinks=False, on_rescan=rescans.append)
    with caplog.at_level(logging.WARNING, logger="iqs_daemon.watching"):
        watches.start()
        watches.check()
    collector = Collector(pending)
    try:
        assert watches.backends == {str(root): "polling"}
        hints = [r.message for r in caplog.records if "max_user_watches" in r.message]
        assert len(hints) == 1
        assert "sudo sysctl fs.inotify.max_user_watches=524288" in hints[0]
        assert "/etc/sysctl.d/" in hints[0]
        (root / "deep" / "x.jpg").write_bytes(JPEG_BYTES)
        wait_for(lambda: collector.paths() == [root / "deep" / "x.jpg"])
    finally:
        collector.stop()
        watches.stop()


def test_polling_when_asked(tmp_path):
    pending = PendingChanges(settle_seconds=0.1)
    watches = WatchSet([tmp_path], pending, polling=True, poll_interval_seconds=0.1,
                       follow_symlinks=False, on_rescan=lambda root: None)
    watches.start()
    collector = Collector(pending)
    try:
        assert watches.backends == {str(tmp_path): "polling"}
        (tmp_path / "n.jpg").write_bytes(JPEG_BYTES)
        wait_for(lambda: collector.paths() == [tmp_path / "n.jpg"])
    finally:
        collector.stop()
        watches.stop()
