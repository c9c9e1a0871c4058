"""Fused Emotion Expert Bank with the DA-router (paper Eq. 5-6): ``da_router``.

Same numbers as :class:`himoe_fast.model.router.EmotionExpertBank` (modes ``dot``, ``cosine``,
``diff``), computed without a Python loop over the ``L`` experts and without keeping the
``[L, N, d]`` expert outputs or the ``[L, N, h]`` hidden activations for backward (they are
recomputed there).

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
``G_p,l = <gA_p, f_l> + gS_p,l`` and ``D_p = sum_l S_p,l G_p,l``, ``dphi_p,l = S_p,l (G_p,l - D_p)``;
the gradient reaching expert ``l`` is ``gf_l = sum_p S_p,l gA_p + dphi/df_l`` and flows back through
the FFN as usual.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from himoe_fast.model.router import COSINE_EPS

MODES = ("dot", "cosine", "diff")
BACKENDS = ("torch", "triton")

__all__ = ["da_router", "da_router_core", "MODES", "BACKENDS"]


# ----------------------------------------------------------------------------------------------
# torch core: batched over experts with bmm, recompute in backward
# ----------------------------------------------------------------------------------------------

def _ffn(z: torch.Tensor, w1, b1, w2, b2):
    """All L experts at once. z ``[N, d]`` -> (a ``[L, N, h]``, u = gelu(a), f ``[L, N, d]``)."""
    L, N, d = w1.shape[0], z.shape[0], z.shape[1]
    a = torch.baddbmm(b1.unsqueeze(1), z.expand(L, N, d), w1)              # [L, N, h]
    u = F.gelu(a)
    f = torch.baddbmm(b2.unsqueeze(1), u, w2)                               # [L, N, d]
    return a, u, f


def _cos_keys(f: torch.Tensor, wk: torch.Tensor):
    """k = f W_k, its clamped norm and unit vector. f ``[L, N, d]``, wk ``[1, d, r]``."""
    k = torch.matmul(f, wk[0])                                              # [L, N, r]
    norm = k.norm(dim=-1)                                                   # [L, N]
    kn = norm.clamp_min(COSINE_EPS)
    return k, norm, kn, k / kn.unsqueeze(-1)


class _TorchCore(torch.autograd.Function):
    """(z, w1, b1, w2, b2, v | qh, wk, scale) -> (A ``[P, N, d]``, S ``[P, N, L]``). See module doc."""

    @staticmethod
    def forward(ctx, z, w1, b1, w2, b2, v, qh, wk, scale, sc, save_hidden):
        cosine = qh is not None
        a, _, f = _ffn(z, w1, b1, w2, b2)
        ft = f.transpose(0, 1)                                              # [N, L, d] view
        if cosine:
            _, _, kn, khat = _cos_keys(f, wk)
            phi = (scale * (khat * qh[0]).sum(-1)).t().unsqueeze(1)         # [N, 1, L]
        else:
            phi = torch.bmm(v.transpose(0, 1), ft.transpose(1, 2)) * sc     # [N, P, L]
        S = torch.softmax(phi, dim=-1)                                      # [N, P, L]
        A = torch.bmm(S, ft)                                                # [N, P, d]
        ctx.save_for_backward(z, w1, b1, w2, b2, v, qh, wk, scale, S, a if save_hidden else None)
        ctx.sc = sc
        return A.transpose(0, 1), S.transpose(0, 1)

    @staticmethod
    def backward(ctx, gA, gS):
        z, w1, b1, w2, b2, v, qh, wk, scale, S, a = ctx.saved_tensors
        cosine = qh is not None
        sc = scale if cosine else ctx.sc
        L, N, d = w1.shape[0], z.shape[0], z.shape[1]
        if a is None:                                                       # recompute the hidden
            a = torch.baddbmm(b1.unsqueeze(1), z.expand(L, N, d), w1)      # [L, N, h]
        u = F.gelu(a)
        f = torch.baddbmm(b2.unsqueeze(1), u, w2)                           # [L, N, d]
        ft = f.transpose(0, 1)                                              # [N, L, d]
        gAt = gA.transpose(0, 1)                                            # [N, P, d]
        G = torch.bmm(gAt, ft.transpose(1, 2)) + gS.transpose(0, 1)        # [N, P, L]
        D = (S * G).sum(-1, keepdim=True)                                   # [N, P, 1]
        dphi = S * (G - D)                                                  # [N, P, L]
        g_v = g_qh = g_wk = g_scale = None
        if cosine:
            k, norm, kn, khat = _cos_keys(f, wk)                            # [L, N, r], [L, N]
            cos = (khat * qh[0]).sum(-1)                                    # [L, N]
            dp = dphi[:, 0, :].t()                                          # [L, N]
            c = (dp * sc).unsqueeze(-1)                                     # [L, N, 1]
            # d cos / d k = (qh - cos khat) / |k|   (|k| >= eps);   qh / eps   (clamped)
            proj = torch.where(norm >= COSINE_EPS, cos, torch.zeros_like(cos)).unsqueeze(-1)
            gk = c * (qh[0] - proj * khat) / kn.unsqueeze(-1)              # [L, N, r]
            g_qh = (c * khat).sum(0).unsqueeze(0)                           # [1, N, r]
            g_scale = (dp * cos).sum()
            g_wk = (f.reshape(L * N, d).t() @ gk.reshape(L * N, -1)).unsqueeze(0)   # [1, d, r]
            gft = torch.matmul(gk, wk[0].t()).transpose(0, 1)               # [N, L, d]
            gft = torch.baddbmm(gft, S.transpose(1, 2), gAt)                # + S_l gA
        else:
            coef = torch.cat([S, dphi * sc], dim=1).transpose(1, 2)         # [N, L, 2P]
            vecs = torch.cat([gAt, v.transpose(0, 1)], dim=1)               # [N, 2P, d]
            gft = torch.bmm(coef, vecs)                                     # [N, L, d]
            g_v = (torch.bmm(dphi, ft) * sc).transpose(0, 1)                # [P, N, d]
        gf = gft.transpose(0, 1)                                            # [L, N, d] view
        g_b2 = gf.sum(1)
        g_w2 = torch.bmm(u.transpose(1, 2), gf)                             # [L, h, d]
        gu = torch.bmm(gf, w2.transpose(1, 2), out=u)                       # [L, N, h], reuses u
        del f, ft, gft, gf
        ga = torch.ops.aten.gelu_backward(gu, a)                            # [L, N, h]
        del gu, u, a
        g_b1 = ga.sum(1)
        g_w1 = torch.bmm(z.t().expand(L, d, N), ga)                          # [L, d, h]
        g_z = torch.bmm(ga, w1.transpose(1, 2)).sum(0)                      # [N, d]
        return g_z, g_w1, g_b1, g_w2, g_b2, g_v, g_qh, g_wk, g_scale, None, None


# ----------------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------------

def _check(z, w1, b1, w2, b2, wq, wk, mode, scale, lam):
    if mode not in MODES:
        raise ValueError(f"unknown router mode {mode!r}; expected one of {MODES}")
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
                   save_hidden: bool = False):
    """The fused part: returns (A ``[P, N, d]``, S ``[P, N, L]``), one per softmax (see module doc)."""
    r = wq.shape[-1]
    q = torch.matmul(z, wq)                                                 # [P, N, r]
    if mode == "cosine":
        qh = q / q.norm(dim=-1, keepdim=True).clamp_min(COSINE_EPS)
        v, wk_in, scale_in, sc = None, wk, scale, None
    else:
        v = torch.matmul(q, wk.transpose(1, 2))                             # [P, N, d]
        qh, wk_in, scale_in, sc = None, None, None, 1.0 / math.sqrt(r)
    if backend == "torch":
        return _TorchCore.apply(z, w1, b1, w2, b2, v, qh, wk_in, scale_in, sc, bool(save_hidden))
    if backend == "triton":
        from himoe_fast.kernels import da_router as kernels  # lazy: imports triton

        return kernels.da_router_core(z, w1, b1, w2, b2, v=v, qh=qh, wk=wk_in, scale=scale_in, sc=sc)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")


def da_router(z, w1, b1, w2, b2, wq, wk, mode: str, scale=None, lam=None,
              backend: str = "torch", save_hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Emotion Expert Bank with DA-router, fused.

    z: ``[..., d]`` (``[N, d]`` in the contract); w1 ``[L, d, h]``; b1 ``[L, h]``; w2 ``[L, h, d]``;
    b2 ``[L, d]``; wq, wk ``[P, d, r]`` (``P = 2`` for ``diff`` else 1); scale: 0-d tensor (cosine);
    lam: 0-d tensor (diff; computed by the caller from lambda_q/lambda_k with torch ops).
    Returns (e ``[..., d]``, beta ``[..., L]``), differentiable w.r.t. z, every parameter, scale, lam.
    backend: ``"torch"`` (batched ops, CPU or GPU) or ``"triton"`` (kernels in
    ``himoe_fast.kernels.da_router``; CPU tensors need ``TRITON_INTERPRET=1`` set before triton loads).
    """
    _check(z, w1, b1, w2, b2, wq, wk, mode, scale, lam)
    lead = z.shape[:-1]
    z2 = z.reshape(-1, z.shape[-1])
    A, S = da_router_core(z2, w1, b1, w2, b2, wq, wk, mode, scale=scale, backend=backend, save_hidden=save_hidden)
    if mode == "diff":
        e, beta = A[0] - lam * A[1], S[0] - lam * S[1]
    else:
        e, beta = A[0], S[0]
    return e.reshape(*lead, e.shape[-1]), beta.reshape(*lead, beta.shape[-1])
