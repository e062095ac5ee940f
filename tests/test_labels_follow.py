"""Labels follow the photo: sidecars moved and removed with it, deleted metadata restored.

The daemon runs in-process on tmp folders with the tiny model; files are read back with
exiftool and the real metadata reader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from daemonkit import all_scored, idle, jpeg, running, settings_for, wait_for

from iqs_daemon.config import Settings
from iqs_daemon.metadata import MetadataWriter

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
NEF = SAMPLES / "raw" / "nikon_d70s_jpeg_named.nef"
pytestmark = [
    pytest.mark.skipif(not NEF.is_file(), reason="camera sample nikon_d70s_jpeg_named.nef absent"),
    pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed"),
]


def verdict_of(photo: Path) -> tuple[str | None, float | None, str | None]:
    with MetadataWriter(isolated=False) as writer:
        stored = writer.read_stored(photo, Settings())
    return (stored.label.title if stored.label else None, stored.score, stored.scored_at)


def exiftool(*args: str) -> None:
    subprocess.run(["exiftool", "-q", "-overwrite_original", *args], check=True)


def test_a_renamed_raw_takes_its_sidecar_along(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    raw, other = root / "nikon.nef", root / "kept.nef"
    shutil.copyfile(NEF, raw)
    shutil.copyfile(NEF, other)
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [raw, other]) and idle(daemon))
        before = verdict_of(raw)
        assert before[0] is not None

        renamed = root / "nikon_renamed.nef"
        os.rename(raw, renamed)
        wait_for(lambda: Path(f"{renamed}.xmp").is_file() and idle(daemon))
        assert not Path(f"{raw}.xmp").exists()
        assert verdict_of(renamed) == before  # the same verdict: moved, not scored again
        assert daemon.db.get(renamed).status == "scored"
        assert daemon.db.get(raw) is None

        # Moved onto a name whose sidecar exists already (another tool's): never replaced.
        (root / "sorted").mkdir()
        target = root / "sorted" / "kept.nef"
        theirs = Path(f"{target}.xmp")
        theirs.write_bytes(Path(f"{other}.xmp").read_bytes().replace(b"iqs-daemon.org", b"x.org"))
        their_bytes = theirs.read_bytes()
        os.rename(other, target)
        wait_for(lambda: daemon.db.get(target) is not None and idle(daemon))
        time.sleep(0.5)
        assert theirs.read_bytes() == their_bytes
        assert Path(f"{other}.xmp").is_file()  # ours stays where it was
    assert daemon.counts["scored"] == 2


def test_a_deleted_photo_leaves_only_sidecars_with_other_data(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    plain, tagged, hand = root / "plain.nef", root / "tagged.nef", root / "hand.nef"
    for photo in (plain, tagged, hand):
        shutil.copyfile(NEF, photo)
    with running(settings_for(env_paths, tiny_model), env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [plain, tagged, hand]) and idle(daemon))
        exiftool("-XMP-dc:Subject=holiday", f"{tagged}.xmp")  # a keyword from digiKam
        exiftool("-XMP-xmp:Rating=5", f"{hand}.xmp")  # a rating changed by hand
        for photo in (plain, tagged, hand):
            photo.unlink()
        wait_for(lambda: all(daemon.db.get(p).status == "gone" for p in (plain, tagged, hand))
                 and idle(daemon))
        assert not Path(f"{plain}.xmp").exists()
        assert Path(f"{tagged}.xmp").is_file()
        assert Path(f"{hand}.xmp").is_file()


def test_the_setting_keeps_every_sidecar(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    raw = root / "plain.nef"
    shutil.copyfile(NEF, raw)
    settings = settings_for(env_paths, tiny_model, remove_orphan_sidecars=False)
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [raw]) and idle(daemon))
        raw.unlink()
        wait_for(lambda: daemon.db.get(raw).status == "gone" and idle(daemon))
        assert Path(f"{raw}.xmp").is_file()


def test_deleted_metadata_is_restored_at_start_without_scoring(tmp_path, tiny_model, env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    raw, photo = root / "nikon.nef", root / "photo.jpg"
    shutil.copyfile(NEF, raw)
    photo.write_bytes(jpeg(200, (320, 240)))
    settings = settings_for(env_paths, tiny_model)
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [raw, photo]) and idle(daemon))
    before = {p: verdict_of(p) for p in (raw, photo)}
    assert all(v[0] is not None for v in before.values())

    Path(f"{raw}.xmp").unlink()  # the sidecar deleted
    exiftool("-all=", str(photo))  # the JPEG stripped
    assert verdict_of(raw)[0] is None
    assert verdict_of(photo)[0] is None
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: daemon.counts.get("restored", 0) == 2 and idle(daemon))
        assert daemon.counts["scored"] == 0  # given back from the state, not scored again
    # The same verdict, down to the time it was scored.
    assert {p: verdict_of(p) for p in (raw, photo)} == before


def test_a_stripped_photo_with_other_pixels_is_scored_not_restored(tmp_path, tiny_model,
                                                                     env_paths):
    root = tmp_path / "photos"
    root.mkdir()
    photo = root / "photo.jpg"
    photo.write_bytes(jpeg(200, (320, 240)))
    settings = settings_for(env_paths, tiny_model)
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: all_scored(daemon, [photo]) and idle(daemon))
    assert verdict_of(photo)[0] == "Accepted"
    photo.write_bytes(jpeg(20, (320, 240)))  # another picture, no metadata at all
    with running(settings, env_paths, [root]) as daemon:
        wait_for(lambda: daemon.counts["scored"] == 1 and idle(daemon))
        assert daemon.counts.get("restored", 0) == 0
    assert verdict_of(photo)[0] == "Rejected"  # judged on its own pixels
