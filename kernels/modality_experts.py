"""Fused Triton kernels for the Modality Expert Bank (paper Eq. 2-3), all ``M`` modalities per launch.

Math, per modality ``m`` and token ``x`` (``[d]``; zero when the modality is absent)::

    logits  = x Wg + bg                                   [K]       gate GEMM
    alpha   = softmax(logits) | 1/K | onehot(argmax)      [K]       routing soft | uniform | top1
    hpre_k  = x W1_k + b1_k                               [h]       first expert GEMM
    g_k     = alpha_k * gelu(hpre_k)                      [h]       exact-erf GELU, gate scaling
    z       = [g_1 .. g_K] @ [W2_1; ..; W2_K] + alpha @ B2   [d]    ONE GEMM over the concatenated,
                                                                     gate-scaled hidden (W2 viewed
                                                                     ``[K*h, d]``) + sum_k alpha_k b2_k

Backward (``dz`` from the loss, ``dalpha_ext`` from a loss on the returned gates)::

    dg_k     = dz W2_k^T                                  [h]
    dalpha_k = <dg_k, gelu(hpre_k)> + <dz, b2_k> + dalpha_ext_k
    dlogits  = alpha * (dalpha - <alpha, dalpha>)         (soft only; uniform/top1 gates are constants)
    dhpre_k  = alpha_k dg_k * gelu'(hpre_k)
    dx       = sum_k dhpre_k W1_k^T + dlogits Wg^T
    dW1_k = sum_n x^T dhpre_k   db1_k = sum_n dhpre_k   dW2_k = sum_n g_k^T dz   db2_k = sum_n alpha_k dz
    dWg   = sum_n x^T dlogits   dbg   = sum_n dlogits

Launch family:
  * ``_bank_fwd_kernel``      grid (cdiv(N, BLOCK_N), M): the forward above; writes z and alpha only
                              (no hidden activation is stored).
  * ``_bank_bwd_token_kernel`` grid (cdiv(N, BLOCK_N), M): recomputes hpre, produces dx and dlogits and
                              writes the hidden-sized ``dhpre`` and ``g`` that the weight gradients need.
  * ``_tn_reduce_kernel``     grid (I tiles, J tiles, M * SPLIT): token reductions ``A^T B`` (+ column
                              sums of B) for dW1/db1, dW2, db2, dWg/dbg. ``SPLIT > 1`` programs per tile
                              write fp32 partials that are summed by torch (no atomics: deterministic).

All GEMMs accumulate in fp32 (``tl.dot``); fp32 inputs use ``input_precision="tf32x3"`` (three TF32
tensor-core products, ~1e-6 relative error; ``HIMOE_FAST_FP32_DOT=ieee`` for exact FMA dots, which
spill); bf16 inputs (GPU only) keep bf16 operands and fp32 accumulation. Feature dims are loaded whole
(``BLOCK_D = next_pow2(d)``, masked), so ``d <= MAX_D``.

Both token kernels form each hidden chunk with :func:`_hidden_chunk`, which reloads the token tile
per chunk (L1 hits) rather than holding it across the loops: that kept the fp32 backward's registers
within budget (``bench/aot_check.py``).

Under ``TRITON_INTERPRET=1`` (CPU) one fixed small config is used; on GPU the kernels are autotuned
over grids pruned per dtype to the configs that fit (:func:`_token_ok`, :func:`_reduce_ok`; checked by
``bench/aot_check.py --full``), or launched with fixed per-dtype configs (``HIMOE_FAST_AUTOTUNE=0``).
"""

from __future__ import annotations

import threading

import torch
import triton
import triton.language as tl

from .common import (INTERPRET, check_dtypes, check_launchable, config_pruner, contiguous, device_guard,
                     dot_precision, gelu as _gelu, gelu_grad as _gelu_grad, pow2, select_kernel, sm_count,
                     thread_override)

ROUTING_IDS = {"soft": 0, "uniform": 1, "top1": 2}
MAX_D = 256           # whole feature rows live in registers / shared memory


# ------------------------------------------------------------------------------------------ helpers
@triton.jit
def _gates(logits, mask_k, K, ROUTING: tl.constexpr):
    """logits ``[BLOCK_N, BLOCK_K]`` (fp32; columns >= K are padding) -> alpha (fp32, 0 in padding)."""
    if ROUTING == 0:        # soft
        lg = tl.where(mask_k[None, :], logits, float("-inf"))
        mx = tl.max(lg, axis=1)
        p = tl.exp(lg - mx[:, None])
        p = tl.where(mask_k[None, :], p, 0.0)
        alpha = p / tl.sum(p, axis=1)[:, None]
    elif ROUTING == 1:      # uniform
        alpha = tl.where(mask_k[None, :], 1.0 / K, 0.0) + tl.zeros_like(logits)
    else:                   # top1: one-hot argmax (first maximum on ties, as torch.argmax)
        lg = tl.where(mask_k[None, :], logits, float("-inf"))
        idx = tl.argmax(lg, axis=1, tie_break_left=True)
        cols = tl.arange(0, logits.shape[1])
        alpha = tl.where(cols[None, :] == idx[:, None], 1.0, 0.0)
    return alpha


@triton.jit
def _hidden_chunk(X, rows, offs_d, mask_nd, mask_d, W1_k, B1_k, hh, mask_h, D, H, DOT_PREC: tl.constexpr):
    """``hpre = x W1_k[:, hh] + b1_k[hh]`` for one token block and one chunk of expert ``k``'s hidden
    units: ``[BLOCK_N, BLOCK_H]`` fp32, plus the ``[BLOCK_D, BLOCK_H]`` W1 tile (the backward reuses it).

    The token tile is loaded here, per chunk, instead of once per program: a loop-invariant ``tl.dot``
    operand is kept in registers in the dot-operand layout, which replicates the ``[BLOCK_N, d]`` tile
    across the warps (twice for tf32x3's hi/lo halves) and spilled the fp32 backward; the reload hits L1.
    """
    x = tl.load(X + rows[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0)      # [BLOCK_N, BLOCK_D]
    w1 = tl.load(W1_k + offs_d[:, None] * H + hh[None, :], mask=mask_d[:, None] & mask_h[None, :], other=0.0)
    b1 = tl.load(B1_k + hh, mask=mask_h, other=0.0).to(tl.float32)
    return tl.dot(x, w1, input_precision=DOT_PREC) + b1[None, :], w1


# ------------------------------------------------------------------------------------------ forward
@triton.jit
def _bank_fwd_kernel(
    X, WG, BG, W1, B1, W2, B2,      # x [M, N, D]; wg [M, D, K]; bg [M, K]; w1 [M, K, D, H]; b1 [M, K, H];
                                    # w2 [M, K, H, D]; b2 [M, K, D]   (all contiguous)
    Z, ALPHA,                       # out: z [M, N, D]; alpha [M, N, K]
    N, D, H, K, N_BUCKET,           # N_BUCKET: autotune key only
    ROUTING: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    m = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, BLOCK_K)
    offs_h = tl.arange(0, BLOCK_H)
    mask_n = offs_n < N
    mask_d = offs_d < D
    mask_k = offs_k < K
    rows = m * N + offs_n                                                       # [BLOCK_N] (int64)

    mask_nd = mask_n[:, None] & mask_d[None, :]
    x = tl.load(X + rows[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0)
    # gate GEMM + routing: [BLOCK_N, BLOCK_D] @ [BLOCK_D, BLOCK_K]
    wg = tl.load(WG + m * D * K + offs_d[:, None] * K + offs_k[None, :],
                 mask=mask_d[:, None] & mask_k[None, :], other=0.0)
    bg = tl.load(BG + m * K + offs_k, mask=mask_k, other=0.0).to(tl.float32)
    logits = tl.dot(x, wg, input_precision=DOT_PREC) + bg[None, :]
    alpha = _gates(logits, mask_k, K, ROUTING)                                  # [BLOCK_N, BLOCK_K] fp32
    tl.store(ALPHA + rows[:, None] * K + offs_k[None, :], alpha.to(ALPHA.dtype.element_ty),
             mask=mask_n[:, None] & mask_k[None, :])

    # sum_k alpha_k b2_k: [BLOCK_N, BLOCK_K] @ [BLOCK_K, BLOCK_D]
    b2 = tl.load(B2 + m * K * D + offs_k[:, None] * D + offs_d[None, :],
                 mask=mask_k[:, None] & mask_d[None, :], other=0.0)
    acc = tl.dot(alpha.to(b2.dtype), b2, input_precision=DOT_PREC)            # [BLOCK_N, BLOCK_D] fp32

    # One GEMM over the concatenated gate-scaled hidden [g_1 .. g_K] ([BLOCK_N, K*H]) with W2 viewed
    # [K*H, D]: the (k, h-chunk) loops below are that GEMM's reduction loop; each chunk of the hidden is
    # produced on the fly (first GEMM + GELU + gate scale) and never leaves the chip.
    for k in range(0, K):
        a_k = tl.sum(tl.where(offs_k[None, :] == k, alpha, 0.0), axis=1)       # [BLOCK_N]
        w1_base = W1 + (m * K + k) * D * H
        w2_base = W2 + (m * K + k) * H * D
        for h0 in range(0, H, BLOCK_H):
            hh = h0 + offs_h
            mask_h = hh < H
            hpre, _ = _hidden_chunk(X, rows, offs_d, mask_nd, mask_d, w1_base, B1 + (m * K + k) * H, hh, mask_h,
                                    D, H, DOT_PREC)                             # [BLOCK_N, BLOCK_H]
            g = _gelu(hpre) * a_k[:, None]
            w2 = tl.load(w2_base + hh[:, None] * D + offs_d[None, :],
                         mask=mask_h[:, None] & mask_d[None, :], other=0.0)      # [BLOCK_H, BLOCK_D]
            acc += tl.dot(g.to(w2.dtype), w2, input_precision=DOT_PREC)
    tl.store(Z + rows[:, None] * D + offs_d[None, :], acc.to(Z.dtype.element_ty),
             mask=mask_n[:, None] & mask_d[None, :])


# ------------------------------------------------------------------------------------------ backward
@triton.heuristics({"HAS_DALPHA": lambda args: args["DALPHA"] is not None})
@triton.jit
def _bank_bwd_token_kernel(
    X, DZ, ALPHA, DALPHA, WG, W1, B1, W2, B2,   # x, dz [M, N, D]; alpha, dalpha_ext [M, N, K] (None: no loss
                                                # on the gates); weights as fwd
    DX, DH, G, DLOGITS,                         # out: dx [M, N, D]; dh, g [M, N, K*H]; dlogits [M, N, K]
    N, D, H, K, N_BUCKET,
    ROUTING: tl.constexpr, HAS_DALPHA: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
):
    pid_n = tl.program_id(0)
    m = tl.program_id(1).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    offs_k = tl.arange(0, BLOCK_K)
    offs_h = tl.arange(0, BLOCK_H)
    mask_n = offs_n < N
    mask_d = offs_d < D
    mask_k = offs_k < K
    mask_nd = mask_n[:, None] & mask_d[None, :]
    mask_nk = mask_n[:, None] & mask_k[None, :]
    rows = m * N + offs_n
    KH = K * H

    alpha = tl.load(ALPHA + rows[:, None] * K + offs_k[None, :], mask=mask_nk, other=0.0).to(tl.float32)
    dx = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dalpha = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
    if ROUTING == 0:
        # <dz, b2_k>: [BLOCK_N, BLOCK_D] @ [BLOCK_D, BLOCK_K]
        dz = tl.load(DZ + rows[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0)
        b2t = tl.load(B2 + m * K * D + offs_k[None, :] * D + offs_d[:, None],
                      mask=mask_k[None, :] & mask_d[:, None], other=0.0)
        dalpha += tl.dot(dz, b2t, input_precision=DOT_PREC)
        if HAS_DALPHA:
            dalpha += tl.load(DALPHA + rows[:, None] * K + offs_k[None, :], mask=mask_nk, other=0.0).to(tl.float32)

    for k in range(0, K):
        a_k = tl.sum(tl.where(offs_k[None, :] == k, alpha, 0.0), axis=1)               # [BLOCK_N]
        w1_base = W1 + (m * K + k) * D * H
        w2_base = W2 + (m * K + k) * H * D
        for h0 in range(0, H, BLOCK_H):
            hh = h0 + offs_h
            mask_h = hh < H
            hpre, w1 = _hidden_chunk(X, rows, offs_d, mask_nd, mask_d, w1_base, B1 + (m * K + k) * H, hh, mask_h,
                                     D, H, DOT_PREC)                                    # [BLOCK_N, BLOCK_H]
            w2t = tl.load(w2_base + hh[None, :] * D + offs_d[:, None],
                          mask=mask_h[None, :] & mask_d[:, None], other=0.0)             # [BLOCK_D, BLOCK_H] = W2_k^T
            # dz reloaded per chunk for the same reason as x in _hidden_chunk
            dz = tl.load(DZ + rows[:, None] * D + offs_d[None, :], mask=mask_nd, other=0.0)
            dg = tl.dot(dz, w2t, input_precision=DOT_PREC)                               # [BLOCK_N, BLOCK_H]
            act = _gelu(hpre)
            if ROUTING == 0:
                part = tl.sum(dg * act, axis=1)                                          # [BLOCK_N]
                dalpha += tl.where(offs_k[None, :] == k, part[:, None], 0.0)
            dh = dg * a_k[:, None] * _gelu_grad(hpre)
            hid = rows[:, None] * KH + k * H + hh[None, :]
            mask_nh = mask_n[:, None] & mask_h[None, :]
            tl.store(DH + hid, dh.to(DH.dtype.element_ty), mask=mask_nh)
            tl.store(G + hid, (act * a_k[:, None]).to(G.dtype.element_ty), mask=mask_nh)
            # dx += dh W1_k^T: [BLOCK_N, BLOCK_H] @ [BLOCK_H, BLOCK_D]
            dx += tl.dot(dh.to(w1.dtype), tl.trans(w1), input_precision=DOT_PREC)

    if ROUTING == 0:
        dl = alpha * (dalpha - tl.sum(alpha * dalpha, axis=1)[:, None])                # [BLOCK_N, BLOCK_K]
        wgt = tl.load(WG + m * D * K + offs_k[:, None] + offs_d[None, :] * K,
                      mask=mask_k[:, None] & mask_d[None, :], other=0.0)                 # [BLOCK_K, BLOCK_D] = Wg^T
        dx += tl.dot(dl.to(wgt.dtype), wgt, input_precision=DOT_PREC)
        tl.store(DLOGITS + rows[:, None] * K + offs_k[None, :], dl.to(DLOGITS.dtype.element_ty), mask=mask_nk)
    tl.store(DX + rows[:, None] * D + offs_d[None, :], dx.to(DX.dtype.element_ty), mask=mask_nd)


@triton.heuristics({"HAS_COLSUM": lambda args: args["COLSUM"] is not None})
@triton.jit
def _tn_reduce_kernel(
    A, B, OUT, COLSUM,              # a [G, N, I]; b [G, N, J] (row-major, unit last stride);
                                    # out: fp32 partials [S, G, I, J] written through the strides below;
                                    # colsum: fp32 partials [S, G, J] of sum_n b, or None
    N, I, J, ROWS_PER_SPLIT, SPLIT,
    stride_ag, stride_an, stride_bg, stride_bn,
    stride_os, stride_og, stride_oi, COL_GROUP, stride_ocg, stride_oj,   # column j -> (j // COL_GROUP,
    stride_cs, stride_cg,                                                #   j % COL_GROUP) addressing
    HAS_COLSUM: tl.constexpr, DOT_PREC: tl.constexpr,
    BLOCK_I: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_R: tl.constexpr,
):
    """``out[s, g] = sum_{n in split s} a[g, n, :]^T b[g, n, :]`` (a token-reduction GEMM)."""
    pid_i = tl.program_id(0)
    pid_j = tl.program_id(1)
    pid_gs = tl.program_id(2)
    g = (pid_gs // SPLIT).to(tl.int64)
    s = pid_gs % SPLIT
    offs_i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    offs_j = pid_j * BLOCK_J + tl.arange(0, BLOCK_J)
    offs_r = tl.arange(0, BLOCK_R)
    mask_i = offs_i < I
    mask_j = offs_j < J
    row_lo = s * ROWS_PER_SPLIT
    row_hi = tl.minimum(row_lo + ROWS_PER_SPLIT, N)
    acc = tl.zeros([BLOCK_I, BLOCK_J], dtype=tl.float32)
    cs = tl.zeros([BLOCK_J], dtype=tl.float32)
    for r0 in range(row_lo, row_hi, BLOCK_R):
        r = (r0 + offs_r).to(tl.int64)
        mask_r = r < row_hi
        at = tl.load(A + g * stride_ag + r[None, :] * stride_an + offs_i[:, None],
                     mask=mask_r[None, :] & mask_i[:, None], other=0.0)                  # [BLOCK_I, BLOCK_R]
        b = tl.load(B + g * stride_bg + r[:, None] * stride_bn + offs_j[None, :],
                    mask=mask_r[:, None] & mask_j[None, :], other=0.0)                   # [BLOCK_R, BLOCK_J]
        acc += tl.dot(at, b, input_precision=DOT_PREC)
        if HAS_COLSUM:
            cs += tl.sum(b.to(tl.float32), axis=0)
    col = (offs_j // COL_GROUP) * stride_ocg + (offs_j % COL_GROUP) * stride_oj
    tl.store(OUT + s * stride_os + g * stride_og + offs_i[:, None] * stride_oi + col[None, :], acc,
             mask=mask_i[:, None] & mask_j[None, :])
    if HAS_COLSUM:
        if pid_i == 0:
            tl.store(COLSUM + s * stride_cs + g * stride_cg + offs_j, cs, mask=mask_j)


# ------------------------------------------------------------------------------------------ launch configs
def _token_configs():
    return [
        triton.Config({"BLOCK_N": bn, "BLOCK_H": bh}, num_warps=w, num_stages=s)
        for bn, bh, w, s in [(16, 32, 4, 2), (32, 32, 4, 2), (16, 16, 4, 2), (32, 16, 4, 2), (16, 64, 4, 2),
                             (64, 32, 8, 2)]
    ]


def _reduce_configs():
    return [
        triton.Config({"BLOCK_I": bi, "BLOCK_J": bj, "BLOCK_R": br}, num_warps=w, num_stages=s)
        for bi, bj, br, w, s in [(64, 64, 32, 4, 3), (64, 128, 32, 4, 3), (128, 64, 32, 8, 3),
                                 (32, 64, 64, 4, 2), (128, 128, 32, 8, 2)]
    ]


def _token_ok(cfg, fp32: bool, d: int) -> bool:
    """Token-kernel configs that fit (bench/aot_check.py; docs/GPU.md). A program keeps several
    [BLOCK_N, d] fp32 tiles live plus the [d, BLOCK_H] weight tiles: BLOCK_N x max(d, 128) of at most
    2048 elements (4096 in bf16), BLOCK_H <= 32, and 4 warps (8 warps cap ptxas at 128 registers)."""
    bn, bh, w = cfg.kwargs["BLOCK_N"], cfg.kwargs["BLOCK_H"], cfg.num_warps
    if bn * max(d, 128) > (2048 if fp32 else 4096):
        return False
    return w == 4 and bh <= 32


def _reduce_ok(cfg, fp32: bool) -> bool:
    """No 128 x 128 output tile: in fp32 its staged operands pass sm_80's shared memory, in bf16 its
    8 warps leave ptxas 128 registers and it spills on sm_80 (bench/aot_check.py --full)."""
    return cfg.kwargs["BLOCK_I"] * cfg.kwargs["BLOCK_J"] <= 64 * 128


#: fixed configs for the interpreter: small tiles, few programs
INTERP_TOKEN_CONFIG = {"BLOCK_N": 32, "BLOCK_H": 64}
INTERP_REDUCE_CONFIG = {"BLOCK_I": 32, "BLOCK_J": 64, "BLOCK_R": 32}
#: fixed GPU configs when autotuning is off (``HIMOE_FAST_AUTOTUNE=0``: e.g. parity tests over many
#: shapes, where tuning every shape would cost more than the tests)
#: per (kernel, fp32): the backward keeps twice the forward's live tiles, so it takes BLOCK_N 16
#: (bench/aot_check.py: 8 warps cap ptxas at 128 registers and spill more, not less)
GPU_TOKEN_CONFIGS = {
    ("fwd", False): {"BLOCK_N": 32, "BLOCK_H": 32, "num_warps": 4, "num_stages": 2},
    ("bwd", False): {"BLOCK_N": 16, "BLOCK_H": 16, "num_warps": 4, "num_stages": 2},
    ("fwd", True): {"BLOCK_N": 16, "BLOCK_H": 32, "num_warps": 4, "num_stages": 2},
    ("bwd", True): {"BLOCK_N": 16, "BLOCK_H": 16, "num_warps": 4, "num_stages": 2},
}
GPU_REDUCE_CONFIG = {"BLOCK_I": 64, "BLOCK_J": 64, "BLOCK_R": 32, "num_warps": 4, "num_stages": 3}

_prune_token = {"early_config_prune": config_pruner(_token_ok, "X", "D")}
_fwd_tuned = triton.autotune(_token_configs(), key=["D", "H", "K", "N_BUCKET", "ROUTING"],
                             prune_configs_by=_prune_token)(_bank_fwd_kernel)
_bwd_token_tuned = triton.autotune(_token_configs(), key=["D", "H", "K", "N_BUCKET", "ROUTING"],
                                   prune_configs_by=_prune_token)(_bank_bwd_token_kernel)
_reduce_tuned = triton.autotune(_reduce_configs(), key=["I", "J", "ROWS_PER_SPLIT", "SPLIT"],
                                prune_configs_by={"early_config_prune": config_pruner(_reduce_ok, "A")}
                                )(_tn_reduce_kernel)


def _token_kernel(kernel: str, D: int, dtype: torch.dtype):
    """(kernel, meta) of the forward (``kernel="fwd"``) or backward token kernel for ``D`` and ``dtype``."""
    tuned, plain = (_fwd_tuned, _bank_fwd_kernel) if kernel == "fwd" else (_bwd_token_tuned, _bank_bwd_token_kernel)
    fn, meta = select_kernel(tuned, plain, GPU_TOKEN_CONFIGS[kernel, dtype == torch.float32], INTERP_TOKEN_CONFIG)
    if meta and not INTERPRET and pow2(D) > 128:
        meta["BLOCK_N"] = 16                                          # whole rows stay on chip
    return fn, meta


_SPLITS = threading.local()


def token_splits(n: int):
    """Within the block (this thread), weight-gradient reductions split the tokens ``n`` ways
    instead of by the heuristic (so the split path runs under the interpreter and on small shapes)."""
    if int(n) < 1:
        raise ValueError(f"token splits must be >= 1, got {n}")
    return thread_override(_SPLITS, int(n))


def _num_splits(n_rows: int, tiles: int, device: torch.device) -> int:
    """Token splits of a weight-gradient reduction: about two programs per SM, >= 256 rows each."""
    forced = getattr(_SPLITS, "value", None)
    if forced is not None:
        return max(1, min(forced, n_rows))
    if INTERPRET or device.type != "cuda":
        return 1
    want = max(1, (2 * sm_count(device)) // max(1, tiles))
    return max(1, min(want, triton.cdiv(n_rows, 256)))


def tn_reduce(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor, *, col_group: int | None = None,
              colsum: torch.Tensor | None = None) -> None:
    """``out[g] = sum_n a[g, n]^T b[g, n]`` and ``colsum[g] = sum_n b[g, n]`` (fp32 results).

    a: ``[G, N, I]``, b: ``[G, N, J]`` (unit last stride). ``out`` receives ``[G, I, J]`` with column
    ``j`` written at ``(j // col_group, j % col_group)`` of ``out``'s last two index slots, i.e. ``out``
    is ``[G, J // col_group, I, col_group]`` when ``col_group`` is given (the ``[M, K, d, h]`` layout of
    W1) and ``[G, I, J]`` otherwise. ``out`` and ``colsum`` ([G, J]) must be contiguous fp32 or of the
    caller's dtype; partial sums over token splits are reduced with ``torch.sum``.
    """
    G, N, I = a.shape
    J = b.shape[2]
    assert a.stride(2) == 1 and b.stride(2) == 1
    if col_group is None:
        col_group = J
        o_shape = (G, I, J)
    else:
        o_shape = (G, J // col_group, I, col_group)
    tiles = triton.cdiv(I, 64) * triton.cdiv(J, 64) * G
    split = _num_splits(N, tiles, a.device)
    direct = split == 1 and out.dtype == torch.float32
    part = out if direct else torch.empty((split, *o_shape), device=a.device, dtype=torch.float32)
    has_cs = colsum is not None
    cs_direct = has_cs and split == 1 and colsum.dtype == torch.float32
    cs = (colsum if cs_direct else torch.empty((split, G, J), device=a.device, dtype=torch.float32)) \
        if has_cs else None
    part_v = part.view(split if not direct else 1, *o_shape)
    if len(o_shape) == 3:
        s_os, s_og, s_oi, s_ocg, s_oj = part_v.stride(0), part_v.stride(1), part_v.stride(2), 0, part_v.stride(3)
    else:
        s_os, s_og, s_ocg, s_oi, s_oj = part_v.stride(0), part_v.stride(1), part_v.stride(2), part_v.stride(3), \
            part_v.stride(4)
    cs_v = cs.view(split if not cs_direct else 1, G, J) if has_cs else None
    s_cs, s_cg = (cs_v.stride(0), cs_v.stride(1)) if has_cs else (0, 0)
    rows_per_split = triton.cdiv(N, split)
    kernel, meta = select_kernel(_reduce_tuned, _tn_reduce_kernel, GPU_REDUCE_CONFIG, INTERP_REDUCE_CONFIG)

    def grid(META):
        return (triton.cdiv(I, META["BLOCK_I"]), triton.cdiv(J, META["BLOCK_J"]), G * split)

    with device_guard(a):
        kernel[grid](
            a, b, part, cs, N, I, J, rows_per_split, split,
            a.stride(0), a.stride(1), b.stride(0), b.stride(1),
            s_os, s_og, s_oi, col_group, s_ocg, s_oj, s_cs, s_cg,
            DOT_PREC=dot_precision(a.dtype), **meta,
        )
    if not direct:
        out.copy_(part.sum(0))
    if has_cs and not cs_direct:
        colsum.copy_(cs.sum(0))


# ------------------------------------------------------------------------------------------ autograd
class ModalityExpertsFunction(torch.autograd.Function):
    """Fused Modality Expert Bank. See the module docstring for the math and the launch family."""

    @staticmethod
    def forward(ctx, x, gate_weight, gate_bias, w1, b1, w2, b2, routing: str):
        # x [M, N, D]; gate_weight [M, D, K]; gate_bias [M, K]; w1 [M, K, D, H]; b1 [M, K, H];
        # w2 [M, K, H, D]; b2 [M, K, D]  ->  z [M, N, D], alpha [M, N, K]
        M, N, D = x.shape
        K, H = w1.shape[1], w1.shape[3]
        if D > MAX_D:
            raise ValueError(f"modality_experts (triton): d_model={D} > {MAX_D} is not supported")
        check_dtypes("modality_experts", x=x, gate_weight=gate_weight, gate_bias=gate_bias, w1=w1, b1=b1, w2=w2, b2=b2)
        check_launchable("modality_experts", x.device)
        x, gate_weight, gate_bias, w1, b1, w2, b2 = contiguous(x, gate_weight, gate_bias, w1, b1, w2, b2)
        z = torch.empty_like(x)
        alpha = torch.empty((M, N, K), device=x.device, dtype=x.dtype)
        rid = ROUTING_IDS[routing]
        if N > 0:
            kernel, meta = _token_kernel("fwd", D, x.dtype)
            grid = lambda META: (triton.cdiv(N, META["BLOCK_N"]), M)  # noqa: E731
            with device_guard(x):
                kernel[grid](x, gate_weight, gate_bias, w1, b1, w2, b2, z, alpha, N, D, H, K, triton.next_power_of_2(N),
                             ROUTING=rid, DOT_PREC=dot_precision(x.dtype), BLOCK_D=pow2(D), BLOCK_K=pow2(K), **meta)
        ctx.routing = routing
        ctx.set_materialize_grads(False)
        if routing != "soft":
            ctx.mark_non_differentiable(alpha)
        ctx.save_for_backward(x, gate_weight, w1, b1, w2, b2, alpha)
        return z, alpha

    @staticmethod
    def backward(ctx, dz, dalpha):
        x, gate_weight, w1, b1, w2, b2, alpha = ctx.saved_tensors
        M, N, D = x.shape
        K, H = w1.shape[1], w1.shape[3]
        soft = ctx.routing == "soft"
        if dz is None:
            dz = torch.zeros_like(x)
        dz = dz.to(x.dtype).contiguous()
        has_da = soft and dalpha is not None
        dalpha = dalpha.contiguous() if has_da else None
        dx = torch.empty_like(x)
        dh = torch.empty((M, N, K * H), device=x.device, dtype=x.dtype)
        g = torch.empty_like(dh)
        dlogits = torch.zeros((M, N, K), device=x.device, dtype=x.dtype)
        if N > 0:
            kernel, meta = _token_kernel("bwd", D, x.dtype)
            grid = lambda META: (triton.cdiv(N, META["BLOCK_N"]), M)  # noqa: E731
            with device_guard(x):
                kernel[grid](x, dz, alpha, dalpha, gate_weight, w1, b1, w2, b2, dx, dh, g, dlogits,
                             N, D, H, K, triton.next_power_of_2(N), ROUTING=ROUTING_IDS[ctx.routing],
                             DOT_PREC=dot_precision(x.dtype), BLOCK_D=pow2(D), BLOCK_K=pow2(K), **meta)
        need = ctx.needs_input_grad
        dwg = dbg = dw1 = db1 = dw2 = db2 = None
        if need[3] or need[4]:
            dw1 = torch.zeros_like(w1, dtype=torch.float32)
            db1 = torch.zeros((M, K, H), device=x.device, dtype=torch.float32)
            if N > 0:
                tn_reduce(x, dh, dw1, col_group=H, colsum=db1.view(M, K * H))
            dw1, db1 = dw1.to(w1.dtype), db1.to(b1.dtype)
        if need[5]:
            dw2 = torch.zeros((M, K, H, D), device=x.device, dtype=torch.float32)
            if N > 0:
                tn_reduce(g, dz, dw2.view(M, K * H, D))
            dw2 = dw2.to(w2.dtype)
        if need[6]:
            db2 = torch.zeros((M, K, D), device=x.device, dtype=torch.float32)
            if N > 0:
                tn_reduce(alpha, dz, db2)
            db2 = db2.to(b2.dtype)
        if soft and (need[1] or need[2]):
            dwg = torch.zeros((M, D, K), device=x.device, dtype=torch.float32)
            dbg = torch.zeros((M, K), device=x.device, dtype=torch.float32)
            if N > 0:
                tn_reduce(x, dlogits, dwg, colsum=dbg)
            dwg, dbg = dwg.to(gate_weight.dtype), dbg.to(gate_weight.dtype)
        return dx if need[0] else None, dwg, dbg, dw1, db1, dw2, db2, None


def modality_experts(x: torch.Tensor, gate_weight: torch.Tensor, gate_bias: torch.Tensor, w1: torch.Tensor,
                     b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, routing: str = "soft"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Modality Expert Bank of all modalities (Eq. 2-3), fused Triton kernels.

    x: ``[M, N, d]`` (absent tokens already zero); parameters in :class:`ModalityExpertBank`'s stacked
    layout. Returns ``(z [M, N, d], alpha [M, N, K])``; differentiable (alpha only for ``soft``).
    """
    if routing not in ROUTING_IDS:
        raise ValueError(f"unknown routing {routing!r}")
    return ModalityExpertsFunction.apply(x, gate_weight, gate_bias, w1, b1, w2, b2, routing)


__all__ = ["ModalityExpertsFunction", "modality_experts", "tn_reduce", "INTERPRET"]
