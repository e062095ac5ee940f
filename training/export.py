"""Step 3: backbone + trained heads -> one ONNX file with its metadata and sha256.

    python -m training.export --head training/runs/head.pt --out models/iqs-quality.onnx

The graph takes the product's two views as uint8 RGB NHWC (``image`` 512 px whole photo,
``detail`` a 256 px crop at decode resolution) and returns ``score`` (0..100), one 0..1
strength per diagnostic and a 320-value L2-normalised ``embedding``. Everything the
product needs to know about it is written into ``metadata_props`` (see iqs_daemon/model.py).

A fine-tuned checkpoint (training/finetune.py) exports as it is, or with ``--blend W`` as
the blend of its fine-tuned half and a frozen one (``BlendedModel``; the frozen heads are
its stage A's, or ``--frozen-heads`` a head.pt or an exported file's), see models/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from .backbone import MLSPBackbone, _mean_std, load_efficientnet_lite
from .features import DETAIL_SIZE, IMAGE_SIZE, MIN_SHORT_SIDE
from .head import DIAGNOSTICS, Ensemble, QualityHead
from .signals import PixelSignals

NAME = "iqs-quality"

OUTPUT_MEANING = {
    "score": "technical quality 0..100 (predicted BIQ2021 opinion score x 100)",
    "blur": "strength of blur / missed focus, 0..1",
    "noise": "strength of sensor or added noise, 0..1",
    "compression": "strength of JPEG compression artefacts, 0..1",
    "underexposure": "strength of under-exposure, 0..1",
    "overexposure": "strength of over-exposure (clipped highlights), 0..1",
    "embedding": "L2-normalised mean of the last backbone stage of the whole view "
                 "(cosine similarity groups near-duplicate shots)",
}


class QualityModel(nn.Module):
    def __init__(self, backbone: MLSPBackbone, ensemble: Ensemble, signals: PixelSignals | None):
        super().__init__()
        self.backbone = backbone
        self.ensemble = ensemble
        self.signals = signals

    def forward(self, image: torch.Tensor, detail: torch.Tensor):
        whole_features, embedding = self.backbone(image)
        detail_features, _ = self.backbone(detail)
        parts = [whole_features, detail_features]
        if self.signals is not None:  # same order as training.train.features
            parts = [whole_features, self.signals(image), detail_features, self.signals(detail)]
        score, diagnostics = self.ensemble(torch.cat(parts, dim=1))
        score = torch.clamp(score * 100.0, 0.0, 100.0)
        return (score, *diagnostics.unbind(dim=1), embedding)


class BlendedModel(nn.Module):
    """2.0's blend: one shared frozen trunk (blocks before ``cut``), then two tails, the
    ImageNet one read by the frozen heads (1.1's recipe) and the fine-tuned one read by
    the fine-tuned heads; score and diagnostics are ``weight`` x fine-tuned + the rest x
    frozen. The embedding is the frozen tail's, the same values 1.1 gave, so near-duplicate
    grouping keeps its calibration."""

    def __init__(self, frozen: MLSPBackbone, tuned: MLSPBackbone, cut: int,
                 frozen_heads: Ensemble, tuned_heads: Ensemble, signals: PixelSignals,
                 weight: float):
        super().__init__()
        self.frozen, self.tuned, self.cut = frozen, tuned, cut
        self.frozen_heads, self.tuned_heads = frozen_heads, tuned_heads
        self.signals = signals
        self.weight = weight

    def _features(self, pixels: torch.Tensor):
        x = pixels.permute(0, 3, 1, 2).float()
        x = (x - self.frozen.mean) / self.frozen.std
        net = self.frozen.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        ends, early = set(self.frozen.stage_ends), []
        for i in range(self.cut):
            x = net._blocks[i](x)
            if i in ends:
                early.append(_mean_std(x))
        out = []
        for backbone in (self.frozen, self.tuned):
            y, late, last_stage = x, [], x
            for i in range(self.cut, len(backbone.net._blocks)):
                y = backbone.net._blocks[i](y)
                if i in ends:
                    late.append(_mean_std(y))
                    last_stage = y
            y = backbone.net._swish(backbone.net._bn1(backbone.net._conv_head(y)))
            late.append(_mean_std(y))
            out.append((torch.cat([*early, *late], dim=1), last_stage))
        (frozen_features, last_stage), (tuned_features, _) = out
        embedding = nn.functional.normalize(last_stage.mean(dim=(2, 3)), dim=1)
        return frozen_features, tuned_features, embedding

    def forward(self, image: torch.Tensor, detail: torch.Tensor):
        fi, ti, embedding = self._features(image)
        fd, td, _ = self._features(detail)
        si, sd = self.signals(image), self.signals(detail)
        s_a, d_a = self.frozen_heads(torch.cat([fi, si, fd, sd], dim=1))
        s_b, d_b = self.tuned_heads(torch.cat([ti, si, td, sd], dim=1))
        w = self.weight
        score = torch.clamp((w * s_b + (1 - w) * s_a) * 100.0, 0.0, 100.0)
        diagnostics = w * d_b + (1 - w) * d_a
        return (score, *diagnostics.unbind(dim=1), embedding)


def _ensemble(checkpoint: dict, state_key: str) -> Ensemble:
    dim = checkpoint["feature_dim"]
    heads = [QualityHead(torch.zeros(dim), torch.ones(dim), hidden=checkpoint["hidden"])
             for _ in range(checkpoint["heads"])]
    ensemble = Ensemble(heads)
    ensemble.load_state_dict(checkpoint[state_key])
    return ensemble.eval()


def heads_from_onnx(path: Path, hidden: int = 256) -> Ensemble:
    """The heads of an exported file (int8 weights read back as float): the same values
    the file computes with, so they re-quantise to the same int8 weights."""
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    count = len({n.split(".")[2] for n in values if n.startswith("ensemble.heads.")})
    heads = []
    for k in range(count):
        prefix = f"ensemble.heads.{k}."
        # the export stores buffers shared by every head once, under the first head's name
        mean = values.get(prefix + "mean", values["ensemble.heads.0.mean"])
        std = values.get(prefix + "std", values["ensemble.heads.0.std"])
        head = QualityHead(torch.from_numpy(mean.copy()), torch.from_numpy(std.copy()),
                           hidden=hidden)
        state = head.state_dict()
        for layer in ("body.1", "score", "diagnostics"):
            q = prefix + layer + ".weight_Transposed_"
            weight = ((values[q + "quantized"].astype(np.float32)
                       - values[q + "zero_point"].astype(np.float32)) * values[q + "scale"])
            state[layer + ".weight"] = torch.from_numpy(np.ascontiguousarray(weight.T))
            state[layer + ".bias"] = torch.from_numpy(values[prefix + layer + ".bias"].copy())
        head.load_state_dict(state)
        heads.append(head)
    return Ensemble(heads).eval()


def frozen_heads(path: Path) -> Ensemble:
    """The frozen half's heads: training.train's checkpoint (``head.pt``), or the heads of
    an exported int8 file (1.1's ``iqs-quality.onnx``)."""
    if path.suffix == ".onnx":
        return heads_from_onnx(path)
    return _ensemble(torch.load(path, map_location="cpu", weights_only=False), "state")


def load_blended(head_path: Path, weight: float,
                 frozen_from: Path | None = None) -> tuple[BlendedModel, dict]:
    """A fine-tuned checkpoint (training/finetune.py) as the frozen/fine-tuned blend; the
    trunk before the first fine-tuned block is the same in both, so it runs once. The
    frozen half's heads are the checkpoint's stage A, or ``frozen_from``'s."""
    checkpoint = torch.load(head_path, map_location="cpu", weights_only=False)
    cut = checkpoint["fine_tuned_from_block"]
    name = checkpoint.get("backbone", "lite0")
    frozen = MLSPBackbone(load_efficientnet_lite(name))
    tuned = MLSPBackbone(load_efficientnet_lite(name))
    tuned.net.load_state_dict(checkpoint["backbone_state"])
    heads = (frozen_heads(frozen_from) if frozen_from is not None
             else _ensemble(checkpoint, "frozen_heads_state"))
    model = BlendedModel(frozen, tuned, cut, heads, _ensemble(checkpoint, "state"),
                         PixelSignals(), weight)
    checkpoint = {**checkpoint, "blend": weight}
    return model.eval(), checkpoint


def load_trained(head_path: Path, backbone_name: str = "lite0") -> tuple[QualityModel, dict]:
    checkpoint = torch.load(head_path, map_location="cpu", weights_only=False)
    dim = checkpoint["feature_dim"]
    heads = [QualityHead(torch.zeros(dim), torch.ones(dim), hidden=checkpoint["hidden"])
             for _ in range(checkpoint["heads"])]
    ensemble = Ensemble(heads)
    ensemble.load_state_dict(checkpoint["state"])
    signals = PixelSignals() if checkpoint.get("signals") else None
    backbone = MLSPBackbone(load_efficientnet_lite(checkpoint.get("backbone", backbone_name)))
    if "backbone_state" in checkpoint:  # 2.0: blocks fine-tuned by training/finetune.py
        backbone.net.load_state_dict(checkpoint["backbone_state"])
    model = QualityModel(backbone, ensemble.eval(), signals)
    return model.eval(), checkpoint


def export(model: nn.Module, checkpoint: dict, out: Path, version: str,
           int8: bool = False) -> str:
    """Write the ONNX file (and ``NAME.sha256``); ``int8`` quantises the heads' weights."""
    image = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE, 3, dtype=torch.uint8)
    detail = torch.zeros(2, DETAIL_SIZE, DETAIL_SIZE, 3, dtype=torch.uint8)
    outputs = ["score", *DIAGNOSTICS, "embedding"]
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (image, detail), str(out), input_names=["image", "detail"], output_names=outputs,
        dynamic_axes={name: {0: "n"} for name in ["image", "detail", *outputs]},
        opset_version=17, dynamo=False,
    )
    if int8:
        quantize_heads(out)
    graph = onnx.load(str(out))
    meta = {
        "iqs.name": NAME,
        "iqs.version": version,
        "iqs.inputs": json.dumps({
            "image": {"size": IMAGE_SIZE, "view": "whole"},
            "detail": {"size": DETAIL_SIZE, "view": "detail", "min_short_side": MIN_SHORT_SIDE},
        }),
        "iqs.outputs": json.dumps(OUTPUT_MEANING),
        "iqs.diagnostics": json.dumps(list(DIAGNOSTICS)),
        "iqs.thresholds": json.dumps(checkpoint["thresholds"]),
        "iqs.training": json.dumps({"data": "BIQ2021 official train split + synthetic distortions",
                                    "backbone": _backbone_note(checkpoint),
                                    "signals": "37 measured pixel signals per view"
                                    if checkpoint.get("signals") else "none",
                                    "heads": checkpoint["heads"],
                                    **({"blend": f"{checkpoint['blend']} fine-tuned, "
                                                 f"{1 - checkpoint['blend']} frozen"}
                                       if "blend" in checkpoint else {}),
                                    "weights": "heads int8 (dynamic), backbone float32" if int8
                                    else "float32"}),
    }
    del graph.metadata_props[:]
    for key, value in meta.items():
        graph.metadata_props.add(key=key, value=value)
    graph.doc_string = "iqs-daemon photo quality model; see models/README.md"
    onnx.checker.check_model(graph)
    onnx.save(graph, str(out))
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    out.with_name(out.name + ".sha256").write_text(f"{digest}  {out.name}\n", encoding="utf-8")
    return digest


def _backbone_note(checkpoint: dict) -> str:
    name = checkpoint.get("backbone", "lite0").replace("lite", "EfficientNet-Lite")
    if "fine_tuned_from_block" in checkpoint:
        first = checkpoint["fine_tuned_from_block"]
        return (f"{name} (ImageNet), blocks {first}+ and the 1x1 head "
                "fine-tuned, batch-norm statistics frozen")
    return f"{name} (ImageNet), frozen"


def quantize_heads(path: Path) -> None:
    """int8 weights for the heads' matrix products (two thirds of the file); the backbone's
    convolutions stay float32. Measured on our validation split: SROCC 0.8411 vs 0.8412."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.replace(fp32)
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul", "Gemm"])
    fp32.unlink()


@torch.no_grad()
def parity(model: nn.Module, onnx_path: Path,
           samples: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Largest absolute difference between torch and ONNX Runtime over every output."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    image = np.stack([s[0] for s in samples])
    detail = np.stack([s[1] for s in samples])
    ours = session.run(None, {"image": image, "detail": detail})
    theirs = model(torch.from_numpy(image), torch.from_numpy(detail))
    return max(float(np.abs(a - b.numpy()).max()) for a, b in zip(ours, theirs, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", type=Path, default=Path(__file__).parent / "runs" / "head.pt")
    parser.add_argument("--out", type=Path, default=Path("models") / f"{NAME}.onnx")
    parser.add_argument("--version", default="1.2")
    parser.add_argument("--int8", action="store_true", help="quantise the heads' weights to int8")
    parser.add_argument("--samples", type=Path, nargs="*", default=[],
                        help="photos for the torch-vs-ONNX parity check")
    parser.add_argument("--blend", type=float, default=None,
                        help="with a fine-tuned checkpoint: weight of the fine-tuned half of "
                             "a frozen/fine-tuned blend (training/finetune.py reports them)")
    parser.add_argument("--frozen-heads", type=Path, default=None,
                        help="--blend: the frozen half's heads, training.train's head.pt or an "
                             "exported .onnx (default: the checkpoint's stage A)")
    args = parser.parse_args()
    if args.blend is not None:
        model, checkpoint = load_blended(args.head, args.blend, args.frozen_heads)
    else:
        model, checkpoint = load_trained(args.head)
    digest = export(model, checkpoint, args.out, args.version, int8=args.int8)
    print(f"{args.out}: sha256 {digest}, {args.out.stat().st_size / 1e6:.1f} MB")
    if args.samples:
        from .data import read_rgb
        from .features import views_of

        views = [views_of(read_rgb(p)) for p in args.samples]
        print(f"largest |torch - onnx| over all outputs: "
              f"{parity(model, args.out, [(v.image, v.detail) for v in views]):.2e}")


if __name__ == "__main__":
    main()
