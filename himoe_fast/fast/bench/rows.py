"""The rows of ``himoe-fast bench``: one function per row, each timing the reference and the fast
version of one stage side by side on the same inputs and parameters (see :mod:`himoe_fast.fast.bench`).

A row function takes the shared :class:`BenchSetup` and returns a :class:`Row` (``None`` when the model
has no such stage). Shapes: ``M`` modalities, ``N = B*T`` tokens, width ``d``; the reference works
on ``[B, T, M, d]``, the fast path on modality-major ``[M, N, d]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ...config import HiMoEConfig
from ...model.himoe import HiMoE
from ...ops import masked_ntxent
from ..encoders import encode_fast
from ..experts import clear_workspace, modality_bank
from ..model import to_fast
from ..parity import random_batch, randomize_zero_parameters
from ..stages import fuse_fast, heads_fast
from .measure import peak_mb, time_pair


@dataclass
class Row:
    name: str
    ref_ms: float
    fast_ms: float
    speedup: float
    max_err: float
    ref_peak_mb: float
    fast_peak_mb: float


@dataclass
class BenchSetup:
    """What every row shares: the models (same parameters), one random batch, a generator of
    further random inputs (drawn in row order), the timing settings and the notes rows add to."""

    cfg: HiMoEConfig
    ref: HiMoE
    fast: torch.nn.Module
    inputs: dict
    present: torch.Tensor            # [B, T, M] bool
    labels: torch.Tensor
    label_mask: torch.Tensor
    device: torch.device
    warmup: int
    repeats: int
    generator: torch.Generator
    notes: dict = field(default_factory=dict)

    @property
    def B(self) -> int:
        return self.present.shape[0]

    @property
    def T(self) -> int:
        return self.present.shape[1]

    @property
    def M(self) -> int:
        return self.cfg.n_modalities

    @property
    def N(self) -> int:
        return self.B * self.T

    @property
    def d(self) -> int:
        return self.cfg.d_model

    @property
    def present_mn(self) -> torch.Tensor:
        """``present`` modality-major, ``[M, N]``."""
        return self.present.reshape(self.N, self.M).t()

    def rnd(self, *shape: int) -> torch.Tensor:
        """Standard normal of ``shape`` on the device, from the setup's generator."""
        return torch.randn(*shape, generator=self.generator).to(self.device)

    def to_btm(self, x_mn: torch.Tensor) -> torch.Tensor:
        """``[M, N, k]`` -> ``[B, T, M, k]``."""
        return x_mn.transpose(0, 1).reshape(self.B, self.T, self.M, -1)


def make_setup(cfg: HiMoEConfig, B: int, T: int, backend: str, device: torch.device, warmup: int, repeats: int,
               seed: int) -> BenchSetup:
    """Reference model with every parameter random (no zero-initialised layer hides an error), its
    fast copy, and a random batch with missing modalities."""
    torch.manual_seed(seed)
    ref = randomize_zero_parameters(HiMoE(cfg), seed).to(device)
    fast = to_fast(ref, backend=backend)
    inputs, present, labels, label_mask = random_batch(cfg, B, T, seed=seed, device=device)
    return BenchSetup(cfg, ref, fast, inputs, present, labels, label_mask, device, warmup, repeats,
                      torch.Generator().manual_seed(seed + 7))


# --------------------------------------------------------------------------------------- comparing
def max_rel_diff(a, b) -> float:
    """``max |a - b| / max(1, max |b|)``: absolute error, relative for tensors of magnitude > 1."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    if not a.numel():
        return 0.0
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def _grads(tensors) -> list:
    return [None if t.grad is None else t.grad.detach().clone() for t in tensors]


def _zero(tensors) -> None:
    for t in tensors:
        t.grad = None


def compare_and_time(s: BenchSetup, name: str, ref_fn: Callable, fast_fn: Callable, leaves_ref: list,
                     leaves_fast: list, fast_to_ref: Callable, *, no_grad: bool = False,
                     first_grad: Callable | None = None, warmup: int | None = None,
                     repeats: int | None = None) -> Row:
    """One fwd(+bwd) row. ``ref_fn`` / ``fast_fn`` return ``(scalar loss, outputs)`` (backward is run
    here on the loss), or with ``no_grad`` just the outputs. ``fast_to_ref`` maps the fast outputs into
    the reference layout, ``first_grad`` the gradient of the first fast leaf (the input).

    max_err: the largest :func:`max_rel_diff` over the outputs and the leaves' gradients of one call
    each; then the times (:func:`time_pair`) and the peak memory of one call (:func:`peak_mb`, the
    fast bank's workspace emptied first so that it is counted)."""

    def step(fn, leaves):
        def call():
            if no_grad:
                with torch.no_grad():
                    return fn()
            _zero(leaves)
            loss, outs = fn()
            loss.backward()
            return loss, outs
        return call

    r_call, f_call = step(ref_fn, leaves_ref), step(fast_fn, leaves_fast)
    r_out = r_call()
    r_grads = [] if no_grad else _grads(leaves_ref)
    f_out = f_call()
    f_grads = [] if no_grad else _grads(leaves_fast)
    if first_grad is not None and f_grads and f_grads[0] is not None:
        f_grads[0] = first_grad(f_grads[0])
    r_vals = r_out if no_grad else r_out[1]
    f_vals = f_out if no_grad else f_out[1]
    err = max([max_rel_diff(fa, ra) for ra, fa in zip(r_vals, fast_to_ref(f_vals))] +
              [max_rel_diff(fg, rg) for rg, fg in zip(r_grads, f_grads)] + [0.0])
    ref_ms, fast_ms = time_pair(r_call, f_call, s.device, s.warmup if warmup is None else warmup,
                                s.repeats if repeats is None else repeats)
    return Row(name, ref_ms, fast_ms, ref_ms / fast_ms if fast_ms > 0 else math.inf, err,
               peak_mb(r_call, s.device, before=clear_workspace), peak_mb(f_call, s.device, before=clear_workspace))


def _set_train(train: bool, *models) -> None:
    for m in models:
        m.train(train)


# --------------------------------------------------------------------------------------- rows
def encoders_row(s: BenchSetup) -> Row:
    """All modality encoders, fwd+bwd, dropout off (the encoders alone)."""
    ref, fast = s.ref, s.fast
    _set_train(False, ref, fast)
    gz = s.rnd(s.B, s.T, s.M, s.d)
    gz_mn = gz.reshape(s.N, s.M, s.d).transpose(0, 1)

    def ref_step():
        Z = ref.encode(s.inputs, s.present)
        return (Z * gz).sum(), (Z,)

    def fast_step():
        Z = encode_fast(fast, fast._plan, s.inputs, s.present_mn)
        return (Z * gz_mn).sum(), (Z,)

    row = compare_and_time(s, "encoders", ref_step, fast_step, list(ref.encoders.parameters()),
                           list(fast.encoders.parameters()), lambda o: (s.to_btm(o[0]),))
    _set_train(True, ref, fast)
    return row


def _bank_params(bank) -> list:
    return [bank.gate_weight, bank.gate_bias, bank.w1, bank.b1, bank.w2, bank.b2]


def modality_bank_row(s: BenchSetup) -> Row:
    """Modality Expert Bank, ``N = B*T`` tokens, fwd+bwd; notes its GEMM work (GFLOP) for the roofline."""
    bank_r, bank_f = s.ref.modality_bank, s.fast.modality_bank
    pf = _bank_params(bank_f)
    K = s.cfg.n_modality_experts
    x_mn = s.rnd(s.M, s.N, s.d)
    x_ref = s.to_btm(x_mn).contiguous().requires_grad_(True)
    x_fast = x_mn.clone().requires_grad_(True)
    gz, ga = s.rnd(s.M, s.N, s.d), s.rnd(s.M, s.N, K)
    gz_r, ga_r = s.to_btm(gz), s.to_btm(ga)

    def ref_step():
        z, a = bank_r(x_ref)
        return (z * gz_r).sum() + (a * ga_r).sum(), (z, a)

    def fast_step():
        z, a = modality_bank(x_fast, *pf, routing=bank_f.routing, backend=s.fast.backend)
        return (z * gz).sum() + (a * ga).sum(), (z, a)

    row = compare_and_time(s, "modality_bank", ref_step, fast_step, [x_ref, *_bank_params(bank_r)], [x_fast, *pf],
                           lambda o: (s.to_btm(o[0]), s.to_btm(o[1])), first_grad=s.to_btm)
    s.notes["modality_bank_gflop"] = modality_bank_gflop(s.M, s.N, s.d, K, s.cfg.expert_hidden)
    return row


def modality_bank_gflop(M: int, N: int, d: int, K: int, h: int) -> float:
    """GEMM work (GFLOP) of one modality-bank fwd+bwd: the expert GEMMs W1 [d -> h] and W2 [h -> d]
    for every token of every modality and expert, 2 M N d K h FLOP each in the forward and twice that
    in the backward (the gate GEMM is K/h of that and left out)."""
    return 3 * 2 * 2 * M * N * d * K * h / 1e9


def modality_bank_fwd_n8_row(s: BenchSetup) -> Row:
    """Modality Expert Bank forward at N = 8 tokens (streaming inference), no grad; more repeats."""
    bank_r, bank_f = s.ref.modality_bank, s.fast.modality_bank
    pf = _bank_params(bank_f)
    M, d, K = s.M, s.d, s.cfg.n_modality_experts
    x8 = s.rnd(M, 8, d)
    x8_r = x8.transpose(0, 1).reshape(1, 8, M, d).contiguous()

    def ref_step():
        return bank_r(x8_r)

    def fast_step():
        return modality_bank(x8, *pf, routing=bank_f.routing, backend=s.fast.backend)

    def fast_to_ref(o):
        return o[0].transpose(0, 1).reshape(1, 8, M, d), o[1].transpose(0, 1).reshape(1, 8, M, K)

    return compare_and_time(s, "modality_bank_fwd_n8", ref_step, fast_step, [], [], fast_to_ref, no_grad=True,
                            warmup=s.warmup * 3, repeats=s.repeats * 5)


def fuse_row(s: BenchSetup) -> Row:
    """Attention fusion of the modality tokens, fwd+bwd."""
    ref, fast = s.ref, s.fast
    zm = s.rnd(s.M, s.N, s.d)
    z_r = s.to_btm(zm).contiguous().requires_grad_(True)
    z_f = zm.clone().requires_grad_(True)
    gf = s.rnd(s.N, s.d)

    def ref_step():
        out = ref.fuse(z_r, s.present)
        return (out[0].reshape(s.N, s.d) * gf).sum(), out

    def fast_step():
        out = fuse_fast(fast.fuse, z_f, s.present_mn)
        return (out[0] * gf).sum(), out

    def fast_to_ref(o):
        return o[0].reshape(s.B, s.T, s.d), o[1].t().reshape(s.B, s.T, s.M)

    return compare_and_time(s, "fuse", ref_step, fast_step, [z_r, *ref.fuse.parameters()],
                            [z_f, *fast.fuse.parameters()], fast_to_ref, first_grad=s.to_btm)


def da_router_row(s: BenchSetup) -> Row | None:
    """Emotion Expert Bank (DA-router), fwd+bwd; ``None`` without the bank (ablation)."""
    if not s.cfg.emotion_bank:
        return None
    ref, fast = s.ref, s.fast
    z0 = s.rnd(s.N, s.d)
    z_r = z0.reshape(s.B, s.T, s.d).clone().requires_grad_(True)
    z_f = z0.clone().requires_grad_(True)
    ge = s.rnd(s.N, s.d)
    gb = s.rnd(s.N, s.cfg.n_emotion_experts)

    def ref_step():
        out = ref.emotion_bank(z_r)
        return (out[0].reshape(s.N, s.d) * ge).sum() + (out[1].reshape(s.N, -1) * gb).sum(), out

    def fast_step():
        out = fast.emotion_tokens(z_f)
        return (out[0] * ge).sum() + (out[1] * gb).sum(), out

    def fast_to_ref(o):
        return o[0].reshape(s.B, s.T, s.d), o[1].reshape(s.B, s.T, -1)

    return compare_and_time(s, "da_router", ref_step, fast_step, [z_r, *ref.emotion_bank.parameters()],
                            [z_f, *fast.emotion_bank.parameters()], fast_to_ref,
                            first_grad=lambda g: g.reshape(s.B, s.T, s.d))


def heads_row(s: BenchSetup) -> Row:
    """Target heads, fwd+bwd."""
    ref, fast = s.ref, s.fast
    e0 = s.rnd(s.N, s.d)
    e_r = e0.reshape(s.B, s.T, s.d).clone().requires_grad_(True)
    e_f = e0.clone().requires_grad_(True)
    gp = s.rnd(s.N, s.cfg.n_targets)

    def ref_step():
        p = ref.heads(e_r)
        return (p.reshape(s.N, -1) * gp).sum(), (p,)

    def fast_step():
        p = heads_fast(fast.heads, e_f)
        return (p * gp).sum(), (p,)

    return compare_and_time(s, "heads", ref_step, fast_step, [e_r, *ref.heads.parameters()],
                            [e_f, *fast.heads.parameters()], lambda o: (o[0].reshape(s.B, s.T, -1),),
                            first_grad=lambda g: g.reshape(s.B, s.T, s.d))


def _ext_available(z) -> bool:
    try:
        from ...ops import ext

        return ext.load_extension() is not None and ext.supports(z) is None
    except Exception:
        return False


def alignment_row(s: BenchSetup) -> Row:
    """Masked NT-Xent (Eq. 8's alignment term), torch backend vs the C++/CUDA extension, fwd+bwd;
    the fast side falls back to torch (noted) when the extension is unavailable."""
    za = s.rnd(s.M, s.N, s.d)
    z_r = za.clone().requires_grad_(True)
    z_f = za.clone().requires_grad_(True)
    ext_ok = _ext_available(z_f)
    s.notes["alignment_fast_backend"] = "ext" if ext_ok else "torch (extension unavailable)"
    fast_backend = "ext" if ext_ok else "torch"
    tau = s.cfg.temperature

    def ref_step():
        loss = masked_ntxent(z_r, s.present_mn, tau, backend="torch")
        return loss, (loss,)

    def fast_step():
        loss = masked_ntxent(z_f, s.present_mn, tau, backend=fast_backend)
        return loss, (loss,)

    return compare_and_time(s, "alignment", ref_step, fast_step, [z_r], [z_f], lambda o: o)


def temporal_row(s: BenchSetup) -> Row | None:
    """Lag aligner (+ temporal context) fwd+bwd; ``None`` for the paper-literal model."""
    ref, fast = s.ref, s.fast
    if ref.aligner is None:
        return None
    from ..temporal import align_fast

    z0, c0 = s.rnd(s.B, s.T, s.M, s.d), s.rnd(s.B, s.T, s.d)
    gz, gc = s.rnd(s.B, s.T, s.M, s.d), s.rnd(s.B, s.T, s.d)
    valid = s.present.any(-1)
    leaves = {}
    for side, model in (("ref", ref), ("fast", fast)):
        params = list(model.aligner.parameters()) + (list(model.context.parameters()) if model.context else [])
        leaves[side] = [z0.clone().requires_grad_(True), c0.clone().requires_grad_(True), *params]

    def stepper(model, align, side):
        def step():
            z, c = leaves[side][:2]
            za = align(z)
            loss = (za * gz).sum()
            outs = (za,)
            if model.context is not None:
                zc = model.context(c, valid)
                loss = loss + (zc * gc).sum()
                outs = (za, zc)
            return loss, outs
        return step

    def ref_align(z):
        return ref.aligner(z, s.present)

    def fast_align(z):
        return align_fast(fast.aligner, z, s.present)

    return compare_and_time(s, "temporal", stepper(ref, ref_align, "ref"), stepper(fast, fast_align, "fast"),
                            leaves["ref"], leaves["fast"], lambda o: o)


def train_step_row(s: BenchSetup) -> Row:
    """The whole training step: zero_grad + forward + loss (Eq. 8) + backward. max_err compares the
    eval-mode (dropout off) loss, predictions, gates, emotion weights and every parameter gradient;
    the timing runs in train mode."""
    ref, fast = s.ref, s.fast

    def stepper(model):
        params = list(model.parameters())

        def step():
            _zero(params)
            o = model(s.inputs, s.present)
            loss = model.loss(o, s.labels, s.label_mask)
            loss.backward()
            return loss, o
        return step

    r_call, f_call = stepper(ref), stepper(fast)
    _set_train(False, ref, fast)
    r_loss, r_out = r_call()
    r_grads = _grads(list(ref.parameters()))
    f_loss, f_out = f_call()
    f_grads = _grads(list(fast.parameters()))
    err = max([max_rel_diff(f_loss, r_loss)] +
              [max_rel_diff(getattr(f_out, k), getattr(r_out, k))
               for k in ("pred", "modality_gates", "emotion_weights")] +
              [max_rel_diff(a, b) for a, b in zip(f_grads, r_grads)])
    _set_train(True, ref, fast)
    ref_ms, fast_ms = time_pair(r_call, f_call, s.device, s.warmup, s.repeats)
    return Row("train_step", ref_ms, fast_ms, ref_ms / fast_ms, err, peak_mb(r_call, s.device, before=clear_workspace),
               peak_mb(f_call, s.device, before=clear_workspace))


ROWS: dict[str, Callable[[BenchSetup], Row | None]] = {
    "encoders": encoders_row,
    "modality_bank": modality_bank_row,
    "modality_bank_fwd_n8": modality_bank_fwd_n8_row,
    "fuse": fuse_row,
    "da_router": da_router_row,
    "heads": heads_row,
    "alignment": alignment_row,
    "temporal": temporal_row,
    "train_step": train_step_row,
}
ROW_NAMES = tuple(ROWS)
