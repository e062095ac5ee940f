"""Stand-in models for the benchmark while the shipped model is not there.

``lite0``: the real model's shape and cost - the EfficientNet-Lite0 backbone from
``training/backbone.py`` run on both views, with an untrained linear head - so the model
floor and the thread trade-offs are realistic; its scores mean nothing. Needs the
``train`` extra (torch). ``tiny``: the test suite's contract model (``tests/modelfactory``),
whose model floor is meaninglessly fast; it only checks that the plumbing works.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
IMAGE_SIZE, DETAIL_SIZE, MIN_SHORT_SIDE = 512, 256, 1024
DIAGNOSTICS = ("blur", "noise", "compression", "underexposure", "overexposure")


def build_standin(kind: str, folder: Path) -> Path:
    """Build (or reuse) the ``kind`` stand-in in ``folder``; returns its path."""
    path = folder / f"standin-{kind}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    if kind == "tiny":
        from tests.modelfactory import build_tiny_model

        return build_tiny_model(path, image_size=IMAGE_SIZE, detail_size=DETAIL_SIZE,
                                min_short_side=MIN_SHORT_SIDE, version="standin-tiny")
    _export_lite0(path)
    return path


def _export_lite0(path: Path) -> None:
    import onnx
    import torch
    from torch import nn

    from training.backbone import MLSPBackbone, load_efficientnet_lite

    class TwoViews(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = MLSPBackbone(load_efficientnet_lite("lite0"))
            self.head = nn.Linear(2 * self.backbone.feature_dim, 1 + len(DIAGNOSTICS))

        def forward(self, image: torch.Tensor, detail: torch.Tensor) -> tuple[torch.Tensor, ...]:
            whole, embedding = self.backbone(image)
            crop, _ = self.backbone(detail)
            out = torch.sigmoid(self.head(torch.cat([whole, crop], dim=1)))
            return (out[:, 0] * 100, *(out[:, i + 1] for i in range(len(DIAGNOSTICS))), embedding)

    names = ["score", *DIAGNOSTICS, "embedding"]
    torch.onnx.export(
        TwoViews().eval(),
        (torch.zeros(1, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8),
         torch.zeros(1, DETAIL_SIZE, DETAIL_SIZE, 3, dtype=torch.uint8)),
        str(path), input_names=["image", "detail"], output_names=names,
        dynamic_axes={n: {0: "n"} for n in ["image", "detail", *names]},
        opset_version=17, dynamo=False,
    )
    model = onnx.load(str(path))
    meta = {
        "iqs.name": "iqs-standin-lite0",
        "iqs.version": "untrained",
        "iqs.inputs": json.dumps({
            "image": {"size": IMAGE_SIZE, "view": "whole"},
            "detail": {"size": DETAIL_SIZE, "view": "detail", "min_short_side": MIN_SHORT_SIDE},
        }),
        "iqs.outputs": json.dumps({"score": "untrained", **{d: "untrained" for d in DIAGNOSTICS},
                                   "embedding": "backbone mean"}),
        "iqs.diagnostics": json.dumps(list(DIAGNOSTICS)),
        "iqs.thresholds": json.dumps({"reject_below": 30.0, "accept_from": 60.0,
                                      "stars": [10.0, 30.0, 50.0, 70.0, 90.0],
                                      "reason_threshold": 0.5}),
    }
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
