"""Changing one's mind and teaching it: re-deciding without re-scoring, calibration, layers.

Real CLI in an isolated home, the tiny model (score = brightness), XMP read by exiftool.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import daemonkit
import numpy as np
import pytest
from modelfactory import build_tiny_model
from readback import exiftool_many

pytestmark = pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")


@pytest.fixture
def env(tmp_path, monkeypatch):
    model = build_tiny_model(tmp_path / "tiny.onnx")
    monkeypatch.setenv("IQS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IQS_STATE_DIR", str(tmp_path / "state"))
    return ["--set", f'model.model_path="{model}"']


def photo(path: Path, brightness: int) -> Path:
    rgb = np.full((96, 128, 3), brightness, np.uint8)
    rgb[::9] = min(255, brightness + 20)
    ok, buf = cv2.imencode(path.suffix, rgb)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return daemonkit.cli(list(args), os.environ.copy())


def score(*args: str) -> dict[str, dict]:
    done = cli("score", "--json", *args)
    assert done.returncode == 0, done.stderr
    return {Path(r["path"]).name: r for r in map(json.loads, done.stdout.splitlines())}


def test_a_threshold_change_relabels_from_stored_scores_and_keeps_hand_labels(tmp_path, env):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "a.jpg", 100)  # score ~41: Pending under the tiny model's policy
    photo(folder / "b.jpg", 110)
    photo(folder / "mine.jpg", 100)
    first = score(*env, str(folder))
    assert {r["label"] for r in first.values()} == {"Pending"}
    before = exiftool_many([folder / "a.jpg"])[folder / "a.jpg"]
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-digiKam:PickLabel=3",
            str(folder / "mine.jpg"),
        ],
        check=True,
    )

    again = score(*env, str(folder))
    assert {r["status"] for r in again.values()} == {"unchanged"}, "same policy: nothing to do"

    changed = score(*env, "--set", "verdict.reject_below=50", str(folder))
    assert {r["status"] for r in changed.values()} == {"redecided"}
    assert {r["label"] for r in changed.values()} == {"Rejected"}
    assert changed["a.jpg"]["score"] == first["a.jpg"]["score"]
    tags = exiftool_many(sorted(folder.iterdir()))
    assert tags[folder / "a.jpg"]["XMP-digiKam:PickLabel"] == 1
    assert tags[folder / "mine.jpg"]["XMP-digiKam:PickLabel"] == 3, "the hand label is kept"
    assert tags[folder / "mine.jpg"]["XMP-iqs:Label"] == "Rejected"
    policies = {t["XMP-iqs:Policy"] for t in tags.values()}
    assert len(policies) == 1
    assert policies != {before["XMP-iqs:Policy"]}
    # Re-deciding is not re-scoring: the score and the time it was scored stay.
    assert tags[folder / "a.jpg"]["XMP-iqs:ScoredAt"] == before["XMP-iqs:ScoredAt"]
    assert tags[folder / "a.jpg"]["XMP-iqs:Luminance"] == before["XMP-iqs:Luminance"]


def test_rescore_decodes_again_but_keeps_hand_labels(tmp_path, env):
    folder = tmp_path / "photos"
    folder.mkdir()
    photo(folder / "mine.jpg", 30)
    score(*env, str(folder))
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            "-XMP-digiKam:PickLabel=3",
            "-XMP-xmp:Rating=5",
            str(folder / "mine.jpg"),
        ],
        check=True,
    )
    rescored = score(*env, "--rescore", str(folder))
    assert rescored["mine.jpg"]["status"] == "scored"
    assert rescored["mine.jpg"]["kept_user_label"]
    replaced = score(*env, "--replace-hand-labels", str(folder))
    assert replaced["mine.jpg"]["status"] == "redecided"
    assert not replaced["mine.jpg"]["kept_user_label"]
    tags = exiftool_many([folder / "mine.jpg"])[folder / "mine.jpg"]
    assert (tags["XMP-digiKam:PickLabel"], tags["XMP-xmp:Rating"]) == (1, -1)


def test_calibrate_learns_the_users_cut_offs_and_config_shows_the_layer(tmp_path, env):
    folder = tmp_path / "labelled"
    folder.mkdir()
    # The user rejects everything darker than ~55 and accepts from ~75 (tiny-model scores).
    args = []
    for i, brightness in enumerate(range(40, 240, 8)):
        path = photo(folder / f"p{i:02d}.jpg", brightness)
        value = brightness * 100 / 255
        label = 1 if value < 55 else 3 if value >= 75 else 2
        args += [f"-XMP-digiKam:PickLabel={label}", "-overwrite_original", str(path), "-execute"]
    argfile = tmp_path / "args.txt"
    argfile.write_text("\n".join(args) + "\n")
    subprocess.run(["exiftool", "-q", "-q", "-@", str(argfile)], check=True,
                   stdout=subprocess.DEVNULL)

    done = cli("calibrate", "--json", *env, str(folder))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["photos"] == 25
    assert report["after"]["macro_f1"] > report["before"]["macro_f1"]
    assert report["after"]["macro_f1"] >= 0.9
    assert 45 <= report["after"]["reject_below"] <= 58
    assert 68 <= report["after"]["accept_from"] <= 78
    saved = Path(report["saved_to"])
    assert saved == tmp_path / "config" / "calibration.toml"
    assert saved.is_file()

    shown = json.loads(cli("config", "--json", *env).stdout)["settings"]
    assert shown["verdict.reject_below"] == {
        "value": report["after"]["reject_below"],
        "source": "calibration",
    }
    assert shown["verdict.defect_threshold"]["source"] in ("model", "default")
    # The user's own file wins over the calibration.
    (tmp_path / "config" / "config.toml").write_text("[verdict]\naccept_from = 90\n")
    shown = json.loads(cli("config", "--json", *env).stdout)["settings"]
    assert shown["verdict.accept_from"]["value"] == 90
    assert shown["verdict.reject_below"]["source"] == "calibration"


def test_calibrate_without_hand_labels_says_so_in_one_line(tmp_path, env):
    folder = tmp_path / "plain"
    folder.mkdir()
    photo(folder / "a.jpg", 120)
    done = cli("calibrate", *env, str(folder))
    assert done.returncode == 1
    assert "label or rating you set" in done.stderr
    assert "Traceback" not in done.stderr


def test_contradicting_cut_offs_are_refused_by_config_and_score_alike(tmp_path, env):
    for command in (("config",), ("score", str(tmp_path))):
        done = cli(
            *command, *env, "--set", "verdict.reject_below=70", "--set", "verdict.accept_from=60"
        )
        assert done.returncode == 1, command
        assert "verdict.reject_below (70)" in done.stderr
        assert "Traceback" not in done.stderr


def test_dry_run_on_a_read_only_folder_reports_verdicts(tmp_path, env):
    """A card or a share mounted read-only: a dry run still says what it would decide."""
    folder = tmp_path / "card"
    folder.mkdir()
    photo(folder / "a.jpg", 200)
    folder.chmod(0o555)  # the writer checks the mode bits too, so this holds for root
    try:
        result = score(*env, "--dry-run", str(folder))
        refused = cli("score", *env, str(folder))
    finally:
        folder.chmod(0o755)
    assert result["a.jpg"]["status"] == "scored"
    assert result["a.jpg"]["label"] == "Accepted"
    assert refused.returncode == 3
    assert "read-only" in refused.stderr
