"""Dimension-specific prediction heads (paper, "Dimension-Specific Prediction and Loss")."""

from __future__ import annotations

import torch
from torch import nn


class TargetHeads(nn.Module):
    """One independent head per target: ``Linear(d, d//2) -> GELU -> Linear(d//2, 1)``.

    For regression the last bias starts at the middle of the rating scale (5 on DEAP's 1-9), so
    training starts from the scale's centre instead of 0; for ``binary`` the heads output logits.
    ``e: [B, T, d] -> [B, T, n_targets]``.
    """

    def __init__(self, d_model: int, n_targets: int, init_bias: float = 0.0):
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(d_model, d_model // 2), nn.GELU(), nn.Linear(d_model // 2, 1))
            for _ in range(n_targets)
        )
        with torch.no_grad():
            for head in self.heads:
                head[2].bias.fill_(init_bias)

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        return torch.cat([head(e) for head in self.heads], dim=-1)
