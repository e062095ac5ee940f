"""The model that ships in the package: its contract, its direction on real photos, and
parity with the torch model it was exported from (when the training extra is installed).

Real ONNX Runtime inference on the real model file; the photos are the real samples in
``../shared/samples/photos`` (never used in training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iqs_daemon import decoding, distortions
from iqs_daemon.model import QualityModel, default_model_path, expected_sha256, file_sha256

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "samples" / "photos"
HEAD = REPO / "training" / "runs" / "head.pt"


@pytest.fixture(scope="module")
def model() -> QualityModel:
    return QualityModel(default_model_path(), device="cpu")


def sample_photos(count: int) -> list[Path]:
    photos = sorted(PHOTOS.glob("*.jpg"))[:count]
    if not photos:
        pytest.skip(f"the sample photos in {PHOTOS} are not available")
    return photos


def full_resolution(path: Path) -> np.ndarray:
    return np.array(decoding.decode(path, min_short_side=10**9, max_pixels=10**9).rgb)


def test_shipped_model_is_in_the_package_with_its_published_digest():
    path = default_model_path()
    assert path.is_file(), f"{path} missing: the package must carry its model"
    assert path.stat().st_size <= 40e6
    assert expected_sha256(path) == file_sha256(path)


def test_metadata_describes_inputs_outputs_and_thresholds(model: QualityModel):
    info = model.info
    assert info.name == "iqs-quality"
    assert {s.name: (s.size, s.view) for s in info.inputs} == {
        "image": (512, "whole"), "detail": (256, "detail")}
    assert info.min_short_side >= 512
    assert set(info.diagnostics) == {"blur", "noise", "compression", "underexposure",
                                     "overexposure"}
    assert {"score", "embedding", *info.diagnostics} <= set(info.outputs)
    t = info.thresholds
    assert 0 < t["reject_below"] < t["accept_from"] < 100
    assert t["stars"] == sorted(t["stars"]) and len(t["stars"]) == 5
    assert 0 < t["reason_threshold"] < 1


def test_embedding_is_unit_length_and_small(model: QualityModel):
    rgb = full_resolution(sample_photos(1)[0])
    scores = model.run([model.prepare(rgb)])[0]
    assert 0 < len(scores.embedding) <= 512
    assert np.linalg.norm(scores.embedding) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("family", list(distortions.PROTOCOL))
def test_strongest_protocol_level_scores_lower_and_raises_its_diagnostic(model, family):
    diagnostic = distortions.DIAGNOSTIC_OF_FAMILY[family]
    strongest = distortions.PROTOCOL[family][-1]
    for path in sample_photos(2):
        rgb = full_resolution(path)
        damaged = distortions.distort(rgb, family, strongest, seed=1)
        clean, worse = model.run([model.prepare(rgb), model.prepare(damaged)])
        assert worse.score < clean.score - 5, (path.name, family, clean.score, worse.score)
        assert worse.diagnostics[diagnostic] > clean.diagnostics[diagnostic], (path.name, family)


def test_score_uses_the_shipped_model_by_default(tmp_path: Path):
    photo = tmp_path / sample_photos(1)[0].name
    photo.write_bytes(sample_photos(1)[0].read_bytes())
    env = {**os.environ, "IQS_CONFIG_DIR": str(tmp_path / "config")}
    done = subprocess.run(
        [sys.executable, "-m", "iqs_daemon", "score", "--json", "--dry-run", str(photo)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
        cwd=tmp_path,  # not the checkout: its iqs_daemon/ would shadow the installed package
    )
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout.splitlines()[0])
    assert verdict["model"].startswith("iqs-quality ")
    assert 0 <= verdict["score"] <= 100


def test_onnx_matches_torch_within_1e_4(tmp_path: Path):
    """The float32 export equals torch within 1e-4; the shipped file (heads quantised to
    int8) stays within a fraction of a score point of it."""
    torch = pytest.importorskip("torch", reason="torch is the training extra (not in CI)")
    pytest.importorskip("efficientnet_lite_pytorch",
                        reason="the backbone wheels are the training extra")
    if not HEAD.is_file():
        pytest.skip(f"{HEAD} not found: run `python -m training --biq PATH` to train the heads")
    sys.path.insert(0, str(REPO))  # training/ lives beside the package, not in it
    from training.export import export, load_trained, parity

    torch.set_num_threads(2)
    torch_model, checkpoint = load_trained(HEAD)
    fp32 = tmp_path / "fp32.onnx"
    export(torch_model, checkpoint, fp32, "parity")
    shipped = QualityModel(default_model_path(), device="cpu")
    samples = []
    for path in sample_photos(3):
        views = shipped.prepare(full_resolution(path))
        samples.append((views["image"], views["detail"]))
    assert parity(torch_model, fp32, samples) < 1e-4

    batch = [{"image": image, "detail": detail} for image, detail in samples]
    reference = QualityModel(fp32, device="cpu").run(batch)
    for ours, exact in zip(shipped.run(batch), reference, strict=True):
        assert ours.score == pytest.approx(exact.score, abs=0.5)
        for name, value in exact.diagnostics.items():
            assert ours.diagnostics[name] == pytest.approx(value, abs=0.01)
