"""Measured pixel signals that sit beside the backbone's features.

An ImageNet backbone is trained to ignore exactly what exposure and compression damage
look like: its features change little when a photo is brightened by one stop or when
8x8 JPEG blocks appear. So each view also yields a few plain measurements, computed in
the exported graph from the same uint8 pixels:

* the luminance distribution (share of pixels brighter than each of 17 levels, finest
  near black and near white) and the share with a clipped channel at either end;
* the mean horizontal and vertical luminance gradient (sharpness and noise);
* a blockiness profile: mean horizontal (and vertical) luminance step at each of the
  8 column (row) phases, divided by their mean and sorted, so that an 8x8 block grid at
  any offset shows as one phase standing out.

37 values per view. The heads learn how much each matters; the direction losses teach
them which way.
"""

from __future__ import annotations

import torch
from torch import nn

LUMA = (0.299, 0.587, 0.114)
LEVELS = (0.5, 4, 8, 16, 32, 48, 64, 96, 128, 160, 192, 208, 224, 240, 248, 252, 254.5)
PHASES = 8
SIGNAL_DIM = len(LEVELS) + 2 + 2 + 2 * PHASES


class PixelSignals(nn.Module):
    """uint8 NHWC RGB -> (n, SIGNAL_DIM) float32."""

    def __init__(self):
        super().__init__()
        self.register_buffer("luma", torch.tensor(LUMA))
        self.register_buffer("levels", torch.tensor(LEVELS).view(1, -1, 1, 1))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        rgb = pixels.float()
        # Mul + ReduceSum, not a MatMul: the int8 export quantises every MatMul.
        luma = (rgb * self.luma).sum(dim=3)  # n, h, w
        # Shares of a distribution need no full resolution: every other pixel.
        sparse = luma[:, ::2, ::2].unsqueeze(1)
        brighter = (sparse > self.levels).float().mean(dim=(2, 3))
        sparse_rgb = rgb[:, ::2, ::2]
        clipped = torch.stack([(sparse_rgb.amax(dim=3) > 254.5).float().mean(dim=(1, 2)),
                               (sparse_rgb.amin(dim=3) < 0.5).float().mean(dim=(1, 2))], dim=1)
        dx = (luma[:, :, 1:] - luma[:, :, :-1]).abs()
        dy = (luma[:, 1:, :] - luma[:, :-1, :]).abs()
        gradient = torch.stack([dx.mean(dim=(1, 2)), dy.mean(dim=(1, 2))], dim=1) / 255.0
        return torch.cat([brighter, clipped, gradient, _phase_profile(dx.mean(dim=1)),
                          _phase_profile(dy.mean(dim=2))], dim=1)


def _phase_profile(steps: torch.Tensor) -> torch.Tensor:
    """(n, length) mean steps between neighbours -> (n, PHASES) sorted relative strengths."""
    usable = (steps.shape[1] // PHASES) * PHASES
    by_phase = steps[:, :usable].reshape(steps.shape[0], -1, PHASES).mean(dim=1)
    relative = by_phase / (by_phase.mean(dim=1, keepdim=True) + 1e-3)
    return torch.topk(relative, PHASES, dim=1).values
