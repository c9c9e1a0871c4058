"""Whole model and its cheap stages: reference ``HiMoE`` vs ``to_fast(model)`` (pytest-benchmark).

    pytest bench/test_bench_model.py -s
    HIMOE_BENCH_ROUNDS=15 pytest bench/test_bench_model.py -s -k side_by_side

DEAP preset with the 7 modalities (eeg, eog, emg, gsr, resp, ppg, temp), B=32, T=8 (N=256 tokens).
Rows: ``encoders`` (all encoders, fwd+bwd), ``fuse``, ``heads`` (fwd+bwd) and ``train_step``
(zero_grad + forward + Eq. 8 loss + backward). The fast model uses ``backend="auto"`` (Triton
kernels on CUDA, batched torch on CPU). The DA-router and the NT-Xent benchmarks live in
test_bench_router.py and test_bench_ntxent.py; ``himoe-fast bench`` shows all rows in one table.
Timing and device name come from :mod:`himoe_fast.fast.bench.measure`.
"""

from __future__ import annotations

import os

import pytest
import torch

from himoe_fast import HiMoE, HiMoEConfig
from himoe_fast.fast import to_fast
from himoe_fast.fast.bench.measure import default_device, device_name, sync, time_interleaved
from himoe_fast.fast.encoders import encode_fast
from himoe_fast.fast.parity import random_batch
from himoe_fast.fast.stages import fuse_fast, heads_fast

DEV = default_device()
B, T = 32, 8
ROUNDS = int(os.environ.get("HIMOE_BENCH_ROUNDS", "5"))


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    cfg = HiMoEConfig.deap()
    ref = HiMoE(cfg).to(DEV)
    fast = to_fast(ref, backend="auto")
    batch = random_batch(cfg, B, T, seed=0, device=DEV)
    return cfg, ref, fast, batch


def _train_step(model, batch):
    inputs, present, labels, mask = batch
    model.zero_grad(set_to_none=True)
    out = model(inputs, present)
    model.loss(out, labels, mask).backward()
    sync(DEV)


def _encoders(model, batch, fast: bool):
    inputs, present = batch[0], batch[1]
    model.zero_grad(set_to_none=True)
    if fast:
        Z = encode_fast(model, model._plan, inputs, present.reshape(B * T, -1).t())
    else:
        Z = model.encode(inputs, present)
    Z.square().sum().backward()
    sync(DEV)


def _fuse(model, z, present, fast: bool):
    model.zero_grad(set_to_none=True)
    if fast:
        out, _ = fuse_fast(model.fuse, z, present.reshape(B * T, -1).t())
    else:
        out, _ = model.fuse(z, present)
    out.square().sum().backward()
    sync(DEV)


def _heads(model, e, fast: bool):
    model.zero_grad(set_to_none=True)
    out = heads_fast(model.heads, e.reshape(B * T, -1)) if fast else model.heads(e)
    out.square().sum().backward()
    sync(DEV)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_train_step(benchmark, models, impl):
    _, ref, fast, batch = models
    benchmark.group = "train_step DEAP B=32 T=8"
    benchmark.pedantic(_train_step, args=(fast if impl == "fast" else ref, batch), rounds=ROUNDS,
                       warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_encoders(benchmark, models, impl):
    _, ref, fast, batch = models
    benchmark.group = "encoders fwd+bwd"
    benchmark.pedantic(_encoders, args=(fast if impl == "fast" else ref, batch, impl == "fast"), rounds=ROUNDS,
                       warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_fuse(benchmark, models, impl):
    cfg, ref, fast, batch = models
    present = batch[1]
    if impl == "fast":
        z = torch.randn(cfg.n_modalities, B * T, cfg.d_model, device=DEV, requires_grad=True)
    else:
        z = torch.randn(B, T, cfg.n_modalities, cfg.d_model, device=DEV, requires_grad=True)
    benchmark.group = "fuse fwd+bwd"
    benchmark.pedantic(_fuse, args=(fast if impl == "fast" else ref, z, present, impl == "fast"),
                       rounds=ROUNDS * 4, warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("impl", ["reference", "fast"])
def test_heads(benchmark, models, impl):
    cfg, ref, fast, _ = models
    e = torch.randn(B, T, cfg.d_model, device=DEV, requires_grad=True)
    benchmark.group = "heads fwd+bwd"
    benchmark.pedantic(_heads, args=(fast if impl == "fast" else ref, e, impl == "fast"), rounds=ROUNDS * 4,
                       warmup_rounds=2, iterations=1)


def test_train_step_side_by_side(models):
    """Interleaved medians of the whole step; asserts only that the fast step is not slower."""
    _, ref, fast, batch = models
    t = time_interleaved({"reference": lambda: _train_step(ref, batch), "fast": lambda: _train_step(fast, batch)},
                         DEV, warmup=2, rounds=max(ROUNDS, 3))
    r, f = t["reference"].ms, t["fast"].ms
    print(f"\ntrain_step DEAP 7 modalities B={B} T={T} on {device_name(DEV)}: "
          f"reference {r:.1f} ms, fast {f:.1f} ms, {r / f:.2f}x")
    assert f < r * 1.25
