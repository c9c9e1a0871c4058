"""The benchmarks' measurement layer (``himoe_fast.fast.bench.measure``) and bench rows: call
schedules, memory accounting against allocations of known size, the roofline formula, device names,
and one bench row's fast-vs-reference error. No timed assertions (speed lives in ``bench/``)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from himoe_fast import HiMoEConfig
from himoe_fast.fast.bench import bench_rows, write_json
from himoe_fast.fast.bench.measure import (device_name, gemm_gflops, peak_mb, roofline_pct, rss_peak_growth_mb,
                                           time_interleaved, time_pair)
from himoe_fast.fast.bench.rows import max_rel_diff

CPU = torch.device("cpu")


def test_time_interleaved_schedule():
    """warm-up rounds, then per round each function settled (one untimed call) and timed ``reps``
    times, the order reversed every other round."""
    calls: list[str] = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    t = time_interleaved(fns, CPU, warmup=2, rounds=3, reps=2)
    assert calls[:6] == list("abcabc")
    timed = calls[6:]
    assert timed == list("aaabbbccc") + list("cccbbbaaa") + list("aaabbbccc")
    assert set(t) == set("abc") and all(len(v.samples_ms) == 3 and v.ms >= 0 and v.cpu_ms >= 0 for v in t.values())


def test_time_interleaved_without_settling_and_time_pair():
    calls: list[str] = []
    time_interleaved({"x": lambda: calls.append("x")}, CPU, warmup=0, rounds=4, settle=False)
    assert calls == ["x"] * 4
    calls.clear()
    ref_ms, fast_ms = time_pair(lambda: calls.append("r"), lambda: calls.append("f"), CPU, warmup=1, repeats=2)
    assert calls == list("rf") + list("rrff") + list("ffrr") and ref_ms >= 0 and fast_ms >= 0


def test_peak_mb_counts_the_peak_of_live_allocations():
    keep = torch.ones(1)

    def fn():
        a = torch.empty(2**20, dtype=torch.float32)            # 4 MiB
        b = torch.empty(2 * 2**20, dtype=torch.float32)        # 8 MiB, while a lives: peak 12 MiB
        del a, b
        c = torch.empty(2**20, dtype=torch.float32)            # 4 MiB after both were freed
        return c

    got = peak_mb(fn, CPU, before=lambda: keep.zero_())
    assert 12.0 <= got < 12.5, got


def test_peak_mb_runs_before_outside_the_window():
    hold = []
    got = peak_mb(lambda: None, CPU, before=lambda: hold.append(torch.empty(2**22)))
    assert len(hold) == 1 and got < 0.1


def test_rss_peak_growth_sees_memory_outside_torch():
    def fn():
        x = np.ones(64 * 2**20 // 8)                            # 64 MiB, touched, outside torch's allocator
        return float(x[-1])

    growth, how = rss_peak_growth_mb(fn)
    assert how in ("VmHWM", "ru_maxrss")
    if how == "VmHWM":
        assert 56 <= growth <= 96, growth


def test_roofline_and_gemm_rate():
    assert roofline_pct(gflop=2.0, ms=1000.0, gemm=4.0) == pytest.approx(50.0)
    assert roofline_pct(gflop=1.0, ms=10.0, gemm=200.0) == pytest.approx(50.0)
    rate = gemm_gflops(CPU, n=64, repeats=2)
    assert math.isfinite(rate) and rate > 0


def test_device_name():
    name = device_name(CPU)
    assert name.startswith("cpu: ") and name.endswith(f"({torch.get_num_threads()} threads)")


def test_max_rel_diff_formula():
    small = torch.tensor([0.5, -0.25])
    assert max_rel_diff(torch.tensor([0.6, -0.25]), small) == pytest.approx(0.1)       # max |ref| <= 1: absolute
    ref = torch.tensor([0.5, -4.0])
    assert max_rel_diff(torch.tensor([0.6, -3.0]), ref) == pytest.approx(1.0 / 4.0)    # relative to max |ref| = 4
    assert max_rel_diff(None, None) == 0.0 and max_rel_diff(None, ref) == math.inf
    assert max_rel_diff(torch.empty(0), torch.empty(0)) == 0.0


def test_bench_rows_small_model_agree_and_json(tmp_path):
    cfg = HiMoEConfig.tiny()
    res = bench_rows(cfg, B=2, T=2, backend="torch", warmup=0, repeats=1, rows=("heads", "modality_bank"))
    assert [r.name for r in res.rows] == ["modality_bank", "heads"]
    for r in res.rows:
        assert r.max_err < 1e-4 and r.ref_ms > 0 and r.fast_ms > 0 and r.speedup == pytest.approx(r.ref_ms / r.fast_ms)
    assert res.notes["modality_bank_gflop"] == pytest.approx(
        12 * cfg.n_modalities * 4 * cfg.d_model * cfg.n_modality_experts * cfg.expert_hidden / 1e9)
    write_json(res, tmp_path / "b.json")
    data = json.loads((tmp_path / "b.json").read_text())
    assert data["device"] == res.device and [r["name"] for r in data["rows"]] == ["modality_bank", "heads"]


def test_bank_rate_and_roofline_share():
    from himoe_fast.fast.bench import BenchResult, Row, bank_gflops, bank_roofline_pct

    res = BenchResult(gemm_gflops=40.0, device="cpu", notes={"modality_bank_gflop": 0.5},
                      rows=[Row("modality_bank", 100.0, 50.0, 2.0, 0.0, 1.0, 1.0)])
    assert bank_gflops(res) == pytest.approx(10.0)                 # 0.5 GFLOP in 50 ms
    assert bank_roofline_pct(res) == pytest.approx(25.0)           # 10 of 40 GFLOP/s
    res.rows = []
    assert bank_gflops(res) is None and bank_roofline_pct(res) is None
