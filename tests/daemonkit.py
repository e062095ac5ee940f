"""Helpers shared by the daemon tests: the daemon in a thread, waits, generated photos."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from iqs_daemon.config import Paths, Settings, load_settings
from iqs_daemon.daemon import Daemon
from iqs_daemon.metadata import MetadataWriter

REPO = Path(__file__).parents[1]
MODEL_LABEL = "iqs-tiny-test test-1"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for(condition: Callable[[], object], timeout: float = 30.0,
             interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s")
        time.sleep(interval)


def jpeg(brightness: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    """A small JPEG whose tiny-model score is about brightness / 2.55."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(brightness + rng.integers(-8, 9, (size[1], size[0], 3)), 0, 255)
    ok, data = cv2.imencode(".jpg", pixels.astype(np.uint8))
    assert ok
    return data.tobytes()


def make_env_paths(tmp_path) -> Paths:
    return Paths(config_dir=tmp_path / "config", state_dir=tmp_path / "state",
                 runtime_dir=tmp_path / "run")


def settings_for(paths: Paths, model: Path, **overrides: object) -> Settings:
    return load_settings(paths, overrides={"model_path": str(model), "settle_seconds": 0.2,
                                           **overrides})


@contextmanager
def running(settings: Settings, paths: Paths, roots: list[Path], **kw: object) -> Iterator[Daemon]:
    daemon = Daemon(settings, paths, roots, tick_seconds=0.05, **kw)  # type: ignore[arg-type]
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(daemon.run()), name="test-daemon")
    thread.start()
    try:
        wait_for(lambda: daemon.ready.is_set() or not thread.is_alive(), timeout=60)
        assert thread.is_alive(), "the daemon did not start"
        yield daemon
    finally:
        daemon.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert result == [0]


def idle(daemon: Daemon) -> bool:
    return (len(daemon.queue) == 0 and len(daemon.pending) == 0 and daemon.in_flight == 0
            and daemon._scan_requests.empty() and daemon.phase == "watching")


def rows(daemon: Daemon) -> dict[Path, object]:
    assert daemon.db is not None
    return {path: daemon.db.get(path) for path, _ in daemon.db.iter_paths()}


def all_scored(daemon: Daemon, photos: list[Path]) -> bool:
    assert daemon.db is not None
    for photo in photos:
        row = daemon.db.get(photo)
        if row is None or row.status != "scored":
            return False
    return True


def read_verdicts(photos: list[Path]) -> dict[Path, str | None]:
    with MetadataWriter(isolated=False) as writer:
        return {p: writer.read_stored(p, Settings()).model_version for p in photos}


def daemon_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("IQS_", "NOTIFY_SOCKET", "WATCHDOG_"))}
    env.update(IQS_CONFIG_DIR=str(tmp_path / "config"), IQS_STATE_DIR=str(tmp_path / "state"),
               IQS_RUNTIME_DIR=str(tmp_path / "run"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])))
    env.update(extra)
    return env


def cli(args: list[str], env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iqs_daemon", *args], env=env, text=True,
                          capture_output=True, timeout=60, **kw)  # type: ignore[call-overload]


