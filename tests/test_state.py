"""state.py against a real SQLite file in tmp_path."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from iqs_daemon import state
from iqs_daemon.errors import StateError
from iqs_daemon.state import GONE_RETENTION_SECONDS, FileStat, StateDB

S1 = FileStat(1000, 1_700_000_000_000_000_000)
S2 = FileStat(1200, 1_700_000_000_000_000_000)


@pytest.fixture
def db(tmp_path):
    with StateDB(tmp_path / "state" / "state.sqlite3") as db:
        yield db


def scored(db: StateDB, path: Path, stat: FileStat = S1, **kw) -> None:
    values = {"fingerprint": "fp1", "score": 42.0, "label": "Pending", "model": "m 1", **kw}
    db.record_scored(path, stat, **values)


def test_scored_row_round_trips_and_counts_writes(db):
    photo = Path("/photos/a.jpg")
    scored(db, photo)
    scored(db, photo, S2, score=50.0)
    scored(db, photo, S2, counted=False)  # found already scored: not a write of ours
    row = db.get(photo)
    assert row is not None
    assert (row.stat, row.score, row.label, row.model, row.status) == (
        S2, 42.0, "Pending", "m 1", "scored")
    assert row.scored_count == 2
    assert row.first_seen <= row.updated
    assert db.get(Path("/photos/other.jpg")) is None


def test_wal_mode_and_migrations_recorded_once(tmp_path):
    path = tmp_path / "s.sqlite3"
    StateDB(path).close()
    with StateDB(path) as db:
        (mode,) = db._query("PRAGMA journal_mode")[0]
        names = [r[0] for r in db._query("SELECT name FROM migrations")]
    assert mode == "wal"
    assert names == ["0001_photos", "0002_policy", "0003_verdict", "0004_burst_frames"]


def test_new_migration_backs_up_first(tmp_path, monkeypatch):
    path = tmp_path / "s.sqlite3"
    with StateDB(path) as db:
        scored(db, Path("/p/a.jpg"))
    extra = ("0002_note", "ALTER TABLE photos ADD note TEXT")
    monkeypatch.setattr(state, "MIGRATIONS", (*state.MIGRATIONS, extra))
    with StateDB(path) as db:
        assert db.get(Path("/p/a.jpg")) is not None
    backup = tmp_path / "s.sqlite3.before-0002_note.bak"
    with sqlite3.connect(backup) as copy:
        assert copy.execute("SELECT COUNT(*) FROM photos").fetchone() == (1,)
    copy.close()


def nested_writes_then_fail(db) -> None:
    with db.transaction():
        scored(db, Path("/p/a.jpg"))
        with db.transaction():  # joins the outer transaction
            scored(db, Path("/p/b.jpg"))
        raise RuntimeError("boom")


def test_nested_transaction_rolls_back_as_a_whole(db):
    with pytest.raises(RuntimeError, match="boom"):
        nested_writes_then_fail(db)
    assert db.get(Path("/p/a.jpg")) is None and db.get(Path("/p/b.jpg")) is None


def test_failures_count_attempts_and_come_due(db):
    photo = Path("/p/broken.jpg")
    assert db.record_failure(photo, S1, "truncated", retry_in_seconds=30, now=1000.0) == 1
    assert db.record_failure(photo, S1, "truncated", retry_in_seconds=60, now=1100.0) == 2
    assert db.due_retries(now=1159.0) == []
    assert db.due_retries(now=1160.0) == [photo]
    db.record_failure(Path("/p/bomb.jpg"), S1, "too large", retry_in_seconds=None)
    assert db.due_retries(now=1e12) == [photo]  # permanent failures are never due
    assert [r.path for r in db.recent_errors()] == [Path("/p/bomb.jpg"), photo]
    scored(db, photo)  # success clears the failure
    row = db.get(photo)
    assert (row.status, row.error, row.attempts, row.next_attempt_at) == ("scored", None, 0, None)


def test_move_keeps_the_row_and_replaces_the_target(db):
    scored(db, Path("/p/a.jpg"), fingerprint="A")
    scored(db, Path("/p/b.jpg"), fingerprint="B")
    db.move(Path("/p/a.jpg"), Path("/p/b.jpg"))
    assert db.get(Path("/p/a.jpg")) is None
    assert db.get(Path("/p/b.jpg")).fingerprint == "A"


def test_gone_rows_wait_for_a_move_and_leave_the_totals(db):
    scored(db, Path("/p/a.jpg"), label="Accepted")
    scored(db, Path("/p/b.jpg"), label="Rejected")
    db.record_failure(Path("/p/c.jpg"), S1, "bad", retry_in_seconds=None)
    assert db.totals() == {"Accepted": 1, "Rejected": 1, "failed": 1}
    db.mark_gone(Path("/p/a.jpg"))
    db.mark_gone(Path("/p/c.jpg"))
    assert db.get(Path("/p/c.jpg")) is None  # a failure is not worth keeping
    assert db.totals() == {"Rejected": 1}
    assert [r.path for r in db.find_by_stat(S1)] == [Path("/p/a.jpg"), Path("/p/b.jpg")]
    db.move(Path("/p/a.jpg"), Path("/q/a.jpg"))
    assert db.get(Path("/q/a.jpg")).status == "scored"
    assert db.totals() == {"Accepted": 1, "Rejected": 1}


def test_undecodable_names_survive(db, tmp_path):
    odd = Path(os.fsdecode(b"/p/caf\xe9-\xff.jpg"))
    scored(db, odd)
    assert db.get(odd).path == odd
    assert list(db.iter_paths()) == [(odd, "scored")]


def test_threads_each_get_a_connection(db):
    def write(n: int) -> None:
        for i in range(100):
            scored(db, Path(f"/t{n}/{i}.jpg"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(1 for _ in db.iter_paths(batch=37)) == 400


def test_sqlite_errors_become_state_errors_with_advice(tmp_path):
    damaged = tmp_path / "damaged.sqlite3"
    damaged.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="damaged; move it aside"):
        StateDB(damaged)
    folder = tmp_path / "a-folder.sqlite3"
    folder.mkdir()
    with pytest.raises(StateError, match="writable"):
        StateDB(folder)
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(StateError, match="cannot create the state folder"):
        StateDB(blocked / "sub" / "state.sqlite3")


def test_long_gone_rows_are_pruned_recent_ones_kept(db, tmp_path):
    old, recent = tmp_path / "old.jpg", tmp_path / "recent.jpg"
    for path in (old, recent):
        db.record_scored(path, FileStat(1, 1), fingerprint="f", score=1.0, label="Rejected",
                         model="m 1")
    db.mark_gone(old, now=time.time() - GONE_RETENTION_SECONDS - 60)
    db.mark_gone(recent)
    assert db.prune_gone() == 1
    assert db.get(old) is None and db.get(recent).status == "gone"


def test_skipped_rows_are_renewed_by_each_scan_and_forgotten_otherwise(db, tmp_path):
    link, other = tmp_path / "root" / "link.jpg", tmp_path / "rootless" / "x.jpg"
    db.record_skipped(link, FileStat(5, 5), "symbolic link", now=100.0)
    db.record_skipped(other, FileStat(5, 5), "symbolic link", now=100.0)
    assert db.totals() == {"skipped": 2}
    assert db.forget_skipped(tmp_path / "root", before=200.0) == 1  # not renewed: gone
    assert db.get(link) is None and db.get(other).error == "symbolic link"  # another root


def test_a_damaged_database_is_moved_aside_only_when_asked(tmp_path):
    database = tmp_path / "state.sqlite3"
    database.write_bytes(b"this is not sqlite" * 500)
    with pytest.raises(StateError, match=r"not a database.*rebuilds it"):
        StateDB.open(database)
    with StateDB.open(database, recover=True) as db:
        assert db.totals() == {}
    assert [p.name.startswith("state.sqlite3.damaged-") for p in tmp_path.iterdir()
            if p.name != "state.sqlite3"] == [True]


def test_the_database_is_private(tmp_path):
    with StateDB(tmp_path / "state" / "s.sqlite3") as db:
        db.record_skipped(tmp_path / "a.jpg", FileStat(1, 1), "x")
        assert oct(os.stat(tmp_path / "state").st_mode & 0o777) == "0o700"
        for name in ("s.sqlite3", "s.sqlite3-wal"):
            assert oct(os.stat(tmp_path / "state" / name).st_mode & 0o777) == "0o600"
