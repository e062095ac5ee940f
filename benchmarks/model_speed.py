"""Model-only speed of one or more ONNX files, measured in one run so they compare fairly.

    python benchmarks/model_speed.py models/iqs-quality.onnx OTHER.onnx [--rounds 5]

Each file runs on random 512 + 256 px views at batch 1 and batch 8, with ONNX Runtime's
CPU arena off (the product's setting, see iqs_daemon/model.py, with no memory pattern)
and on (with ONNX Runtime's default memory pattern). Rounds go through
every configuration in turn, so a machine that slows down mid-run slows all of them;
the median per configuration is printed, in ms per photo.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(path: Path, arena: bool) -> ort.InferenceSession:
    options = ort.SessionOptions()  # as QualityModel sets it up, but for the arena switch
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = arena
    options.enable_mem_pattern = arena  # the product plans no memory pattern without the arena
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", type=Path, nargs="+")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    feeds = {n: {"image": rng.integers(0, 256, (n, 512, 512, 3), np.uint8),
                 "detail": rng.integers(0, 256, (n, 256, 256, 3), np.uint8)} for n in (1, 8)}
    sessions = {(path, arena): session(path, arena)
                for path in args.models for arena in (False, True)}
    for s in sessions.values():  # warm-up
        for feed in feeds.values():
            s.run(None, feed)
    times: dict[tuple, list[float]] = defaultdict(list)
    for _ in range(args.rounds):
        for key, s in sessions.items():
            for n, feed in feeds.items():
                repeats = 8 // n
                started = time.perf_counter()
                for _ in range(repeats):
                    s.run(None, feed)
                times[(*key, n)].append((time.perf_counter() - started) / (repeats * n) * 1000)
    for (path, arena, n), values in times.items():
        print(f"{path.name:28s} arena {'on ' if arena else 'off'}  batch {n}: "
              f"{np.median(values):6.1f} ms/photo")


if __name__ == "__main__":
    main()
