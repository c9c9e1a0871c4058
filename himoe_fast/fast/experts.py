"""Fast Modality Expert Bank (Eq. 2-3): Triton kernels on GPU, batched-torch path on CPU.

CPU path (``backend="torch"``): the same algebra as the kernels with every modality and expert in
one batched op, in an *expert-major* layout ``[M*K, N, .]`` so that the stacked parameters are used
as they are stored (``w1.view(M*K, d, h)``, ``w2.view(M*K, h, d)``; no weight copies, and the weight
gradients come out of ``bmm`` in the parameters' own layout)::

    logits = baddbmm(bg, x, Wg)                    [M, N, K]
    xe     = x broadcast over K                    [M*K, N, d]   (a copy of x, K x smaller than W1)
    hpre   = xe @ W1 + b1                          [M*K, N, h]   one bmm
    y      = gelu(hpre) @ W2                       [M*K, N, d]   one bmm (expert outputs minus b2)
    z      = sum_k alpha_k y_k + alpha @ B2        [M, N, d]

The gate scaling is applied to the ``d``-wide expert outputs rather than the ``h``-wide hidden (the
same sum, fewer multiplies). A custom autograd Function keeps ``xe``, ``alpha``, ``hpre``,
``gelu(hpre)`` and ``y`` for backward, drops each as soon as it is used and reuses their buffers for
the backward's temporaries (see :class:`ModalityBankTorchFunction`), and runs the backward as five
more bmm's:

    dE_k = alpha_k dz;  dA = dE @ W2^T;  dW2 = gelu(hpre)^T dE;  dhpre = gelu'(hpre) dA
    dx = sum_k dhpre W1^T (+ dlogits Wg^T);  dW1 = xe^T dhpre;  dalpha_k = <dz, y_k + b2_k> (+ dalpha_ext)

The large intermediates come from a per-thread :class:`Workspace` that is reused from step to step
(PyTorch has no caching allocator on CPU). No Python loop runs over modalities or experts.
"""

from __future__ import annotations

import threading

import torch

from ..config import ROUTINGS
from ..model.experts import gate_weights
from .backend import load_kernel_module, no_autocast, resolve, unify_dtypes

#: routings whose gate learns (receives the softmax's gradient); ``uniform`` and ``top1`` gates are constants
LEARNED_GATES = ("soft", "top1_st")
#: routings the fused kernels implement; ``top1_st`` (an ablation) runs the batched-torch bank everywhere
KERNEL_ROUTINGS = ("soft", "uniform", "top1")


class Workspace(threading.local):
    """Per-thread free list of the CPU bank's large intermediates, reused from step to step.

    PyTorch has no caching allocator on CPU: every step would allocate the ``[M*K, N, h]``
    intermediates afresh, and glibc hands large freed blocks back to the OS, so each step also pays a
    page fault per 4 KiB of them (measurable on VMs). The bank's own intermediates (never returned to
    the caller) are therefore taken from and given back to this list; :func:`workspace_bytes` reports
    what it holds (``himoe-fast bench`` adds it to the fast side's peak memory), :func:`clear_workspace`
    frees it. At most :data:`MAX_PER_KEY` buffers per shape and :data:`MAX_KEYS` shapes are kept.
    """

    def __init__(self):
        self.free: dict[tuple, list[torch.Tensor]] = {}

    def take(self, shape, like: torch.Tensor) -> torch.Tensor:
        key = (tuple(shape), like.dtype, like.device)
        lst = self.free.get(key)
        if lst:
            return lst.pop()
        return torch.empty(shape, dtype=like.dtype, device=like.device)

    def give(self, *tensors) -> None:
        for t in tensors:
            if t is None or t.device.type != "cpu":
                continue
            key = (tuple(t.shape), t.dtype, t.device)
            lst = self.free.setdefault(key, [])
            if len(lst) < MAX_PER_KEY:
                lst.append(t)
            self.free[key] = self.free.pop(key)              # most recently used last
        while len(self.free) > MAX_KEYS:
            self.free.pop(next(iter(self.free)))

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for lst in self.free.values() for t in lst)


MAX_PER_KEY = 2
MAX_KEYS = 8
_WS = Workspace()


def workspace_bytes() -> int:
    """Bytes held by this thread's bank workspace."""
    return _WS.nbytes()


def clear_workspace() -> None:
    _WS.free.clear()


def _forward(x, wg, bg, w1, b1, w2, b2, routing):
    """Returns z, alpha and the intermediates (xe, hpre, act, y), the latter from the workspace."""
    M, N, d = x.shape
    K, h = w1.shape[1], w1.shape[3]
    ws = _WS if x.device.type == "cpu" else None
    take = ws.take if ws is not None else (lambda shape, like: torch.empty(shape, dtype=like.dtype, device=like.device))
    logits = torch.baddbmm(bg.unsqueeze(1), x, wg)                                   # [M, N, K]
    alpha = gate_weights(logits, routing)
    xe = take((M * K, N, d), x)
    xe.view(M, K, N, d).copy_(x.unsqueeze(1).expand(M, K, N, d))                      # [MK, N, d]
    hpre = torch.bmm(xe, w1.reshape(M * K, d, h), out=take((M * K, N, h), x))        # [MK, N, h]
    hpre.add_(b1.reshape(M * K, 1, h))
    act = torch.ops.aten.gelu.out(hpre, out=take((M * K, N, h), x))
    y = torch.bmm(act, w2.reshape(M * K, h, d), out=take((M * K, N, d), x))          # [MK, N, d] = E_k - b2_k
    at = alpha.transpose(1, 2).unsqueeze(-1)                                          # [M, K, N, 1]
    tmp = torch.mul(y.view(M, K, N, d), at, out=take((M, K, N, d), x))
    z = tmp.sum(1).baddbmm_(alpha, b2)                                                # [M, N, d]
    if ws is not None:
        ws.give(tmp)
    return z, alpha, xe, hpre, act, y


class ModalityBankTorchFunction(torch.autograd.Function):
    """Batched-torch Modality Expert Bank with a hand-written backward (see module docstring).

    Memory: the forward intermediates are kept on ``ctx`` (not ``save_for_backward``) so that the
    backward can drop each one as soon as it is used, and the backward writes its hidden-sized
    temporaries into the buffers of intermediates it no longer needs (``dE`` and ``dx`` into ``y``'s,
    ``dhpre`` into ``gelu(hpre)``'s): it allocates nothing large but the weight gradients, which keeps
    the peak below the reference's and avoids page-faulting fresh buffers every step. A second
    backward through a retained graph recomputes the intermediates from the saved inputs.
    """

    @staticmethod
    def forward(ctx, x, wg, bg, w1, b1, w2, b2, routing: str):
        z, alpha, xe, hpre, act, y = _forward(x, wg, bg, w1, b1, w2, b2, routing)
        ctx.routing = routing
        ctx.set_materialize_grads(False)
        if routing not in LEARNED_GATES:
            ctx.mark_non_differentiable(alpha)
        ctx.save_for_backward(x, wg, bg, w1, b1, w2, b2, alpha)
        ctx.stash = {"xe": xe, "hpre": hpre, "act": act, "y": y}
        return z, alpha

    @staticmethod
    def backward(ctx, dz, dalpha):
        x_in, wg, bg, w1, b1, w2, b2, alpha = ctx.saved_tensors
        st = ctx.stash
        ctx.stash = None
        if st is None:                    # backward again (retain_graph=True): recompute
            _, _, xe, hpre, act, y = _forward(x_in, wg, bg, w1, b1, w2, b2, ctx.routing)
            st = {"xe": xe, "hpre": hpre, "act": act, "y": y}
        need = ctx.needs_input_grad
        M, K, d, h = w1.shape
        xe, y = st.pop("xe"), st.pop("y")                                            # [MK, N, d] each
        N = xe.shape[1]
        x = xe.view(M, K, N, d)[:, 0]                                                # [M, N, d] view
        y4 = y.view(M, K, N, d)
        dx = dwg = dbg = dw1 = db1 = dw2 = db2 = None
        dlogits = None
        if dz is not None:
            dz = dz.contiguous()
        if ctx.routing in LEARNED_GATES:
            # the gate's gradient is the softmax's: for top1_st (straight-through) too, whose forward
            # mixed with the one-hot alpha
            p = alpha if ctx.routing == "soft" else torch.softmax(torch.baddbmm(bg.unsqueeze(1), x, wg), dim=-1)
            # dalpha_k = <dz, E_k> = <dz, y_k> + <dz, b2_k>  (+ the gradient of a loss on the gates)
            if dz is None:
                da = alpha.new_zeros(alpha.shape)
            else:
                da = y4.mul_(dz.unsqueeze(1)).sum(-1).transpose(1, 2) + torch.bmm(dz, b2.transpose(1, 2))
            if dalpha is not None:
                da = da + dalpha
            dlogits = p * (da - (p * da).sum(-1, keepdim=True))                        # [M, N, K]
            if need[1]:
                dwg = torch.bmm(x.transpose(1, 2), dlogits)
            if need[2]:
                dbg = dlogits.sum(1)
        act, hpre = st.pop("act"), st.pop("hpre")
        if dz is not None:
            at = alpha.transpose(1, 2).contiguous().unsqueeze(-1)                      # [M, K, N, 1]
            de = torch.mul(dz.unsqueeze(1), at, out=y4).view(M * K, N, d)              # dE_k = alpha_k dz
            if need[6]:
                db2 = torch.bmm(alpha.transpose(1, 2), dz)                             # [M, K, d]
            if need[5]:
                dw2 = torch.bmm(act.transpose(1, 2), de).view(M, K, h, d)
            if need[0] or need[3] or need[4]:
                dh = torch.bmm(de, w2.reshape(M * K, h, d).transpose(1, 2), out=act)   # [MK, N, h]
                torch.ops.aten.gelu_backward.grad_input(dh, hpre, grad_input=dh)      # in place: dhpre
                if need[4]:
                    db1 = dh.sum(1).view(M, K, h)
                if need[3]:
                    dw1 = torch.bmm(xe.transpose(1, 2), dh).view(M, K, d, h)
                if need[0]:
                    dx = torch.bmm(dh, w1.reshape(M * K, d, h).transpose(1, 2), out=de).view(M, K, N, d).sum(1)
        if need[0] and dlogits is not None:
            gx = torch.bmm(dlogits, wg.transpose(1, 2))
            dx = gx if dx is None else dx.add_(gx)
        elif need[0] and dx is None:
            dx = torch.zeros_like(x)
        if xe.device.type == "cpu":
            del x
            _WS.give(xe, y, act, hpre)        # none of them is referenced by the returned gradients
        return dx, dwg, dbg, dw1, db1, dw2, db2, None


def modality_bank_torch(x, gate_weight, gate_bias, w1, b1, w2, b2, routing: str = "soft"):
    """Batched-torch bank. x ``[M, N, d]`` -> (z ``[M, N, d]``, alpha ``[M, N, K]``)."""
    if routing not in ROUTINGS:
        raise ValueError(f"unknown routing {routing!r}")
    x = x.contiguous()
    if torch.is_grad_enabled() and any(t.requires_grad for t in (x, gate_weight, gate_bias, w1, b1, w2, b2)):
        return ModalityBankTorchFunction.apply(x, gate_weight, gate_bias, w1, b1, w2, b2, routing)
    z, alpha, *inter = _forward(x, gate_weight, gate_bias, w1, b1, w2, b2, routing)
    if x.device.type == "cpu":
        _WS.give(*inter)
    return z, alpha


def modality_bank(x: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor, w1: torch.Tensor,
                  b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, routing: str = "soft",
                  backend: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Modality Expert Bank of all ``M`` modalities at once (Eq. 2-3).

    x: ``[M, N, d]`` bank input (absent tokens zero); parameters in the stacked layout of
    :class:`~himoe_fast.model.ModalityExpertBank`. Returns (z ``[M, N, d]``, alpha ``[M, N, K]``).
    ``backend``: ``auto`` (Triton on CUDA, batched torch on CPU) | ``triton`` | ``torch``.
    Inputs share one dtype; under autocast they are cast to the autocast dtype (bf16 on CPU and GPU
    alike), as autocast does for the reference's matmuls, and the outputs come out in that dtype.
    """
    x, gate_weight, gate_bias, w1, b1, w2, b2 = unify_dtypes(
        "modality_bank", ("x", "gate_weight", "gate_bias", "w1", "b1", "w2", "b2"),
        (x, gate_weight, gate_bias, w1, b1, w2, b2), x.device)
    kind = _bank_kind(backend, x.device.type, x.shape[-1]) if routing in KERNEL_ROUTINGS else "torch"
    with no_autocast(x.device):
        if torch.compiler.is_compiling():        # an opaque op for torch.compile (himoe_fast.fast.library)
            from . import library

            return library.modality_bank_op(x, gate_weight, gate_bias, w1, b1, w2, b2, routing, kind)
        return bank_apply(x, gate_weight, gate_bias, w1, b1, w2, b2, routing, kind)


@torch.compiler.assume_constant_result
def _bank_kind(backend: str, device_type: str, d: int) -> str:
    """``triton`` (the fused kernels) or ``torch`` (batched ops) for ``backend`` on ``device_type``."""
    if resolve(backend, device_type) != "triton":
        return "torch"
    kern = load_kernel_module("modality_experts", device_type)
    # auto: rows wider than the kernels keep on chip run the batched torch path (CUDA too)
    return "triton" if backend == "triton" or d <= kern.MAX_D else "torch"


def bank_apply(x, gate_weight, gate_bias, w1, b1, w2, b2, routing: str, kind: str):
    """The bank on ``kind`` = ``triton`` (the fused kernels) or ``torch`` (the batched CPU path)."""
    if kind == "triton":
        kern = load_kernel_module("modality_experts", x.device)
        return kern.modality_experts(x, gate_weight, gate_bias, w1, b1, w2, b2, routing)
    return modality_bank_torch(x, gate_weight, gate_bias, w1, b1, w2, b2, routing)
