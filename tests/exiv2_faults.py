"""Make the exiv2 process crash on chosen files (see exiv2_fault/sitecustomize.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FAULT_PATH = Path(__file__).resolve().parent / "exiv2_fault"
MARK_ENV = "IQS_TEST_EXIV2_ABORT_ON"


def crash_exiv2_on(monkeypatch: pytest.MonkeyPatch, mark: str) -> None:
    """Worker processes started from now on abort on any file whose name holds ``mark``."""
    monkeypatch.setenv(MARK_ENV, mark)
    path = os.environ.get("PYTHONPATH", "")
    if str(FAULT_PATH) not in path.split(os.pathsep):
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(FAULT_PATH), path) if p))
