"""Fused Emotion Expert Bank with the DA-router (paper Eq. 5-6): ``da_router``.

Same numbers as :class:`himoe_fast.model.router.EmotionExpertBank` (modes ``dot``, ``cosine``,
``diff``), computed with the experts batched (no Python loop over the ``L`` experts) and without
keeping the ``[L, N, d]`` expert outputs for backward (recomputed there). The ``[L, N, h]`` hidden
pre-activation is recomputed too (``save_hidden=False``: 8 expert GEMMs per fwd+bwd against the
reference's 6 + its per-expert router projections) or kept (``save_hidden=True``, the default on CPU:
7 GEMMs; the first backward reuses its buffer for ``dL/da``, so the peak still stays below the
reference's).

Split of the work (shared by both backends)::

    prologue (plain torch ops, autograd)   q = z W_q                              [P, N, r]
        dot / diff:  v_p = q_p W_k,p^T                                            [P, N, d]
                     so  <q_p, F_l(z) W_k,p> / sqrt(r) = sc * <v_p, F_l(z)>,  sc = 1/sqrt(r)
                     (one projection per token instead of one per token and expert)
        cosine:      qh = q / max(|q|, eps)                                       [1, N, r]
    core (custom autograd.Function: torch backend here, Triton in himoe_fast.kernels.da_router)
        f_l   = W2_l gelu(W1_l z + b1_l) + b2_l                                   [L, N, d]
        phi   = sc <v_p, f_l>        (dot / diff)                                 [N, P, L]
              = sc <qh, k_l> / max(|k_l|, eps),  k_l = f_l W_k   (cosine)
        S_p   = softmax_l(phi_p)                                                  [P, N, L]
        A_p   = sum_l S_p,l f_l                                                   [P, N, d]
    epilogue (autograd)  dot / cosine: e = A_0, beta = S_0
                         diff:         e = A_0 - lam A_1, beta = S_0 - lam S_1

Backward of the core (the derivation is written out in ``himoe_fast.kernels.da_router``): with
``G_p,l = <gA_p, f_l> + gS_p,l`` and ``D_p = sum_l S_p,l G_p,l = <gA_p, A_p> + <gS_p, S_p>``,
``dphi_p,l = S_p,l (G_p,l - D_p)``; the gradient reaching expert ``l`` is
``gf_l = sum_p S_p,l gA_p + dphi/df_l`` and flows back through the FFN as usual.

torch backend: all experts go through ``bmm`` at once while ``[L, N, h]`` fits in
:data:`CHUNK_BYTES` (always at the realistic N = 256); beyond that the experts are taken in groups
(an online softmax across groups in forward; ``D`` from the saved ``A`` makes the groups independent
in backward), which bounds the working set at large N. Saved for backward: z, S, A (+ the hidden).
"""

from __future__ import annotations

import math
import threading

import torch
import torch.nn.functional as F

from himoe_fast.model.router import COSINE_EPS

from .backend import load_kernel_module, no_autocast, resolve, thread_override, unify_dtypes

MODES = ("dot", "cosine", "diff")
BACKENDS = ("auto", "torch", "triton")

__all__ = ["da_router", "da_router_core", "MODES", "BACKENDS"]


# ----------------------------------------------------------------------------------------------
# torch core: experts batched with bmm, recomputed in backward
# ----------------------------------------------------------------------------------------------

#: Working-set budget of the torch backend: experts are processed in groups whose ``[L_c, N, h]``
#: hidden fits in this many bytes (one group, i.e. fully batched, at the realistic N = 256).
CHUNK_BYTES = 4 << 20


_BUDGET = threading.local()


def expert_group_bytes(n: int):
    """Within the block (this thread), the torch backend's working-set budget is ``n`` bytes instead
    of :data:`CHUNK_BYTES` (small budgets make small shapes take the grouped, online-softmax path)."""
    return thread_override(_BUDGET, int(n))


def _chunks(L: int, N: int, h: int, itemsize: int):
    """Expert groups ``slice``s: all ``L`` at once unless ``[L, N, h]`` exceeds the budget
    (:data:`CHUNK_BYTES`, or :func:`expert_group_bytes`)."""
    budget = getattr(_BUDGET, "value", None) or CHUNK_BYTES
    step = max(1, min(L, budget // max(1, N * h * itemsize)))
    return [slice(l0, min(L, l0 + step)) for l0 in range(0, L, step)]


def _mix(w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """``sum_l w[n, p, l] f[l, n, :]``: w ``[N, P, L_c]``, f ``[L_c, N, d]`` -> ``[N, P, d]``.

    A bmm batched over tokens; for fewer than 4 experts per group, where such tiny-K batched GEMMs
    are slow on CPU, a broadcast multiply-sum instead."""
    if f.shape[0] >= 4:
        return torch.bmm(w, f.transpose(0, 1))
    return (w.permute(2, 0, 1).unsqueeze(-1) * f.unsqueeze(2)).sum(0)


def _hidden(z, w1, b1, sl, out=None):
    """Pre-activation of the experts in ``sl``: ``[L_c, N, h]``."""
    Lc, (N, d) = sl.stop - sl.start, z.shape
    return torch.baddbmm(b1[sl].unsqueeze(1), z.expand(Lc, N, d), w1[sl], out=out)


def _cos_keys(f: torch.Tensor, wk: torch.Tensor):
    """k = f W_k -> (|k|, max(|k|, eps), k / max(|k|, eps)). f ``[L_c, N, d]``, wk ``[1, d, r]``."""
    k = torch.matmul(f, wk[0])                                              # [L_c, N, r]
    norm = k.norm(dim=-1)                                                   # [L_c, N]
    kn = norm.clamp_min(COSINE_EPS)
    return norm, kn, k.div_(kn.unsqueeze(-1))                               # unit keys in k's buffer


class _TorchCore(torch.autograd.Function):
    """(z, w1, b1, w2, b2, v | qh, wk, scale) -> (A ``[P, N, d]``, S ``[P, N, L]``). See module doc.

    Experts are batched with ``bmm`` (in groups bounded by :data:`CHUNK_BYTES`, with an online softmax
    across groups); saved for backward: z, S, A; with ``save_hidden`` also the hidden pre-activation
    (and cosine's unit keys), kept on ``ctx`` and consumed by the first backward.
    """

    @staticmethod
    def forward(ctx, z, w1, b1, w2, b2, v, qh, wk, scale, sc, save_hidden):
        cosine = qh is not None
        (L, _, h), N = w1.shape, z.shape[0]
        groups = _chunks(L, N, h, z.element_size())
        save_hidden = save_hidden and any(ctx.needs_input_grad)
        a_all = torch.empty(L, N, h, dtype=z.dtype, device=z.device) if save_hidden else None
        phis, keys, m = [], [], None
        for sl in groups:
            a = _hidden(z, w1, b1, sl, out=None if a_all is None else a_all[sl])   # [L_c, N, h]
            u = F.gelu(a) if save_hidden else torch.ops.aten.gelu_(a)      # in place unless a is kept
            f = torch.baddbmm(b2[sl].unsqueeze(1), u, w2[sl])               # [L_c, N, d]
            del u, a
            ft = f.transpose(0, 1)                                          # [N, L_c, d] view
            if cosine:
                norm, _, khat = _cos_keys(f, wk)
                phi = (scale * (khat * qh[0]).sum(-1)).t().unsqueeze(1)     # [N, 1, L_c]
                if save_hidden:
                    keys.append((norm, khat))
            else:
                phi = torch.bmm(v.transpose(0, 1), ft.transpose(1, 2)) * sc # [N, P, L_c]
            phis.append(phi)
            if len(groups) == 1:
                break
            # online softmax over the groups: running max m, sum ell, accumulator acc
            m_new = phi.amax(-1, keepdim=True) if m is None else torch.maximum(m, phi.amax(-1, keepdim=True))
            p = torch.exp(phi - m_new)                                      # [N, P, L_c]
            if m is None:
                ell, acc = p.sum(-1, keepdim=True), _mix(p, f)
            else:
                c = torch.exp(m - m_new)
                ell = ell * c + p.sum(-1, keepdim=True)
                acc = acc * c + _mix(p, f)
            m = m_new
        S = torch.softmax(torch.cat(phis, -1) if len(phis) > 1 else phis[0], dim=-1)  # [N, P, L]
        A = _mix(S, f) if len(groups) == 1 else acc / ell                   # [N, P, d]
        ctx.save_for_backward(z, w1, b1, w2, b2, v, qh, wk, scale, S, A)
        # The hidden is an intermediate, kept on ctx (not save_for_backward) because the first
        # backward consumes it: its buffer becomes dL/da in place. A second backward (retain_graph)
        # finds it gone and recomputes.
        ctx.hidden = a_all
        # cosine: the unit keys [L, N, r] and their norms go with the hidden (same life cycle)
        ctx.keys = None
        if keys:
            ctx.keys = keys[0] if len(keys) == 1 else tuple(torch.cat(t) for t in zip(*keys))
        ctx.sc = sc
        return A.transpose(0, 1), S.transpose(0, 1)

    @staticmethod
    def backward(ctx, gA, gS):
        z, w1, b1, w2, b2, v, qh, wk, scale, S, A = ctx.saved_tensors
        a_all, ctx.hidden = ctx.hidden, None                                # consumed (see forward)
        keys, ctx.keys = ctx.keys, None
        cosine = qh is not None
        sc = scale if cosine else ctx.sc
        (L, d, h), N = w1.shape, z.shape[0]
        gAt, gSt = gA.transpose(0, 1), gS.transpose(0, 1)                   # [N, P, d], [N, P, L]
        # D_p = sum_l S_pl G_pl = <gA_p, A_p> + <gS_p, S_p>   (so expert groups are independent)
        D = ((gAt * A).sum(-1) + (gSt * S).sum(-1)).unsqueeze(-1)           # [N, P, 1]
        parts = {"w1": [], "b1": [], "w2": [], "b2": []}                      # per expert group
        g_z = g_v = g_qh = g_wk = g_scale = None
        for sl in _chunks(L, N, h, z.element_size()):
            Lc = sl.stop - sl.start
            a = _hidden(z, w1, b1, sl) if a_all is None else a_all[sl]      # [L_c, N, h]
            u = F.gelu(a)
            f = torch.baddbmm(b2[sl].unsqueeze(1), u, w2[sl])               # [L_c, N, d]
            ft = f.transpose(0, 1)                                          # [N, L_c, d]
            Sc = S[..., sl]                                                 # [N, P, L_c]
            G = torch.baddbmm(gSt[..., sl], gAt, ft.transpose(1, 2))        # [N, P, L_c]
            dphi = Sc * (G - D)                                             # [N, P, L_c]
            if cosine:
                if keys is None:
                    norm, kn, khat = _cos_keys(f, wk)                       # [L_c, N], [L_c, N, r]
                else:
                    norm, khat = keys[0][sl], keys[1][sl]
                    kn = norm.clamp_min(COSINE_EPS)
                cos = (khat * qh[0]).sum(-1)                                # [L_c, N]
                dp = dphi[:, 0, :].t()                                      # [L_c, N]
                c = (dp * sc).unsqueeze(-1)                                 # [L_c, N, 1]
                part = (khat * c).sum(0)                                    # [N, r]
                g_qh = part if g_qh is None else g_qh + part
                part = (dp * cos).sum()
                g_scale = part if g_scale is None else g_scale + part
                # d kh / d k = (I - kh kh^T) / |k|  (|k| >= eps);  I / eps  (clamped):
                # gk = c (qh - [|k| >= eps] cos kh) / kn, built in place in khat's buffer
                proj = torch.where(norm >= COSINE_EPS, cos, torch.zeros_like(cos)).unsqueeze(-1)
                gk = khat.mul_(-proj).add_(qh[0]).mul_(c / kn.unsqueeze(-1))  # [L_c, N, r]
                del khat, norm, kn, cos, proj
                part = f.reshape(Lc * N, d).t() @ gk.reshape(Lc * N, gk.shape[-1])  # [d, r]
                g_wk = part if g_wk is None else g_wk + part
                gf = torch.matmul(gk, wk[0].t())                            # [L_c, N, d]
                del gk
                gf.addcmul_(Sc[:, 0, :].t().unsqueeze(-1), gAt[:, 0, :].unsqueeze(0))   # + S_l gA
                buf = gf
            else:
                # gf_l = sum_p S_pl gA_p + sc dphi_pl v_p        (rank-2P per token, elementwise)
                gf = Sc[:, 0, :].t().unsqueeze(-1) * gA[0]                  # [L_c, N, d]
                gf.addcmul_((dphi[:, 0, :] * sc).t().unsqueeze(-1), v[0])
                for p in range(1, v.shape[0]):                              # diff: second pair
                    gf.addcmul_(Sc[:, p, :].t().unsqueeze(-1), gA[p])
                    gf.addcmul_((dphi[:, p, :] * sc).t().unsqueeze(-1), v[p])
                buf = gf
                part = _mix(dphi, f)                                        # [N, P, d]
                g_v = part if g_v is None else g_v + part
            del f, ft
            parts["b2"].append(gf.sum(1))
            parts["w2"].append(torch.bmm(u.transpose(1, 2), gf))           # [L_c, h, d]
            gu = torch.bmm(gf, w2[sl].transpose(1, 2), out=u)               # [L_c, N, h], reuses u
            ga = torch.ops.aten.gelu_backward.grad_input(gu, a, grad_input=a)   # in a's buffer
            del a, u, gu                                                    # frees u's buffer
            parts["b1"].append(ga.sum(1))
            parts["w1"].append(torch.bmm(z.t().expand(Lc, d, N), ga))      # [L_c, d, h]
            gz = torch.bmm(ga, w1[sl].transpose(1, 2), out=buf.view(Lc, N, d)).sum(0)  # reuses gf
            g_z = gz if g_z is None else g_z.add_(gz)
            del ga, buf, gf
        g_w1, g_b1, g_w2, g_b2 = (ps[0] if len(ps) == 1 else torch.cat(ps) for ps in parts.values())
        if g_v is not None:
            g_v = (g_v * sc).transpose(0, 1)                                # [P, N, d]
        if cosine:
            g_qh, g_wk = g_qh.unsqueeze(0), g_wk.unsqueeze(0)
        return g_z, g_w1, g_b1, g_w2, g_b2, g_v, g_qh, g_wk, g_scale, None, None


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def _check(z, w1, b1, w2, b2, wq, wk, mode, scale, lam, backend):
    if mode not in MODES:
        raise ValueError(f"unknown router mode {mode!r}; expected one of {MODES}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
    L, d, h = w1.shape
    P = 2 if mode == "diff" else 1
    if z.shape[-1] != d or w2.shape != (L, h, d) or b1.shape != (L, h) or b2.shape != (L, d):
        raise ValueError(f"shape mismatch: z {tuple(z.shape)}, w1 {tuple(w1.shape)}, b1 {tuple(b1.shape)}, "
                         f"w2 {tuple(w2.shape)}, b2 {tuple(b2.shape)}")
    if wq.shape[0] != P or wq.shape[1] != d or wk.shape != wq.shape:
        raise ValueError(f"mode {mode!r} needs wq, wk of shape [{P}, {d}, r]; got {tuple(wq.shape)}, {tuple(wk.shape)}")
    if mode == "cosine" and scale is None:
        raise ValueError("mode 'cosine' needs scale")
    if mode == "diff" and lam is None:
        raise ValueError("mode 'diff' needs lam")


def da_router_core(z, w1, b1, w2, b2, wq, wk, mode: str, scale=None, backend: str = "torch",
                   save_hidden: bool | None = None):
    """The fused part: returns (A ``[P, N, d]``, S ``[P, N, L]``), one per softmax (see module doc).

    Inputs share one dtype; under autocast they are cast to the autocast dtype and the core runs with
    autocast off (its outputs come out in that dtype)."""
    z, w1, b1, w2, b2, wq, wk, scale = unify_dtypes(
        "da_router", ("z", "w1", "b1", "w2", "b2", "wq", "wk", "scale"), (z, w1, b1, w2, b2, wq, wk, scale),
        z.device)
    with no_autocast(z.device):
        return _core(z, w1, b1, w2, b2, wq, wk, mode, scale, backend, save_hidden)


def _core(z, w1, b1, w2, b2, wq, wk, mode, scale, backend, save_hidden):
    r = wq.shape[-1]
    q = torch.matmul(z, wq)                                                 # [P, N, r]
    if mode == "cosine":
        qh = q / q.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
        v, wk_in, scale_in, sc = None, wk, scale, None
    else:
        v = torch.matmul(q, wk.transpose(1, 2))                             # [P, N, d]
        qh, wk_in, scale_in, sc = None, None, None, 1.0 / math.sqrt(r)
    if backend == "auto":
        backend = resolve(backend, z.device)
    if torch.compiler.is_compiling():        # an opaque op for torch.compile (himoe_fast.fast.library)
        from . import library

        return library.da_router_core_op(z, w1, b1, w2, b2, v, qh, wk_in, scale_in, sc, mode, backend)
    return core_apply(z, w1, b1, w2, b2, v, qh, wk_in, scale_in, sc, mode, backend, save_hidden)


def core_apply(z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode: str, backend: str, save_hidden: bool | None = None):
    """The core's autograd.Function on ``backend`` (``torch`` | ``triton``): (A ``[P, N, d]``, S ``[P, N, L]``).

    ``mode`` dot / diff: ``v [P, N, d]`` and ``sc``; cosine: ``qh [1, N, r]``, ``wk [1, d, r]``, ``scale``."""
    if backend == "torch":
        if save_hidden is None:
            save_hidden = z.device.type == "cpu"
        return _TorchCore.apply(z, w1, b1, w2, b2, v, qh, wk, scale, sc, bool(save_hidden))
    # lazy: imports triton (under the interpreter for CPU tensors)
    kernels = load_kernel_module("da_router", z.device)
    return kernels.da_router_core(z, w1, b1, w2, b2, mode, v=v, qh=qh, wk=wk, scale=scale, sc=sc)


def da_router(z, w1, b1, w2, b2, wq, wk, mode: str, scale=None, lam=None,
              backend: str = "torch", save_hidden: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Emotion Expert Bank with DA-router, fused.

    z: ``[..., d]`` (``[N, d]`` in the contract); w1 ``[L, d, h]``; b1 ``[L, h]``; w2 ``[L, h, d]``;
    b2 ``[L, d]``; wq, wk ``[P, d, r]`` (``P = 2`` for ``diff`` else 1); scale: 0-d tensor (cosine);
    lam: 0-d tensor (diff; computed by the caller from lambda_q/lambda_k with torch ops).
    Returns (e ``[..., d]``, beta ``[..., L]``), differentiable w.r.t. z, every parameter, scale, lam.
    backend: ``"torch"`` (batched ops, CPU or GPU), ``"triton"`` (kernels in
    ``himoe_fast.kernels.da_router``; on CPU tensors they run under the Triton interpreter, which
    :func:`himoe_fast.fast.backend.load_kernel_module` switches on if triton's kernels were not yet
    imported) or ``"auto"`` (Triton for CUDA tensors, torch otherwise).
    save_hidden (torch backend): keep the ``[L, N, h]`` pre-activation (and for cosine the
    ``[L, N, r]`` unit keys) for backward instead of recomputing them: one expert GEMM less in
    backward. The first backward turns the kept buffer into ``dL/da`` in place, so the peak stays
    below the reference's. ``None`` (default): keep it for CPU tensors (GEMM-bound; measured faster),
    recompute elsewhere. ``False``: keep nothing per expert. The Triton kernels always recompute.
    """
    _check(z, w1, b1, w2, b2, wq, wk, mode, scale, lam, backend)
    lead = z.shape[:-1]
    z2 = z.reshape(-1, z.shape[-1])
    A, S = da_router_core(z2, w1, b1, w2, b2, wq, wk, mode, scale=scale, backend=backend, save_hidden=save_hidden)
    if mode == "diff":
        e, beta = A[0] - lam * A[1], S[0] - lam * S[1]
    else:
        e, beta = A[0], S[0]
    return e.reshape(*lead, e.shape[-1]), beta.reshape(*lead, beta.shape[-1])
