"""Masked NT-Xent alignment loss over all modality pairs (paper Eq. 1 and 7), plain PyTorch.

Exact definition (DESIGN.md section 3). For every unordered modality pair ``i < j``: keep the ``n``
tokens present in both, stack ``u = normalize([z_i; z_j])`` (``2n x d``), ``S = u u^T / tau`` with
the diagonal excluded; the positive of row ``a`` is the same token in the other modality; the pair
loss is the mean over the ``2n`` rows of ``-log softmax(S[a])[pos(a)]`` (SimCLR). Pairs with
``n < 2`` are skipped. The result is the mean over the pairs not skipped, and a differentiable 0 when
none qualifies. Absent tokens are neither anchors nor negatives.

This is the readable reference: it materialises each ``2n x 2n`` similarity matrix. The C++/CUDA
extension (``backend="ext"``) computes the same value tiled, without it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_ntxent(u_i: torch.Tensor, u_j: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR NT-Xent of one modality pair (Eq. 7).

    u_i, u_j: ``[n, d]`` L2-normalised embeddings of the same ``n`` tokens in two modalities.
    Returns the mean over the ``2n`` anchors of ``-log softmax(S[a])[pos(a)]``.
    """
    n = u_i.shape[0]
    u = torch.cat([u_i, u_j], dim=0)                                      # [2n, d]
    sim = (u @ u.T) / temperature                                          # Eq. 1, [2n, 2n]
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    sim = sim.masked_fill(self_mask, float("-inf"))                        # I[j != i]
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    return F.cross_entropy(sim, positive)


def masked_ntxent_torch(z: torch.Tensor, present: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Masked NT-Xent over all modality pairs.

    z: ``[M, N, d]`` encoder outputs (``N = B*T`` tokens per modality); present: bool ``[M, N]``.
    Returns a scalar tensor (dtype of ``z``).
    """
    if z.dim() != 3 or present.shape != z.shape[:2]:
        raise ValueError(f"masked_ntxent: expected z [M, N, d] and present [M, N], got {tuple(z.shape)} "
                         f"and {tuple(present.shape)}")
    present = present.to(torch.bool)
    u = F.normalize(z, dim=-1)
    losses = []
    M = z.shape[0]
    for i in range(M):
        for j in range(i + 1, M):
            shared = torch.nonzero(present[i] & present[j]).squeeze(1)     # tokens present in both
            if shared.numel() < 2:
                continue
            losses.append(pair_ntxent(u[i, shared], u[j, shared], temperature))
    if not losses:
        return z.sum() * 0.0                                               # differentiable zero
    return torch.stack(losses).mean()
