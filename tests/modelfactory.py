"""Builds tiny ONNX models that follow the real model's contract (see iqs_daemon/model.py).

The score is the mean brightness of the whole view (0..100), so tests can predict labels
from the pixels they generate: a black photo is Rejected, a white one Accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnx import TensorProto, helper

DIAGNOSTICS = ("blur", "noise", "compression", "underexposure", "overexposure")
# "policy": the verdict cut-offs (verdict.Policy); a defect threshold above 1 never
# fires, so these models reject and accept by their score alone.
THRESHOLDS = {"reject_below": 30.0, "accept_from": 60.0,
              "stars": [10.0, 30.0, 50.0, 70.0, 90.0], "reason_threshold": 0.5,
              "policy": {"reject_below": 30.0, "accept_from": 60.0, "defect_threshold": 2.0,
                         "reason_threshold": 0.5}}


def constant(name: str, value: float) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name],
                            value=helper.make_tensor(name, TensorProto.FLOAT, [], [value]))


def build_tiny_model(path: Path, *, image_size: int = 64, detail_size: int = 32,
                     min_short_side: int = 64, version: str = "test-1") -> Path:
    nodes = [
        helper.make_node("Cast", ["image"], ["image_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["image_f"], ["mean_nc"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMean", ["mean_nc"], ["mean_n1"], axes=[1], keepdims=1),
        constant("k", 100 / 255),
        helper.make_node("Mul", ["mean_n1", "k"], ["score_n1"]),
        helper.make_node("ReduceMean", ["score_n1"], ["score"], axes=[1], keepdims=0),
        # underexposure = 1 - brightness, overexposure = brightness; the rest 0.
        constant("one", 1.0),
        constant("k01", 1 / 255),
        helper.make_node("ReduceMean", ["mean_nc"], ["bright_n1"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["bright_n1", "k01"], ["overexposure"]),
        helper.make_node("Sub", ["one", "overexposure"], ["underexposure"]),
        helper.make_node("Cast", ["detail"], ["detail_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["detail_f"], ["detail_mean"], axes=[1, 2, 3], keepdims=0),
        constant("zero", 0.0),
        helper.make_node("Mul", ["detail_mean", "zero"], ["blur"]),
        helper.make_node("Identity", ["blur"], ["noise"]),
        helper.make_node("Identity", ["blur"], ["compression"]),
        helper.make_node("ReduceL2", ["mean_nc"], ["norm"], axes=[1], keepdims=1),
        helper.make_node("Div", ["mean_nc", "norm"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "iqs-tiny",
        [helper.make_tensor_value_info("image", TensorProto.UINT8,
                                       ["n", image_size, image_size, 3]),
         helper.make_tensor_value_info("detail", TensorProto.UINT8,
                                       ["n", detail_size, detail_size, 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n"])
         for name in ("score", *DIAGNOSTICS)]
        + [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta = {
        "iqs.name": "iqs-tiny-test",
        "iqs.version": version,
        "iqs.inputs": json.dumps({
            "image": {"size": image_size, "view": "whole"},
            "detail": {"size": detail_size, "view": "detail", "min_short_side": min_short_side},
        }),
        "iqs.outputs": json.dumps({"score": "brightness 0..100", **{d: "test" for d in DIAGNOSTICS},
                                   "embedding": "channel means"}),
        "iqs.diagnostics": json.dumps(list(DIAGNOSTICS)),
        "iqs.thresholds": json.dumps(THRESHOLDS),
    }
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
