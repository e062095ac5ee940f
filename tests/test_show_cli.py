"""``iqs-daemon show``: driven through the typer app and the real entry point."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from iqs_daemon.cli import app
from iqs_daemon.cli.app import ExitCode
from iqs_daemon.config import Settings
from iqs_daemon.metadata import MetadataWriter
from iqs_daemon.records import PickLabel, Verdict

REPO = Path(__file__).parents[1]
RAW = REPO.parent / "shared" / "samples" / "raw" / "canon_eos_r6_truncated.cr3"

VERDICT = Verdict(
    path=Path("x"),
    score=22.0,
    label=PickLabel.REJECTED,
    stars=1,
    reasons=("blur",),
    diagnostics={"blur": 0.8, "noise": 0.1},
    model_name="iqs-test",
    model_version="3",
    scored_at="2026-03-01T12:00:00Z",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    for name in ("IQS_CONFIG_DIR", "IQS_STATE_DIR", "IQS_RUNTIME_DIR"):
        monkeypatch.setenv(name, str(tmp_path / name.lower()))


@pytest.fixture
def photos(tmp_path) -> dict[str, Path]:
    """A scored JPEG, an unscored JPEG, and (if available) a scored CR3 with its sidecar."""
    rng = np.random.default_rng(3)
    made = {}
    for name in ("scored.jpg", "plain.jpg"):
        made[name] = tmp_path / name
        assert cv2.imwrite(str(made[name]), rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    if RAW.is_file():
        made["raw"] = tmp_path / RAW.name
        shutil.copyfile(RAW, made["raw"])
    with MetadataWriter(isolated=False) as writer:
        writer.write_verdict(made["scored.jpg"], VERDICT, "fp-jpg", Settings())
        if "raw" in made:
            writer.write_verdict(made["raw"], VERDICT, "fp-raw", Settings())
    return made


def invoke(*args: str):
    return CliRunner().invoke(app, ["show", *args], env={"COLUMNS": "200"})


def test_table_shows_our_verdict_and_other_labels(photos):
    result = invoke(str(photos["scored.jpg"]), str(photos["plain.jpg"]))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Rejected" in out
    assert "22.0" in out
    assert "Xmp.digiKam.PickLabel" in out
    assert "Exif.Image.RatingPercent" in out
    assert f"embedded: {photos['scored.jpg']}" in out
    assert "iqs-daemon verdict" in out  # plain.jpg has none


def test_raw_shows_sidecar_and_embedded_sources(photos):
    if "raw" not in photos:
        pytest.skip("camera sample canon_eos_r6_truncated.cr3 is not available")
    result = invoke(str(photos["raw"]))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"  sidecar: {photos['raw']}.xmp\n  embedded: {photos['raw']}\n" in out
    assert re.search(r"Xmp\.xmp\.Rating +│ -1 +│ sidecar", out)  # ours, in the sidecar
    assert re.search(r"Xmp\.xmp\.Rating +│ 0 +│ embedded", out)  # the camera's own


def test_json_is_one_object_per_photo(photos):
    result = invoke("--json", str(photos["scored.jpg"]), str(photos["plain.jpg"]))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    scored, plain = (json.loads(line) for line in lines)
    assert scored["label"] == "Rejected"
    assert scored["score"] == 22.0
    assert scored["reasons"] == ["blur"]
    assert scored["diagnostics"] == {"blur": 0.8, "noise": 0.1}
    assert scored["fingerprint"] == "fp-jpg"
    assert scored["pick_label"] == "Rejected"
    assert scored["rating"] == -1
    assert scored["exif_rating_percent"] == 0
    assert scored["sources"]["label"] == str(photos["scored.jpg"])
    assert scored["files"][0]["kind"] == "embedded"
    assert scored["files"][0]["tags"]["Xmp.iqs.Reasons"] == ["blur"]
    assert plain["label"] is None
    assert plain["files"][0]["tags"] == {}


def test_bad_input_is_one_line_and_exit_code_3(photos, tmp_path):
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    result = invoke("--json", str(missing), str(photos["scored.jpg"]), str(text))
    assert result.exit_code == ExitCode.SOME_FAILED
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0] == f"iqs-daemon: error: {missing}: no such file"
    assert str(text) in errors[1]
    assert len(result.stdout.splitlines()) == 1  # the good photo is still shown


def test_entry_point_exit_code(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "from iqs_daemon.cli import main; main()"
    ok = subprocess.run(
        [sys.executable, "-c", code, "show", "--json", str(photos["scored.jpg"])],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert ok.returncode == ExitCode.OK, ok.stderr
    assert json.loads(ok.stdout)["label"] == "Rejected"
    bad = subprocess.run(
        [sys.executable, "-c", code, "show", str(tmp_path / "nope.png")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert bad.returncode == ExitCode.SOME_FAILED
    assert bad.stderr.strip() == f"iqs-daemon: error: {tmp_path / 'nope.png'}: no such file"
