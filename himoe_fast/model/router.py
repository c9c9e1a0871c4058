"""Emotion Expert Bank with the DA-router (paper Eq. 5-6).

``L`` FFN experts ``F_l`` read the fused token ``z``; the router scores each expert by how well its
*output* matches the input, ``phi(z, F_l(z))``, and mixes the outputs::

    beta[l] = softmax_l( phi(z, F_l(z)) )                           (Eq. 5)   [L]
    e       = sum_l beta[l] * F_l(z)                                 (Eq. 6)   [d]

Similarity modes (``router=``):
    dot     phi = <W_q z, W_k F_l(z)> / sqrt(r)                       (default)
    cosine  phi = s * cos(W_q z, W_k F_l(z)),  s learnable (init 10)
    diff    two projection pairs give phi1, phi2 as in ``dot``;
            beta = softmax(phi1) - lam * softmax(phi2),
            lam  = exp(<lq1, lk1>) - exp(<lq2, lk2>) + lam_init       (DIFF Transformer, Ye et al. 2024)
            rows of beta need not sum to 1.

Parameters: w1 ``[L, d, h]``, b1 ``[L, h]``, w2 ``[L, h, d]``, b2 ``[L, d]``; wq, wk ``[P, d, r]``
(``P = 2`` for diff, else 1); ``scale`` ``[]`` (cosine); ``lambda_q``, ``lambda_k`` ``[2, r]`` (diff).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .experts import expert_ffn, init_expert_ffn_, init_stacked_linear_

COSINE_EPS = 1e-6


def router_logits(z: torch.Tensor, f_l: torch.Tensor, wq: torch.Tensor, wk: torch.Tensor, mode: str,
                  scale: torch.Tensor | None = None) -> torch.Tensor:
    """``phi(z, F_l(z))`` for one expert and one projection pair.

    z, f_l: ``[..., d]``; wq, wk: ``[d, r]`` -> ``[...]``.
    """
    q, k = z @ wq, f_l @ wk                                               # [..., r]
    if mode == "cosine":
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
        k = k / k.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
        return scale * (q * k).sum(-1)
    return (q * k).sum(-1) / math.sqrt(wq.shape[-1])


class EmotionExpertBank(nn.Module):
    """``L`` FFN emotion experts mixed by the DA-router. ``z: [B, T, d] -> (e [B, T, d], beta [B, T, L])``."""

    def __init__(self, d_model: int, n_experts: int, hidden: int, router_dim: int, router: str = "dot",
                 lam_init: float = 0.2, cosine_scale_init: float = 10.0, expert_init: str = "scaled"):
        super().__init__()
        L, d, h, r = n_experts, d_model, hidden, router_dim
        self.router = router
        self.lam_init = float(lam_init)
        self.w1 = nn.Parameter(torch.empty(L, d, h))
        self.b1 = nn.Parameter(torch.empty(L, h))
        self.w2 = nn.Parameter(torch.empty(L, h, d))
        self.b2 = nn.Parameter(torch.empty(L, d))
        init_expert_ffn_(self.w1, self.b1, self.w2, self.b2, expert_init)
        pairs = 2 if router == "diff" else 1
        self.wq = nn.Parameter(torch.empty(pairs, d, r))
        self.wk = nn.Parameter(torch.empty(pairs, d, r))
        init_stacked_linear_(self.wq, None, d)
        init_stacked_linear_(self.wk, None, d)
        if router == "cosine":
            self.scale = nn.Parameter(torch.tensor(float(cosine_scale_init)))
        if router == "diff":
            self.lambda_q = nn.Parameter(torch.randn(2, r) * 0.1)
            self.lambda_k = nn.Parameter(torch.randn(2, r) * 0.1)

    @property
    def n_experts(self) -> int:
        return self.w1.shape[0]

    def diff_lambda(self) -> torch.Tensor:
        """``lam = exp(<lq1, lk1>) - exp(<lq2, lk2>) + lam_init`` (scalar)."""
        dots = (self.lambda_q * self.lambda_k).sum(-1)
        return torch.exp(dots[0]) - torch.exp(dots[1]) + self.lam_init

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z: ``[B, T, d]`` -> (e ``[B, T, d]``, beta ``[B, T, L]``)."""
        experts = [expert_ffn(z, self.w1[l], self.b1[l], self.w2[l], self.b2[l]) for l in range(self.n_experts)]
        scale = getattr(self, "scale", None)

        def phi(p: int) -> torch.Tensor:                                   # [B, T, L]
            return torch.stack([router_logits(z, f, self.wq[p], self.wk[p], self.router, scale)
                                for f in experts], dim=-1)

        beta = torch.softmax(phi(0), dim=-1)                               # Eq. 5
        if self.router == "diff":
            beta = beta - self.diff_lambda() * torch.softmax(phi(1), dim=-1)
        e = sum(beta[..., l : l + 1] * f for l, f in enumerate(experts))   # Eq. 6
        return e, beta
