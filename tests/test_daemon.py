"""The daemon with real parts: watchdog on tmp folders, the tiny ONNX model, exiv2 writes.

In-process tests run ``Daemon.run()`` in a thread; the crash test runs
``python -m iqs_daemon start`` as a real process and kills it with SIGKILL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from daemonkit import (
    MODEL_LABEL,
    REPO,
    all_scored,
    cli,
    daemon_env,
    idle,
    jpeg,
    read_verdicts,
    rows,
    running,
    settings_for,
    wait_for,
)

from iqs_daemon import decoding
from iqs_daemon.config import Settings
from iqs_daemon.daemon import Daemon, ScanView
from iqs_daemon.discovery import SYMLINK_SKIPPED
from iqs_daemon.errors import (
    DecodeError,
    ImageTooLarge,
    MetadataError,
    MetadataRefused,
    StateError,
    UnreadableFile,
    UnsupportedFormat,
)
from iqs_daemon.pipeline import Scorer
from iqs_daemon.service import read_lock, sd_notify
from iqs_daemon.state import StateDB
from iqs_daemon.watching import ForgetSkipped, Skipped, Vanished
from iqs_daemon.worker import Worker, retry_delay_seconds

# --- watching and scoring, in-process ------------------------------------------------------


def test_imports_are_scored_once_when_complete(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    (root / "card").mkdir(parents=True)
    (root / "sorted").mkdir()
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        # Copied slowly: chunks with pauses longer than settle_seconds.
        slow, data = root / "card" / "slow.jpg", jpeg(200, (320, 240))
        with slow.open("wb") as fh:
            for start in range(0, len(data), len(data) // 4):
                fh.write(data[start:start + len(data) // 4])
                fh.flush()
                time.sleep(0.35)
        # Written under a temporary name, renamed into place.
        part = root / "card" / ".renamed.jpg.part"
        part.write_bytes(jpeg(30))
        os.rename(part, root / "card" / "renamed.jpg")
        # A few plain copies.
        plain = [root / "card" / f"p{i}.jpg" for i in range(6)]
        for i, p in enumerate(plain):
            p.write_bytes(jpeg(40 * i, seed=i))
        photos = [slow, root / "card" / "renamed.jpg", *plain]
        wait_for(lambda: all_scored(daemon, photos) and idle(daemon))
        assert daemon.counts["scored"] == len(photos)
        assert daemon.db.get(slow).score == pytest.approx(200 / 2.55, abs=3)  # the whole photo

        # Moved between folders: the rows follow, nothing is scored again.
        moved = []
        for p in plain[:3]:
            moved.append(root / "sorted" / p.name)
            os.rename(p, moved[-1])
        wait_for(lambda: all_scored(daemon, moved) and idle(daemon))
        time.sleep(1.0)  # room for a (wrong) reaction to our own writes or the moves
        assert idle(daemon)
        assert daemon.counts == {"scored": len(photos), "redecided": 0, "unchanged": 0, "failed": 0,
                                 "moved": 3, "touched": 0, "skipped": 0}
        state = rows(daemon)
        assert set(state) == {*photos[:2], *plain[3:], *moved}
        assert all(r.scored_count == 1 and r.model == MODEL_LABEL for r in state.values())
    assert set(read_verdicts(list(state)).values()) == {"test-1"}


def test_a_photo_scored_just_below_a_cut_is_not_written_again_by_the_next(tmp_path, tiny_model,
                                                                          env_paths):
    """Each frame that arrives re-decides its folder's earlier frames from their stored
    (rounded) scores, for bursts. A photo whose score is just below a cut (59.98 against
    accept_from 60, shown and stored as 60.0) must get the label of its stored score when
    it is scored, or the next photo's arrival re-labels it and writes it a second time
    (benchmarks/soak.py, seed 1: "written twice 1; logged as scored twice 1")."""
    import cv2
    import numpy as np

    root = tmp_path / "photos"
    root.mkdir()
    pixels = np.full((64, 64, 3), 153, np.uint8)
    pixels.reshape(-1, 3)[:200] = 152  # mean brightness 152.95: the tiny model's 59.98
    edge, later = root / "edge.png", root / "later.jpg"
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        ok, data = cv2.imencode(".png", pixels)
        assert ok
        edge.write_bytes(data.tobytes())
        wait_for(lambda: all_scored(daemon, [edge]) and idle(daemon))
        later.write_bytes(jpeg(100))  # taken seconds later: within the burst gap
        wait_for(lambda: all_scored(daemon, [edge, later]) and idle(daemon))
        time.sleep(1.0)  # room for a (wrong) re-decision of the earlier photo
        assert idle(daemon)
        assert (daemon.counts["scored"], daemon.counts["redecided"]) == (2, 0)
        state = rows(daemon)
    assert (state[edge].score, state[edge].label) == (60.0, "Accepted")
    assert [state[p].scored_count for p in (edge, later)] == [1, 1]


@pytest.mark.slow
def test_a_burst_of_1000_files_is_scored_once_each(tmp_path, tiny_model, env_paths):
    root = tmp_path / "burst"
    root.mkdir()
    blobs = [jpeg(i % 256, seed=i) for i in range(8)]
    with running(settings_for(env_paths, tiny_model, batch_size=16), env_paths, [root]) as daemon:
        started = time.monotonic()
        photos = []
        for i in range(1000):
            folder = root / f"d{i // 250}"
            folder.mkdir(exist_ok=True)
            photos.append(folder / f"IMG_{i:04d}.jpg")
            photos[-1].write_bytes(blobs[i % 8])
        written = time.monotonic() - started
        wait_for(lambda: all_scored(daemon, photos) and idle(daemon), timeout=240)
        elapsed = time.monotonic() - started
        time.sleep(1.0)
        assert idle(daemon)
        assert daemon.counts["scored"] == 1000 and daemon.counts["failed"] == 0
        counts = Counter(r.scored_count for r in rows(daemon).values())
        assert counts == {1: 1000}
        print(f"\nburst: 1000 files written in {written:.1f} s, all scored after {elapsed:.1f} s "
              f"({1000 / elapsed:.0f} photos/s)")
    sample = photos[::97]
    assert set(read_verdicts(sample).values()) == {"test-1"}


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_metadata_edits_cost_a_decode_pixel_edits_a_new_score(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    photo = root / "edit.jpg"
    photo.write_bytes(jpeg(40))
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon))
        first = daemon.db.get(photo)
        # Another program edits the metadata: the pixels are the same.
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Title=edited",
                        str(photo)], check=True)
        wait_for(lambda: daemon.counts["touched"] == 1 and idle(daemon))
        assert daemon.db.get(photo).scored_count == 1
        # An editor changes the pixels and keeps the XMP (our verdict included).
        new = root / ".edit.jpg.tmp"
        new.write_bytes(jpeg(220))
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-tagsfromfile", str(photo),
                        "-xmp", str(new)], check=True)
        os.replace(new, photo)
        wait_for(lambda: daemon.db.get(photo).scored_count == 2 and idle(daemon))
        second = daemon.db.get(photo)
        assert second.fingerprint != first.fingerprint
        assert second.label == "Accepted" and first.label == "Rejected"


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_a_fingerprint_of_an_earlier_version_still_spares_the_score(tmp_path, tiny_model,
                                                                    env_paths):
    """A state row keeping the first fingerprint format (blake2b, before ``p2:``): a
    metadata edit is still recognised as one, and a pixel edit is still scored."""
    root = tmp_path / "photos"
    root.mkdir()
    photo = root / "old.jpg"
    photo.write_bytes(jpeg(40))
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon))
        row = daemon.db.get(photo)
        assert row.fingerprint.startswith(decoding.FINGERPRINT_PREFIXES)
        assert daemon.worker is not None
        pixels = decoding.decode(photo, max_pixels=10**8,
                                 min_short_side=daemon.worker.scorer.model.info.min_short_side)
        digest = hashlib.blake2b(repr(pixels.rgb.shape).encode(), digest_size=16)
        digest.update(pixels.rgb.tobytes())
        daemon.db.record_scored(photo, row.stat, fingerprint=digest.hexdigest(), score=row.score,
                                label=row.label, model=row.model or "", policy=row.policy,
                                verdict=row.verdict, counted=False)
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-dc:Title=edited",
                        str(photo)], check=True)
        wait_for(lambda: daemon.counts.get("touched") == 1 and idle(daemon))
        assert daemon.db.get(photo).scored_count == 1
        assert daemon.db.get(photo).fingerprint == digest.hexdigest()
        new = root / ".old.jpg.tmp"
        new.write_bytes(jpeg(220))
        os.replace(new, photo)
        wait_for(lambda: daemon.db.get(photo).scored_count == 2 and idle(daemon))
        assert daemon.db.get(photo).fingerprint.startswith(decoding.FINGERPRINT_PREFIXES)


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_a_photo_whose_file_changed_is_decoded_once(tmp_path, tiny_model, env_paths,
                                                   monkeypatch):
    """The pass's own decode tells a metadata edit from a pixel edit: one decode each."""
    root = tmp_path / "photos"
    root.mkdir()
    photo = root / "once.jpg"
    photo.write_bytes(jpeg(40))
    decodes: Counter[Path] = Counter()
    real_decode = decoding.decode

    def counting_decode(path: Path, **kw: int) -> decoding.Decoded:
        decodes[path] += 1
        return real_decode(path, **kw)

    monkeypatch.setattr(decoding, "decode", counting_decode)
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon))
        assert decodes == {photo: 1}
        # A pick label set in another program: the mtime changes, the pixels do not.
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-digiKam:PickLabel=3",
                        str(photo)], check=True)
        wait_for(lambda: daemon.counts["touched"] == 1 and idle(daemon))
        time.sleep(1.0)  # room for a (wrong) re-score or re-write
        assert idle(daemon) and decodes == {photo: 2}
        assert daemon.counts["scored"] == 1 and daemon.db.get(photo).scored_count == 1
        assert daemon.db.get(photo).stat.mtime_ns == photo.stat().st_mtime_ns
        # Only the mtime: still the same pixels, one decode.
        os.utime(photo, ns=(time.time_ns(),) * 2)
        wait_for(lambda: daemon.counts["touched"] == 2 and idle(daemon))
        assert decodes == {photo: 3} and daemon.counts["scored"] == 1
        # New pixels under the same name: one decode, and a new score.
        new = root / ".once.jpg.tmp"
        new.write_bytes(jpeg(220))
        os.replace(new, photo)
        wait_for(lambda: daemon.db.get(photo).scored_count == 2 and idle(daemon))
        time.sleep(1.0)
        assert idle(daemon) and decodes == {photo: 4}
        assert daemon.counts["scored"] == 2 and daemon.counts["touched"] == 2


def test_failures_are_recorded_and_retried_only_when_transient(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    big, small, broken = root / "big.jpg", root / "small.jpg", root / "broken.jpg"
    big.write_bytes(jpeg(100, (64, 48)))
    small.write_bytes(jpeg(100, (40, 30)))
    data = jpeg(100, (40, 30), seed=5)
    broken.write_bytes(data[: len(data) // 3])
    settings = settings_for(env_paths, tiny_model, max_pixels=2000)
    with running(settings, env_paths, [root], retry_base_seconds=0.5) as daemon:
        wait_for(lambda: daemon.db.get(broken) is not None and daemon.db.get(big) is not None
                 and all_scored(daemon, [small]))
        too_big = daemon.db.get(big)
        assert too_big.status == "failed" and too_big.next_attempt_at is None  # permanent
        failed = daemon.db.get(broken)
        assert failed.status == "failed" and failed.next_attempt_at is not None, failed
        wait_for(lambda: daemon.db.get(broken).attempts >= 2, timeout=10)  # retried by itself
        broken.write_bytes(data)  # the copy completes
        wait_for(lambda: all_scored(daemon, [broken]) and idle(daemon))
        assert daemon.db.get(big).attempts == 1


def test_retry_policy():
    p = Path("x.jpg")
    assert retry_delay_seconds(DecodeError(p, "truncated"), 1, 30) == 30
    assert retry_delay_seconds(DecodeError(p, "truncated"), 3, 30) == 120
    busy = MetadataError(p, "cannot replace x.jpg: Permission denied")
    assert retry_delay_seconds(busy, 1, 30) == 30
    assert retry_delay_seconds(DecodeError(p, "truncated"), 6, 30) is None
    assert retry_delay_seconds(UnsupportedFormat(p, "gif"), 1, 30) is None
    assert retry_delay_seconds(ImageTooLarge(p, "bomb"), 1, 30) is None
    crashed = MetadataRefused(p, "exiv2 crashed on this file before")
    assert retry_delay_seconds(crashed, 1, 30) is None
    assert retry_delay_seconds(UnreadableFile(p, "permission denied"), 2, 30) == 60
    assert retry_delay_seconds(StateError("disk full"), 1, 30) is None


def test_backlog_finds_what_arrived_while_down_and_moves_made_meanwhile(tmp_path, tiny_model,
                                                                       env_paths):
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    photos = [root / "a" / f"{i}.jpg" for i in range(5)]
    for i, p in enumerate(photos):
        p.write_bytes(jpeg(50 * i, seed=i))
    settings = settings_for(env_paths, tiny_model)
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, photos) and idle(daemon))
    # While down: one photo arrives, one moves, one is deleted.
    (root / "b").mkdir()
    late = root / "b" / "late.jpg"
    late.write_bytes(jpeg(99))
    moved = root / "b" / "moved.jpg"
    os.rename(photos[0], moved)
    photos[1].unlink()
    os.utime(late, ns=(time.time_ns() - 10**10,) * 2)  # old enough to be queued at once
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [late, moved]) and idle(daemon))
        assert daemon.counts["scored"] == 1 and daemon.counts["moved"] == 1
        state = rows(daemon)
        assert state[photos[1]].status == "gone"
        assert daemon.db.totals() == {k: v for k, v in Counter(
            r.label for r in state.values() if r.status == "scored").items()}
    with running(replace_settings(settings, backlog=False), env_paths, [root]) as daemon:
        time.sleep(0.5)
        assert daemon.counts["scored"] == 0 and idle(daemon)


def state_files(database: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (database, Path(f"{database}-wal")) if p.exists()}


def test_the_scanner_writes_nothing_the_scoring_thread_writes_what_it_asks(tmp_path, tiny_model,
                                                                          env_paths):
    """The scoring thread is the state's one writer: a scan's vanished and skipped photos
    reach the SQLite file only once that thread handles the scanner's messages."""
    root = tmp_path / "photos"
    root.mkdir()
    kept, vanished, link = root / "kept.jpg", root / "vanished.jpg", root / "link.jpg"
    kept.write_bytes(jpeg(60))
    vanished.write_bytes(jpeg(90, seed=1))
    settings = settings_for(env_paths, tiny_model)
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [kept, vanished]) and idle(daemon))
    # While down: a photo deleted, a link (not followed, so skipped) made.
    vanished.unlink()
    link.symlink_to(kept)
    # The scanner's walk on this thread; no scoring thread runs.
    daemon = Daemon(settings, env_paths, [root])
    with StateDB.open(env_paths.database) as db, Scorer(settings, keeps_frames=True) as scorer:
        daemon.worker = Worker(db, scorer, settings, [root], retry_base_seconds=1.0,
                               look_again=lambda path: None)
        daemon._scan_view = ScanView.of(scorer)
        before = state_files(env_paths.database)
        daemon._scan_root(root)
        assert state_files(env_paths.database) == before
        assert db.get(vanished).status == "scored" and db.get(link) is None
        items = daemon.queue.take(100, wait_seconds=0.1, gather_seconds=0.1)
        assert items[:2] == [Skipped(link, SYMLINK_SKIPPED), Vanished(vanished)]
        assert len(items) == 3 and isinstance(items[2], ForgetSkipped)
        assert items[2].root == root
        for item in items:
            daemon.worker.handle(item)
        assert state_files(env_paths.database) != before
        assert db.get(vanished).status == "gone"
        assert db.get(link).status == "skipped" and db.get(link).error == SYMLINK_SKIPPED
        assert db.get(kept).status == "scored"


def replace_settings(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)


# --- the real process: crash recovery, lock, status, signals, sd_notify ---------------------


def start(root: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "iqs_daemon", "start", str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"))


def scored_rows(database: Path) -> int:
    if not database.exists():
        return 0
    with StateDB(database) as db:
        totals = db.totals()
        return sum(totals.get(label, 0) for label in ("Rejected", "Pending", "Accepted"))


@pytest.mark.slow
def test_kill_9_mid_backlog_then_restart_scores_every_photo_once(tmp_path, tiny_model):
    root = tmp_path / "photos"
    n = 240
    for i in range(n):
        folder = root / f"{i // 60:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(jpeg(i % 256, seed=i))
    config = tmp_path / "config"
    config.mkdir()
    (config / "config.toml").write_text(
        f'[model]\nmodel_path = "{tiny_model}"\nbatch_size = 4\njobs = 1\n', encoding="utf-8")
    database, log = tmp_path / "state" / "state.sqlite3", tmp_path / "daemon.log"

    first = start(root, daemon_env(tmp_path), log)
    try:
        wait_for(lambda: scored_rows(database) >= 30 or first.poll() is not None, timeout=90)
        assert first.poll() is None, log.read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert scored_rows(database) < n, "the backlog finished before the kill: make it bigger"
    assert read_lock(tmp_path / "state") is None  # the kernel dropped the lock

    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(f"\0iqs-test-{os.getpid()}")  # an abstract address, as systemd may use
    notify.settimeout(0.2)
    messages: list[str] = []

    def listen() -> None:  # as systemd does, all the time
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                if second.poll() is not None:
                    return
            except OSError:
                return

    env = daemon_env(tmp_path, NOTIFY_SOCKET=f"@iqs-test-{os.getpid()}", WATCHDOG_USEC="400000")
    second = start(root, env, log)
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        wait_for(lambda: scored_rows(database) == n or second.poll() is not None, timeout=150)
        assert second.poll() is None, log.read_text()
        # A second daemon for the same state directory is refused, naming the first.
        refused = cli(["start", str(root)], daemon_env(tmp_path))
        assert refused.returncode == 4
        assert f"already running (pid {second.pid})" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        status = json.loads(cli(["status", "--json"], daemon_env(tmp_path)).stdout)
        assert status["running"] and status["pid"] == second.pid
        assert status["roots"] == [str(root)] and status["backends"] == {str(root): "inotify"}
        assert sum(status["totals"].values()) == n
        # SIGHUP reloads the configuration.
        second.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(), timeout=20)
        stopping = time.monotonic()
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0
        stop_seconds = time.monotonic() - stopping
    finally:
        if second.poll() is None:
            second.kill()
    listener.join(timeout=5)
    notify.close()
    assert "READY=1" in messages[0].splitlines()
    assert "WATCHDOG=1" in messages and "STOPPING=1" in messages
    assert stop_seconds < 5

    # Every photo scored, none twice: the log names each photo written, per run.
    text = log.read_text()
    scored_lines = Counter(re.findall(r"^scored (.+?): ", text, flags=re.M))
    adopted = Counter(re.findall(r"^already scored (.+?): ", text, flags=re.M))
    first_run = len(re.findall(r"^scored ", text.split("\nwatching ")[1], flags=re.M))
    print(f"\ncrash: {first_run} scored before SIGKILL, {len(scored_lines) - first_run} after "
          f"the restart, {len(adopted)} written but unrecorded at the kill and adopted; "
          f"stopped {stop_seconds:.1f} s after SIGTERM")
    assert max(scored_lines.values()) == 1, scored_lines.most_common(3)
    with StateDB(database) as db:
        state = {p: db.get(p) for p, _ in db.iter_paths()}
    assert len(state) == n
    assert all(r.status == "scored" and r.model == MODEL_LABEL for r in state.values())
    assert all(r.scored_count <= 1 for r in state.values())
    assert set(scored_lines) | set(adopted) <= {str(p) for p in state}
    # A photo written just before the kill is found with its verdict, not scored again.
    assert len(scored_lines) + len(adopted) >= n - 4 * 2  # at most a batch or two unlogged
    assert set(read_verdicts(list(state)).values()) == {"test-1"}

    after = json.loads(cli(["status", "--json"], daemon_env(tmp_path)).stdout)
    assert not after["running"] and sum(after["totals"].values()) == n
    assert not list((tmp_path / "run").glob("status*.json"))  # removed on a clean exit


def test_status_when_nothing_runs(tmp_path):
    from typer.testing import CliRunner

    from iqs_daemon.cli import app

    result = CliRunner().invoke(app, ["status"], env=daemon_env(tmp_path))
    assert result.exit_code == 0
    assert "iqs-daemon is not running." in result.output
    assert "none recorded yet" in result.output
    result = CliRunner().invoke(app, ["status", "--json"], env=daemon_env(tmp_path))
    report = json.loads(result.output)
    assert report["running"] is False and report["totals"] == {} and report["pid"] is None


# --- systemd ---------------------------------------------------------------------------------


@pytest.mark.parametrize("abstract", [False, True])
def test_sd_notify_reaches_path_and_abstract_sockets(tmp_path, abstract):
    address = f"@iqs-notify-{os.getpid()}" if abstract else str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + address[1:] if abstract else address)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": address})
        assert sock.recv(100) == b"READY=1"
    assert not sd_notify("READY=1", {})


def test_sd_notify_never_blocks_on_a_receiver_that_stopped_reading(tmp_path):
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        started = time.monotonic()
        sent = [sd_notify("WATCHDOG=1", {"NOTIFY_SOCKET": address}) for _ in range(3000)]
        assert time.monotonic() - started < 5
        assert sent[0] and not all(sent)  # the queue filled up and later pings were dropped


def systemd_verify(unit: Path, tmp_path: Path, home: Path | None = None) -> str:
    """systemd-analyze's complaints about ``unit`` (empty when it is valid)."""
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), **({"HOME": str(home)} if home else {})}
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], env=env,
                            capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line
                  or "ignoring" in line.lower() or "unknown" in line.lower()]
    return "\n".join(complaints) if complaints or result.returncode else ""


needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")


@needs_systemd_analyze
def test_the_shipped_unit_passes_systemd_analyze_verify(tmp_path):
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    exe = home / ".local" / "bin" / "iqs-daemon"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "iqs-daemon.service"
    shutil.copyfile(REPO / "systemd" / "iqs-daemon.service", unit)
    assert systemd_verify(unit, tmp_path, home) == ""


def test_install_service_writes_a_unit_for_the_installed_executable(tmp_path):
    roots = [tmp_path / "My Photos 100%", tmp_path / "card"]
    for r in roots:
        r.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "iqs-daemon"  # an installed console script, as pip or pipx make it
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m iqs_daemon "$@"\n')
    exe.chmod(0o755)
    env = daemon_env(tmp_path, XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
                     PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    # Everything here lies in /tmp, which the sandbox's PrivateTmp= hides (test_service.py).
    result = subprocess.run([str(exe), "install-service", "--no-sandbox", *map(str, roots)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "xdg-config" / "systemd" / "user" / "iqs-daemon.service"
    text = unit.read_text()
    assert f'ExecStart="{exe}" "start" "{roots[0]}%" "{roots[1]}"' in text
    assert "systemctl --user enable --now iqs-daemon" in result.stdout
    assert "Type=notify" in text and "WatchdogSec=" in text
    if shutil.which("systemd-analyze"):
        assert systemd_verify(unit, tmp_path) == ""
    # No console script anywhere: the unit runs this Python with -m.
    env["PATH"] = str(Path(sys.executable).parent.parent / "no-such-bin")
    result = cli(["install-service", "--no-sandbox", str(roots[1])], env)
    assert result.returncode == 0, result.stderr
    exec_start = f'ExecStart="{sys.executable}" "-m" "iqs_daemon" "start" "{roots[1]}"'
    assert exec_start in unit.read_text()


def test_a_reloaded_policy_relabels_from_stored_scores_and_copies_agree(tmp_path, tiny_model,
                                                                         env_paths):
    """SIGHUP with a new threshold: every photo re-labelled from its stored score (never
    decoded again), and a copy of a photo gets the original's label, in any folder."""
    root = tmp_path / "watched"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    original = root / "a" / "p.jpg"
    original.write_bytes(jpeg(110))  # tiny-model score ~43: Pending
    other = root / "b" / "q.jpg"
    other.write_bytes(jpeg(120))
    settings = settings_for(env_paths, tiny_model)
    stricter = settings_for(env_paths, tiny_model, reject_below=50.0)
    current = [settings]
    with running(settings, env_paths, [root], reload_settings=lambda: current[0]) as daemon:
        wait_for(lambda: all_scored(daemon, [original, other]) and idle(daemon))
        assert {r.label for r in rows(daemon).values()} == {"Pending"}
        first_policy = daemon.db.get(original).policy
        current[0] = stricter
        daemon.reload()
        wait_for(lambda: daemon.counts["redecided"] == 2 and idle(daemon), timeout=30)
        copy = root / "b" / "copy-of-p.jpg"
        shutil.copyfile(original, copy)  # carries the new verdict already
        fresh = root / "b" / "fresh-copy.jpg"
        fresh.write_bytes(jpeg(110))  # the same pixels, never scored
        wait_for(lambda: all_scored(daemon, [copy, fresh]) and idle(daemon))
        state = rows(daemon)
        assert daemon.counts["scored"] == 3, "only the new photo was decoded and scored"
    assert {state[p].label for p in (original, other, copy, fresh)} == {"Rejected"}
    assert len({state[p].policy for p in state}) == 1
    assert state[original].policy != first_policy
