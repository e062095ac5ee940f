"""A policy change re-labels already-scored photos from their stored scores: how much
faster than re-scoring them?

    python benchmarks/redecide.py [--photos 1000] [--size 3000x2000] [--folder DIR]

Makes ``--photos`` camera-like JPEGs from the sample photos (``bench_inputs``: flipped,
cropped, upscaled, with grain; 6 MP by default to keep 1,000 of them on disk), scores
them once, then, in one run and with one loaded model:

1. re-scores them all (``score --rescore``: decode, inference, write);
2. changes the policy (``verdict.reject_below`` and ``verdict.accept_from`` up by
   ``--shift``) and runs ``score`` again, which re-decides every photo from its stored
   score, diagnostics and exposure facts and writes only where the label, stars or
   reasons changed.

It prints both times, the ratio, and how many photos the policy change re-labelled.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_inputs import _encode_jpeg, synthetic_photo

from iqs_daemon.config import Settings
from iqs_daemon.discovery import iter_candidates
from iqs_daemon.pipeline import Scorer

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"


def make_photos(folder: Path, count: int, size: tuple[int, int]) -> None:
    sources = sorted((SAMPLES / "photos").glob("*.jpg"))
    for index in range(count):
        target = folder / f"IMG_{index:04d}.jpg"
        if not target.exists():
            target.write_bytes(
                _encode_jpeg(synthetic_photo(sources[index % len(sources)], index, size))
            )


def run(settings: Settings, folder: Path, **flags: bool) -> tuple[float, Counter[str], int]:
    candidates = list(iter_candidates([folder]))
    with Scorer(settings, **flags) as scorer:
        started = time.perf_counter()
        statuses: Counter[str] = Counter()
        written = 0
        for outcome in scorer.process(candidates):
            statuses[outcome.status] += 1
            written += bool(outcome.write and outcome.write.written)
        return time.perf_counter() - started, statuses, written


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--size", default="3000x2000", help="WIDTHxHEIGHT of the made photos")
    parser.add_argument(
        "--shift", type=float, default=5.0, help="policy change: cut-offs up by this"
    )
    parser.add_argument(
        "--folder", type=Path, help="where to make the photos (default: a temp dir)"
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="iqs-redecide-") as tmp:
        folder = args.folder or Path(tmp)
        make_photos(folder, args.photos, (width, height))
        base = Settings()
        first, _, _ = run(base, folder)
        print(f"{args.photos} photos of {width}x{height}: first scoring {first:.1f} s")
        rescore, statuses, written = run(base, folder, rescore=True)
        print(
            f"re-score (--rescore):  {rescore:6.1f} s, {args.photos / rescore:6.1f} photos/s "
            f"({dict(statuses)}, {written} written)"
        )
        with Scorer(base, dry_run=True) as probe:
            policy = probe.policy
        changed = dataclasses.replace(
            base,
            reject_below=policy.reject_below + args.shift,
            accept_from=policy.accept_from + args.shift,
        )
        relabel, statuses, written = run(changed, folder)
        print(
            f"policy change (+{args.shift:g}): {relabel:6.1f} s, "
            f"{args.photos / relabel:6.1f} photos/s "
            f"({dict(statuses)}, {written} written)"
        )
        print(f"re-labelling is {rescore / relabel:.1f}x faster than re-scoring")


if __name__ == "__main__":
    main()
