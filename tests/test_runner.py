"""The runner: one stage list, run sequentially or concurrently, with the same outcomes."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from iqs_daemon.config import Paths, load_settings
from iqs_daemon.daemon_bursts import HandPicks
from iqs_daemon.discovery import iter_candidates
from iqs_daemon.errors import InputError
from iqs_daemon.pipeline import Scorer, Status
from iqs_daemon.records import PickLabel
from iqs_daemon.runner import (
    Batch,
    Hold,
    Parallel,
    Serial,
    Source,
    run_concurrent,
    run_sequential,
)
from iqs_daemon.stages import Looked, Outcome, Pass, failing_alone

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos"


# --- the runner on its own ---------------------------------------------------------------


class Pairs:
    """Holds numbers until it has two, then lets both go (an odd one at the end)."""

    def __init__(self) -> None:
        self.held: list[int] = []

    def push(self, n: int) -> list[int]:
        self.held.append(n)
        if len(self.held) < 2:
            return []
        out, self.held = self.held, []
        return out

    def flush(self) -> list[int]:
        out, self.held = self.held, []
        return out


def number_stages() -> list:
    return [
        Source(lambda items: (i for i in items if i != 13)),
        Parallel(lambda n: str(n) if n % 5 == 0 else n, takes=int),  # a str skips the rest
        Batch(lambda batch: [n * 10 for n in batch], takes=int, size=3),
        Hold(Pairs(), takes=int),
        Serial(lambda n: n + 1, takes=int),
    ]


def test_sequential_and_concurrent_give_the_same_records():
    sequential = list(run_sequential(number_stages(), range(1, 20)))
    with ThreadPoolExecutor(3) as pool, ThreadPoolExecutor(1) as writer:
        concurrent = list(run_concurrent(number_stages(), range(1, 20), pool=pool,
                                         writer=writer, window=4, writes_behind=2))
    expected = {str(n) for n in (5, 10, 15)} | {n * 10 + 1 for n in range(1, 20)
                                                 if n % 5 and n != 13}
    assert sorted(map(str, sequential)) == sorted(map(str, concurrent)) == sorted(
        map(str, expected))
    # The records no stage takes pass on at once; the batched and held ones in order.
    assert [r for r in sequential if isinstance(r, int)] == sorted(
        r for r in sequential if isinstance(r, int))


def test_a_stage_list_out_of_order_is_refused():
    with pytest.raises(ValueError, match="out of order"):
        list(run_sequential([Serial(str, takes=int), Parallel(str, takes=int)], [1]))


# --- the product's stages -------------------------------------------------------------------


def copy_samples(folder: Path, count: int = 6) -> Path:
    folder.mkdir(parents=True)
    for photo in sorted(SAMPLES.glob("*.jpg"))[:count]:
        shutil.copyfile(photo, folder / photo.name)
        (folder / photo.name).chmod(0o644)
    return folder


def scorer_for(tmp_path: Path, model: Path, jobs: int, **kwargs: object) -> Scorer:
    paths = Paths(tmp_path / "config", tmp_path / "state", tmp_path / "run")
    settings = load_settings(paths, overrides={"model_path": str(model), "jobs": jobs})
    return Scorer(settings, **kwargs)  # type: ignore[arg-type]


def xmp_of(scorer: Scorer, photo: Path) -> tuple:
    s = scorer.metadata.read_stored(photo, scorer.settings)
    return (s.score, s.label, s.reasons, s.diagnostics, s.fingerprint, s.policy, s.rating,
            s.pick_label, s.group_id, s.group_size, s.group_pick)


def summary(outcomes: list[Outcome]) -> dict[str, tuple]:
    out = {}
    for o in outcomes:
        v = o.verdict
        out[o.candidate.path.name] = (
            o.status, o.fingerprint, v and (v.score, v.label, v.stars, v.reasons, v.burst),
            o.write and o.write.written, o.error and o.error.reason)
    return out


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not available")
def test_sequential_and_concurrent_runs_agree_on_real_photos(tmp_path, tiny_model):
    """``--jobs 1`` runs the stage list on one thread, more jobs on the pool and the writer
    thread: the same photos get the same outcomes, and the same XMP, in both."""
    results = {}
    for jobs in (1, 2):
        folder = copy_samples(tmp_path / f"jobs{jobs}")
        with scorer_for(tmp_path / f"home{jobs}", tiny_model, jobs, group_bursts=True) as scorer:
            assert scorer.jobs == jobs
            first = list(scorer.process(iter_candidates([folder])))
            again = list(scorer.process(iter_candidates([folder])))
            carried = {p.name: xmp_of(scorer, p) for p in folder.iterdir()}
        results[jobs] = (summary(first), summary(again), carried)
    (first1, again1, files1), (first2, again2, files2) = results[1], results[2]
    assert first1 == first2
    assert {s[0] for s in first1.values()} == {Status.SCORED}
    assert all(written for _, _, _, written, _ in first1.values())
    assert again1 == again2
    assert {s[0] for s in again1.values()} == {Status.UNCHANGED}
    assert files1 == files2
    assert all(score is not None for score, *_ in files1.values())


def refuse_small_files(p: Pass, looked: Looked) -> Looked:
    """An extra stage for the test: photos under 200 kB are refused before decoding."""
    if looked.candidate.size_bytes < 200_000:
        raise InputError(looked.candidate.path, "smaller than 200 kB")
    return looked


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not available")
def test_adding_a_stage_is_one_line_in_the_stage_list(tmp_path, tiny_model):
    folder = copy_samples(tmp_path / "photos")
    small = {p.name for p in folder.iterdir() if p.stat().st_size < 200_000}
    assert small and len(small) < len(os.listdir(folder))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with scorer_for(tmp_path / "home", tiny_model, 2) as scorer:
        stages = scorer.stages()
        decode_at = next(i for i, s in enumerate(stages) if isinstance(s, Batch)) - 1
        stages.insert(decode_at, Parallel(failing_alone(partial(refuse_small_files,
                                                               scorer.pass_for())), Looked))
        outcomes = {o.candidate.path.name: o
                    for o in scorer.run(stages, iter_candidates([folder]))}
    assert {n for n, o in outcomes.items() if o.status == Status.FAILED} == small
    assert {o.error.reason for n, o in outcomes.items() if n in small} == {
        "smaller than 200 kB"}
    assert all(o.status == Status.SCORED and o.write.written
               for n, o in outcomes.items() if n not in small)
    assert all((folder / n).read_bytes() == before[n] for n in small)  # never written


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_a_pick_set_by_hand_on_an_earlier_frame_is_read_again_once_its_file_changes(
        tmp_path, tiny_model):
    photo = tmp_path / "frame.jpg"
    shutil.copy(SAMPLES / "Dune.jpg", photo)
    with scorer_for(tmp_path, tiny_model, 1) as scorer:
        p, picks = scorer.pass_for(), HandPicks()
        assert picks.of(p, photo) is None
        sidecar = Path(f"{photo}.xmp")
        subprocess.run(["exiftool", "-q", "-XMP-digiKam:PickLabel=1", "-o", str(sidecar),
                        str(photo)], check=True)  # digiKam sets Rejected, in a sidecar
        assert picks.of(p, photo) is PickLabel.REJECTED
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-digiKam:PickLabel=3",
                        str(sidecar)], check=True)
        os.utime(sidecar, ns=(1, 1))  # even with an mtime from the past
        assert picks.of(p, photo) is PickLabel.ACCEPTED
