"""Inference speed: offline ``predict`` throughput and streaming per-window latency (pytest-benchmark).

    pytest bench/test_bench_predict.py -s

DEAP preset with the 7 modalities (eeg 32 ch, eog, emg, gsr, resp, ppg, temp at 128 Hz), 1 s
windows, random weights (speed does not depend on training).

* ``test_predict_throughput``: :func:`himoe_fast.predict.predict_windows` over 4,096 in-memory
  windows (trials of 60 windows), batches of 1,024, reference vs fast path; windows/s is printed.
  The paper-literal model (``temporal="none"``) predicts each window once; a model with temporal
  stages in the causal mode runs one sequence of ``T = 8`` windows per window (about ``T`` times
  the work; ``--mode blocks`` runs each window once).
* ``test_stream_latency``: a 60 s, 7-modality recording pushed in 0.1 s chunks per modality through
  :class:`himoe_fast.stream.StreamPredictor` (causal filters, running z-score, model); latency =
  time from the push that completes a window to its prediction; p50 / p99 over the windows after
  the first 3 (warm-up) are printed.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from himoe_fast import HiMoE, HiMoEConfig
from himoe_fast.fast import to_fast
from himoe_fast.fast.bench.measure import default_device, device_name
from himoe_fast.predict import LoadedModels, predict_windows
from himoe_fast.stream import StreamPredictor

DEV = default_device()
N_WINDOWS = int(os.environ.get("HIMOE_BENCH_WINDOWS", "4096"))
ROUNDS = int(os.environ.get("HIMOE_BENCH_ROUNDS", "3"))


def _loaded(impl: str, temporal: str = "none") -> LoadedModels:
    torch.manual_seed(0)
    cfg = HiMoEConfig.deap(temporal=temporal, causal=temporal != "none")
    model = HiMoE(cfg).to(DEV).eval()
    if impl == "fast":
        model = to_fast(model).eval()
    return LoadedModels([model], cfg, ["bench"], "bench", 8, DEV, impl)


@pytest.fixture(scope="module")
def windows():
    cfg = HiMoEConfig.deap()
    rng = np.random.default_rng(0)
    win = {s.name: rng.standard_normal((N_WINDOWS, s.channels, s.samples(cfg.window_s))).astype(np.float32)
           for s in cfg.modalities}
    return win, np.ones((N_WINDOWS, cfg.n_modalities), bool), np.arange(N_WINDOWS) // 60


@pytest.mark.parametrize("impl,temporal", [("reference", "none"), ("fast", "none"), ("fast", "align+context")])
def test_predict_throughput(benchmark, windows, impl, temporal):
    win, avail, trial = windows
    loaded = _loaded(impl, temporal)
    n = N_WINDOWS if temporal == "none" else N_WINDOWS // 4        # the causal T=8 case is ~8x the work
    sub = {k: v[:n] for k, v in win.items()}
    benchmark.group = "predict DEAP 7 modalities"
    benchmark.pedantic(predict_windows, args=(loaded, sub, avail[:n], trial[:n]), kwargs={"batch_size": 1024},
                       rounds=ROUNDS, warmup_rounds=1, iterations=1)
    if benchmark.stats is not None:                  # None under --benchmark-disable (one untimed call)
        rate = n / benchmark.stats.stats.median
        print(f"\npredict {impl} temporal={temporal} on {device_name(DEV)}: {rate:,.0f} windows/s")


@pytest.mark.parametrize("temporal", ["none", "align+context"])
def test_stream_latency(temporal):
    loaded = _loaded("fast", temporal)
    cfg = loaded.cfg
    rng = np.random.default_rng(1)
    dur = 60.0
    signals = {s.name: rng.standard_normal((int(dur * s.sfreq), s.channels)) for s in cfg.modalities}
    sp = StreamPredictor(loaded, t0=0.0, max_delay_s=0.5)
    out = []
    chunk = 0.1
    t_wall = time.perf_counter()
    for k in range(int(dur / chunk)):
        for name, x in signals.items():
            sf = cfg.modality(name).sfreq
            a, b = int(round(k * chunk * sf)), int(round((k + 1) * chunk * sf))
            out += sp.push(name, x[a:b], a / sf)
    out += sp.flush()
    wall = time.perf_counter() - t_wall
    lat = np.array([p.latency_s for p in out[3:]]) * 1e3
    assert len(out) == int(dur)
    print(f"\nstream DEAP 7 modalities temporal={temporal} on {device_name(DEV)}: "
          f"per-window latency p50 {np.percentile(lat, 50):.2f} ms, p99 {np.percentile(lat, 99):.2f} ms; "
          f"{dur:.0f} s of signal in {wall:.2f} s")
