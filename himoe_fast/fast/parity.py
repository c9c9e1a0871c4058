"""Parity of the fast path against the reference (``himoe-fast parity``).

:func:`run_parity` builds a reference :class:`HiMoE` for a config, swaps in the fast model with
:func:`to_fast` (same parameters), feeds both the same random inputs and presence mask, and compares

* every output: ``pred``, ``modality_gates``, ``emotion_weights`` (beta), ``fusion_weights``,
  ``encoded``, ``fused``, ``alignment_loss`` and the Eq. 8 ``loss``;
* every parameter gradient of ``loss + probe``, where ``probe = <R_a, gates> + <R_b, beta>`` with fixed
  random ``R`` so that the gradients flowing from the gates and router weights are exercised too.

Dropout is set to 0 (the only train/eval difference; random masks cannot match). Checks use
``|fast - ref| <= atol + rtol * |ref|`` elementwise (``torch.allclose``) at DESIGN.md's tolerances:
fp32 forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3. bf16 (CUDA only) compares the
fast model in bf16 against the fp32 reference with the looser tolerances in :data:`TOLERANCES`.
A gradient that is ``None`` in both models (e.g. the gate of ``top1`` routing) passes; ``None`` in one
only fails.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch

from ..config import HiMoEConfig
from ..model.himoe import HiMoE
from ..testing import random_batch, randomize_zero_parameters
from .model import to_fast

#: (forward atol, forward rtol, grad atol, grad rtol)
TOLERANCES = {
    torch.float32: (1e-5, 1e-4, 1e-4, 1e-3),
    torch.bfloat16: (5e-2, 5e-2, 1e-1, 1e-1),
}
DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


@dataclass
class Check:
    name: str
    kind: str            # "output" | "grad"
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    ok: bool
    note: str = ""


@dataclass
class ParityReport:
    config: dict
    backend: str
    dtype: str
    device: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]


def compare_tensors(name: str, kind: str, fast: torch.Tensor | None, ref: torch.Tensor | None, atol: float,
                    rtol: float) -> Check:
    if fast is None or ref is None:
        both = fast is None and ref is None
        return Check(name, kind, 0.0, 0.0, atol, rtol, both, "" if both else
                     f"{'fast' if fast is None else 'reference'} gradient is None")
    f, r = fast.detach().double(), ref.detach().double()
    if f.shape != r.shape:
        return Check(name, kind, float("inf"), float("inf"), atol, rtol, False,
                     f"shape {tuple(f.shape)} vs {tuple(r.shape)}")
    if f.numel() == 0:
        return Check(name, kind, 0.0, 0.0, atol, rtol, True)
    diff = (f - r).abs()
    finite = bool(torch.isfinite(f).all() and torch.isfinite(r).all())
    max_abs = float(diff.max())
    max_rel = float((diff / r.abs().clamp_min(1e-12)).max())
    ok = finite and bool((diff <= atol + rtol * r.abs()).all())
    return Check(name, kind, max_abs, max_rel, atol, rtol, ok, "" if finite else "non-finite values")


def _probe_weights(cfg: HiMoEConfig, B: int, T: int, seed: int, device):
    """Fixed random weights of the probe term on the gates ``[B, T, M, K]`` and beta ``[B, T, L]``."""
    g = torch.Generator().manual_seed(seed + 1)
    ra = torch.randn(B, T, cfg.n_modalities, cfg.n_modality_experts, generator=g).to(device)
    rb = torch.randn(B, T, cfg.n_emotion_experts, generator=g).to(device) if cfg.emotion_bank else None
    return ra, rb


def _run(model, inputs, present, labels, label_mask, ra, rb):
    model.zero_grad(set_to_none=True)
    out = model(inputs, present)
    loss = model.loss(out, labels, label_mask)
    probe = (out.modality_gates.float() * ra).sum() * 0.1
    if rb is not None:
        probe = probe + (out.emotion_weights.float() * rb).sum() * 0.1
    (loss.float() + probe).backward()
    grads = {n: (None if p.grad is None else p.grad.detach().clone()) for n, p in model.named_parameters()}
    return out, loss, grads


def _ieee_fp32_dots():
    """``kernels.common.fp32_dot("ieee")`` where the Triton kernels exist, else nothing to switch."""
    try:
        from ..kernels.common import fp32_dot
    except ImportError:          # no triton on this platform: the fast path has no kernels to switch
        return contextlib.nullcontext()
    return fp32_dot("ieee")


def run_parity(cfg: HiMoEConfig, backend: str = "auto", B: int = 2, T: int = 3, dtype: str = "fp32",
               seed: int = 0, device: str | None = None, p_present: float = 0.7) -> ParityReport:
    """Reference vs fast on random inputs for ``cfg``; returns a :class:`ParityReport`."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be fp32 or bf16, got {dtype!r}")
    tdtype = DTYPES[dtype]
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if tdtype == torch.bfloat16 and torch.device(device).type != "cuda":
        raise ValueError("bf16 parity needs a CUDA device (the bf16 kernels are GPU-only)")
    cfg = copy.deepcopy(cfg).replace(dropout=0.0)
    torch.manual_seed(seed)
    ref = randomize_zero_parameters(HiMoE(cfg), seed).to(device)
    fast = to_fast(ref, backend=backend).to(dtype=tdtype)
    inputs, present, labels, label_mask = random_batch(cfg, B, T, seed=seed, p_present=p_present, device=device)
    f_atol, f_rtol, g_atol, g_rtol = TOLERANCES[tdtype]

    ra, rb = _probe_weights(cfg, B, T, seed, device)
    out_r, loss_r, grads_r = _run(ref, inputs, present, labels, label_mask, ra, rb)
    with _ieee_fp32_dots():                     # DESIGN.md: fp32 parity uses exact (ieee) dots on GPU
        out_f, loss_f, grads_f = _run(fast, {k: v.to(tdtype) for k, v in inputs.items()}, present,
                                      labels, label_mask, ra, rb)
    report = ParityReport(config=cfg.to_dict(), backend=backend, dtype=dtype, device=str(device))
    for name in ("pred", "modality_gates", "emotion_weights", "fusion_weights", "encoded", "fused",
                 "alignment_loss"):
        report.checks.append(compare_tensors(name, "output", getattr(out_f, name), getattr(out_r, name), f_atol, f_rtol))
    report.checks.append(compare_tensors("loss", "output", loss_f, loss_r, f_atol, f_rtol))
    for name in grads_r:
        report.checks.append(compare_tensors(name, "grad", grads_f.get(name), grads_r[name], g_atol, g_rtol))
    return report
