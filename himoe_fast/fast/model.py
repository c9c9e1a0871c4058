"""Swap-in fast model: :class:`FastHiMoE`, :func:`to_fast`, :func:`to_reference`.

``FastHiMoE`` subclasses :class:`~himoe_fast.model.HiMoE` and builds the very same submodules, so the
parameter names, shapes and state dicts are identical and interchangeable both ways; only
``forward`` differs. Internally it works in a token-major layout (``[M, N, d]`` with ``N = B*T``):

    encoders      fast encoders (reassociated EEGNet, grouped signal convs)     himoe_fast.fast.encoders
    bank          fused Modality Expert Bank (Triton on CUDA, batched torch)    himoe_fast.fast.experts
    fuse, heads   launch-lean versions                                          himoe_fast.fast.stages
    router        ``da_router`` (Triton on CUDA, batched torch)                 himoe_fast.fast.router
    temporal      lag aligner as a banded [T, T] matrix; reference TemporalContext himoe_fast.fast.temporal
    alignment     ``masked_ntxent(backend="auto")`` (C++/CUDA extension when built)

Outputs are returned in the reference's shapes (``[B, T, ...]``, as views where possible).
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch

from ..model.himoe import HiMoE, HiMoEOutput, check_inputs
from ..ops import masked_ntxent
from .backend import check_backend, load_kernel_module, resolve
from .encoders import encode_fast, plan_encoders
from .experts import modality_bank
from .stages import fuse_fast, heads_fast
from .temporal import align_fast


class FastHiMoE(HiMoE):
    """Hi-MoE with the fast path. Same parameters as :class:`HiMoE`; ``backend`` in
    ``"auto" | "triton" | "torch"`` selects the kernels (``auto``: Triton on CUDA tensors, the batched
    torch path on CPU; ``triton`` on CPU runs the kernels under the Triton interpreter)."""

    ntxent_backend = "auto"

    def __init__(self, cfg, backend: str = "auto"):
        super().__init__(cfg)
        self.backend = check_backend(backend)
        self._plan = plan_encoders(cfg, self.encoders)

    def extra_repr(self) -> str:
        return f"backend={self.backend!r}"

    # ------------------------------------------------------------------ stages (token-major)
    def _kernel_backend(self, device: torch.device) -> str:
        return resolve(self.backend, device)

    def encode_tokens(self, inputs: Mapping[str, torch.Tensor], present_mn: torch.Tensor) -> torch.Tensor:
        """Z ``[M, N, d]`` from raw windows; present_mn bool ``[M, N]``."""
        return encode_fast(self, self._plan, inputs, present_mn)

    def encode(self, inputs: Mapping[str, torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """Z ``[B, T, M, d]`` (as :meth:`HiMoE.encode`)."""
        B, T, M = present.shape
        Z = self.encode_tokens(inputs, present.to(torch.bool).reshape(B * T, M).t())
        return Z.transpose(0, 1).reshape(B, T, M, -1)

    def emotion_tokens(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Emotion Expert Bank with DA-router on fused tokens ``z [N, d]`` -> (e ``[N, d]``, beta ``[N, L]``)."""
        bank = self.emotion_bank
        if bank is None:
            return z, None
        from .router import da_router

        kb = self._kernel_backend(z.device)
        if kb == "triton":
            load_kernel_module("da_router", z.device)          # interpreter switch on CPU
        lam = bank.diff_lambda() if bank.router == "diff" else None
        return da_router(z, bank.w1, bank.b1, bank.w2, bank.b2, bank.wq, bank.wk, bank.router,
                         scale=getattr(bank, "scale", None), lam=lam, backend=kb)

    # ------------------------------------------------------------------ forward
    def forward(self, inputs: Mapping[str, torch.Tensor], present: torch.Tensor,
                compute_alignment: bool | None = None) -> HiMoEOutput:
        cfg = self.cfg
        B, T = check_inputs(cfg, inputs, present)
        M, N = cfg.n_modalities, B * T
        present = present.to(torch.bool)
        present_mn = present.reshape(N, M).t()                                   # [M, N]
        Z = self.encode_tokens(inputs, present_mn)                               # [M, N, d]
        if self.aligner is not None:                                             # lag aligner (ours)
            Zb = align_fast(self.aligner, Z.transpose(0, 1).reshape(B, T, M, -1), present)
            Z = Zb.reshape(N, M, -1).transpose(0, 1)
        x = Z * present_mn.unsqueeze(-1).to(Z.dtype)                             # absent -> zero vector
        mb = self.modality_bank
        z_m, alpha = modality_bank(x, mb.gate_weight, mb.gate_bias, mb.w1, mb.b1, mb.w2, mb.b2,
                                   mb.routing, backend=self._kernel_backend(x.device))   # Eq. 2-3
        z, w = fuse_fast(self.fuse, z_m, present_mn)                             # Eq. 4
        if self.context is not None:                                             # temporal context (ours)
            z = self.context(z.reshape(B, T, -1), present.any(-1)).reshape(N, -1)
        e, beta = self.emotion_tokens(z)                                         # Eq. 5-6
        pred = heads_fast(self.heads, e)                                         # [N, n_targets]
        if compute_alignment is None:
            compute_alignment = cfg.align_weight > 0
        align = masked_ntxent(Z.float(), present_mn, cfg.temperature, backend=self.ntxent_backend) \
            if compute_alignment else Z.new_zeros((), dtype=torch.float32)       # fp32, as the reference
        d, K = Z.shape[-1], alpha.shape[-1]
        return HiMoEOutput(
            pred=pred.reshape(B, T, -1),
            alignment_loss=align,
            modality_gates=alpha.transpose(0, 1).reshape(B, T, M, K),
            emotion_weights=None if beta is None else beta.reshape(B, T, -1),
            fusion_weights=w.t().reshape(B, T, M),
            encoded=Z.transpose(0, 1).reshape(B, T, M, d),
            fused=z.reshape(B, T, d),
        )


def _like(dst: torch.nn.Module, src: torch.nn.Module) -> torch.nn.Module:
    """Copy ``src``'s parameters/buffers into ``dst`` (fresh storage), on src's device and dtype."""
    p = next(src.parameters(), None)
    if p is not None:
        dst.to(device=p.device, dtype=p.dtype)
    with torch.no_grad():
        dst.load_state_dict(src.state_dict())   # copy_ into dst's own tensors: no shared storage
    dst.train(src.training)
    for (_, a), (_, b) in zip(src.named_parameters(), dst.named_parameters()):
        b.requires_grad_(a.requires_grad)
    return dst


def to_fast(model: HiMoE, backend: str = "auto") -> FastHiMoE:
    """A :class:`FastHiMoE` with a copy of ``model``'s parameters (no shared storage), same device,
    dtype and train/eval mode. ``backend``: ``"auto" | "triton" | "torch"``."""
    check_backend(backend)
    return _like(FastHiMoE(copy.deepcopy(model.cfg), backend=backend), model)


def to_reference(model: HiMoE) -> HiMoE:
    """A plain reference :class:`HiMoE` with a copy of ``model``'s parameters (no shared storage)."""
    return _like(HiMoE(copy.deepcopy(model.cfg)), model)
