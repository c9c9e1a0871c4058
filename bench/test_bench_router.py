"""DA-router (Emotion Expert Bank): reference ``EmotionExpertBank`` vs ``da_router``, fwd+bwd.

    pytest bench/test_bench_router.py -s                       # timings, side-by-side ratio, memory
    pytest bench/test_bench_router.py -s -k side_by_side       # the speed/memory target only
    HIMOE_BENCH_ROUNDS=15 pytest bench/test_bench_router.py -s -k side_by_side

Target (2-core CPU): N = 32*8 = 256 tokens, d=128, h=256, L=8, r=64: fwd+bwd >= 1.2x the
reference with lower peak memory. Variants of the torch backend: ``torch`` (its default; on CPU it
keeps the ``[L, N, h]`` pre-activation for backward and reuses that buffer there) and
``torch_recompute`` (``save_hidden=False``: keeps nothing per expert, one more GEMM in backward).
On CUDA the Triton kernels are timed too. The side-by-side test interleaves
the variants round by round so that a shared, noisy CPU slows all alike, and reports medians.
Timing and peak memory come from :mod:`himoe_fast.fast.bench.measure`.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from himoe_fast.fast.bench.measure import default_device, peak_mb, sync, time_interleaved
from himoe_fast.fast.router import da_router
from himoe_fast.model.router import EmotionExpertBank

DEV = default_device()
SIZE = dict(d=128, h=256, L=8, r=64)
VARIANTS = {"reference": None, "torch": dict(backend="torch"),
            "torch_recompute": dict(backend="torch", save_hidden=False)}
if DEV.type == "cuda":
    VARIANTS["triton"] = dict(backend="triton")


def _setup(N, mode, seed=0):
    torch.manual_seed(seed)
    bank = EmotionExpertBank(SIZE["d"], SIZE["L"], SIZE["h"], SIZE["r"], router=mode).to(DEV)
    z = torch.randn(N, SIZE["d"], device=DEV, requires_grad=True)
    return bank, z


def _call(bank, z, variant):
    kw = VARIANTS[variant]
    if kw is None:
        return bank(z)
    lam = bank.diff_lambda() if bank.router == "diff" else None
    return da_router(z, bank.w1, bank.b1, bank.w2, bank.b2, bank.wq, bank.wk, bank.router,
                     scale=getattr(bank, "scale", None), lam=lam, **kw)


def _step(bank, z, variant):
    e, beta = _call(bank, z, variant)
    (e.square().sum() + beta.square().sum()).backward()
    return e.detach(), beta.detach()


def _saved_bytes(bank, z, variant):
    """Bytes saved for backward, parameters and the input excluded (deterministic)."""
    skip = {p.untyped_storage().data_ptr() for p in bank.parameters()} | {z.untyped_storage().data_ptr()}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        e, _ = _call(bank, z, variant)
    todo, nodes = [e.grad_fn], set()                  # + what the fused core keeps on its ctx
    while todo:
        node = todo.pop()
        if node is None or node in nodes:
            continue
        nodes.add(node)
        kept = [getattr(node, "hidden", None), *(getattr(node, "keys", None) or ())]
        for t in kept:
            if t is not None:
                seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        todo.extend(nxt for nxt, _ in node.next_functions)
    return sum(seen.values())


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("mode", ["dot", "cosine", "diff"])
def test_fwd_bwd(benchmark, mode, variant):
    bank, z = _setup(256, mode)
    benchmark.group = f"da_router fwd+bwd N=256 d=128 h=256 L=8 r=64 {mode}"

    def run():
        bank.zero_grad(set_to_none=True)
        z.grad = None
        _step(bank, z, variant)
        sync(DEV)

    benchmark.pedantic(run, rounds=10, warmup_rounds=2)


def _side_by_side(N, mode, rounds, reps=3):
    bank, z = _setup(N, mode)
    outs = {}
    for v in VARIANTS:                                       # warm-up (and outputs for the error)
        bank.zero_grad(set_to_none=True)
        z.grad = None
        outs[v] = _step(bank, z, v) + (z.grad.clone(),)
    # reps calls per timing (their mean: the calls are short); the warm-up above ran each variant once
    times = time_interleaved({v: (lambda v=v: _step(bank, z, v)) for v in VARIANTS}, DEV, warmup=0, rounds=rounds,
                             reps=reps, settle=False)
    ref_ms = times["reference"].ms
    rows = []
    for v in VARIANTS:
        ms = times[v].ms
        err = max(float((a - b).abs().max()) for a, b in zip(outs[v], outs["reference"]))
        rows.append({"name": "da_router", "variant": v, "mode": mode, "N": N, "ms": round(ms, 2),
                     "speedup": round(ref_ms / ms, 2), "max_err": err,
                     "saved_mb": round(_saved_bytes(bank, z, v) / 2 ** 20, 2)})
    return rows


@pytest.mark.parametrize("mode", ["dot", "cosine", "diff"])
@pytest.mark.parametrize("N", [256, 2048])
def test_side_by_side(N, mode, rounds=int(os.environ.get("HIMOE_BENCH_ROUNDS", "9"))):
    """Interleaved medians, speedup, max error (outputs and dL/dz), saved-for-backward MB.

    Asserts the >= 1.2x target for the default torch backend at the realistic N=256 (CPU)."""
    rows = _side_by_side(N, mode, rounds)
    print("\n" + "\n".join(json.dumps(r) for r in rows))
    by = {r["variant"]: r for r in rows}
    assert by["torch"]["max_err"] < 1e-3
    assert by["torch"]["saved_mb"] < by["reference"]["saved_mb"]
    if DEV.type == "cpu" and N == 256:
        assert by["torch"]["speedup"] >= 1.2, rows


@pytest.mark.parametrize("mode", ["dot", "cosine", "diff"])
@pytest.mark.parametrize("N", [256, 2048])
def test_memory(N, mode):
    """Peak extra memory of one fwd+bwd (``measure.peak_mb``: live bytes replayed from the profiler's
    allocation events on CPU, ``max_memory_allocated`` on CUDA); fast below reference."""
    bank, z = _setup(N, mode)
    rows = []
    for v in VARIANTS:
        _step(bank, z, v)                                    # lazy initialisation outside the window
        bank.zero_grad(set_to_none=True)
        z.grad = None
        rows.append({"variant": v, "peak_mb": round(peak_mb(lambda: _step(bank, z, v), DEV), 2),
                     "saved_mb": round(_saved_bytes(bank, z, v) / 2 ** 20, 2)})
        bank.zero_grad(set_to_none=True)
        z.grad = None
    print("\n" + json.dumps({"N": N, "mode": mode, "rows": rows}))
    by = {r["variant"]: r["peak_mb"] for r in rows}
    assert by["torch"] < by["reference"], rows
