"""`iqs-daemon score` end to end: real files, real ONNX inference, XMP read back by exiftool."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from modelfactory import build_tiny_model

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples" / "photos"


@pytest.fixture
def env(tmp_path, monkeypatch):
    model = build_tiny_model(tmp_path / "tiny.onnx")
    monkeypatch.setenv("IQS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IQS_STATE_DIR", str(tmp_path / "state"))
    return model


def write_photo(path: Path, brightness: int) -> Path:
    rgb = np.full((120, 160, 3), brightness, np.uint8)
    rgb[::7] = 255 - brightness  # some detail
    ok, buf = cv2.imencode(path.suffix, rgb)
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def folder_with_mixed_files(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    write_photo(root / "dark.jpg", 20)
    write_photo(root / "mid.png", 110)
    write_photo(root / "sub" / "bright.tif", 230)
    write_photo(root / "sub" / "bright.webp", 220)
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "iqs_daemon", *args], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=120)


def exiftool(path: Path) -> dict:
    out = subprocess.run(["exiftool", "-j", "-G1", "-n", str(path)], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]


@pytest.mark.skipif(shutil.which("exiftool") is None, reason="exiftool not installed")
def test_score_labels_every_photo_and_reports_the_broken_one(tmp_path, env):
    root = folder_with_mixed_files(tmp_path / "photos")
    model = f"model.model_path={json.dumps(str(env))}"
    result = run_cli("score", "--json", "--set", model, str(root))
    assert result.returncode == 3, result.stderr  # the broken photo failed
    records = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(records) == {"dark.jpg", "mid.png", "bright.tif", "bright.webp", "broken.jpg"}
    assert records["dark.jpg"]["label"] == "Rejected"
    assert records["mid.png"]["label"] == "Pending"
    assert records["bright.tif"]["label"] == "Accepted"
    assert records["broken.jpg"]["status"] == "failed" and "Traceback" not in result.stderr
    tags = exiftool(root / "dark.jpg")
    assert tags["XMP-digiKam:PickLabel"] == 1
    tags = exiftool(root / "sub" / "bright.tif")
    assert tags["XMP-digiKam:PickLabel"] == 3
    assert tags["XMP-xmp:Rating"] >= 3


def test_dry_run_changes_no_byte(tmp_path, env):
    root = folder_with_mixed_files(tmp_path / "photos")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    model = f"model.model_path={json.dumps(str(env))}"
    result = run_cli("score", "--dry-run", "--set", model, str(root))
    assert result.returncode == 3
    assert "Dry run" in result.stdout
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}
    assert before == after


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/samples/photos not present")
def test_second_run_skips_photos_scored_by_the_same_model(tmp_path, env):
    root = tmp_path / "photos"
    root.mkdir()
    for name in ("Aqua.jpg", "Dune.jpg"):
        shutil.copy(SAMPLES / name, root / name)
    args = ("score", "--json", "--set", f"model.model_path={json.dumps(str(env))}", str(root))
    first = [json.loads(line) for line in run_cli(*args).stdout.splitlines()]
    assert [r["status"] for r in first] == ["scored", "scored"]
    second = [json.loads(line) for line in run_cli(*args).stdout.splitlines()]
    assert [r["status"] for r in second] == ["unchanged", "unchanged"]


def test_config_shows_sources_and_rejects_bad_files(tmp_path, env):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("[verdict]\nreject_below = 25\n")
    result = run_cli("config", "--json", "--set", "model.device=cpu")
    settings = json.loads(result.stdout)["settings"]
    user_file = str(tmp_path / "config" / "config.toml")
    assert settings["verdict.reject_below"] == {"value": 25.0, "source": user_file}
    assert settings["model.device"]["source"] == "flag"
    (tmp_path / "config" / "config.toml").write_text("[verdict]\nreject_below = 'low'\n")
    bad = run_cli("config")
    assert bad.returncode == 1
    assert "verdict.reject_below" in bad.stderr and "Traceback" not in bad.stderr
