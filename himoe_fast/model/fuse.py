"""Fuse (paper Eq. 4): masked attention pooling over the modality-bank outputs."""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Softmax of ``scores`` over the last axis restricted to ``present`` entries.

    Rows with nothing present give all zeros (and finite gradients: those rows are pushed through a
    uniform softmax on zeroed logits and multiplied by 0, never through ``-inf - -inf``).
    """
    any_present = present.any(dim=-1, keepdim=True)
    logits = scores.masked_fill(~present, float("-inf"))
    logits = torch.where(any_present, logits, torch.zeros_like(logits))
    return torch.softmax(logits, dim=-1) * any_present


class AttentionFuse(nn.Module):
    """``z_t = sum_m w_m z_t^(m)`` with ``w = softmax_{m present}(s)``, ``s_m = v^T tanh(W_a z^(m) + b_a)``.

    A time step with no modality present fuses to the zero vector.
    Parameters: ``proj`` (W_a, b_a: ``d -> a``), ``score`` (v: ``a -> 1``, no bias).

    ``v`` starts at zero, so Fuse starts as the plain mean over the present modalities and the
    attention grows from there. With a random ``v`` the softmax saturated within the first epoch onto
    one or two modalities in about half of the seeds on synthetic DEAP (weights ~1e-3 elsewhere),
    which starved the other encoders of gradient: those runs ended at CCC ~0.25 instead of ~0.68.
    """

    def __init__(self, d_model: int, attn_dim: int = 0):
        super().__init__()
        a = attn_dim or d_model
        self.proj = nn.Linear(d_model, a)
        self.score = nn.Linear(a, 1, bias=False)
        nn.init.zeros_(self.score.weight)

    def forward(self, z: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: ``[B, T, M, d]``, present: bool ``[B, T, M]`` -> (fused ``[B, T, d]``, weights ``[B, T, M]``)."""
        s = self.score(torch.tanh(self.proj(z))).squeeze(-1)          # [B, T, M]
        w = masked_softmax(s, present)                                # softmax over present m
        return (w.unsqueeze(-1) * z).sum(dim=-2), w
