"""Modality Expert Bank (paper Eq. 2-3) and the stacked FFN experts shared with the emotion bank.

Weights of every bank are stored *stacked* (``[M, K, d, h]`` etc.) so that the fast path (one fused
launch for all modalities and experts) reads the very same state dict. The reference below still
loops over modalities and experts, one equation at a time.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import EXPERT_INITS


def init_stacked_linear_(weight: torch.Tensor, bias: torch.Tensor | None, fan_in: int) -> None:
    """``nn.Linear``'s default init applied to a stack of weights ``[..., fan_in, fan_out]``."""
    bound = 1.0 / math.sqrt(fan_in)
    nn.init.uniform_(weight, -bound, bound)
    if bias is not None:
        nn.init.uniform_(bias, -bound, bound)


def init_expert_ffn_(w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                     scheme: str = "scaled") -> None:
    """Initialise stacked FFN experts ``w1 [..., d, h]``, ``b1 [..., h]``, ``w2 [..., h, d]``, ``b2 [..., d]``.

    ``scaled`` (default): ``w1 ~ N(0, 2/d)`` (He, for the GELU), ``w2 ~ N(0, 1/h)``, zero biases: one
    expert keeps the spread of its input (std ratio ~0.96 for unit-variance tokens). ``torch``:
    ``nn.Linear``'s default (uniform +-1/sqrt(fan_in), biases too), which shrinks the spread about
    5x per FFN and adds a random offset of the same size. Two banks in series (Eq. 3 then Eq. 6) then
    hand the heads a token whose across-window spread is ~1/360 of the encoders' at the start
    (measured on synthetic DEAP, EEG+PPS): on the binary task Hi-MoE never learned valence,
    dominance or liking (train accuracy stayed at 0.50). The paper does not state an initialisation.
    """
    if scheme not in EXPERT_INITS:
        raise ValueError(f"expert_init must be one of {EXPERT_INITS}, got {scheme!r}")
    if scheme == "torch":
        init_stacked_linear_(w1, b1, w1.shape[-2])
        init_stacked_linear_(w2, b2, w2.shape[-2])
        return
    with torch.no_grad():
        w1.normal_(0.0, math.sqrt(2.0 / w1.shape[-2]))
        w2.normal_(0.0, math.sqrt(1.0 / w2.shape[-2]))
        b1.zero_()
        b2.zero_()


def expert_ffn(x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor,
               b2: torch.Tensor) -> torch.Tensor:
    """One FFN expert ``E(x) = W2 gelu(W1 x + b1) + b2`` (exact erf GELU).

    x: ``[..., d]``, w1: ``[d, h]``, b1: ``[h]``, w2: ``[h, d]``, b2: ``[d]`` -> ``[..., d]``.
    """
    return F.gelu(x @ w1 + b1) @ w2 + b2


def gate_weights(logits: torch.Tensor, routing: str) -> torch.Tensor:
    """Routing weights over the last axis of ``logits``.

    ``soft``: softmax (Eq. 2); ``uniform``: 1/K; ``top1``: one-hot argmax (the "w/o soft routing"
    ablation; the gate then receives no gradient, i.e. a fixed random hard router); ``top1_st``: a
    *learned* hard router, the one-hot argmax forward with the softmax's gradient backward
    (straight-through estimator). The paper does not say which hard router its ablation used.
    """
    if routing == "top1_st":
        p = torch.softmax(logits, dim=-1)
        hard = F.one_hot(p.argmax(dim=-1), logits.shape[-1]).to(p.dtype)
        return hard + (p - p.detach())                 # value: exactly one-hot; gradient: softmax's
    if routing == "soft":
        return torch.softmax(logits, dim=-1)
    if routing == "uniform":
        return torch.full_like(logits, 1.0 / logits.shape[-1])
    if routing == "top1":
        return F.one_hot(logits.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    raise ValueError(f"unknown routing {routing!r}")


class ModalityExpertBank(nn.Module):
    """Per-modality soft-gated mixture of ``K`` FFN experts (Eq. 2-3).

    For modality ``m`` and token ``x = x_t^(m)`` (a zero vector when the modality is absent)::

        alpha^(m) = softmax(x W_g^(m) + b_g^(m))                  (Eq. 2)   [K]
        z^(m)     = sum_k alpha^(m)[k] * E_k^(m)(x)               (Eq. 3)   [d]

    Parameters (stacked over modalities and experts):
        gate_weight ``[M, d, K]``, gate_bias ``[M, K]``,
        w1 ``[M, K, d, h]``, b1 ``[M, K, h]``, w2 ``[M, K, h, d]``, b2 ``[M, K, d]``.
    """

    def __init__(self, n_modalities: int, d_model: int, n_experts: int, hidden: int, routing: str = "soft",
                 expert_init: str = "scaled"):
        super().__init__()
        M, d, K, h = n_modalities, d_model, n_experts, hidden
        self.routing = routing
        self.gate_weight = nn.Parameter(torch.empty(M, d, K))
        self.gate_bias = nn.Parameter(torch.empty(M, K))
        self.w1 = nn.Parameter(torch.empty(M, K, d, h))
        self.b1 = nn.Parameter(torch.empty(M, K, h))
        self.w2 = nn.Parameter(torch.empty(M, K, h, d))
        self.b2 = nn.Parameter(torch.empty(M, K, d))
        init_stacked_linear_(self.gate_weight, self.gate_bias, d)
        init_expert_ffn_(self.w1, self.b1, self.w2, self.b2, expert_init)

    @property
    def n_modalities(self) -> int:
        return self.w1.shape[0]

    @property
    def n_experts(self) -> int:
        return self.w1.shape[1]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: ``[B, T, M, d]`` (absent modalities already zero) -> (z ``[B, T, M, d]``, alpha ``[B, T, M, K]``)."""
        outputs, gates = [], []
        for m in range(self.n_modalities):
            x_m = x[..., m, :]                                                     # [B, T, d]
            alpha = gate_weights(x_m @ self.gate_weight[m] + self.gate_bias[m], self.routing)  # Eq. 2
            z_m = sum(
                alpha[..., k : k + 1] * expert_ffn(x_m, self.w1[m, k], self.b1[m, k], self.w2[m, k], self.b2[m, k])
                for k in range(self.n_experts)
            )                                                                      # Eq. 3
            outputs.append(z_m)
            gates.append(alpha)
        return torch.stack(outputs, dim=-2), torch.stack(gates, dim=-2)
