"""Fast lag aligner: the reference :class:`~himoe_fast.model.temporal.LagAligner` as two einsums.

The reference adds one shifted copy of ``Z`` per candidate shift (``2D + 1`` passes over
``[B, T, M, d]``, each with fresh allocations). Here ``Z * p`` is zero-padded once along ``T`` and
``unfold`` gives every window's candidate sources as a strided view ``[B, T, M, d, S]``, so the
numerator and the denominator are one contraction each with the kernel ``pi [M, S]``. Same
parameters, same numbers (fp32 parity tests in ``tests/test_temporal.py``).
"""

from __future__ import annotations

import torch

from ..model.temporal import LagAligner


def align_fast(aligner: LagAligner, Z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """``Z [B, T, M, d], present [B, T, M] -> Z' [B, T, M, d]`` (as ``aligner(Z, present)``)."""
    D = aligner.max_shift
    right = 0 if aligner.causal else D                   # offsets -D..D (or -D..0): unfold index j -> k = j - D
    S = D + right + 1
    pi = torch.softmax(aligner.RATE * aligner.shift_logits.float(), dim=-1).to(Z.dtype)   # [M, S]
    p = present.to(Z.dtype)                                                               # [B, T, M]
    zp = Z * p.unsqueeze(-1)
    B, T, M, d = Z.shape
    pad = lambda x: torch.cat([x.new_zeros(B, D, *x.shape[2:]), x, x.new_zeros(B, right, *x.shape[2:])], dim=1)
    src = pad(zp).unfold(1, S, 1)                         # [B, T, M, d, S]: src[..., j] = zp[:, t + j - D]
    num = torch.einsum("btmds,ms->btmd", src, pi)
    den = torch.einsum("btms,ms->btm", pad(p).unfold(1, S, 1), pi).unsqueeze(-1)
    avg = torch.where(den > 0, num / den.clamp_min(torch.finfo(Z.dtype).tiny), Z)
    g = (aligner.RATE * aligner.gain).to(Z.dtype)[:, None]
    return (Z + g * (avg - Z)) * p.unsqueeze(-1)
