"""Modality Expert Bank: reference ``ModalityExpertBank`` vs the fast bank (pytest-benchmark).

    pytest bench/test_bench_bank.py -s                      # timings + side-by-side ratio and roofline
    HIMOE_BENCH_ROUNDS=20 pytest bench/test_bench_bank.py -s -k side_by_side

Shapes: M=7 modalities, K=4 experts, d=128, h=256; fwd+bwd at N=256 tokens (B=32 x T=8)
and forward only at N=8 (streaming inference). Variants: ``reference``, ``torch`` (batched CPU path)
and, on CUDA, ``triton`` (fused kernels). The side-by-side test interleaves the variants round by
round (a shared CPU slows all alike), reports medians, the machine's ``torch.mm`` GFLOP/s measured in
the same run (the roofline of ``himoe-fast bench``), and the fast bank's GEMM rate as a fraction of it.
Timing, roofline and device name come from :mod:`himoe_fast.fast.bench.measure`.
"""

from __future__ import annotations

import os

import pytest
import torch

from himoe_fast.fast.bench.measure import default_device, device_name, gemm_gflops, roofline_pct, sync, time_interleaved
from himoe_fast.fast.bench.rows import modality_bank_gflop
from himoe_fast.fast.experts import modality_bank
from himoe_fast.model.experts import ModalityExpertBank

DEV = default_device()
M, K, D, H = 7, 4, 128, 256
ROUNDS = int(os.environ.get("HIMOE_BENCH_ROUNDS", "7"))
VARIANTS = ["reference", "torch"] + (["triton"] if DEV.type == "cuda" else [])
GFLOP_N256 = modality_bank_gflop(M, 256, D, K, H)


def _setup(N, seed=0):
    torch.manual_seed(seed)
    bank = ModalityExpertBank(M, D, K, H).to(DEV)
    x = torch.randn(M, N, D, device=DEV)
    return bank, x


def _params(bank):
    return [bank.gate_weight, bank.gate_bias, bank.w1, bank.b1, bank.w2, bank.b2]


def _fwd(bank, x, variant):
    if variant == "reference":
        z, a = bank(x.transpose(0, 1).unsqueeze(0))
        return z[0].transpose(0, 1), a[0].transpose(0, 1)
    return modality_bank(x, *_params(bank), routing=bank.routing, backend=variant)


def _fwd_bwd(bank, x, variant):
    for p in _params(bank):
        p.grad = None
    xr = x.detach().requires_grad_(True)
    z, a = _fwd(bank, xr, variant)
    (z.square().sum() + a.square().sum()).backward()
    sync(DEV)


def _fwd_only(bank, x, variant):
    with torch.no_grad():
        _fwd(bank, x, variant)
    sync(DEV)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bank_fwd_bwd_n256(benchmark, variant):
    bank, x = _setup(256)
    benchmark.group = "modality_bank fwd+bwd N=256"
    benchmark.pedantic(_fwd_bwd, args=(bank, x, variant), rounds=ROUNDS, warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bank_fwd_n8(benchmark, variant):
    bank, x = _setup(8)
    benchmark.group = "modality_bank fwd N=8"
    benchmark.pedantic(_fwd_only, args=(bank, x, variant), rounds=ROUNDS * 10, warmup_rounds=5, iterations=1)


def test_bank_side_by_side():
    """Prints the comparison; asserts only that the fast bank is not slower than the reference
    (speed targets are judged on a quiet machine, not in CI)."""
    bank, x = _setup(256)
    rounds = max(ROUNDS, 5)
    t = time_interleaved({v: (lambda v=v: _fwd_bwd(bank, x, v)) for v in VARIANTS}, DEV, rounds=rounds)
    bank8, x8 = _setup(8)
    t8 = time_interleaved({v: (lambda v=v: _fwd_only(bank8, x8, v)) for v in VARIANTS}, DEV, rounds=rounds * 10)
    ms, ms8 = {v: t[v].ms for v in VARIANTS}, {v: t8[v].ms for v in VARIANTS}
    gemm = gemm_gflops(DEV)
    lines = [f"modality_bank on {device_name(DEV)}, torch.mm {gemm:.1f} GFLOP/s"]
    for v in VARIANTS:
        lines.append(f"  {v:10s} fwd+bwd N=256 {ms[v]:8.2f} ms ({ms['reference'] / ms[v]:.2f}x, "
                     f"{GFLOP_N256 / ms[v] * 1e3:.1f} GFLOP/s = {roofline_pct(GFLOP_N256, ms[v], gemm):.0f}% of mm) | "
                     f"fwd N=8 {ms8[v]:.3f} ms ({ms8['reference'] / ms8[v]:.2f}x)")
    print("\n" + "\n".join(lines))
    fastest = min(ms[v] for v in VARIANTS if v != "reference")
    assert fastest < ms["reference"] * 1.25
