"""Fixtures shared by the daemon, fault and bad-input tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from daemonkit import make_env_paths
from modelfactory import build_tiny_model


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """The tiny contract model (score = brightness), built once per test module."""
    return build_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def env_paths(tmp_path):
    """Config, state and runtime folders under ``tmp_path``."""
    return make_env_paths(tmp_path)
