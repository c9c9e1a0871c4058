"""Batch fetch speed of the training loader (DEAP-sized windows, 7 modalities, 20% missing).

    pytest bench/test_bench_loader.py -s

A batch of 32 sequences should cost far less than a CPU training step (about 60-100 ms on 2 cores);
the median is reported, not asserted (speed belongs in benchmarks).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from himoe_fast.data import make_loader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_data_batches import deap_like  # noqa: E402


def test_batch_fetch(benchmark):
    data = deap_like(n_trials=400, windows_per_trial=16)           # 6400 windows, DEAP-sized channels
    loader = make_loader(data, np.arange(len(data)), batch_size=32, shuffle=True, missing_rate=0.2)
    it = iter(loader)
    next(it)
    batch = benchmark.pedantic(lambda: next(it), rounds=20, iterations=1)
    assert batch is not None
    if benchmark.stats is not None:                  # None under --benchmark-disable (one untimed call)
        print(f"\nbatch fetch (32 x 8 windows, 7 modalities): median {benchmark.stats.stats.median * 1e3:.1f} ms")
