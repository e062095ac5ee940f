"""Choosing where the model runs (``--device``), with the onnxruntime installed here.

No test needs a GPU: with the CPU build (CI), asking for CUDA must fail in one clear
line and ``auto`` must run on the CPU; the provider rules are checked as a table.
"""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from modelfactory import build_tiny_model

from iqs_daemon.errors import ModelError
from iqs_daemon.model import QualityModel, check_device, choose_providers

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
cuda_usable = CUDA in ort.get_available_providers()


def test_providers_for_each_device():
    assert choose_providers("cpu", [CUDA, CPU]) == [CPU]
    assert choose_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]
    assert choose_providers("auto", [CPU]) == [CPU]
    with pytest.raises(ModelError, match="--device cuda: this onnxruntime has no CUDA"):
        choose_providers("cuda", [CPU])


def test_cuda_listed_but_not_used_is_an_error_only_when_asked_for():
    check_device("cuda", [CUDA, CPU])
    check_device("auto", [CPU])  # auto: the CPU fallback is what was meant
    with pytest.raises(ModelError, match="cannot use CUDA here") as caught:
        check_device("cuda", [CPU])
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(cuda_usable, reason="this onnxruntime has CUDA")
def test_the_cpu_build_refuses_cuda_and_runs_auto_on_the_cpu(tmp_path):
    model = build_tiny_model(tmp_path / "tiny.onnx")
    with pytest.raises(ModelError, match="--device cuda"):
        QualityModel(model, device="cuda")
    assert QualityModel(model, device="auto").providers == [CPU]


@pytest.mark.skipif(cuda_usable, reason="this onnxruntime has CUDA")
def test_score_with_device_cuda_stops_with_one_line(tmp_path, monkeypatch):
    model = build_tiny_model(tmp_path / "tiny.onnx")
    monkeypatch.setenv("IQS_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("IQS_STATE_DIR", str(tmp_path / "state"))
    photo = tmp_path / "photos" / "a.jpg"
    photo.parent.mkdir()
    ok, data = cv2.imencode(".jpg", np.full((60, 80, 3), 128, np.uint8))
    assert ok
    photo.write_bytes(data.tobytes())
    before = photo.read_bytes()
    done = subprocess.run([sys.executable, "-m", "iqs_daemon", "score", "--device", "cuda",
                           "--set", f"model.model_path={model}", str(photo.parent)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--device cuda" in lines[0] and "Traceback" not in done.stderr
    assert photo.read_bytes() == before  # nothing scored or written
