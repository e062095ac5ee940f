"""The trainable part of the model: a small MLP ensemble on the frozen MLSP features.

Every head sees the features of both views, concatenated and standardised with the
training set's statistics (kept as buffers, so the exported graph carries them), and
predicts the opinion score (MOS units, 0..1) and one 0..1 strength per diagnostic.
"""

from __future__ import annotations

import torch
from torch import nn

DIAGNOSTICS = ("blur", "noise", "compression", "underexposure", "overexposure")


class QualityHead(nn.Module):
    def __init__(self, mean: torch.Tensor, std: torch.Tensor, hidden: int = 256,
                 input_dropout: float = 0.2, dropout: float = 0.2):
        super().__init__()
        self.register_buffer("mean", mean.clone().float())
        self.register_buffer("std", std.clone().float())
        self.body = nn.Sequential(
            nn.Dropout(input_dropout),
            nn.Linear(mean.numel(), hidden),
            nn.GELU(),
            nn.Dropout(dropout),
        )
        self.score = nn.Linear(hidden, 1)
        self.diagnostics = nn.Linear(hidden, len(DIAGNOSTICS))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body((features - self.mean) / self.std)
        return self.score(h).squeeze(1), torch.sigmoid(self.diagnostics(h))


class Ensemble(nn.Module):
    """The mean of several heads trained from different seeds (and data orders)."""

    def __init__(self, heads: list[QualityHead]):
        super().__init__()
        self.heads = nn.ModuleList(heads)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs = [head(features) for head in self.heads]
        score = torch.stack([o[0] for o in outs]).mean(0)
        diagnostics = torch.stack([o[1] for o in outs]).mean(0)
        return score, diagnostics
