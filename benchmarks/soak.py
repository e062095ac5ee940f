"""Soak test: a real ``iqs-daemon start`` fed thousands of small photos in bursts, with faults.

Not part of pytest (it takes minutes). It drops ``--photos`` generated JPEGs into a watched
folder in bursts and injects, at random: unreadable files (zero bytes, truncated, random
bytes), slow copies (two writes with a pause), temporary names renamed into place, moves
and deletions of photos already scored, files that crash exiv2 (its process aborts), and
``kill -9`` of the daemon followed by a restart. At the end it checks and prints:

- every readable photo carries one verdict, written once (never twice);
- every unreadable photo has a row with its reason;
- no photo is damaged (each readable photo's pixels hash as they did when written, each
  unreadable one is byte-identical);
- the daemon's RSS after its start and at the end, per daemon process.

    python benchmarks/soak.py                      # 20,000 photos, the shipped model
    python benchmarks/soak.py --photos 2000 --tiny # the tiny test model (tests/modelfactory.py)

Exit code 0 when nothing was lost, doubled or damaged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from iqs_daemon.config import Settings  # noqa: E402
from iqs_daemon.metadata import MetadataWriter  # noqa: E402
from iqs_daemon.state import StateDB  # noqa: E402

CRASH_MARK = "crashme"


def pixel_hash(data: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return "" if image is None else hashlib.sha256(image.tobytes()).hexdigest()


def make_photo(rng: random.Random) -> bytes:
    level = rng.randrange(256)
    noise = np.random.default_rng(rng.randrange(1 << 30)).integers(-10, 11, (48, 64, 3))
    ok, data = cv2.imencode(".jpg", np.clip(level + noise, 0, 255).astype(np.uint8))
    assert ok
    return data.tobytes()


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path, model: Path):
        self.args = args
        self.rng = random.Random(args.seed)
        self.root = work / "photos"
        self.root.mkdir(parents=True)
        self.work = work
        self.log = work / "daemon.log"
        self.database = work / "state" / "state.sqlite3"
        config = work / "config"
        config.mkdir()
        (config / "config.toml").write_text(
            f'[model]\nmodel_path = "{model}"\n[daemon]\nsettle_seconds = 0.3\n',
            encoding="utf-8")
        self.env = {**os.environ, "IQS_CONFIG_DIR": str(config),
                    "IQS_STATE_DIR": str(work / "state"), "IQS_RUNTIME_DIR": str(work / "run"),
                    # tests/exiv2_fault makes the exiv2 process abort on CRASH_MARK
                    "IQS_TEST_EXIV2_ABORT_ON": CRASH_MARK,
                    "PYTHONPATH": os.pathsep.join((str(REPO / "tests" / "exiv2_fault"),
                                                   str(REPO)))}
        self.readable: dict[Path, str] = {}  # path -> pixel hash
        self.unreadable: dict[Path, str] = {}  # path -> sha256 of the bytes
        self.crashers: dict[Path, str] = {}  # readable, but exiv2 dies on them
        self.process: subprocess.Popen[bytes] | None = None
        self.rss: list[tuple[int, int, int]] = []  # pid, RSS after start, RSS at the end
        self.kills = 0
        self.faults: Counter[str] = Counter()

    # -- the daemon ------------------------------------------------------------------------
    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "iqs_daemon", "start", str(self.root)], env=self.env,
            stdout=subprocess.DEVNULL, stderr=self.log.open("ab"))
        deadline = time.monotonic() + 120
        while "watching " not in self.log.read_text(errors="replace").split("\n--run--\n")[-1]:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.2)
        self.rss.append((self.process.pid, rss_kib(self.process.pid), 0))

    def end_rss(self) -> None:
        assert self.process is not None
        pid, start, _ = self.rss[-1]
        self.rss[-1] = (pid, start, rss_kib(pid))

    def kill(self) -> None:
        assert self.process is not None
        self.end_rss()
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.kills += 1
        with self.log.open("a") as fh:
            fh.write("\n--run--\n")
        self.start()

    def stop(self) -> int:
        assert self.process is not None
        self.end_rss()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)

    # -- photos and faults -------------------------------------------------------------------
    def drop(self, index: int) -> None:
        folder = self.root / f"d{index // 1000:03d}"
        folder.mkdir(exist_ok=True)
        path = folder / f"IMG_{index:05d}.jpg"
        data = make_photo(self.rng)
        roll = self.rng.random()
        if roll < 0.01:
            kind = self.rng.choice(["zero", "truncated", "random"])
            bad = {"zero": b"", "truncated": data[: len(data) // 3],
                   "random": self.rng.randbytes(len(data))}[kind]
            path.write_bytes(bad)
            self.unreadable[path] = hashlib.sha256(bad).hexdigest()
            self.faults[f"unreadable:{kind}"] += 1
            return
        if roll < 0.015:
            path = path.with_name(f"{CRASH_MARK}-{path.name}")
            path.write_bytes(data)
            self.crashers[path] = hashlib.sha256(data).hexdigest()
            self.faults["exiv2 crash"] += 1
            return
        if roll < 0.04:
            tmp = path.with_name(f".{path.name}.part")
            tmp.write_bytes(data)
            os.rename(tmp, path)
            self.faults["renamed into place"] += 1
        elif roll < 0.06:
            with path.open("wb") as fh:
                fh.write(data[: len(data) // 2])
                fh.flush()
                time.sleep(0.05)
                fh.write(data[len(data) // 2:])
            self.faults["slow copy"] += 1
        else:
            path.write_bytes(data)
        self.readable[path] = pixel_hash(data)

    def shuffle_some(self) -> None:
        """Move or delete a few photos that may already be scored."""
        if len(self.readable) < 50:
            return
        for path in self.rng.sample(sorted(self.readable), 5):
            if self.rng.random() < 0.3:
                path.unlink()
                del self.readable[path]
                self.faults["deleted"] += 1
            else:
                target = self.root / "moved" / path.name
                target.parent.mkdir(exist_ok=True)
                os.rename(path, target)
                self.readable[target] = self.readable.pop(path)
                self.faults["moved"] += 1

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        self.start()
        bursts = range(0, self.args.photos, self.args.burst)
        kill_at = {len(bursts) // 3, 2 * len(bursts) // 3} if self.args.kill else set()
        for n, first in enumerate(bursts):
            for index in range(first, min(first + self.args.burst, self.args.photos)):
                self.drop(index)
            self.shuffle_some()
            if n in kill_at:
                time.sleep(self.rng.uniform(0.5, 3.0))
                self.kill()
            time.sleep(self.args.pause)
        self.wait_until_done()

    def rows(self) -> dict[Path, object]:
        with StateDB(self.database) as db:
            return {path: db.get(path) for path, _ in db.iter_paths()}

    def wait_until_done(self) -> None:
        deadline = time.monotonic() + self.args.timeout
        expected = {*self.readable, *self.unreadable, *self.crashers}
        while time.monotonic() < deadline:
            rows = self.rows()
            settled = [p for p in expected if p in rows and (
                rows[p].status == "scored" if p in self.readable else rows[p].error)]
            print(f"\r{len(settled)}/{len(expected)} settled", end="", flush=True)
            if len(settled) == len(expected):
                print()
                return
            time.sleep(2)
        print("\ntimed out waiting for the daemon")

    def report(self, seconds: float) -> bool:
        rows = self.rows()
        text = self.log.read_text(errors="replace")
        scored_lines = Counter(re.findall(r"^scored (.+?): ", text, flags=re.M))
        with MetadataWriter(isolated=False) as reader:
            verdicts = 0
            for path in self.readable:
                try:
                    verdicts += reader.read_stored(path, Settings()).label is not None
                except Exception:
                    pass
        readable_ok = [p for p in self.readable if p in rows and rows[p].status == "scored"]
        written_twice = [p for p in self.readable if p in rows and rows[p].scored_count > 1]
        logged_twice = [p for p, n in scored_lines.items() if n > 1]
        damaged = [p for p, h in self.readable.items() if pixel_hash(p.read_bytes()) != h]
        damaged += [p for p, h in {**self.unreadable, **self.crashers}.items()
                    if hashlib.sha256(p.read_bytes()).hexdigest() != h]
        reasons = Counter(rows[p].error for p in {**self.unreadable, **self.crashers}
                          if p in rows and rows[p].error)
        unexplained = [p for p in {**self.unreadable, **self.crashers}
                       if p not in rows or not rows[p].error]
        print(f"photos dropped:           {self.args.photos} in bursts of {self.args.burst}, "
              f"{seconds:.0f} s, {self.kills} kill -9 + restart")
        print(f"faults injected:          {dict(sorted(self.faults.items()))}")
        print(f"readable photos:          {len(self.readable)}; scored {len(readable_ok)}; "
              f"verdict in the XMP {verdicts}; written twice {len(written_twice)}; "
              f"logged as scored twice {len(logged_twice)}")
        for path in sorted({*written_twice, *map(Path, logged_twice)})[:10]:
            print(f"  doubled: {path} (written {rows[path].scored_count if path in rows else '?'}"
                  f" times, logged as scored {scored_lines.get(str(path), 0)} times)")
        print(f"unreadable/unwritable:    {len(self.unreadable) + len(self.crashers)}; "
              "with a recorded reason "
              f"{len(self.unreadable) + len(self.crashers) - len(unexplained)}"
              f" {dict(reasons.most_common())}")
        print(f"damaged files:            {len(damaged)}")
        for pid, start, end in self.rss:
            print(f"daemon pid {pid}: RSS {start / 1024:.0f} MiB after start, "
                  f"{end / 1024:.0f} MiB at its end")
        return (len(readable_ok) == verdicts == len(self.readable) and not written_twice
                and not logged_twice and not damaged and not unexplained)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between bursts")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--no-kill", dest="kill", action="store_false",
                        help="do not kill -9 the daemon (twice) during the run")
    parser.add_argument("--tiny", action="store_true",
                        help="use the tiny test model even if models/iqs-quality.onnx exists")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="iqs-soak-"))
    model = REPO / "models" / "iqs-quality.onnx"
    if args.tiny or not model.is_file():
        from modelfactory import build_tiny_model

        model = build_tiny_model(work / "tiny.onnx")
        print(f"model: the tiny test model ({model}); the real one is not in models/ yet"
              if not args.tiny else f"model: the tiny test model ({model})")
    else:
        print(f"model: {model}")
    soak = Soak(args, work, model)
    started = time.monotonic()
    try:
        soak.run()
        code = soak.stop()
        ok = soak.report(time.monotonic() - started)
        print("result:", "OK: nothing lost, doubled or damaged" if ok and code == 0 else "FAILED")
        print(json.dumps({"work": str(work)}) if args.keep else "", end="")
        return 0 if ok and code == 0 else 1
    finally:
        if soak.process is not None and soak.process.poll() is None:
            soak.process.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
