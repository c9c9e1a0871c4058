"""Baselines of the paper's comparisons, re-implemented under the same data, encoders, heads and loss.

Every baseline reuses Hi-MoE's modality encoders (same raw windows in, ``Z_m: [B, T, d]`` out) and
the same per-target heads, so the comparison isolates the *fusion* strategy. All follow the HiMoE
calling convention: ``model(inputs, present) -> out`` with ``out.pred [B, T, n_targets]``,
``model.loss(out, labels, label_mask)`` and ``model.predict_scores(out)``. None has an alignment
module (``out.alignment_loss`` is 0).

How each treats absent modalities (``present[b, t, m] == False``):

* ``late_fusion`` (Tang et al. 2017 style, decision-level): one predictor per modality
  (encoder -> head); the prediction is the mean over the *present* modalities' predictions. A time
  step with nothing present predicts the heads' prior (a learned bias per target).
* ``bilstm`` (hybrid-fusion Bi-LSTM, Zhao & Chen 2021 style): feature level -- the concatenation of
  all modality features, zeroed where absent, plus the presence bits, through a 2-layer Bi-LSTM over
  the ``T`` windows; decision level -- the late-fusion mean above; the two are mixed by a learned
  weight.
* ``tacoformer`` (token-channel compounded cross-attention, Li 2023 style): at every step,
  cross-attention across modalities ("channel" attention, absent keys masked) and, per modality,
  attention across the ``T`` windows ("token" attention, absent keys masked); both are added
  (compounded) and pooled over present modalities.
* ``ianet`` (transformer fusion, Li et al. 2024 style): one transformer encoder over all ``T * M``
  tokens with modality and time embeddings; absent tokens are masked as keys and excluded from the
  per-step mean pooling.

These are faithful to each method's fusion idea, not line-by-line ports of the original code (which
targets classification on other feature sets); they are sized like Hi-MoE (width ``d_model``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import HiMoEConfig
from .model.encoders import build_encoders
from .model.fuse import masked_softmax
from .model.heads import TargetHeads
from .model.himoe import check_inputs, emotion_loss

BASELINES = ("late_fusion", "bilstm", "tacoformer", "ianet")


@dataclass
class BaselineOutput:
    pred: torch.Tensor                 # [B, T, n_targets]
    alignment_loss: torch.Tensor       # 0 (no alignment module)


class FusionBaseline(nn.Module):
    """Shared parts: encoders, heads, loss. Subclasses implement :meth:`fuse_and_predict`."""

    def __init__(self, cfg: HiMoEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoders = build_encoders(cfg.modalities, cfg.window_s, cfg.d_model, cfg.dropout)
        self.init_bias = sum(cfg.label_range) / 2 if cfg.task == "regression" else 0.0

    def encode(self, inputs, present: torch.Tensor) -> torch.Tensor:
        """Z ``[B, T, M, d]`` with absent windows zeroed before encoding and after."""
        Z = []
        for m, spec in enumerate(self.cfg.modalities):
            x = inputs[spec.name]
            Z.append(self.encoders[spec.name](torch.where(present[..., m, None, None], x, torch.zeros_like(x))))
        return torch.stack(Z, dim=-2) * present.unsqueeze(-1).to(Z[0].dtype)

    def forward(self, inputs, present: torch.Tensor, compute_alignment: bool | None = None) -> BaselineOutput:
        check_inputs(self.cfg, inputs, present)
        present = present.to(torch.bool)
        pred = self.fuse_and_predict(self.encode(inputs, present), present)
        return BaselineOutput(pred=pred, alignment_loss=pred.new_zeros(()))

    def fuse_and_predict(self, Z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, out: BaselineOutput, labels: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
        return emotion_loss(out.pred, labels, label_mask, self.cfg.task, self.cfg.threshold)

    def predict_scores(self, out: BaselineOutput) -> torch.Tensor:
        return out.pred if self.cfg.task == "regression" else torch.sigmoid(out.pred)


def present_mean(values: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the modality axis (-2) of ``values [B, T, M, k]`` restricted to present modalities.
    Returns ``(mean [B, T, k], any_present [B, T, 1])``; rows with nothing present give 0."""
    w = present.unsqueeze(-1).to(values.dtype)
    count = w.sum(-2)
    return (values * w).sum(-2) / count.clamp_min(1.0), (count > 0)


class LateFusion(FusionBaseline):
    def __init__(self, cfg: HiMoEConfig):
        super().__init__(cfg)
        self.modality_heads = nn.ModuleList(TargetHeads(cfg.d_model, cfg.n_targets, self.init_bias)
                                            for _ in cfg.modalities)
        self.prior = nn.Parameter(torch.full((cfg.n_targets,), float(self.init_bias)))

    def per_modality(self, Z: torch.Tensor) -> torch.Tensor:
        return torch.stack([head(Z[..., m, :]) for m, head in enumerate(self.modality_heads)], dim=-2)

    def fuse_and_predict(self, Z, present):
        mean, any_present = present_mean(self.per_modality(Z), present)
        return torch.where(any_present, mean, self.prior.expand_as(mean))


class HybridBiLSTM(LateFusion):
    def __init__(self, cfg: HiMoEConfig):
        super().__init__(cfg)
        M, d = cfg.n_modalities, cfg.d_model
        self.lstm = nn.LSTM(M * d + M, d // 2, num_layers=2, batch_first=True, bidirectional=True,
                            dropout=cfg.dropout)
        self.early_heads = TargetHeads(d, cfg.n_targets, self.init_bias)
        self.mix = nn.Parameter(torch.zeros(()))      # sigmoid(0) = equal weight of the two levels

    def fuse_and_predict(self, Z, present):
        B, T, M, d = Z.shape
        feats = torch.cat([Z.reshape(B, T, M * d), present.to(Z.dtype)], dim=-1)
        early = self.early_heads(self.lstm(feats)[0])
        late = super().fuse_and_predict(Z, present)
        w = torch.sigmoid(self.mix)
        return w * early + (1 - w) * late


def key_padding(present: torch.Tensor) -> torch.Tensor:
    """``nn.MultiheadAttention`` key-padding mask (True = ignore); rows with no key present attend
    to everything instead (their outputs are masked out afterwards), which keeps softmax finite."""
    ignore = ~present
    return ignore & present.any(-1, keepdim=True)


class TACOFormer(FusionBaseline):
    def __init__(self, cfg: HiMoEConfig, heads: int = 4):
        super().__init__(cfg)
        d = cfg.d_model
        heads = heads if d % heads == 0 else 1
        self.channel_attn = nn.MultiheadAttention(d, heads, batch_first=True, dropout=cfg.dropout)
        self.token_attn = nn.MultiheadAttention(d, heads, batch_first=True, dropout=cfg.dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.pool = nn.Linear(d, 1)
        nn.init.zeros_(self.pool.weight)      # starts as the mean over present modalities, like Hi-MoE's Fuse
        self.heads = TargetHeads(d, cfg.n_targets, self.init_bias)

    def fuse_and_predict(self, Z, present):
        B, T, M, d = Z.shape
        per_step = Z.reshape(B * T, M, d)                                  # channel attention over M
        mask_m = key_padding(present.reshape(B * T, M))
        chan = self.channel_attn(per_step, per_step, per_step, key_padding_mask=mask_m, need_weights=False)[0]
        per_mod = Z.permute(0, 2, 1, 3).reshape(B * M, T, d)               # token attention over T
        mask_t = key_padding(present.permute(0, 2, 1).reshape(B * M, T))
        tok = self.token_attn(per_mod, per_mod, per_mod, key_padding_mask=mask_t, need_weights=False)[0]
        tok = tok.reshape(B, M, T, d).permute(0, 2, 1, 3)
        h = self.norm1(Z + chan.reshape(B, T, M, d) + tok)                 # compounded
        h = self.norm2(h + self.ffn(h))
        w = masked_softmax(self.pool(h).squeeze(-1), present)              # [B, T, M]
        return self.heads((w.unsqueeze(-1) * h).sum(-2))


class IANet(FusionBaseline):
    def __init__(self, cfg: HiMoEConfig, layers: int = 2, heads: int = 4, max_len: int = 256):
        super().__init__(cfg)
        d = cfg.d_model
        heads = heads if d % heads == 0 else 1
        self.modality_emb = nn.Parameter(torch.randn(cfg.n_modalities, d) * 0.02)
        self.time_emb = nn.Parameter(torch.randn(max_len, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, heads, 2 * d, dropout=cfg.dropout, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.heads = TargetHeads(d, cfg.n_targets, self.init_bias)

    def fuse_and_predict(self, Z, present):
        B, T, M, d = Z.shape
        if T > self.time_emb.shape[0]:
            raise ValueError(f"ianet supports at most {self.time_emb.shape[0]} windows per sample, got {T}")
        tokens = (Z + self.modality_emb + self.time_emb[:T, None, :]).reshape(B, T * M, d)
        flat = present.reshape(B, T * M)
        h = self.encoder(tokens, src_key_padding_mask=key_padding(flat)).reshape(B, T, M, d)
        pooled, _ = present_mean(h, present)
        return self.heads(pooled)


_REGISTRY = {"late_fusion": LateFusion, "bilstm": HybridBiLSTM, "tacoformer": TACOFormer, "ianet": IANet}


def build_baseline(name: str, cfg: HiMoEConfig) -> FusionBaseline:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose himoe or one of {', '.join(BASELINES)}")
    return _REGISTRY[name](cfg)
