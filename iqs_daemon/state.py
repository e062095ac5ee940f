"""The daemon's memory: one SQLite row per photo, at ``Paths.database``.

A row says what the daemon last did with a photo and which version of the file it saw
(``size_bytes``, ``mtime_ns``), so an event for a file whose stat matches its row (our own
XMP write, a ``touch`` of nothing) is recognised and ignored. The row is written *after*
the XMP write succeeded: a crash can only make the daemon repeat idempotent work.

    with StateDB(paths.database) as db:
        with db.transaction():
            db.record_scored(path, stat, fingerprint=..., score=..., label=..., model=...)
        row = db.get(path)

Paths are stored as bytes (``os.fsencode``) so names that are not valid UTF-8 survive.
Every connection is per thread (SQLite objects may not cross threads) and in WAL mode,
so ``iqs-daemon status`` reads while the daemon writes. sqlite3 errors become
``StateError`` with advice for the user. The database and its folder are private to the
user (0600 / 0700): paths of someone's photos are nobody else's business.

A damaged database is not a reason to stop for good: ``StateDB.open(..., recover=True)``
moves it aside and starts an empty one, which the daemon's backlog refills from the
verdicts already in the photos' XMP (no photo is written again).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .errors import StateError

log = logging.getLogger(__name__)

SCORED = "scored"
FAILED = "failed"
SKIPPED = "skipped"  # never scored on purpose (a link not followed, an unreadable folder)
GONE = "gone"  # the file disappeared; the row is kept so a later move can be matched
GONE_RETENTION_SECONDS = 30 * 24 * 3600.0  # then a move can no longer be recognised
DAMAGED_WORDS = ("not a database", "malformed", "corrupt")

# Named migrations, applied in order and recorded in the ``migrations`` table.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    (
        "0001_photos",
        """
        CREATE TABLE photos (
            path BLOB PRIMARY KEY,
            size_bytes INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            fingerprint TEXT NOT NULL DEFAULT '',
            score REAL,
            label TEXT,
            model TEXT,
            status TEXT NOT NULL,
            error TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            scored_count INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            first_seen REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE INDEX photos_stat ON photos (size_bytes, mtime_ns);
        CREATE INDEX photos_retry ON photos (next_attempt_at) WHERE next_attempt_at IS NOT NULL;
        CREATE INDEX photos_updated ON photos (updated);
        """,
    ),
    (
        "0002_policy",
        # verdict.Policy.identity of the stored label: a policy change is noticed per photo.
        "ALTER TABLE photos ADD COLUMN policy TEXT",
    ),
    (
        "0003_verdict",
        # The verdict as written (JSON), so a photo whose metadata was deleted gets it back
        # without being scored again.
        "ALTER TABLE photos ADD COLUMN verdict TEXT",
    ),
    (
        "0004_burst_frames",
        # What grouping needs of a scored photo (bursts.Frame): its capture time, the
        # model's embedding (float16) and its sharpness signature, so a frame arriving
        # later, or after a restart, is grouped with the earlier frames of its folder.
        """
        CREATE TABLE burst_frames (
            path BLOB PRIMARY KEY,
            folder BLOB NOT NULL,
            captured_at REAL NOT NULL,
            embedding BLOB NOT NULL,
            signature BLOB,
            updated REAL NOT NULL
        );
        CREATE INDEX burst_frames_time ON burst_frames (folder, captured_at);
        """,
    ),
)


@dataclass(frozen=True)
class FileStat:
    """The version of a file the daemon saw: what ``os.stat`` says about its content."""

    size_bytes: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStat | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return cls(st.st_size, st.st_mtime_ns)


@dataclass(frozen=True)
class PhotoRecord:
    path: Path
    stat: FileStat
    fingerprint: str
    score: float | None
    label: str | None  # "Rejected", "Pending", "Accepted"
    model: str | None  # "name version" of the model that scored it
    policy: str | None  # verdict.Policy.identity of the cut-offs that chose the label
    status: str  # scored | failed | skipped | gone
    error: str | None
    attempts: int  # failures in a row
    scored_count: int  # how often the daemon wrote a verdict for this photo
    next_attempt_at: float | None  # epoch seconds; None: not retried until the file changes
    first_seen: float
    updated: float
    verdict: str | None = None  # JSON of the verdict written (see restore.verdict_json)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> PhotoRecord:
        return cls(
            path=Path(os.fsdecode(row["path"])),
            stat=FileStat(row["size_bytes"], row["mtime_ns"]),
            **{k: row[k] for k in ("fingerprint", "score", "label", "model", "policy", "status",
                                    "error", "attempts", "scored_count", "next_attempt_at",
                                    "first_seen", "updated", "verdict")},
        )


def _key(path: Path | str) -> bytes:
    return os.fsencode(path)


def translate(exc: sqlite3.Error, database: Path) -> StateError:
    """A sqlite3 error as a StateError that tells the user what to do."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        advice = "another process keeps it busy; is a second iqs-daemon using this state directory?"
    elif "unable to open" in text or "readonly" in text or "read-only" in text:
        advice = "check that the folder exists and is writable, or set IQS_STATE_DIR"
    elif "full" in text or "disk i/o" in text:
        advice = "the disk may be full or failing; free space and restart"
    elif "not a database" in text or "malformed" in text:
        advice = ("the file is damaged; move it aside and restart: the daemon rebuilds it "
                  "from the photos' XMP")
    else:
        advice = "see the log with --debug"
    return StateError(f"state database {database}: {exc} ({advice})")


def is_damaged(exc: BaseException) -> bool:
    """True for a StateError (or sqlite3 error) saying the file is not a sound database."""
    cause = exc.__cause__ if isinstance(exc, StateError) else exc
    return isinstance(cause, sqlite3.DatabaseError) and any(
        word in str(cause).lower() for word in DAMAGED_WORDS)


def move_aside(database: Path, now: float | None = None) -> Path:
    """Rename a damaged database (and its -wal/-shm) out of the way; returns the new name."""
    tag = time.strftime("%Y%m%dT%H%M%S", time.localtime(time.time() if now is None else now))
    target = database.with_name(f"{database.name}.damaged-{tag}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{database}{suffix}")
        if source.exists():
            os.replace(source, Path(f"{target}{suffix}"))
    return target


class StateDB:
    """The SQLite state. Thread-safe: one lazy connection per thread."""

    def __init__(self, database: Path, *, busy_timeout_seconds: float = 10.0):
        self.database = database
        self.busy_timeout_seconds = busy_timeout_seconds
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        try:
            database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create the state folder {database.parent}: "
                             f"{exc.strerror} (set IQS_STATE_DIR to a writable folder)") from exc
        try:  # created private; SQLite gives its -wal and -shm files the same mode
            os.close(os.open(database, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))
        except OSError as exc:
            raise StateError(f"cannot open the state database {database}: "
                             f"{exc.strerror} (set IQS_STATE_DIR to a writable folder)") from exc
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open(cls, database: Path, *, recover: bool = False, **kwargs: float) -> StateDB:
        """Open and check the database; with ``recover``, replace a damaged one by an empty one.

        The check (``PRAGMA quick_check``) reads every page once: a second or so for a
        library of 100,000 photos, at start only.
        """
        try:
            db = cls(database, **kwargs)
            try:
                db.check()
            except BaseException:
                db.close()
                raise
            return db
        except StateError as exc:
            if not (recover and is_damaged(exc)):
                raise
        aside = move_aside(database)
        log.warning("state database %s is damaged; moved it to %s and started a new one, "
                    "rebuilt from the verdicts already in the photos' XMP", database, aside)
        return cls(database, **kwargs)

    def check(self) -> None:
        """Raise a StateError if SQLite finds the file damaged."""
        rows = self._query("PRAGMA quick_check")
        problems = [r[0] for r in rows if r[0] != "ok"]
        if problems:
            exc = sqlite3.DatabaseError(f"database disk image is malformed ({problems[0]})")
            raise translate(exc, self.database) from exc

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- connections and transactions -------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves (see transaction()).
            conn = sqlite3.connect(self.database, timeout=self.busy_timeout_seconds,
                                   isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        except sqlite3.Error as exc:
            raise translate(exc, self.database) from exc
        self._local.conn, self._local.depth = conn, 0
        with self._lock:
            self._connections.append(conn)
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction; nested blocks join the outermost one."""
        conn = self._connection()
        outermost = self._local.depth == 0
        try:
            if outermost:
                conn.execute("BEGIN IMMEDIATE")
            self._local.depth += 1
            try:
                yield conn
            finally:
                self._local.depth -= 1
            if outermost:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if outermost and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise translate(exc, self.database) from exc
        except BaseException:
            if outermost and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise translate(exc, self.database) from exc

    def _migrate(self) -> None:
        with self.transaction() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL)")
            done = {row[0] for row in conn.execute("SELECT name FROM migrations")}
            pending = [(name, sql) for name, sql in MIGRATIONS if name not in done]
        if pending and done:
            self._backup(f"before-{pending[0][0]}")
        for name, sql in pending:
            with self.transaction() as conn:
                for statement in filter(str.strip, sql.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO migrations VALUES (?, ?)", (name, time.time()))
            log.debug("state: applied migration %s", name)

    def _backup(self, tag: str) -> None:
        target = self.database.with_name(f"{self.database.name}.{tag}.bak")
        log.info("state: backing up %s to %s before migrating", self.database, target)
        with sqlite3.connect(target) as copy:
            self._connection().backup(copy)
        copy.close()

    # -- reading ------------------------------------------------------------------------
    def get(self, path: Path) -> PhotoRecord | None:
        rows = self._query("SELECT * FROM photos WHERE path = ?", (_key(path),))
        return PhotoRecord.from_row(rows[0]) if rows else None

    def find_by_stat(self, stat: FileStat) -> list[PhotoRecord]:
        """Rows for files of this size and mtime: where a moved photo may have come from."""
        rows = self._query("SELECT * FROM photos WHERE size_bytes = ? AND mtime_ns = ?",
                           (stat.size_bytes, stat.mtime_ns))
        return [PhotoRecord.from_row(r) for r in rows]

    def due_retries(self, now: float, limit: int = 100) -> list[Path]:
        rows = self._query(
            "SELECT path FROM photos WHERE next_attempt_at IS NOT NULL AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (now, limit))
        return [Path(os.fsdecode(r["path"])) for r in rows]

    def iter_paths(self, *, batch: int = 500) -> Iterator[tuple[Path, str]]:
        """(path, status) of every row, in pages, without holding a read transaction."""
        last = b""
        while True:
            rows = self._query(
                "SELECT path, status FROM photos WHERE path > ? ORDER BY path LIMIT ?",
                (last, batch))
            if not rows:
                return
            for row in rows:
                yield Path(os.fsdecode(row["path"])), row["status"]
            last = rows[-1]["path"]

    def totals(self, below: Path | None = None) -> dict[str, int]:
        """Photos per label ("Rejected", ...), plus "failed"; files that are gone are left out.

        ``below``: only the photos in that folder (and its sub-folders).
        """
        where, params = "status != 'gone'", cast(tuple[object, ...], ())
        if below is not None:
            prefix = os.path.join(os.fsencode(below), b"")
            where += " AND substr(path, 1, ?) = ?"
            params = (len(prefix), prefix)
        rows = self._query(
            "SELECT CASE WHEN status = 'scored' THEN COALESCE(label, 'unknown') ELSE status END"
            f" AS k, COUNT(*) AS n FROM photos WHERE {where} GROUP BY k", params)
        return {r["k"]: r["n"] for r in rows}

    def recent_errors(self, limit: int = 5) -> list[PhotoRecord]:
        """The last failures and skips, newest first (what ``status`` lists)."""
        rows = self._query(
            "SELECT * FROM photos WHERE status IN ('failed', 'skipped') "
            "ORDER BY updated DESC LIMIT ?", (limit,))
        return [PhotoRecord.from_row(r) for r in rows]

    def scored_since(self, since: float) -> int:
        rows = self._query("SELECT COUNT(*) FROM photos WHERE status = 'scored' AND updated >= ?",
                           (since,))
        return int(rows[0][0])

    # -- writing ------------------------------------------------------------------------
    def record_scored(
        self, path: Path, stat: FileStat, *, fingerprint: str, score: float | None,
        label: str | None, model: str, policy: str | None = None, counted: bool = True,
        now: float | None = None, verdict: str | None = None,
    ) -> None:
        """The photo carries a current verdict. ``counted``: we wrote it (not just found it).

        ``verdict``: the verdict as JSON, kept to restore deleted metadata.
        """
        now = time.time() if now is None else now
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO photos (path, size_bytes, mtime_ns, fingerprint, score, label, model,
                       policy, status, error, attempts, scored_count, next_attempt_at, first_seen,
                       updated, verdict)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'scored', NULL, 0, ?, NULL, ?, ?, ?)
                   ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes,
                       mtime_ns = excluded.mtime_ns, fingerprint = excluded.fingerprint,
                       score = excluded.score, label = excluded.label, model = excluded.model,
                       policy = excluded.policy, status = 'scored', error = NULL, attempts = 0,
                       next_attempt_at = NULL,
                       scored_count = scored_count + excluded.scored_count,
                       updated = excluded.updated, verdict = excluded.verdict""",
                (_key(path), stat.size_bytes, stat.mtime_ns, fingerprint, score, label, model,
                 policy, int(counted), now, now, verdict),
            )

    def record_failure(
        self, path: Path, stat: FileStat, error: str, *, retry_in_seconds: float | None,
        now: float | None = None,
    ) -> int:
        """Record a failure; returns the attempts so far. ``retry_in_seconds=None``: permanent."""
        now = time.time() if now is None else now
        retry_at = None if retry_in_seconds is None else now + retry_in_seconds
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO photos (path, size_bytes, mtime_ns, status, error, attempts,
                       next_attempt_at, first_seen, updated)
                   VALUES (?, ?, ?, 'failed', ?, 1, ?, ?, ?)
                   ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes,
                       mtime_ns = excluded.mtime_ns, status = 'failed', error = excluded.error,
                       attempts = attempts + 1, next_attempt_at = excluded.next_attempt_at,
                       updated = excluded.updated""",
                (_key(path), stat.size_bytes, stat.mtime_ns, error, retry_at, now, now),
            )
            row = conn.execute("SELECT attempts FROM photos WHERE path = ?",
                               (_key(path),)).fetchone()
        return int(row[0])

    def touch(self, path: Path, stat: FileStat, now: float | None = None) -> None:
        """The file changed but its pixels did not (a metadata edit): remember the new stat."""
        with self.transaction() as conn:
            conn.execute("UPDATE photos SET size_bytes = ?, mtime_ns = ?, updated = ? "
                         "WHERE path = ?",
                         (stat.size_bytes, stat.mtime_ns, time.time() if now is None else now,
                          _key(path)))

    def move(self, old: Path, new: Path, now: float | None = None) -> None:
        """The photo at ``old`` now lives at ``new``; its row (and verdict) follows it."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM photos WHERE path = ?", (_key(new),))
            conn.execute(
                "UPDATE photos SET path = ?, status = CASE status WHEN 'gone' THEN 'scored' "
                "ELSE status END, updated = ? WHERE path = ?",  # only scored rows become gone
                (_key(new), time.time() if now is None else now, _key(old)))

    def record_skipped(self, path: Path, stat: FileStat, reason: str,
                       now: float | None = None) -> None:
        """Not scored on purpose (``reason``), and not retried: the next scan decides again."""
        now = time.time() if now is None else now
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO photos (path, size_bytes, mtime_ns, status, error, attempts,
                       next_attempt_at, first_seen, updated)
                   VALUES (?, ?, ?, 'skipped', ?, 0, NULL, ?, ?)
                   ON CONFLICT (path) DO UPDATE SET size_bytes = excluded.size_bytes,
                       mtime_ns = excluded.mtime_ns, status = 'skipped', error = excluded.error,
                       attempts = 0, next_attempt_at = NULL, updated = excluded.updated""",
                (_key(path), stat.size_bytes, stat.mtime_ns, reason, now, now),
            )

    def forget_skipped(self, below: Path, before: float) -> int:
        """Drop skip rows below ``below`` not renewed since ``before`` (a scan's start)."""
        prefix = os.path.join(os.fsencode(below), b"")
        with self.transaction() as conn:
            cursor = conn.execute(
                "DELETE FROM photos WHERE status = 'skipped' AND updated < ? "
                "AND (path = ? OR substr(path, 1, ?) = ?)",
                (before, _key(below), len(prefix), prefix))
            return cursor.rowcount

    def prune_gone(self, older_than_seconds: float = GONE_RETENTION_SECONDS,
                   now: float | None = None) -> int:
        """Delete rows of photos gone for longer than ``older_than_seconds``; returns how many."""
        cutoff = (time.time() if now is None else now) - older_than_seconds
        with self.transaction() as conn:
            cursor = conn.execute("DELETE FROM photos WHERE status = 'gone' AND updated < ?",
                                  (cutoff,))
            return cursor.rowcount

    def put_frame(self, path: Path, captured_at: float, embedding: bytes,
                  signature: bytes | None, now: float | None = None) -> None:
        """Keep what grouping needs of a scored photo (``bursts.Frame``)."""
        with self.transaction() as conn:
            conn.execute(
                """INSERT INTO burst_frames VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT (path) DO UPDATE SET folder = excluded.folder,
                       captured_at = excluded.captured_at, embedding = excluded.embedding,
                       signature = excluded.signature, updated = excluded.updated""",
                (_key(path), _key(path.parent), captured_at, embedding, signature,
                 time.time() if now is None else now))

    def frames_between(self, folder: Path, start: float, end: float
                       ) -> list[tuple[Path, float, bytes, bytes | None]]:
        """(path, captured_at, embedding, signature) of the folder's frames taken in
        [start, end], in time order."""
        rows = self._query(
            "SELECT path, captured_at, embedding, signature FROM burst_frames "
            "WHERE folder = ? AND captured_at BETWEEN ? AND ? ORDER BY captured_at",
            (_key(folder), start, end))
        return [(Path(os.fsdecode(r["path"])), r["captured_at"], r["embedding"], r["signature"])
                for r in rows]

    def mark_gone(self, path: Path, now: float | None = None) -> None:
        """The file disappeared: keep a scored row (a move may bring it back), drop the rest."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM photos WHERE path = ? AND status IN ('failed', 'skipped')",
                         (_key(path),))
            conn.execute("UPDATE photos SET status = 'gone', updated = ? "
                         "WHERE path = ? AND status = 'scored'",
                         (time.time() if now is None else now, _key(path)))
