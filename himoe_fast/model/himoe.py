"""Hi-MoE: the reference model (paper Fig. 1, Eq. 1-8).

    raw windows {x_m: [B, T, C_m, S_m]}, present [B, T, M]
      -> encoders                      Z_m = Enc_m(x_m)                        [B, T, d] each
      -> [lag aligner]                 Z'_m (temporal="align*", ours)          [B, T, d] each
      -> missing-modality masking      x_t^(m) = Z_m,t * present_t,m           (zero when absent)
      -> Modality Expert Bank          z^(m), alpha  (Eq. 2-3)                 [B, T, M, d], [B, T, M, K]
      -> Fuse                          z = sum_m w_m z^(m), w over present m  (Eq. 4)  [B, T, d]
      -> [temporal context]            z + Attn_T(z) (temporal="align+context", ours)   [B, T, d]
      -> Emotion Expert Bank           e, beta (Eq. 5-6)                       [B, T, d], [B, T, L]
      -> heads                         pred                                    [B, T, n_targets]
    alignment loss: masked NT-Xent on Z (Z' when aligned) flattened to N = B*T tokens per modality (Eq. 1, 7)
    loss: L = L_emo (masked) + align_weight * L_NT-Xent                       (Eq. 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..config import HiMoEConfig
from ..ops import masked_ntxent
from .encoders import build_encoders
from .experts import ModalityExpertBank
from .fuse import AttentionFuse
from .heads import TargetHeads
from .router import EmotionExpertBank
from .temporal import LagAligner, TemporalContext


@dataclass
class HiMoEOutput:
    """What :meth:`HiMoE.forward` returns.

    pred: ``[B, T, n_targets]`` (ratings for regression, logits for binary);
    alignment_loss: scalar masked NT-Xent (0 when not computed);
    modality_gates: alpha ``[B, T, M, K]``; emotion_weights: beta ``[B, T, L]`` or None;
    fusion_weights: Fuse attention ``[B, T, M]``; encoded: Z ``[B, T, M, d]`` (the aligned Z' when the
    config has a lag aligner); fused: z ``[B, T, d]`` (after the temporal context when there is one).
    """

    pred: torch.Tensor
    alignment_loss: torch.Tensor
    modality_gates: torch.Tensor
    emotion_weights: torch.Tensor | None
    fusion_weights: torch.Tensor
    encoded: torch.Tensor
    fused: torch.Tensor


def check_inputs(cfg: HiMoEConfig, inputs: Mapping[str, torch.Tensor], present: torch.Tensor) -> tuple[int, int]:
    """Validate shapes against the config; returns ``(B, T)``. Raises ``ValueError`` naming the problem."""
    if present.dim() != 3 or present.shape[-1] != cfg.n_modalities:
        raise ValueError(f"present must be bool [B, T, M={cfg.n_modalities}], got {tuple(present.shape)}")
    B, T = present.shape[:2]
    for spec in cfg.modalities:
        if spec.name not in inputs:
            raise ValueError(f"inputs lack modality {spec.name!r} (expected {list(cfg.modality_names)})")
        x = inputs[spec.name]
        want = (B, T, spec.channels, spec.samples(cfg.window_s))
        if tuple(x.shape) != want:
            raise ValueError(f"inputs[{spec.name!r}] must be [B, T, C, S] = {list(want)}, got {list(x.shape)}")
    return B, T


def emotion_loss(pred: torch.Tensor, labels: torch.Tensor, label_mask: torch.Tensor, task: str,
                 threshold: float) -> torch.Tensor:
    """``L_emo``: MSE (regression) or BCE-with-logits on ``labels >= threshold`` (binary), averaged over
    the entries where ``label_mask`` is true (0 when none is). Masked labels may be NaN."""
    label_mask = label_mask.to(torch.bool)
    pred = pred.float()                       # the loss is always computed in fp32 (bf16 autocast on GPU)
    safe = torch.where(label_mask, labels, torch.zeros_like(labels)).to(pred.dtype)
    if task == "regression":
        err = (pred - safe) ** 2
    else:
        err = F.binary_cross_entropy_with_logits(pred, (safe >= threshold).to(pred.dtype), reduction="none")
    err = torch.where(label_mask, err, torch.zeros_like(err))
    return err.sum() / label_mask.sum().clamp_min(1)


class HiMoE(nn.Module):
    """Hierarchical mixture-of-experts for continuous multimodal emotion recognition (reference).

    ``forward(inputs, present)``: inputs ``{name: [B, T, C_m, S_m]}``, present bool ``[B, T, M]``
    (modality order of ``cfg.modalities``) -> :class:`HiMoEOutput`.
    """

    ntxent_backend = "torch"   # the reference always uses the readable torch NT-Xent

    def __init__(self, cfg: HiMoEConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.encoders = build_encoders(cfg.modalities, cfg.window_s, d, cfg.dropout)
        self.modality_bank = ModalityExpertBank(cfg.n_modalities, d, cfg.n_modality_experts,
                                                cfg.expert_hidden, cfg.routing, cfg.expert_init)
        self.fuse = AttentionFuse(d, cfg.fuse_dim)
        self.emotion_bank = (
            EmotionExpertBank(d, cfg.n_emotion_experts, cfg.expert_hidden, cfg.router_dim, cfg.router,
                              cfg.lam_init, cfg.cosine_scale_init, cfg.expert_init)
            if cfg.emotion_bank else None
        )
        init_bias = sum(cfg.label_range) / 2 if cfg.task == "regression" else 0.0
        self.heads = TargetHeads(d, cfg.n_targets, init_bias)
        # optional temporal stages (this project's; absent when temporal="none", the paper-literal model)
        self.aligner = (LagAligner(cfg.n_modalities, cfg.max_shift, cfg.causal)
                        if cfg.temporal in ("align", "align+context") else None)
        self.context = (TemporalContext(d, causal=cfg.causal)
                        if cfg.temporal == "align+context" else None)

    # ------------------------------------------------------------------ stages
    def encode(self, inputs: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Z: ``[B, T, M, d]``. The raw windows of absent modalities are zeroed first, so NaN or
        garbage in a missing recording cannot reach the output or the gradients."""
        Z = []
        for m, spec in enumerate(self.cfg.modalities):
            x = inputs[spec.name]
            x = torch.where(present[..., m, None, None], x, torch.zeros_like(x))
            Z.append(self.encoders[spec.name](x))
        return torch.stack(Z, dim=-2)

    def alignment(self, Z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Masked NT-Xent (Eq. 1, 7) with positives = the same window in two modalities."""
        B, T, M, d = Z.shape
        z = Z.permute(2, 0, 1, 3).reshape(M, B * T, d).float()   # fp32 even under bf16 autocast
        p = present.permute(2, 0, 1).reshape(M, B * T)
        return masked_ntxent(z, p, self.cfg.temperature, backend=self.ntxent_backend)

    # ------------------------------------------------------------------ forward / loss
    def forward(self, inputs: Mapping[str, torch.Tensor], present: torch.Tensor,
                compute_alignment: bool | None = None) -> HiMoEOutput:
        """Run the model. ``compute_alignment`` defaults to ``align_weight > 0``."""
        check_inputs(self.cfg, inputs, present)
        present = present.to(torch.bool)
        Z = self.encode(inputs, present)                                   # [B, T, M, d]
        if self.aligner is not None:
            Z = self.aligner(Z, present)                                   # Z' (ours), zero where absent
        x = Z * present.unsqueeze(-1).to(Z.dtype)                          # absent -> zero vector
        z_m, alpha = self.modality_bank(x)                                 # Eq. 2-3
        z, w = self.fuse(z_m, present)                                     # Eq. 4
        if self.context is not None:
            z = self.context(z, present.any(-1))                           # evidence over T (ours)
        if self.emotion_bank is not None:
            e, beta = self.emotion_bank(z)                                 # Eq. 5-6
        else:
            e, beta = z, None
        pred = self.heads(e)
        if compute_alignment is None:
            compute_alignment = self.cfg.align_weight > 0
        align = self.alignment(Z, present) if compute_alignment else Z.new_zeros(())
        return HiMoEOutput(pred=pred, alignment_loss=align, modality_gates=alpha, emotion_weights=beta,
                           fusion_weights=w, encoded=Z, fused=z)

    def loss(self, out: HiMoEOutput, labels: torch.Tensor, label_mask: torch.Tensor) -> torch.Tensor:
        """Eq. 8: ``L = L_emo + align_weight * L_NT-Xent``. labels, label_mask: ``[B, T, n_targets]``."""
        l_emo = emotion_loss(out.pred, labels, label_mask, self.cfg.task, self.cfg.threshold)
        return l_emo + self.cfg.align_weight * out.alignment_loss

    def learned_delays(self, step_s: float | None = None) -> dict[str, float]:
        """Delay the lag aligner learned per modality, in seconds (``step_s`` = seconds between
        consecutive windows; default ``cfg.window_s``, i.e. no overlap). Positive: the modality's
        evidence is read from later windows (it lags). Empty when there is no aligner."""
        if self.aligner is None:
            return {}
        step = self.cfg.window_s if step_s is None else float(step_s)
        return {name: float(v) * step for name, v in zip(self.cfg.modality_names, self.aligner.delays())}

    def predict_scores(self, out: HiMoEOutput) -> torch.Tensor:
        """Ratings (regression) or probabilities of "high" (binary), ``[B, T, n_targets]``."""
        return out.pred if self.cfg.task == "regression" else torch.sigmoid(out.pred)
