r"""Triton kernels: Emotion Expert Bank with the DA-router (paper Eq. 5-6), forward and backward.

Entry point: :func:`da_router_core` (called by ``himoe_fast.fast.router.da_router(backend="triton")``,
which adds the cheap per-token projections and the ``diff`` combination as plain torch ops).
Importing this module imports triton: on a machine without CUDA set ``TRITON_INTERPRET=1`` first.

What the kernels compute
========================
Per token ``z`` (a row of ``[N, d]``), expert ``l = 0..L-1`` and softmax ``p = 0..P-1``
(``P = 2`` for ``diff``, else 1)::

    a_l   = z W1_l + b1_l                         [h]     W1 [L, d, h], b1 [L, h]
    u_l   = gelu(a_l)                             [h]     exact erf GELU
    f_l   = u_l W2_l + b2_l                       [d]     W2 [L, h, d], b2 [L, d]
    phi_pl = sc <v_p, f_l>                        dot / diff: v_p = (z W_q,p) W_k,p^T given [P, N, d],
                                                  sc = 1/sqrt(r)   (== <q_p, f_l W_k,p> / sqrt(r))
           = s <qh, k_l> / max(|k_l|, eps)        cosine: k_l = f_l W_k [r], qh = q / max(|q|, eps)
    S_pl  = softmax_l(phi_pl)                     [P, N, L]
    A_p   = sum_l S_pl f_l                        [P, N, d]

The caller forms ``e = A_0`` and ``beta = S_0`` (dot, cosine) or ``e = A_0 - lam A_1`` and
``beta = S_0 - lam S_1`` (diff) with torch ops, so autograd handles ``lam``, the projections
``q, v, qh`` (incl. the cosine normalisation of ``q``) and the user's gradient on ``beta``.

Forward (``_fwd_kernel``), one program per block of ``BLOCK_N`` tokens, loop over experts with an
online (flash-style) softmax, so the ``[L, N, d]`` expert outputs never exist in memory::

    m_p = -inf, ell_p = 0, acc_p = 0                       running max, sum, accumulator
    for l in 0..L-1:
        f_l   = b2_l + sum_{h-tiles t} gelu(z W1_l[:, t] + b1_l[t]) W2_l[t, :]
        phi_pl as above, stored to PHI [P, N, L] (cheap)
        m'    = max(m_p, phi_pl);  c = exp(m_p - m')
        ell_p = c ell_p + exp(phi_pl - m');  acc_p = c acc_p + exp(phi_pl - m') f_l;  m_p = m'
    A_p = acc_p / ell_p,  LSE_p = m_p + log ell_p,  and on the host S_pl = exp(PHI_pl - LSE_p).

Backward: derivation
====================
Given ``gA_p = dL/dA_p`` ``[P, N, d]`` and ``gS_p = dL/dS_p`` ``[P, N, L]`` (what the caller's
torch ops send back: for diff ``gA_0 = g_e, gA_1 = -lam g_e, gS_0 = g_beta, gS_1 = -lam g_beta``).

1. ``A_p`` and ``S_p`` both depend on ``S_pl``; the total derivative w.r.t. the weight is::

       G_pl = dL/dS_pl = <gA_p, f_l> + gS_pl

2. Softmax Jacobian ``dS_pj/dphi_pl = S_pj (delta_jl - S_pl)``::

       dphi_pl = dL/dphi_pl = S_pl (G_pl - D_p),   D_p = sum_j S_pj G_pj = <gA_p, A_p> + <gS_p, S_p>

   ``D_p`` needs only saved per-token quantities (``A``, ``S``), so it is computed on the host
   before the kernel and the backward needs a single pass over the experts.
   (For ``P = 1`` with e = A and beta = S this is the familiar
   ``dL/dphi_l = beta_l(<g_e, f_l> + g_beta_l - <g_e, e> - <g_beta, beta>)``.)

3. Logit to its inputs.
   dot / diff (``phi = sc <v, f>``)::

       dL/dv_p   = sc sum_l dphi_pl f_l                 (-> GV; the host's autograd turns it into
                                                          dL/dq = dL/dv W_k, dL/dW_k = dL/dv^T q, ...)
       dL/df_l  += sc dphi_pl v_p

   cosine (``phi = s <qh, kh>``, ``kh = k / kn``, ``kn = max(|k|, eps)``, ``c_l = <qh, kh_l>``).
   ``d kh / d k = (I - kh kh^T) / |k|`` where ``|k| >= eps`` and ``I / eps`` where the clamp is
   active (the clamped norm is then a constant), hence with ``mask_l = [|k_l| >= eps]``::

       dL/dk_l   = s dphi_l (qh - mask_l c_l kh_l) / kn_l                       [r]
       dL/dqh    = s sum_l dphi_l kh_l                  (-> GQH; autograd does the q normalisation)
       dL/ds     = sum_l dphi_l c_l                     (-> GSC per token, summed on the host)
       dL/dW_k  += f_l^T dL/dk_l                        (per-program partial, summed on the host)
       dL/df_l  += dL/dk_l W_k^T

4. ``A_p = sum_l S_pl f_l`` adds ``dL/df_l += sum_p S_pl gA_p``.  Call the total ``gf_l`` [d].

5. Back through the expert FFN (``gelu'(a) = Phi(a) + a phi(a)``, standard normal cdf/pdf)::

       dL/db2_l = sum_n gf_l          dL/dW2_l = u_l^T gf_l         gu_l = gf_l W2_l^T
       ga_l     = gu_l * gelu'(a_l)   dL/db1_l = sum_n ga_l         dL/dW1_l = z^T ga_l
       dL/dz   += sum_l ga_l W1_l^T   (+ the projections' share, added by autograd on the host)

Backward kernel (``_bwd_kernel``): ``C`` programs, each looping over token blocks
``pid, pid + C, ...``; per block and expert it recomputes ``f_l`` (pass 1 over the h-tiles),
forms ``G, dphi, gf_l`` (steps 1-4), then recomputes ``a_l, u_l`` per h-tile (pass 2) for step 5.
Per-token results (dL/dz, GV, GQH) are accumulated expert by expert by read-modify-write of their
rows in memory (zeroed by the host; the rows belong to the program), not in register tiles held
across the expert loop (that spilled); weight gradients likewise into the program's own fp32 partial
slice ``[C, ...]`` (no atomics, so the result is deterministic), summed over ``C`` on the host. The
cosine mode's key ``k = f W_k`` is formed in r-chunks of ``BLOCK_RC`` twice per expert (norms first,
then the gradients), so the ``[d, r]`` key projection is never held whole. ``C`` is bounded (SM count, memory) independently
of the autotuned ``BLOCK_N``.  Cost: 7 GEMM-tiles per (block, expert) against 6 if the hidden were
stored; memory kept for backward: z, A ``[P, N, d]``, S ``[P, N, L]`` only.

Dtypes and sizes: fp32 (``tl.dot`` with ``input_precision="tf32x3"``: three TF32 tensor-core
products, ~1e-6 relative error; ``HIMOE_FAST_FP32_DOT=ieee`` for exact FMA dots, see
:data:`himoe_fast.kernels.common.FP32_DOT`) and bf16 (GPU only; operands cast to bf16, accumulation
and softmax statistics in fp32). Any N, d, h, r, L: blocks are padded to powers of two >= 16 and
masked. ``d`` is held whole per token block (fine for d <= 256). Offsets into token
arrays are 64-bit (``N * d`` may pass 2^31).

Launch configs: autotuned on CUDA over a small grid pruned per dtype (``early_config_prune``:
:func:`_fwd_ok`, :func:`_bwd_ok`) to the configs that compile without spills in bf16 and within
1 KiB/thread in fp32 and within sm_80's shared memory (``bench/aot_check.py --full``, docs/GPU.md);
fixed per-dtype configs (:data:`GPU_CONFIGS`) when ``HIMOE_FAST_AUTOTUNE=0``; one small fixed config
under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from himoe_fast.model.router import COSINE_EPS

from .common import (INTERPRET, check_dtypes, check_launchable, config_pruner, contiguous, device_guard,
                     dot_precision, gelu as _gelu, gelu_grad as _gelu_grad, pow2, select_kernel, sm_count)

MODES = {"dot": 0, "cosine": 1, "diff": 2}        # the kernels' MODE constexpr
_EPS = tl.constexpr(COSINE_EPS)                   # the cosine norm clamp, as the reference's


# ----------------------------------------------------------------------------------------------
# device helpers
# ----------------------------------------------------------------------------------------------

@triton.jit
def _expert_out(z, W1, B1, W2, B2, l, offs_d, mask_d, D, H,
                BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, PREC: tl.constexpr):
    """f_l = gelu(z W1_l + b1_l) W2_l + b2_l for one token block.  z: [BLOCK_N, BLOCK_D] -> fp32 same."""
    DT = W1.dtype.element_ty
    b2 = tl.load(B2 + l * D + offs_d, mask=mask_d, other=0.0).to(tl.float32)              # [BD]
    f = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32) + b2[None, :]
    for h0 in range(0, H, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < H
        w1 = tl.load(W1 + l * D * H + offs_d[:, None] * H + offs_h[None, :],
                     mask=mask_d[:, None] & mask_h[None, :], other=0.0)                     # [BD, BH]
        b1 = tl.load(B1 + l * H + offs_h, mask=mask_h, other=0.0).to(tl.float32)           # [BH]
        a = tl.dot(z, w1, input_precision=PREC) + b1[None, :]                              # [BN, BH]
        u = _gelu(a)
        w2 = tl.load(W2 + l * H * D + offs_h[:, None] * D + offs_d[None, :],
                     mask=mask_h[:, None] & mask_d[None, :], other=0.0)                     # [BH, BD]
        f += tl.dot(u.to(DT), w2, input_precision=PREC)                                    # [BN, BD]
    return f


@triton.jit
def _key_stats(f_dt, QH, WK, offs_n, mask_n, offs_d, mask_d, R,
               BLOCK_N: tl.constexpr, BLOCK_RC: tl.constexpr, PREC: tl.constexpr):
    """Cosine mode, per token: ``|k|^2`` and ``<qh, k>`` for ``k = f Wk``, over r-chunks of BLOCK_RC
    (the whole ``[d, r]`` key projection held at once overflowed sm_80's shared memory)."""
    nk2 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    qk = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for r0 in range(0, R, BLOCK_RC):
        offs_r = r0 + tl.arange(0, BLOCK_RC)
        mask_r = offs_r < R
        wk = tl.load(WK + offs_d[:, None] * R + offs_r[None, :], mask=mask_d[:, None] & mask_r[None, :], other=0.0)
        k = tl.dot(f_dt, wk, input_precision=PREC)                                         # [BN, BRC]
        qh = tl.load(QH + offs_n[:, None] * R + offs_r[None, :], mask=mask_n[:, None] & mask_r[None, :],
                     other=0.0).to(tl.float32)
        nk2 += tl.sum(k * k, axis=1)
        qk += tl.sum(qh * k, axis=1)
    return nk2, qk


@triton.jit
def _online_softmax_step(m, ell, acc, phi, f):
    """Fold one expert (logit ``phi`` [BN], value ``f`` [BN, BD]) into the running max ``m``, sum ``ell``
    and accumulator ``acc`` of an online softmax (rescaled when the max grows). Returns the new three."""
    m_new = tl.maximum(m, phi)
    c = tl.exp(m - m_new)
    p = tl.exp(phi - m_new)
    return m_new, ell * c + p, acc * c[:, None] + p[:, None] * f


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _fwd_kernel(Z, W1, B1, W2, B2, V, QH, WK, SCALE,          # inputs (V or QH, WK, SCALE: None by mode)
                A, PHI, LSE,                                  # outputs
                N, D, H, R, L, sc,
                MODE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_H: tl.constexpr, BLOCK_RC: tl.constexpr, PREC: tl.constexpr):
    # Z [N, D]; W1 [L, D, H]; B1 [L, H]; W2 [L, H, D]; B2 [L, D]
    # V [P, N, D] (dot/diff); QH [N, R], WK [D, R], SCALE [] (cosine)
    # A [P, N, D] fp32; PHI [P, N, L] fp32; LSE [P, N] fp32
    pid = tl.program_id(0)
    offs_n = (pid * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)       # 64-bit: N * D may pass 2^31
    mask_n = offs_n < N
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    mask_nd = mask_n[:, None] & mask_d[None, :]
    z = tl.load(Z + offs_n[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0)        # [BN, BD]
    DT = W1.dtype.element_ty

    v0 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    v1 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    s = 0.0
    if MODE == 1:
        s = tl.load(SCALE).to(tl.float32)
    else:
        v0 = tl.load(V + offs_n[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0).to(tl.float32)
        if MODE == 2:
            v1 = tl.load(V + (N + offs_n)[:, None] * D + offs_d[None, :], mask=mask_nd,
                         other=0.0).to(tl.float32)

    m0 = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    m1 = tl.full((BLOCK_N,), float("-inf"), dtype=tl.float32)
    l0 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    l1 = tl.zeros((BLOCK_N,), dtype=tl.float32)
    acc0 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    acc1 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
    for l in range(0, L):
        f = _expert_out(z, W1, B1, W2, B2, l, offs_d, mask_d, D, H, BLOCK_N, BLOCK_D, BLOCK_H, PREC)
        if MODE == 1:
            nk2, qk = _key_stats(f.to(DT), QH, WK, offs_n, mask_n, offs_d, mask_d, R, BLOCK_N, BLOCK_RC, PREC)
            phi0 = s * qk / tl.maximum(tl.sqrt(nk2), _EPS)                                  # [BN]
        else:
            phi0 = sc * tl.sum(v0 * f, axis=1)
        tl.store(PHI + offs_n * L + l, phi0, mask=mask_n)
        m0, l0, acc0 = _online_softmax_step(m0, l0, acc0, phi0, f)
        if MODE == 2:
            phi1 = sc * tl.sum(v1 * f, axis=1)
            tl.store(PHI + (N + offs_n) * L + l, phi1, mask=mask_n)
            m1, l1, acc1 = _online_softmax_step(m1, l1, acc1, phi1, f)

    tl.store(A + offs_n[:, None] * D + offs_d[None, :], acc0 / l0[:, None], mask=mask_nd)
    tl.store(LSE + offs_n, m0 + tl.log(l0), mask=mask_n)
    if MODE == 2:
        tl.store(A + (N + offs_n)[:, None] * D + offs_d[None, :], acc1 / l1[:, None], mask=mask_nd)
        tl.store(LSE + N + offs_n, m1 + tl.log(l1), mask=mask_n)


# ----------------------------------------------------------------------------------------------
# backward
# ----------------------------------------------------------------------------------------------

@triton.jit
def _bwd_kernel(Z, W1, B1, W2, B2, V, QH, WK, SCALE,          # forward inputs (None by mode, as forward)
                S, GA, GS, DD,                                # saved / incoming: S, dL/dA, dL/dS, D
                GZ, GV, GQH, GSC,                             # per-token outputs (zeroed; None by mode)
                GW1P, GB1P, GW2P, GB2P, GWKP,                 # per-program partial weight grads (GWKP: cosine)
                N, D, H, R, L, sc,
                MODE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                BLOCK_H: tl.constexpr, BLOCK_RC: tl.constexpr, PREC: tl.constexpr):
    # S, GS [P, N, L] fp32; GA [P, N, D] fp32; DD [P, N] fp32
    # GZ [N, D]; GV [P, N, D] (dot/diff); GQH [N, R], GSC [N] (cosine)   -- fp32, zero on entry
    # GW1P [C, L, D, H]; GB1P [C, L, H]; GW2P [C, L, H, D]; GB2P [C, L, D]; GWKP [C, D, R]  -- fp32
    # Every per-token gradient is accumulated in memory, expert by expert (the rows belong to this
    # program, and the same code line touches an element from the same thread every time), instead
    # of in [BLOCK_N, d] register tiles kept across the expert loop: that pressure made ptxas spill.
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    DT = W1.dtype.element_ty
    offs_d = tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    s = 0.0
    if MODE == 1:
        s = tl.load(SCALE).to(tl.float32)
    num_blocks = tl.cdiv(N, BLOCK_N)
    for blk in range(pid, num_blocks, nprog):
        # the partial slices below are read-modify-written once per block; the barrier orders one
        # block's stores before the next block's loads even if they map to other threads
        tl.debug_barrier()
        offs_n = (blk * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)   # 64-bit: N * D may pass 2^31
        mask_n = offs_n < N
        mask_nd = mask_n[:, None] & mask_d[None, :]
        tok_d = offs_n[:, None] * D + offs_d[None, :]                   # [BN, BD] offsets of the token rows
        tok_d1 = (N + offs_n)[:, None] * D + offs_d[None, :]            # the same rows of the second softmax
        z = tl.load(Z + tok_d, mask=mask_nd, other=0.0)                                    # [BN, BD]
        dd0 = tl.load(DD + offs_n, mask=mask_n, other=0.0)                                 # [BN]
        v0 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        v1 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        ga1 = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        dd1 = tl.zeros((BLOCK_N,), dtype=tl.float32)
        if MODE != 1:
            v0 = tl.load(V + tok_d, mask=mask_nd, other=0.0).to(tl.float32)
            if MODE == 2:
                v1 = tl.load(V + tok_d1, mask=mask_nd, other=0.0).to(tl.float32)
                ga1 = tl.load(GA + tok_d1, mask=mask_nd, other=0.0)
                dd1 = tl.load(DD + N + offs_n, mask=mask_n, other=0.0)
        gsc = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for l in range(0, L):
            # pass 1: recompute the expert output and the gradient reaching it (steps 1-4)
            f = _expert_out(z, W1, B1, W2, B2, l, offs_d, mask_d, D, H, BLOCK_N, BLOCK_D, BLOCK_H, PREC)
            ga0 = tl.load(GA + tok_d, mask=mask_nd, other=0.0)                             # [BN, BD]
            s0 = tl.load(S + offs_n * L + l, mask=mask_n, other=0.0)                       # [BN]
            gs0 = tl.load(GS + offs_n * L + l, mask=mask_n, other=0.0)
            dphi0 = s0 * (tl.sum(ga0 * f, axis=1) + gs0 - dd0)                             # [BN]
            gf = s0[:, None] * ga0                                                         # [BN, BD]
            if MODE == 1:
                # two passes over r-chunks: the norms first, then the gradients (k recomputed)
                f_dt = f.to(DT)
                nk2, qk = _key_stats(f_dt, QH, WK, offs_n, mask_n, offs_d, mask_d, R, BLOCK_N, BLOCK_RC, PREC)
                nk = tl.sqrt(nk2)
                kn = tl.maximum(nk, _EPS)
                cos = qk / kn
                cs = s * dphi0
                proj = tl.where(nk >= _EPS, cos, 0.0)
                gsc += dphi0 * cos
                for r0 in range(0, R, BLOCK_RC):
                    offs_r = r0 + tl.arange(0, BLOCK_RC)
                    mask_r = offs_r < R
                    mask_dr = mask_d[:, None] & mask_r[None, :]
                    mask_nr = mask_n[:, None] & mask_r[None, :]
                    wk = tl.load(WK + offs_d[:, None] * R + offs_r[None, :], mask=mask_dr, other=0.0)  # [BD, BRC]
                    kh = tl.dot(f_dt, wk, input_precision=PREC) / kn[:, None]                     # [BN, BRC]
                    qh = tl.load(QH + offs_n[:, None] * R + offs_r[None, :], mask=mask_nr, other=0.0).to(tl.float32)
                    gk = cs[:, None] * (qh - proj[:, None] * kh) / kn[:, None]                  # [BN, BRC]
                    pq = GQH + offs_n[:, None] * R + offs_r[None, :]
                    tl.store(pq, tl.load(pq, mask=mask_nr, other=0.0) + cs[:, None] * kh, mask=mask_nr)
                    gf += tl.dot(gk.to(DT), tl.trans(wk), input_precision=PREC)
                    pwk = GWKP + pid * D * R + offs_r[:, None] + offs_d[None, :] * R              # [BRC, BD]
                    mask_rd = mask_r[:, None] & mask_d[None, :]
                    tl.store(pwk, tl.load(pwk, mask=mask_rd, other=0.0)
                             + tl.dot(tl.trans(gk.to(DT)), f_dt, input_precision=PREC), mask=mask_rd)
            else:
                gf += (sc * dphi0)[:, None] * v0
                pv0 = GV + tok_d
                tl.store(pv0, tl.load(pv0, mask=mask_nd, other=0.0) + (sc * dphi0)[:, None] * f, mask=mask_nd)
                if MODE == 2:
                    s1 = tl.load(S + (N + offs_n) * L + l, mask=mask_n, other=0.0)
                    gs1 = tl.load(GS + (N + offs_n) * L + l, mask=mask_n, other=0.0)
                    dphi1 = s1 * (tl.sum(ga1 * f, axis=1) + gs1 - dd1)
                    gf += s1[:, None] * ga1 + (sc * dphi1)[:, None] * v1
                    pv1 = GV + tok_d1
                    tl.store(pv1, tl.load(pv1, mask=mask_nd, other=0.0) + (sc * dphi1)[:, None] * f, mask=mask_nd)
            pb2 = GB2P + (pid * L + l) * D + offs_d
            tl.store(pb2, tl.load(pb2, mask=mask_d, other=0.0) + tl.sum(gf, axis=0), mask=mask_d)
            gf_dt = gf.to(DT)
            # pass 2: back through the FFN, h-tile by h-tile (step 5)
            gz = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
            for h0 in range(0, H, BLOCK_H):
                offs_h = h0 + tl.arange(0, BLOCK_H)
                mask_h = offs_h < H
                mask_dh = mask_d[:, None] & mask_h[None, :]
                mask_hd = mask_h[:, None] & mask_d[None, :]
                w1 = tl.load(W1 + l * D * H + offs_d[:, None] * H + offs_h[None, :], mask=mask_dh, other=0.0)
                b1 = tl.load(B1 + l * H + offs_h, mask=mask_h, other=0.0).to(tl.float32)
                a = tl.dot(z, w1, input_precision=PREC) + b1[None, :]                      # [BN, BH]
                u = _gelu(a)
                w2 = tl.load(W2 + l * H * D + offs_h[:, None] * D + offs_d[None, :], mask=mask_hd, other=0.0)
                gu = tl.dot(gf_dt, tl.trans(w2), input_precision=PREC)                     # [BN, BH]
                ga = gu * _gelu_grad(a)
                pw2 = GW2P + (pid * L + l) * H * D + offs_h[:, None] * D + offs_d[None, :]
                tl.store(pw2, tl.load(pw2, mask=mask_hd, other=0.0)
                         + tl.dot(tl.trans(u.to(DT)), gf_dt, input_precision=PREC), mask=mask_hd)
                ga_dt = ga.to(DT)
                pw1 = GW1P + (pid * L + l) * D * H + offs_d[:, None] * H + offs_h[None, :]
                tl.store(pw1, tl.load(pw1, mask=mask_dh, other=0.0)
                         + tl.dot(tl.trans(z), ga_dt, input_precision=PREC), mask=mask_dh)
                pb1 = GB1P + (pid * L + l) * H + offs_h
                tl.store(pb1, tl.load(pb1, mask=mask_h, other=0.0) + tl.sum(ga, axis=0), mask=mask_h)
                gz += tl.dot(ga_dt, tl.trans(w1), input_precision=PREC)                    # [BN, BD]
            tl.store(GZ + tok_d, tl.load(GZ + tok_d, mask=mask_nd, other=0.0) + gz, mask=mask_nd)
        if MODE == 1:
            tl.store(GSC + offs_n, gsc, mask=mask_n)


# ----------------------------------------------------------------------------------------------
# launch configuration
# ----------------------------------------------------------------------------------------------

#: the interpreter's fixed config (small tiles, few programs)
INTERP_CONFIG = {"BLOCK_N": 16, "BLOCK_H": 32}
#: r-chunks of the cosine key in the backward and the forward (bench/aot_check.py: the backward fits
#: only with 16; the forward spills less with the key whole up to r = 64)
BLOCK_RC = 16
FWD_BLOCK_RC = 64


def _configs():
    # (BLOCK_N, BLOCK_H, num_warps): a token block keeps several [BLOCK_N, BLOCK_D] fp32 tiles live
    # (~6 in forward, ~10 in backward), so larger BLOCK_N wants more warps.
    grid = [(16, 32, 4), (16, 32, 8), (16, 16, 8), (16, 64, 8), (32, 32, 8), (32, 16, 8)]
    return [triton.Config({"BLOCK_N": bn, "BLOCK_H": bh}, num_warps=w, num_stages=1) for bn, bh, w in grid]


def _fwd_ok(cfg, fp32: bool, mode: int) -> bool:
    """Configs of the forward that fit (bench/aot_check.py --full; docs/GPU.md): fp32 keeps BLOCK_N = 16;
    the cosine mode keeps 4 warps (with 8, ptxas caps registers at 128 and the bf16 build spills)."""
    if mode == MODES["cosine"] and cfg.num_warps > 4:
        return False
    return cfg.kwargs["BLOCK_N"] == 16 if fp32 else True


def _bwd_ok(cfg, fp32: bool) -> bool:
    """Backward: 8 warps (its ~10 live token tiles spill with 4), BLOCK_N = 16 and BLOCK_H = 16 (wider
    hidden tiles spill in bf16; in fp32 tf32x3 dots stage hi/lo operand halves in shared memory)."""
    bn, bh = cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_H"]
    if cfg.num_warps < 8:
        return False
    return bn == 16 and bh <= 16


#: fixed GPU configs when autotuning is off (``HIMOE_FAST_AUTOTUNE=0``, the self-check): (kernel, fp32)
GPU_CONFIGS = {
    ("fwd", True): {"BLOCK_N": 16, "BLOCK_H": 32, "num_warps": 4, "num_stages": 1},
    ("fwd", False): {"BLOCK_N": 16, "BLOCK_H": 32, "num_warps": 4, "num_stages": 1},
    ("bwd", True): {"BLOCK_N": 16, "BLOCK_H": 16, "num_warps": 8, "num_stages": 1},
    ("bwd", False): {"BLOCK_N": 16, "BLOCK_H": 16, "num_warps": 8, "num_stages": 1},
}


#: tensors the backward accumulates into: zeroed before each timed autotune run
_ACCUMULATED = ["GZ", "GV", "GQH", "GSC", "GW1P", "GB1P", "GW2P", "GB2P", "GWKP"]
_KEY = ["D", "H", "R", "L", "MODE", "PREC"]
_fwd_tuned = triton.autotune(configs=_configs(), key=_KEY,
                             prune_configs_by={"early_config_prune": config_pruner(_fwd_ok, "Z", "MODE")})(_fwd_kernel)
_bwd_tuned = triton.autotune(configs=_configs(), key=_KEY, reset_to_zero=_ACCUMULATED,
                             prune_configs_by={"early_config_prune": config_pruner(_bwd_ok, "Z")})(_bwd_kernel)


def _num_partials(N: int, device: torch.device, bytes_per_partial: int) -> int:
    """How many per-program partial weight-gradient slices the backward uses (its grid size cap)."""
    if INTERPRET or device.type != "cuda":
        return max(1, triton.cdiv(N, INTERP_CONFIG["BLOCK_N"]))
    cap = max(1, (256 << 20) // max(1, bytes_per_partial))            # <= 256 MiB of partials
    return max(1, min(triton.cdiv(N, 16), sm_count(device), cap))


def _launch_fwd(z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode: int):
    N, D = z.shape
    L, _, H = w1.shape
    P = 2 if mode == MODES["diff"] else 1
    R = qh.shape[-1] if mode == MODES["cosine"] else 16
    dev, f32 = z.device, torch.float32
    A = torch.empty(P, N, D, device=dev, dtype=f32)
    PHI = torch.empty(P, N, L, device=dev, dtype=f32)
    LSE = torch.empty(P, N, device=dev, dtype=f32)
    kernel, cfg = select_kernel(_fwd_tuned, _fwd_kernel, GPU_CONFIGS["fwd", z.dtype == f32], INTERP_CONFIG)
    with device_guard(z):
        kernel[lambda m: (triton.cdiv(N, m["BLOCK_N"]),)](
            z, w1, b1, w2, b2, v, qh, wk, scale, A, PHI, LSE, N, D, H, R, L, float(sc or 0.0),
            MODE=mode, BLOCK_D=pow2(D), BLOCK_RC=min(pow2(R), FWD_BLOCK_RC), PREC=dot_precision(z.dtype), **cfg)
    S = torch.exp(PHI - LSE.unsqueeze(-1))                                  # [P, N, L]
    return A, S


def _launch_bwd(z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode: int, S, gA, gS, DD):
    N, D = z.shape
    L, _, H = w1.shape
    cosine = mode == MODES["cosine"]
    P = 2 if mode == MODES["diff"] else 1
    R = qh.shape[-1] if cosine else 16
    dev, f32 = z.device, torch.float32
    per_partial = 4 * (L * (2 * D * H + H + D) + (D * R if cosine else 0))
    C = _num_partials(N, dev, per_partial)
    GZ = torch.zeros(N, D, device=dev, dtype=f32)
    GV = None if cosine else torch.zeros(P, N, D, device=dev, dtype=f32)
    GQH = torch.zeros(N, R, device=dev, dtype=f32) if cosine else None
    GSC = torch.empty(N, device=dev, dtype=f32) if cosine else None
    GW1P = torch.zeros(C, L, D, H, device=dev, dtype=f32)
    GB1P = torch.zeros(C, L, H, device=dev, dtype=f32)
    GW2P = torch.zeros(C, L, H, D, device=dev, dtype=f32)
    GB2P = torch.zeros(C, L, D, device=dev, dtype=f32)
    GWKP = torch.zeros(C, D, R, device=dev, dtype=f32) if cosine else None
    kernel, cfg = select_kernel(_bwd_tuned, _bwd_kernel, GPU_CONFIGS["bwd", z.dtype == f32], INTERP_CONFIG)
    with device_guard(z):
        kernel[lambda m: (min(C, triton.cdiv(N, m["BLOCK_N"])),)](
            z, w1, b1, w2, b2, v, qh, wk, scale, S, gA, gS, DD, GZ, GV, GQH, GSC,
            GW1P, GB1P, GW2P, GB2P, GWKP, N, D, H, R, L, float(sc or 0.0),
            MODE=mode, BLOCK_D=pow2(D), BLOCK_RC=min(pow2(R), BLOCK_RC), PREC=dot_precision(z.dtype), **cfg)
    grads = dict(z=GZ, w1=GW1P.sum(0), b1=GB1P.sum(0), w2=GW2P.sum(0), b2=GB2P.sum(0))
    if cosine:
        grads.update(qh=GQH.unsqueeze(0), wk=GWKP.sum(0).unsqueeze(0), scale=GSC.sum())
    else:
        grads.update(v=GV)
    return grads


# ----------------------------------------------------------------------------------------------
# autograd
# ----------------------------------------------------------------------------------------------

class DARouterCore(torch.autograd.Function):
    """(z, w1, b1, w2, b2, v | qh, wk, scale) -> (A ``[P, N, d]``, S ``[P, N, L]``); see module doc.

    z ``[N, d]``; w1 ``[L, d, h]``; b1 ``[L, h]``; w2 ``[L, h, d]``; b2 ``[L, d]``;
    dot / diff: v ``[P, N, d]`` (``P = 1`` dot, 2 diff), ``sc`` a float (1/sqrt(r));
    cosine: qh ``[1, N, r]`` (unit rows), wk ``[1, d, r]``, scale ``[]``. ``mode``: a :data:`MODES` id.
    """

    @staticmethod
    def forward(ctx, z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode):
        dtype = z.dtype
        z, w1, b1, w2, b2, v, qh, wk, scale = contiguous(z, w1, b1, w2, b2, v, qh, wk, scale)
        if wk is not None:
            wk = wk[0]
        if qh is not None:
            qh = qh[0]
        A, S = _launch_fwd(z, w1, b1, w2, b2, v, qh, wk, scale, sc, mode)
        ctx.save_for_backward(z, w1, b1, w2, b2, v, qh, wk, scale, A, S)
        ctx.sc, ctx.mode = sc, mode
        if dtype != torch.float32:
            return A.to(dtype), S.to(dtype)
        return A, S

    @staticmethod
    def backward(ctx, gA, gS):
        z, w1, b1, w2, b2, v, qh, wk, scale, A, S = ctx.saved_tensors
        gA = gA.float().contiguous()
        gS = gS.float().contiguous()
        DD = ((gA * A).sum(-1) + (gS * S).sum(-1)).contiguous()           # [P, N]
        g = _launch_bwd(z, w1, b1, w2, b2, v, qh, wk, scale, ctx.sc, ctx.mode, S, gA, gS, DD)
        cast = lambda t, ref: None if t is None or ref is None else t.to(ref.dtype)  # noqa: E731
        return (cast(g["z"], z), cast(g["w1"], w1), cast(g["b1"], b1), cast(g["w2"], w2), cast(g["b2"], b2),
                cast(g.get("v"), v), cast(g.get("qh"), qh), cast(g.get("wk"), wk),
                cast(g.get("scale"), scale), None, None)


def da_router_core(z, w1, b1, w2, b2, mode: str, v=None, qh=None, wk=None, scale=None, sc=None):
    """Fused core on Triton. ``mode`` ``"dot"`` / ``"diff"``: pass ``v [P, N, d]`` (P = 1 / 2) and ``sc``;
    ``"cosine"``: ``qh [1, N, r]``, ``wk [1, d, r]``, ``scale []``. Returns (A ``[P, N, d]``,
    S ``[P, N, L]``) in ``z.dtype``."""
    if mode not in MODES:
        raise ValueError(f"da_router (triton): mode must be one of {tuple(MODES)}, got {mode!r}")
    need = ("qh", "wk", "scale") if mode == "cosine" else ("v",)
    given = {"v": v, "qh": qh, "wk": wk, "scale": scale}
    if any(given[k] is None for k in need) or any(t is not None for k, t in given.items() if k not in need):
        raise ValueError(f"da_router (triton): mode {mode!r} takes {', '.join(need)} (and no other of v, qh, wk, "
                         f"scale); got {', '.join(k for k, t in given.items() if t is not None) or 'none'}")
    P = 2 if mode == "diff" else 1
    if mode != "cosine" and v.shape[0] != P:
        raise ValueError(f"da_router (triton): mode {mode!r} needs v of shape [{P}, N, d], got {tuple(v.shape)}")
    check_dtypes("da_router", z=z, w1=w1, b1=b1, w2=w2, b2=b2, v=v, qh=qh, wk=wk, scale=scale)
    check_launchable("da_router", z.device)
    if z.shape[0] == 0:                                       # nothing to launch
        zero = (z.sum() + w1.sum() + b1.sum() + w2.sum() + b2.sum()) * 0
        return (z.new_zeros(P, 0, z.shape[1]) + zero, z.new_zeros(P, 0, w1.shape[0]) + zero)
    return DARouterCore.apply(z, w1, b1, w2, b2, v, qh, wk, scale, sc, MODES[mode])
