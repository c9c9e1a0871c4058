"""Fast Fuse (Eq. 4) and target heads, in the fast path's token layout (``[M, N, d]``, ``N = B*T``).

Both are cheap; the fast versions only cut launches: Fuse works on the modality-major tensor the bank
produces (no re-stacking), the heads run as one GEMM over the concatenated first layers and one
batched dot for the second layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fuse_fast(fuse, z: torch.Tensor, present_mn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked attention pooling. fuse: :class:`AttentionFuse`; z ``[M, N, d]``; present_mn bool ``[M, N]``
    -> (fused ``[N, d]``, weights ``[M, N]``). A token with no modality present fuses to zeros."""
    s = F.linear(torch.tanh(F.linear(z, fuse.proj.weight, fuse.proj.bias)), fuse.score.weight).squeeze(-1)  # [M, N]
    any_present = present_mn.any(dim=0, keepdim=True)                           # [1, N]
    logits = s.masked_fill(~present_mn, float("-inf"))
    logits = torch.where(any_present, logits, torch.zeros_like(logits))
    w = torch.softmax(logits, dim=0) * any_present                              # [M, N]
    fused = (w.unsqueeze(-1) * z).sum(0)                                        # [N, d] = sum_m w_m z_m
    return fused, w


def heads_fast(heads, e: torch.Tensor) -> torch.Tensor:
    """All target heads at once. heads: :class:`TargetHeads`; e ``[N, d]`` -> ``[N, n_targets]``."""
    hs = heads.heads
    n = len(hs)
    w1 = torch.cat([h[0].weight for h in hs], 0) if n > 1 else hs[0][0].weight    # [n*d/2, d]
    b1 = torch.cat([h[0].bias for h in hs], 0) if n > 1 else hs[0][0].bias
    hid = F.gelu(F.linear(e, w1, b1))                                          # [N, n*d/2]
    w2 = torch.cat([h[2].weight for h in hs], 0) if n > 1 else hs[0][2].weight    # [n, d/2]
    b2 = torch.cat([h[2].bias for h in hs], 0) if n > 1 else hs[0][2].bias        # [n]
    N = e.shape[0]
    out = torch.bmm(hid.view(N, n, -1).transpose(0, 1), w2.unsqueeze(-1))      # [n, N, 1]
    return out.squeeze(-1).t() + b2
