"""The fast path's fused stages as ``torch.library`` custom ops, so ``torch.compile`` traces the model.

``torch.compile(fast_model, fullgraph=True)`` cannot trace into the fused stages' autograd Functions
(they keep per-step state: the CPU bank's workspace, hidden buffers consumed by the first backward)
or into Triton launches with autotuning. While compiling, :func:`himoe_fast.fast.experts.modality_bank`
and :func:`himoe_fast.fast.router.da_router_core` call these ops instead; the compiler sees each as
one node with a fake kernel for shapes and a registered autograd formula. Eager execution keeps
calling the Functions directly (no change in speed or memory).

    himoe_fast::modality_bank(x, gate_weight, gate_bias, w1, b1, w2, b2, routing, kind) -> (z, alpha)
        x [M, N, d] -> z [M, N, d], alpha [M, N, K]; kind "torch" | "triton"
    himoe_fast::da_router_core(z, w1, b1, w2, b2, v?, qh?, wk?, scale?, sc, mode, kind) -> (A, S)
        z [N, d] -> A [P, N, d], S [P, N, L] (see himoe_fast.fast.router)
    himoe_fast::modality_bank_backward / da_router_core_backward: their gradients

The backward ops recompute the stage's forward with autograd on and differentiate it
(``torch.autograd.grad``), so they reuse the hand-written backward of the Functions (Triton or
torch) at the price of one extra forward of that stage per step under ``torch.compile``.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .experts import LEARNED_GATES, bank_apply
from .router import core_apply

_BANK_INPUTS = 7          # x, gate_weight, gate_bias, w1, b1, w2, b2


# ------------------------------------------------------------------------------------------ bank
@torch.library.custom_op("himoe_fast::modality_bank", mutates_args=())
def modality_bank_op(x: Tensor, gate_weight: Tensor, gate_bias: Tensor, w1: Tensor, b1: Tensor, w2: Tensor,
                     b2: Tensor, routing: str, kind: str) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        z, alpha = bank_apply(x, gate_weight, gate_bias, w1, b1, w2, b2, routing, kind)
    return z.contiguous(), alpha.contiguous()


@modality_bank_op.register_fake
def _(x, gate_weight, gate_bias, w1, b1, w2, b2, routing, kind):
    M, N, _ = x.shape
    return x.new_empty(x.shape), x.new_empty((M, N, w1.shape[1]))


@torch.library.custom_op("himoe_fast::modality_bank_backward", mutates_args=())
def modality_bank_backward_op(dz: Tensor, dalpha: Tensor, x: Tensor, gate_weight: Tensor, gate_bias: Tensor,
                              w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, routing: str,
                              kind: str) -> list[Tensor]:
    ins = [t.detach().requires_grad_(True) for t in (x, gate_weight, gate_bias, w1, b1, w2, b2)]
    with torch.enable_grad():
        z, alpha = bank_apply(*ins, routing, kind)
        outs, grads = [z], [dz]
        if alpha.requires_grad:                     # soft routing: the gates carry gradient
            outs.append(alpha)
            grads.append(dalpha)
        got = torch.autograd.grad(outs, ins, grads, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(got, ins)]


@modality_bank_backward_op.register_fake
def _(dz, dalpha, x, gate_weight, gate_bias, w1, b1, w2, b2, routing, kind):
    return [t.new_empty(t.shape) for t in (x, gate_weight, gate_bias, w1, b1, w2, b2)]


def _bank_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:_BANK_INPUTS])
    ctx.routing, ctx.kind = inputs[_BANK_INPUTS], inputs[_BANK_INPUTS + 1]


def _bank_backward(ctx, dz, dalpha):
    saved = ctx.saved_tensors
    x, w1 = saved[0], saved[3]
    if dz is None:
        dz = torch.zeros_like(x)
    if dalpha is None:
        dalpha = x.new_zeros((x.shape[0], x.shape[1], w1.shape[1]))
    grads = list(modality_bank_backward_op(dz, dalpha, *saved, ctx.routing, ctx.kind))
    if ctx.routing not in LEARNED_GATES:            # uniform / top1 gates are constants (as the reference)
        grads[1] = grads[2] = None
    return (*grads, None, None)


modality_bank_op.register_autograd(_bank_backward, setup_context=_bank_setup)


# ------------------------------------------------------------------------------------------ router
def _present(*ts) -> list[int]:
    return [i for i, t in enumerate(ts) if t is not None]


@torch.library.custom_op("himoe_fast::da_router_core", mutates_args=())
def _router_core(z: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor, v: Optional[Tensor],
                 qh: Optional[Tensor], wk: Optional[Tensor], scale: Optional[Tensor], sc: float,
                 mode: str, kind: str) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        A, S = core_apply(z, w1, b1, w2, b2, v, qh, wk, scale, None if v is None else sc, mode, kind,
                          save_hidden=False)
    return A.contiguous(), S.contiguous()


@_router_core.register_fake
def _(z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode, kind):
    P = 1 if v is None else v.shape[0]
    N, d = z.shape
    return z.new_empty((P, N, d)), z.new_empty((P, N, w1.shape[0]))


@torch.library.custom_op("himoe_fast::da_router_core_backward", mutates_args=())
def _router_core_backward(gA: Tensor, gS: Tensor, z: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                          v: Optional[Tensor], qh: Optional[Tensor], wk: Optional[Tensor], scale: Optional[Tensor],
                          sc: float, mode: str, kind: str) -> list[Tensor]:
    """Gradients of the inputs that are not None, in order."""
    args = [None if t is None else t.detach().requires_grad_(True) for t in (z, w1, b1, w2, b2, v, qh, wk, scale)]
    ins = [t for t in args if t is not None]
    with torch.enable_grad():
        A, S = core_apply(*args, None if v is None else sc, mode, kind, save_hidden=False)
        got = torch.autograd.grad([A, S], ins, [gA, gS], allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for g, t in zip(got, ins)]


@_router_core_backward.register_fake
def _(gA, gS, z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode, kind):
    return [t.new_empty(t.shape) for t in (z, w1, b1, w2, b2, v, qh, wk, scale) if t is not None]


def _router_setup(ctx, inputs, output):
    z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode, kind = inputs
    tensors = (z, w1, b1, w2, b2, v, qh, wk, scale)
    ctx.which = _present(*tensors)
    ctx.save_for_backward(*(tensors[i] for i in ctx.which))
    ctx.sc, ctx.mode, ctx.kind = sc, mode, kind


def _router_backward(ctx, gA, gS):
    saved = ctx.saved_tensors
    full: list = [None] * 9
    for i, t in zip(ctx.which, saved):
        full[i] = t
    z, w1 = full[0], full[1]
    P = 1 if full[5] is None else full[5].shape[0]
    if gA is None:
        gA = z.new_zeros((P, z.shape[0], z.shape[1]))
    if gS is None:
        gS = z.new_zeros((P, z.shape[0], w1.shape[0]))
    got = _router_core_backward(gA, gS, *full, ctx.sc, ctx.mode, ctx.kind)
    grads: list = [None] * 9
    for i, g in zip(ctx.which, got):
        grads[i] = g
    return (*grads, None, None, None)


_router_core.register_autograd(_router_backward, setup_context=_router_setup)


def da_router_core_op(z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode: str, kind: str):
    """``himoe_fast::da_router_core`` with the fast path's argument conventions (``sc`` None for cosine)."""
    return _router_core(z, w1, b1, w2, b2, v, qh, wk, scale, 0.0 if sc is None else float(sc), mode, kind)


__all__ = ["modality_bank_op", "modality_bank_backward_op", "da_router_core_op"]
