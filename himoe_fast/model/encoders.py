"""Modality-specific encoders (paper, "Modality-Specific Encoder"): raw windows -> ``Z_m``.

Every encoder maps ``x: [B, T, C_m, S_m]`` (``T`` windows of ``S_m = window_s * sfreq_m`` samples)
to ``Z_m: [B, T, d]``; windows are encoded independently (the time axis is folded into the batch).
Parameters are never shared between modalities. Kernel sizes and pooling follow ``sfreq`` so that one
layer spans the same duration at any rate, and every layer is clamped so that any channel count >= 1
and any window of >= 16 samples builds.

Exact layers (``N = B*T`` windows):

``EEGEncoder`` (kind ``eeg``; EEGNet-like, Lawhern et al. 2018)::

    [N, 1, C, S]
    temporal   Conv2d(1, F1=8, (1, k_t)), k_t = odd(sfreq/4) (~250 ms), 'same' padding, no bias
    spatial    depthwise Conv2d(F1, F1*D=16, (C, 1), groups=F1), no bias           -> [N, 16, 1, S]
    ELU, AvgPool2d((1, p1)), p1 = sfreq/32 (4 at 128 Hz), Dropout                  -> [N, 16, 1, S/p1]
    separable  depthwise Conv2d(16, 16, (1, k_s), groups=16), k_s = odd(sfreq/(8 p1)), no bias
               + pointwise Conv2d(16, F2=16, 1), no bias
    ELU, AdaptiveAvgPool2d((1, 8)), Dropout, flatten (128) -> Linear(128, d) -> LayerNorm(d)

``SignalEncoder`` (kind ``signal``; 1-8 channel physiological signals)::

    [N, C, S]
    Conv1d(C, 16, k1), k1 = odd(sfreq/8) (~125 ms), 'same' padding, GELU
    AvgPool1d(p), p = sfreq/16 (8 at 128 Hz)
    Conv1d(16, 32, 5), 'same' padding, GELU, AdaptiveAvgPool1d(4)
    Dropout, flatten (128) -> Linear(128, d) -> LayerNorm(d)

``FeaturesEncoder`` (kind ``features``; precomputed per-frame features such as facial AUs)::

    [N, C, S]  ->  [mean over S ; std over S]  [N, 2C]  -> Linear(2C, d) -> GELU -> Linear(d, d)
    -> LayerNorm(d)

Design choices (documented in README "Model"):
* No BatchNorm (EEGNet has it): batch statistics would let the raw input of an *absent* modality in
  one sample change other samples' outputs, and tie results to batch composition. Inputs are
  standardised by the data pipeline instead, and a per-token LayerNorm closes every encoder.
* No non-linearity or norm between EEGNet's temporal and spatial convolutions: the pair is one
  linear map, so the fast path may apply the (cheap) spatial mix first with identical parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModalitySpec


def odd(n: float, lo: int, hi: int) -> int:
    """Nearest odd integer to ``n`` clamped into ``[lo, hi]`` (``hi`` itself rounded down to odd)."""
    hi = max(1, hi if hi % 2 == 1 else hi - 1)
    k = int(round(n))
    k = k if k % 2 == 1 else k + 1
    return max(min(k, hi), min(lo, hi))


def clamp(n: float, lo: int, hi: int) -> int:
    return int(max(lo, min(int(round(n)), max(lo, hi))))


class EEGEncoder(nn.Module):
    """EEGNet-like encoder for many-channel EEG. ``[N, C, S] -> [N, d]`` (see module docstring)."""

    F1, D, F2, POOL_OUT = 8, 2, 16, 8

    def __init__(self, spec: ModalitySpec, window_s: float, d_model: int, dropout: float = 0.1):
        super().__init__()
        C, S, fs = spec.channels, spec.samples(window_s), spec.sfreq
        self.k_t = odd(fs / 4, 3, S)
        self.p1 = clamp(fs / 32, 1, S // 4)
        s1 = S // self.p1
        self.k_s = odd(fs / (8 * self.p1), 3, s1)
        F1, D, F2 = self.F1, self.D, self.F2
        self.temporal = nn.Conv2d(1, F1, (1, self.k_t), padding=(0, self.k_t // 2), bias=False)
        self.spatial = nn.Conv2d(F1, F1 * D, (C, 1), groups=F1, bias=False)
        self.pool1 = nn.AvgPool2d((1, self.p1))
        self.depthwise = nn.Conv2d(F1 * D, F1 * D, (1, self.k_s), padding=(0, self.k_s // 2),
                                   groups=F1 * D, bias=False)
        self.pointwise = nn.Conv2d(F1 * D, F2, 1, bias=False)
        self.pool2 = nn.AdaptiveAvgPool2d((1, self.POOL_OUT))
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(F2 * self.POOL_OUT, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.act = nn.ELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[N, C, S]`` -> ``[N, d]``."""
        h = self.spatial(self.temporal(x.unsqueeze(1)))          # [N, F1*D, 1, S]
        h = self.drop(self.pool1(self.act(h)))                   # [N, F1*D, 1, S/p1]
        h = self.pointwise(self.depthwise(h))                    # [N, F2, 1, S/p1]
        h = self.drop(self.pool2(self.act(h)))                   # [N, F2, 1, 8]
        return self.norm(self.proj(h.flatten(1)))


class SignalEncoder(nn.Module):
    """1-D conv stack for low-channel physiological signals. ``[N, C, S] -> [N, d]``."""

    C1, C2, POOL_OUT = 16, 32, 4

    def __init__(self, spec: ModalitySpec, window_s: float, d_model: int, dropout: float = 0.1):
        super().__init__()
        C, S, fs = spec.channels, spec.samples(window_s), spec.sfreq
        self.k1 = odd(fs / 8, 3, S // 2)
        self.p = clamp(fs / 16, 1, S // 8)
        self.conv1 = nn.Conv1d(C, self.C1, self.k1, padding=self.k1 // 2)
        self.pool1 = nn.AvgPool1d(self.p)
        self.conv2 = nn.Conv1d(self.C1, self.C2, 5, padding=2)
        self.pool2 = nn.AdaptiveAvgPool1d(self.POOL_OUT)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(self.C2 * self.POOL_OUT, d_model)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[N, C, S]`` -> ``[N, d]``."""
        h = self.pool1(self.act(self.conv1(x)))                  # [N, 16, S/p]
        h = self.pool2(self.act(self.conv2(h)))                  # [N, 32, 4]
        return self.norm(self.proj(self.drop(h.flatten(1))))


class FeaturesEncoder(nn.Module):
    """Pool precomputed per-frame features over the window, then an MLP. ``[N, C, S] -> [N, d]``."""

    def __init__(self, spec: ModalitySpec, window_s: float, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.fc1 = nn.Linear(2 * spec.channels, d_model)
        self.fc2 = nn.Linear(d_model, d_model)
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: ``[N, C, S]`` -> ``[N, d]``."""
        pooled = torch.cat([x.mean(-1), x.std(-1, unbiased=False)], dim=-1)   # [N, 2C]
        return self.norm(self.fc2(self.drop(self.act(self.fc1(pooled)))))


ENCODERS = {"eeg": EEGEncoder, "signal": SignalEncoder, "features": FeaturesEncoder}


class ModalityEncoder(nn.Module):
    """Wraps a kind-specific encoder to work on ``[B, T, C, S]`` windows: ``-> Z_m: [B, T, d]``."""

    def __init__(self, spec: ModalitySpec, window_s: float, d_model: int, dropout: float = 0.1):
        super().__init__()
        self.spec = spec
        self.samples = spec.samples(window_s)
        self.net = ENCODERS[spec.kind](spec, window_s, d_model, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C, S = x.shape
        return self.net(x.reshape(B * T, C, S)).reshape(B, T, -1)


def build_encoders(modalities, window_s: float, d_model: int, dropout: float) -> nn.ModuleDict:
    """One encoder per modality, keyed by modality name (no weight sharing)."""
    return nn.ModuleDict({m.name: ModalityEncoder(m, window_s, d_model, dropout) for m in modalities})
