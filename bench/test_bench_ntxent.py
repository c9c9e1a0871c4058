"""masked NT-Xent: torch reference vs the C++ extension, forward + backward (pytest-benchmark).

    pytest bench/test_bench_ntxent.py -s                     # all: timings, side-by-side ratio, memory
    pytest bench/test_bench_ntxent.py -s -k side_by_side     # the speed target only
    HIMOE_BENCH_TORCH_MEMORY=1 pytest bench/test_bench_ntxent.py -s -k memory   # + torch's peak (GBs)

Targets (2-core CPU): M=8, N=1024, d=128 fwd+bwd >= 2x the torch backend; M=2, N=8192, d=128 peak
memory growth <= 256 MB. The ratio test interleaves the two backends round by round so that a shared,
noisy CPU slows both alike, and reports medians (wall-clock and process CPU time). Timing, the
``torch.mm`` roofline and the peak-RSS reading come from :mod:`himoe_fast.fast.bench.measure`; the
memory is the growth of the process's peak resident set (the extension's own buffers are not torch
allocations), measured in a fresh process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from himoe_fast.fast.bench.measure import gemm_gflops, time_interleaved
from himoe_fast.ops import ext, masked_ntxent

ROOT = Path(__file__).resolve().parents[1]
SPEED = dict(M=8, N=1024, d=128, p=0.9, tau=0.1)
MEMORY = dict(M=2, N=8192, d=128, p=0.9, tau=0.1)


@pytest.fixture(scope="module")
def built():
    if ext.load_extension(warn=False) is None:
        pytest.skip(f"extension unavailable: {ext.build_status(build=False)['error']}")


def _inputs(M, N, d, p, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(M, N, d, generator=g), torch.rand(M, N, generator=g) < p


def _fwd_bwd(z, present, tau, backend):
    zz = z.detach().requires_grad_(True)
    loss = masked_ntxent(zz, present, tau, backend=backend)
    loss.backward()
    return loss.detach(), zz.grad


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_fwd_bwd(benchmark, built, backend):
    c = SPEED
    z, present = _inputs(c["M"], c["N"], c["d"], c["p"])
    benchmark.group = "masked_ntxent fwd+bwd M=8 N=1024 d=128"
    benchmark.pedantic(_fwd_bwd, args=(z, present, c["tau"], backend), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("backend", ["torch", "ext"])
def test_forward_only(benchmark, built, backend):
    c = SPEED
    z, present = _inputs(c["M"], c["N"], c["d"], c["p"])
    benchmark.group = "masked_ntxent forward M=8 N=1024 d=128"
    with torch.no_grad():
        benchmark.pedantic(masked_ntxent, args=(z, present, c["tau"], backend), rounds=5, warmup_rounds=1)


def test_side_by_side(built, rounds=int(os.environ.get("HIMOE_BENCH_ROUNDS", "7"))):
    """Interleaved rounds, medians, speedup and max error; asserts the >= 2x target."""
    c = SPEED
    z, present = _inputs(c["M"], c["N"], c["d"], c["p"])
    ref_loss, ref_grad = _fwd_bwd(z, present, c["tau"], "torch")
    ext_loss, ext_grad = _fwd_bwd(z, present, c["tau"], "ext")
    t = time_interleaved({b: (lambda b=b: _fwd_bwd(z, present, c["tau"], b)) for b in ("torch", "ext")}, "cpu",
                         warmup=1, rounds=rounds)
    ref, fast = t["torch"], t["ext"]
    row = {
        "name": "alignment", "M": c["M"], "N": c["N"], "d": c["d"], "threads": torch.get_num_threads(),
        "ref_ms": round(ref.ms, 1), "fast_ms": round(fast.ms, 1), "speedup": round(ref.ms / fast.ms, 2),
        "ref_cpu_ms": round(ref.cpu_ms, 1), "fast_cpu_ms": round(fast.cpu_ms, 1),
        "cpu_speedup": round(ref.cpu_ms / fast.cpu_ms, 2),
        "loss_rel_err": float((ext_loss - ref_loss).abs() / ref_loss.abs()),
        "grad_max_abs_err": float((ext_grad - ref_grad).abs().max()),
        "gemm_gflops": round(gemm_gflops("cpu"), 1),
        "torch_ms_all": [round(v, 1) for v in ref.samples_ms],
        "ext_ms_all": [round(v, 1) for v in fast.samples_ms],
    }
    print("\n" + json.dumps(row))
    assert row["loss_rel_err"] < 1e-4 and row["grad_max_abs_err"] < 1e-5
    assert row["speedup"] >= 2.0, row


_PEAK = """
    import json, sys, torch
    from himoe_fast.fast.bench.measure import rss_peak_growth_mb
    from himoe_fast.ops import ext, masked_ntxent
    backend, M, N, d, p, tau = sys.argv[1], *map(int, sys.argv[2:5]), float(sys.argv[5]), float(sys.argv[6])
    if backend == "ext":
        assert ext.load_extension() is not None
    g = torch.Generator().manual_seed(0)
    z = torch.randn(M, N, d, generator=g).requires_grad_(True)
    present = torch.rand(M, N, generator=g) < p
    warm = torch.randn(2, 8, 4, requires_grad=True)          # lazy initialisation outside the window
    masked_ntxent(warm, torch.ones(2, 8, dtype=torch.bool), tau, backend=backend).backward()
    out = {}

    def step():
        loss = masked_ntxent(z, present, tau, backend=backend)
        loss.backward()
        out["loss"] = float(loss)

    growth, how = rss_peak_growth_mb(step)
    print(json.dumps({"backend": backend, "peak_growth_mb": round(growth, 1), "how": how, "loss": out["loss"]}))
"""


def _peak_growth(backend, c):
    args = [backend, c["M"], c["N"], c["d"], c["p"], c["tau"]]
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_PEAK), *map(str, args)], capture_output=True,
                       text=True, timeout=1800, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_memory(built):
    """Peak RSS growth of one fwd+bwd at M=2, N=8192, d=128 (fresh subprocess); ext <= 256 MB."""
    c = MEMORY
    rows = [_peak_growth("ext", c)]
    if os.environ.get("HIMOE_BENCH_TORCH_MEMORY") == "1":  # needs several GB
        rows.append(_peak_growth("torch", c))
        assert abs(rows[0]["loss"] - rows[1]["loss"]) <= 1e-4 * abs(rows[1]["loss"])
    print("\n" + json.dumps({"M": c["M"], "N": c["N"], "d": c["d"], "rows": rows}))
    assert rows[0]["peak_growth_mb"] <= 256, rows
