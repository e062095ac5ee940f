"""A photo's XMP is read once per pass: the writer reuses the pass's read while the file
is unchanged, and reads again when it changed in between."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from iqs_daemon.config import Paths, Settings, load_settings
from iqs_daemon.discovery import iter_candidates
from iqs_daemon.exiv2_process import InProcess
from iqs_daemon.metadata import MetadataWriter
from iqs_daemon.pipeline import Scorer, Status
from iqs_daemon.records import PickLabel, Verdict

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos"
REJECTED = Verdict(path=Path("x"), score=12.0, label=PickLabel.REJECTED, stars=1,
                   reasons=("blurred",), diagnostics={"blur": 0.9}, model_name="iqs-test",
                   model_version="1.0", scored_at="2026-01-02T03:04:05Z")


class CountingBackend:
    """The real exiv2 backend (in this process), counting the reads of each file."""

    def __init__(self) -> None:
        self.real = InProcess()
        self.reads: Counter[str] = Counter()

    def call(self, request: dict[str, Any], timeout_seconds: float | None = None
             ) -> dict[str, Any]:
        if request["op"] == "read":
            self.reads[Path(request["path"]).name] += 1
        return self.real.call(request, timeout_seconds)

    def close(self) -> None:
        self.real.close()


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not available")
def test_a_pass_reads_each_photo_once(tmp_path, tiny_model):
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(SAMPLES.glob("*.jpg"))[:4]:
        shutil.copyfile(photo, folder / photo.name)
        (folder / photo.name).chmod(0o644)
    paths = Paths(tmp_path / "config", tmp_path / "state", tmp_path / "run")
    settings = load_settings(paths, overrides={"model_path": str(tiny_model)})
    with Scorer(settings) as scorer:
        scorer.metadata.backend.close()
        counting = scorer.metadata.backend = CountingBackend()
        first = list(scorer.process(iter_candidates([folder])))
        assert {o.status for o in first} == {Status.SCORED}
        assert all(o.write is not None and o.write.written for o in first)
        assert counting.reads == {p.name: 1 for p in folder.iterdir()}
        counting.reads.clear()
        again = list(scorer.process(iter_candidates([folder])))
        assert {o.status for o in again} == {Status.UNCHANGED}
        assert counting.reads == {p.name: 1 for p in folder.iterdir()}


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"{SAMPLES} not available")
@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_a_photo_changed_after_the_read_is_read_again(tmp_path):
    photo = tmp_path / "photo.jpg"
    shutil.copyfile(sorted(SAMPLES.glob("*.jpg"))[0], photo)
    photo.chmod(0o644)
    settings = Settings()
    with MetadataWriter(isolated=False) as writer:
        writer.backend = counting = CountingBackend()
        read_before = writer.read_stored(photo, settings)
        assert read_before.pick_label is None
        writer.write_verdict(photo, REJECTED, "fp", settings, dry_run=True, stored=read_before)
        assert counting.reads == {"photo.jpg": 1}  # the dry run reused the read
        # A person accepts the photo in another program between our read and our write.
        subprocess.run(["exiftool", "-q", "-overwrite_original", "-XMP-digiKam:PickLabel=3",
                        str(photo)], check=True)
        result = writer.write_verdict(photo, REJECTED, "fp", settings, stored=read_before)
        assert counting.reads == {"photo.jpg": 2}
        assert result.written and result.kept_user_label
        assert writer.read_stored(photo, settings).pick_label == PickLabel.ACCEPTED
