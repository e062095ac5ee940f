"""Faults and security: a full disk, a locked or damaged state, a bad model, a crashing
exiv2, unreadable files; no network, private files, no shell. Real processes throughout.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import re
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from daemonkit import (
    REPO,
    all_scored,
    cli,
    daemon_env,
    digest,
    idle,
    jpeg,
    running,
    settings_for,
    wait_for,
)
from exiv2_faults import crash_exiv2_on

from iqs_daemon.errors import StateError
from iqs_daemon.state import StateDB


def write_config(tmp_path: Path, model: Path, extra: str = "") -> None:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "config.toml").write_text(
        f'[model]\nmodel_path = "{model}"\njobs = 1\n{extra}', encoding="utf-8")


def start_process(root: Path, env: dict[str, str], log: Path, **kw) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "iqs_daemon", "start", str(root)], env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("ab"), **kw)


def stop_process(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise


# --- disk full ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and a kernel that lets this container mount)."""
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs",
                             str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_writing_leaves_the_original_whole(small_disk, tiny_model, env_paths):
    photo = small_disk / "big.jpg"
    photo.write_bytes(jpeg(180, (1200, 900), seed=9))  # ~1/3 of the disk
    filler = small_disk / "filler.bin"
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    filler.write_bytes(b"\0" * (free - photo.stat().st_size // 2))  # no room for a copy
    before = digest(photo)
    with running(settings_for(env_paths, tiny_model), env_paths, [small_disk],
                 retry_base_seconds=1.0) as daemon:
        wait_for(lambda: daemon.db.get(photo) is not None)
        row = daemon.db.get(photo)
        assert row.status == "failed" and "No space left on device" in row.error, row
        assert row.next_attempt_at is not None  # retried: space may come back
        assert digest(photo) == before
        assert sorted(p.name for p in small_disk.iterdir()) == ["big.jpg", "filler.bin"]
        filler.unlink()  # space freed: the retry writes the verdict
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon), timeout=60)
    assert digest(photo) != before


# --- the state database ---------------------------------------------------------------------


def test_a_locked_state_database_is_one_clear_line(tmp_path, tiny_model):
    write_config(tmp_path, tiny_model)
    root = tmp_path / "photos"
    root.mkdir()
    database = tmp_path / "state" / "state.sqlite3"
    StateDB(database).close()
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = cli(["start", str(root)], daemon_env(tmp_path))
    finally:
        holder.close()
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "database is locked" in lines[0] and "second iqs-daemon" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_damaged_state_database_is_rebuilt_from_the_xmp(tmp_path, tiny_model):
    write_config(tmp_path, tiny_model)
    root = tmp_path / "photos"
    root.mkdir()
    photos = [root / f"{i}.jpg" for i in range(6)]
    for i, p in enumerate(photos):
        p.write_bytes(jpeg(40 * i, seed=i))
    env, log = daemon_env(tmp_path), tmp_path / "daemon.log"
    database = tmp_path / "state" / "state.sqlite3"

    def labels() -> dict[Path, str]:
        try:
            with StateDB(database) as db:
                return {p: db.get(p).label for p in photos if db.get(p)}
        except StateError:  # damaged, until the daemon moves it aside
            return {}

    first = start_process(root, env, log)
    try:
        wait_for(lambda: len(labels()) == len(photos), timeout=90)
    finally:
        assert stop_process(first) == 0
    scored, written = labels(), {p: digest(p) for p in photos}
    with database.open("r+b") as fh:  # garbage over the header and the first pages
        fh.write(os.urandom(8192))
    second = start_process(root, env, log)
    try:
        wait_for(lambda: ("damaged" in log.read_text() and len(labels()) == len(photos))
                 or second.poll() is not None, timeout=90)
        assert second.poll() is None, log.read_text()
    finally:
        assert stop_process(second) == 0
    assert labels() == scored
    assert {p: digest(p) for p in photos} == written  # adopted from the XMP, not re-written
    assert len(list(database.parent.glob("state.sqlite3.damaged-*"))) == 1
    with StateDB(database) as db:
        assert all(db.get(p).scored_count == 0 for p in photos)  # found, not written
    assert re.search(r"state database .* is damaged; moved it to .*damaged-", log.read_text())


# --- the model --------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["missing", "corrupt", "corrupt-with-digest"])
def test_a_bad_model_refuses_to_start_with_one_line(tmp_path, tiny_model, damage):
    model = tmp_path / "models" / "iqs.onnx"
    model.parent.mkdir()
    good = hashlib.sha256(tiny_model.read_bytes()).hexdigest()
    if damage != "corrupt":
        Path(f"{model}.sha256").write_text(f"{good}  iqs.onnx\n")
    if damage.startswith("corrupt"):
        model.write_bytes(tiny_model.read_bytes()[:-100] + b"\0" * 100)
    write_config(tmp_path, model)
    root = tmp_path / "photos"
    root.mkdir()
    result = cli(["start", str(root)], daemon_env(tmp_path))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(model) in lines[0]
    if damage == "corrupt":
        assert "expected sha256: none published" in lines[0]
    else:
        assert f"expected {good}" in lines[0] or f"expected sha256 {good}" in lines[0]


def test_the_model_digest_is_checked_when_the_daemon_loads_it(tmp_path, tiny_model):
    model = tmp_path / "iqs.onnx"
    model.write_bytes(tiny_model.read_bytes())
    Path(f"{model}.sha256").write_text(hashlib.sha256(b"another model").hexdigest())
    write_config(tmp_path, model)
    (tmp_path / "photos").mkdir()
    result = cli(["start", str(tmp_path / "photos")], daemon_env(tmp_path))
    assert result.returncode == 1 and "is damaged: sha256" in result.stderr


# --- exiv2 crashing -------------------------------------------------------------------------


def test_an_exiv2_crash_costs_one_file(tmp_path, tiny_model, env_paths, monkeypatch):
    crash_exiv2_on(monkeypatch, "crashme")  # the exiv2 process aborts on it
    root = tmp_path / "photos"
    root.mkdir()
    crash = root / "crashme.jpg"
    crash.write_bytes(jpeg(100))
    fine = [root / f"fine{i}.jpg" for i in range(4)]
    for i, p in enumerate(fine):
        p.write_bytes(jpeg(30 * i, seed=i))
    before = digest(crash)
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, fine) and daemon.db.get(crash) is not None
                 and idle(daemon))
        row = daemon.db.get(crash)
        assert row.status == "failed" and "exiv2 crashed" in row.error
        assert row.next_attempt_at is None  # not retried until the file changes
        late = root / "after-the-crash.jpg"
        late.write_bytes(jpeg(200))
        wait_for(lambda: all_scored(daemon, [late]))  # a fresh exiv2 process took over
    assert digest(crash) == before
    assert not [p for p in root.iterdir() if p.name.endswith(".iqs-tmp")]


# --- permission denied, as a user that permissions apply to ----------------------------------

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, PR_CAPBSET_DROP = 1, 2, 24


def _drop_file_capabilities() -> None:
    """In the child: root keeps its uid but loses the capabilities that bypass file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def test_unreadable_files_and_folders_are_reported(tmp_path, tiny_model):
    if os.geteuid() != 0:
        pytest.skip("written for root: drops CAP_DAC_OVERRIDE so file modes apply")
    write_config(tmp_path, tiny_model)
    root = tmp_path / "photos"
    (root / "private").mkdir(parents=True)
    locked, hidden, fine = root / "locked.jpg", root / "private" / "h.jpg", root / "ok.jpg"
    for p in (locked, hidden, fine):
        p.write_bytes(jpeg(120))
    locked.chmod(0o000)
    (root / "private").chmod(0o000)
    env, log = daemon_env(tmp_path), tmp_path / "daemon.log"
    database = tmp_path / "state" / "state.sqlite3"
    probe = subprocess.run([sys.executable, "-c", f"open({str(locked)!r}, 'rb')"],
                           preexec_fn=_drop_file_capabilities, capture_output=True, text=True)
    if "PermissionError" not in probe.stderr:
        pytest.skip(f"dropping capabilities does not make file modes apply here: {probe.stderr}")
    process = start_process(root, env, log, preexec_fn=_drop_file_capabilities)
    try:
        def recorded() -> bool:
            with StateDB(database) as db:
                return all(db.get(p) for p in (locked, fine, root / "private"))

        wait_for(lambda: (database.exists() and recorded()) or process.poll() is not None,
                 timeout=90)
        assert process.poll() is None, log.read_text()
    finally:
        assert stop_process(process) == 0
        (root / "private").chmod(0o755)
    with StateDB(database) as db:
        row, folder = db.get(locked), db.get(root / "private")
        assert db.get(fine).status == "scored"
    assert row.status == "failed" and row.error == "permission denied"
    assert row.next_attempt_at is not None  # the user may fix the mode: retried
    assert folder.status == "skipped" and folder.error == "permission denied"


# --- security -----------------------------------------------------------------------------------


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *_children(child)]
    return found


def _inet_inodes() -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6", "udplite", "udplite6"):
        path = Path("/proc/net") / table
        if path.exists():
            for line in path.read_text().splitlines()[1:]:
                inodes.add(line.split()[9])
    return inodes


def test_no_network_listener_and_private_state_files(tmp_path, tiny_model):
    write_config(tmp_path, tiny_model)
    root = tmp_path / "photos"
    root.mkdir()
    photo = root / "a.jpg"
    photo.write_bytes(jpeg(100))
    env, log = daemon_env(tmp_path), tmp_path / "daemon.log"
    process = start_process(root, env, log)
    try:
        wait_for(lambda: "scored " in log.read_text() or process.poll() is not None, timeout=90)
        assert process.poll() is None, log.read_text()
        wait_for(lambda: list((tmp_path / "run").glob("status-*.json")), timeout=30)
        pids = [process.pid, *_children(process.pid)]
        assert len(pids) >= 2  # the daemon and its exiv2 process
        sockets = set().union(*(_socket_inodes(pid) for pid in pids))
        assert not sockets & _inet_inodes(), "an inet socket is open"
        state, run = tmp_path / "state", tmp_path / "run"
        private = [state / "state.sqlite3", state / "state.sqlite3-wal", state / "daemon.lock",
                   *run.glob("status-*.json")]
        modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private}
        assert set(modes.values()) == {"0o600"}, modes
        assert {oct(stat.S_IMODE(d.stat().st_mode)) for d in (state, run)} == {"0o700"}
        status = json.loads(cli(["status", "--json"], env).stdout)
        assert set(status) >= {"running", "pid", "uptime_seconds", "phase", "roots", "backends",
                               "model", "queue_depth", "settling", "in_flight",
                               "photos_per_second", "session", "totals", "last_errors",
                               "state_dir", "database", "status_age_seconds"}
    finally:
        assert stop_process(process) == 0


def test_nothing_reaches_a_shell():
    """No shell anywhere in the package: filenames and metadata are only ever arguments."""
    offenders = []
    for source in (REPO / "iqs_daemon").rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        for pattern in (r"shell\s*=\s*True", r"os\.system\(", r"os\.popen\(", r"\bpty\.spawn\("):
            offenders += [f"{source.name}: {pattern}" for _ in re.finditer(pattern, text)]
    assert offenders == []
