"""Temporal stages for asynchronous inputs (this project's design; the paper names no mechanism).

The paper says the encoded features "are then temporally aligned" and that the alignment module
"learns to synchronize latent features both temporally and semantically", but its equations act on
one time step at a time. Two optional stages move information across the ``T`` windows of a sample;
``HiMoEConfig.temporal`` switches them on (``"none"`` keeps the paper-literal model):

``LagAligner`` (``temporal="align"`` and ``"align+context"``), between the encoders and the
Modality Expert Bank. Per modality ``m``, a softmax ``pi_m`` over candidate shifts
``k in {-D..D}`` windows (``{-D..0}`` when causal) and a mixing gain ``g_m`` (init 0; both learn
at 10x the optimiser's rate, see :class:`LagAligner`)::

    avg_m[t]   = sum_k pi_m[k] p_m[t+k] Z_m[t+k] / sum_k pi_m[k] p_m[t+k]       (present windows only;
                                                                                Z_m[t] if the sum is 0)
    Z'_m[t]    = Z_m[t] + g_m (avg_m[t] - Z_m[t])        where p_m[t], else 0

so a fresh model is exactly the identity (``g = 0``), an absent window stays absent and contributes
nothing, and the effective kernel ``(1 - g) delta_0 + g pi`` can shift and smear the modality by up
to ``D`` windows. The masked NT-Xent (Eq. 1, 7) is computed on ``Z'``, so the alignment loss -- whose
positives are the same window index in two modalities -- trains the shifts. ``learned_delays``
reports the mixed-in part's mean shift in windows, ``clamp(g, 0, 1) * sum_k pi_m[k] k`` (the kernel's
centre of mass for ``0 <= g <= 1``; positive: the modality is read *later*, i.e. it lags).

``TemporalContext`` (``temporal="align+context"``), between Fuse and the Emotion Expert Bank: one
pre-norm masked self-attention block over the ``T`` fused tokens with a zero-initialised output
projection (identity at init), so the DA-router's query and the experts see evidence pooled over the
sample; steps where no modality is present are never attended to and stay zero. ``causal=True``
restricts both stages to the past (streaming).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def shift_offsets(max_shift: int, causal: bool) -> list[int]:
    """Candidate shifts in windows: ``-D..D``, or ``-D..0`` (past only) when causal."""
    return list(range(-max_shift, 1 if causal else max_shift + 1))


def shifted(x: torch.Tensor, k: int, fill: float | bool = 0) -> torch.Tensor:
    """``y[:, t] = x[:, t + k]`` along dim 1, ``fill`` where ``t + k`` is outside ``[0, T)``."""
    if k == 0:
        return x
    T = x.shape[1]
    y = torch.full_like(x, fill)
    if abs(k) < T:
        if k > 0:
            y[:, : T - k] = x[:, k:]
        else:
            y[:, -k:] = x[:, : T + k]
    return y


class LagAligner(nn.Module):
    """Per-modality learned temporal shift. ``Z [B, T, M, d], present [B, T, M] -> Z' [B, T, M, d]``.

    Parameters: ``shift_logits [M, S]`` (``S`` candidate shifts, init 0 = uniform), ``gain [M]``
    (init 0 = identity). Both are used multiplied by :attr:`RATE`: Adam moves a parameter by about
    ``lr`` per step whatever its gradient's size, so at ``lr = 1e-3`` the plain logits would move by
    less than 1 in a whole short run and the kernel could never become sharp (measured: after 8
    epochs on synthetic DEAP the shift distribution was still uniform and the gain below 0.1).
    """

    RATE = 10.0

    def __init__(self, n_modalities: int, max_shift: int, causal: bool = False):
        super().__init__()
        self.max_shift = int(max_shift)
        self.causal = bool(causal)
        self.offsets = shift_offsets(self.max_shift, self.causal)
        self.shift_logits = nn.Parameter(torch.zeros(n_modalities, len(self.offsets)))
        self.gain = nn.Parameter(torch.zeros(n_modalities))

    def forward(self, Z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        pi = torch.softmax(self.RATE * self.shift_logits.float(), dim=-1).to(Z.dtype)   # [M, S]
        p = present.to(Z.dtype).unsqueeze(-1)                                     # [B, T, M, 1]
        zp = Z * p
        num = torch.zeros_like(Z)
        den = torch.zeros_like(p)
        for s, k in enumerate(self.offsets):
            w = pi[:, s, None]                                                    # [M, 1]
            num = num + w * shifted(zp, k)
            den = den + w * shifted(p, k)
        # no weighted source (the kernel's support lies outside the sample): keep the window's own features
        avg = torch.where(den > 0, num / den.clamp_min(torch.finfo(Z.dtype).tiny), Z)
        g = (self.RATE * self.gain).to(Z.dtype)[:, None]
        return (Z + g * (avg - Z)) * p

    def delays(self) -> torch.Tensor:
        """Centre of mass of each modality's kernel, in windows: ``[M]`` (positive = read later).

        With the gain clamped to ``[0, 1]``: a negative gain pushes the window away from its
        neighbours instead of reading them, which moves no evidence in time (delay 0)."""
        pi = torch.softmax(self.RATE * self.shift_logits.detach().float(), dim=-1)
        g = (self.RATE * self.gain.detach().float()).clamp(0.0, 1.0)
        return g * (pi * torch.tensor(self.offsets, dtype=pi.dtype)).sum(-1)


class TemporalContext(nn.Module):
    """Masked self-attention over the ``T`` fused tokens, residual, identity at init.

    ``z [B, T, d], valid [B, T] -> z + Attn(LN(z)) [B, T, d]`` (invalid steps stay as they are: zero).
    """

    def __init__(self, d_model: int, heads: int = 4, causal: bool = False, dropout: float = 0.0):
        super().__init__()
        self.heads = heads if d_model % heads == 0 else 1
        self.causal = bool(causal)
        self.dropout = float(dropout)
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        B, T, d = z.shape
        H = self.heads
        q, k, v = self.qkv(self.norm(z)).reshape(B, T, 3, H, d // H).permute(2, 0, 3, 1, 4)   # [B, H, T, d/H]
        allowed = valid[:, None, None, :].expand(B, 1, T, T)                    # keys that exist
        if self.causal:
            allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=z.device).tril()
        # a query with no allowed key (only possible where it is itself invalid) attends to itself
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=z.device)
        h = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.dropout if self.training else 0.0)
        h = self.out(h.transpose(1, 2).reshape(B, T, d))
        return z + h * valid.unsqueeze(-1).to(h.dtype)
