"""`iqs-daemon score` of two source trees on the same photos, in turns, in one run.

    git worktree add /tmp/before <commit>          # or any export of the older tree
    python benchmarks/score_ab.py /tmp/before . --photos /tmp/bench-photos/inputs/jpeg

On a machine shared with other work, absolute times drift between two runs of
``bench.py``; here the trees take turns (``--rounds`` each), so a slower moment slows
both. Per run: photos/s over the whole command (start-up included), CPU ms per photo
(the command and its exiv2 process) and minor page faults per photo; then the median of
one-photo runs, which is the start-up (interpreter, model load, first photo), and the
steady state: the other photos over the time and CPU they added to it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def score(tree: Path, photos: list[Path], work: Path, model: Path) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, minor faults) of one ``iqs-daemon score`` run of ``tree``."""
    folder = work / "photos"
    folder.mkdir(parents=True)
    for photo in photos:
        os.link(photo, folder / photo.name)  # writes replace the file: the inputs stay intact
    env = dict(os.environ, PYTHONPATH=str(tree))
    for name in ("IQS_CONFIG_DIR", "IQS_STATE_DIR", "IQS_RUNTIME_DIR"):
        env[name] = str(work / "state")
    started = time.perf_counter()
    # cwd: ``python -m`` puts it first on sys.path, so it decides which tree is imported.
    proc = subprocess.Popen([sys.executable, "-m", "iqs_daemon", "score", "--set",
                             f"model.model_path={model}", str(folder)], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        assert proc.stderr is not None
        raise SystemExit(f"{tree}: iqs-daemon score failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, float(usage.ru_minflt)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("before", type=Path)
    p.add_argument("after", type=Path)
    p.add_argument("--photos", type=Path, required=True, help="a folder of JPEGs")
    p.add_argument("--model", type=Path,
                   default=Path(__file__).resolve().parents[1] / "models" / "iqs-quality.onnx")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    photos = sorted(args.photos.glob("*.jpg"))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    work = Path(tempfile.mkdtemp(prefix="iqs-ab-"))
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
    starts: dict[str, list[tuple[float, float, float]]] = {name: [] for name in trees}
    try:
        for i in range(args.rounds):
            for name, tree in trees.items():
                wall, cpu, faults = score(tree, photos, work / f"{name}-{i}", args.model)
                runs[name].append((wall, cpu, faults))
                n = len(photos)
                print(f"{name:6s} {n / wall:5.2f} photos/s  CPU {1e3 * cpu / n:5.0f} ms/photo  "
                      f"{faults / n:6.0f} faults/photo", flush=True)
        for i in range(args.rounds):
            for name, tree in trees.items():
                starts[name].append(score(tree, photos[:1], work / f"{name}-one-{i}", args.model))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = len(photos)
    print(f"\nmedians of {args.rounds} runs each, {n} photos, in turns:")
    for name in trees:
        wall = statistics.median(r[0] for r in runs[name])
        cpu = statistics.median(r[1] for r in runs[name])
        faults = statistics.median(r[2] for r in runs[name])
        start_wall = statistics.median(one[0] for one in starts[name])
        start_cpu = statistics.median(one[1] for one in starts[name])
        print(f"{name:6s} {n / wall:5.2f} photos/s  CPU {1e3 * cpu / n:5.0f} ms/photo  "
              f"{faults / n:6.0f} faults/photo  one-photo run (start-up) {start_wall:.2f} s")
        if n > 1:  # the other photos over the time and CPU they added to a one-photo run
            print(f"{'':6s} steady state: {(n - 1) / (wall - start_wall):5.2f} photos/s  "
                  f"CPU {1e3 * (cpu - start_cpu) / (n - 1):5.0f} ms/photo")


if __name__ == "__main__":
    main()
