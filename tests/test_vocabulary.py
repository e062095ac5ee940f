"""One vocabulary: every diagnostic a model reports is one the product writes, reads and shows."""

from __future__ import annotations

import json

import onnx
import pytest
from modelfactory import build_tiny_model

from iqs_daemon.errors import ModelError
from iqs_daemon.model import QualityModel, default_model_path
from iqs_daemon.vocabulary import BY_NAME, DIAGNOSTICS, REASONS


def test_a_model_naming_a_diagnostic_we_cannot_write_or_show_is_refused_in_one_line(tmp_path):
    path = build_tiny_model(tmp_path / "hazy.onnx")
    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == "iqs.diagnostics":
            prop.value = json.dumps([*DIAGNOSTICS, "haze"])
    onnx.save(model, str(path))
    with pytest.raises(ModelError, match="cannot write or show: haze") as caught:
        QualityModel(path)
    assert "\n" not in str(caught.value)


def test_the_shipped_model_speaks_the_vocabulary():
    info = QualityModel(default_model_path()).info
    assert set(info.diagnostics) <= set(BY_NAME)
    assert all(REASONS[name] for name in info.diagnostics)
    assert len({BY_NAME[name].tag_name for name in info.diagnostics}) == len(info.diagnostics)
