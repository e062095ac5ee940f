"""Measurements of the real commands, run as subprocesses: ``iqs-daemon score`` and
``iqs-daemon start``.

CPU time comes from ``wait4`` (the command and every child it reaped, so the exiv2 process
too); memory from ``/proc``: the command's peak resident set (``VmHWM``; ``wait4``'s
``ru_maxrss`` would start from this benchmark's own, inherited at fork) and that of its
whole process tree (exiv2 runs in a separate Python process), sampled every 50 ms.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

XMP_NAMESPACE = b"iqs-daemon.org/ns/1.0/"


# --- /proc ---------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            for task in os.listdir(f"/proc/{parent}/task"):
                with open(f"/proc/{parent}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
        found.append(parent)
    return found


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident set (``VmHWM``: its peak) of one process; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            match = re.search(rf"^{field}:\s+(\d+) kB", fh.read(), re.MULTILINE)
    except OSError:
        return 0
    return int(match.group(1)) * 1024 if match else 0


def tree_rss_bytes(pid: int) -> int:
    return sum(rss_bytes(p) for p in _descendants(pid))


class RssSampler:
    """Peak resident set of a process and of its process tree, sampled in a thread."""

    def __init__(self, pid: int, interval_seconds: float = 0.05):
        self.pid, self.interval_seconds = pid, interval_seconds
        self.peak_main = self.peak_tree = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_seconds):
            self.peak_main = max(self.peak_main, rss_bytes(self.pid, "VmHWM"))
            self.peak_tree = max(self.peak_tree, tree_rss_bytes(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def isolated_env(home: Path) -> dict[str, str]:
    """Environment for a command that must not see the user's config or state."""
    env = dict(os.environ)
    for name, sub in (("IQS_CONFIG_DIR", "config"), ("IQS_STATE_DIR", "state"),
                      ("IQS_RUNTIME_DIR", "state")):
        env[name] = str(home / sub)
    (home / "config").mkdir(parents=True, exist_ok=True)
    env.pop("NOTIFY_SOCKET", None)
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "iqs_daemon", *args]


# --- iqs-daemon score ----------------------------------------------------------------------


@dataclass(frozen=True)
class ScoreRun:
    photos: int
    wall_seconds: float
    cpu_seconds: float
    cores: int
    peak_rss_main: int
    peak_rss_tree: int
    reported_per_second: float  # the command's own "Throughput:" line (from model load on)

    @property
    def per_second(self) -> float:
        return self.photos / self.wall_seconds

    @property
    def cpu_utilisation(self) -> float:
        return self.cpu_seconds / self.wall_seconds / self.cores


def run_score(folder: Path, photos: int, home: Path, sets: list[str], cores: int) -> ScoreRun:
    """``iqs-daemon score FOLDER`` end to end; fails loudly unless every photo was scored."""
    args = command("score", *(a for s in sets for a in ("--set", s)), str(folder))
    env = isolated_env(home)
    log = home / "score.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = RssSampler(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"iqs-daemon score failed ({proc.returncode}):\n{text[-3000:]}")
    match = re.search(r"Throughput: ([\d.]+) photos/s \((\d+) scored", text)
    if not match or int(match.group(2)) != photos:
        raise SystemExit(f"iqs-daemon score did not score {photos} photos:\n{text[-3000:]}")
    return ScoreRun(photos, wall, usage.ru_utime + usage.ru_stime, cores,
                    sampler.peak_main, sampler.peak_tree,
                    float(match.group(1)))


# --- iqs-daemon start ----------------------------------------------------------------------


@dataclass(frozen=True)
class DaemonRun:
    latencies_seconds: list[float]
    rss_loaded: int  # started, model loaded, nothing scored yet
    rss_warm: int  # idle after the latency photos and a first bulk (``warmup_photos``)
    rss_after: int  # idle after ``bulk_photos`` more
    rss_peak: int  # the daemon's high-water mark over the whole run
    tree_rss_after: int
    warmup_photos: int
    bulk_photos: int
    bulk_per_second: float

    @property
    def median_seconds(self) -> float:
        return statistics.median(self.latencies_seconds)

    @property
    def p95_seconds(self) -> float:
        ordered = sorted(self.latencies_seconds)
        return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]

    @property
    def growth(self) -> float:
        return self.rss_after / self.rss_warm - 1


class Daemon:
    """``iqs-daemon start ROOT`` in the background, with an isolated state directory."""

    def __init__(self, root: Path, home: Path, sets: list[str]):
        self.root, self.home = root, home
        root.mkdir(parents=True, exist_ok=True)
        self.env = isolated_env(home)
        self.status_file = home / "state" / "status.json"
        self.log = (home / "daemon.log").open("wb")
        args = command("start", "--no-backlog", *(a for s in sets for a in ("--set", s)),
                       str(root))
        self.proc = subprocess.Popen(args, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_seconds: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_seconds
        while self.status() is None:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{self.log_text()[-3000:]}")
            time.sleep(0.05)

    def status(self) -> dict | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None

    def scored(self) -> int:
        status = self.status() or {}
        return int(status.get("session", {}).get("scored", 0))

    def log_text(self) -> str:
        self.log.flush()
        return (self.home / "daemon.log").read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def copy_and_wait(source: Path, target: Path, timeout_seconds: float = 60.0) -> float:
    """Copy ``source`` to ``target`` (watched); seconds from the copy being complete (closed)
    to the photo's XMP being readable in ``target``."""
    shutil.copyfile(source, target)
    complete = time.perf_counter()
    inode = os.stat(target).st_ino
    deadline = complete + timeout_seconds
    while time.perf_counter() < deadline:
        # Writes replace the file by a rename, so a new inode means a new version.
        if os.stat(target).st_ino != inode:
            with target.open("rb") as fh:
                if XMP_NAMESPACE in fh.read(1 << 20):
                    return time.perf_counter() - complete
            inode = os.stat(target).st_ino
        time.sleep(0.005)
    raise SystemExit(f"no XMP in {target} after {timeout_seconds:.0f} s")


def measure_daemon(sources: list[Path], home: Path, sets: list[str], *, latency_photos: int,
                   bulk_photos: int, idle_seconds: float = 1.0) -> DaemonRun:
    """Latency one photo at a time into an idle daemon, then memory over ``bulk_photos``.

    The memory baseline is taken after a first bulk of photos too: one photo at a time
    leaves less memory in use than photos decoded, scored and written side by side, and
    that first step is not the growth (leak) this looks for.
    """
    root = home / "watched"
    daemon = Daemon(root, home, sets)
    try:
        daemon.wait_ready()
        time.sleep(idle_seconds)
        rss_loaded = rss_bytes(daemon.proc.pid)
        (root / "latency").mkdir()
        latencies = []
        for i in range(latency_photos):
            source = sources[i % len(sources)]
            latencies.append(copy_and_wait(source, root / "latency" / f"{i:04d}_{source.name}"))
            time.sleep(idle_seconds)  # idle again: the write, the state row, the ORT threads
        warmup = max(10, min(100, bulk_photos // 10))
        feed_bulk(daemon, sources, warmup, start=daemon.scored(), prefix="warmup")
        time.sleep(idle_seconds)
        rss_warm = rss_bytes(daemon.proc.pid)
        per_second = feed_bulk(daemon, sources, bulk_photos, start=daemon.scored())
        time.sleep(idle_seconds)
        pid = daemon.proc.pid
        return DaemonRun(latencies, rss_loaded, rss_warm, rss_bytes(pid), rss_bytes(pid, "VmHWM"),
                         tree_rss_bytes(pid), warmup, bulk_photos, per_second)
    finally:
        daemon.stop()


def feed_bulk(daemon: Daemon, sources: list[Path], photos: int, *, start: int,
              chunk: int = 100, prefix: str = "bulk") -> float:
    """Hard-link ``photos`` photos into the watched tree, ``chunk`` at a time, waiting for
    each chunk to be scored (links are free, and the daemon replaces, never edits, a file).
    Returns photos/s."""
    started, fed = time.perf_counter(), 0
    while fed < photos:
        folder = daemon.root / f"{prefix}{fed // chunk:03d}"
        folder.mkdir()
        for i in range(fed, min(photos, fed + chunk)):
            source = sources[i % len(sources)]
            os.link(source, folder / f"{i:05d}_{source.name}")
        fed = min(photos, fed + chunk)
        deadline = time.monotonic() + 60 + 10 * chunk
        while daemon.scored() < start + fed:
            if daemon.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon stalled at {daemon.scored() - start}/{fed}:\n"
                                 f"{daemon.log_text()[-3000:]}")
            time.sleep(0.2)
    return photos / (time.perf_counter() - started)
