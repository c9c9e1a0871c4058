"""Preprocessing speed on full-size DEAP: 32 subjects x 40 trials x 40 channels x 8064 samples.

    pytest bench/test_bench_preprocess.py -s
    HIMOE_BENCH_SUBJECTS=8 pytest bench/test_bench_preprocess.py -s      # a quicker partial run

The synthetic DEAP set (3.3 GB, written exactly like ``data_preprocessed_python``) is generated once
into the cache (``ensure_synthetic``: ``$HIMOE_FAST_CACHE`` or ``~/.cache/himoe-fast``) and reused by
later runs. The timed part is one cold ``prepare_windows`` for the default seven modalities (EEG,
EOG, EMG, GSR, respiration, PPG, temperature): reading the pickles, MNE filtering of whole trials,
baseline removal, z-scoring, 1 s windows and writing a fresh cache entry (into a temporary folder
that is deleted afterwards). Target: under 2 minutes on the 2-core CPU.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from himoe_fast import HiMoEConfig
from himoe_fast.data import ensure_synthetic, prepare_windows

TARGET_S = 120.0


@pytest.mark.slow
def test_preprocess_full_deap(benchmark, tmp_path):
    n = int(os.environ.get("HIMOE_BENCH_SUBJECTS", "32"))
    t0 = time.perf_counter()
    deap_dir = ensure_synthetic("deap", n_subjects=n, seed=0)
    generate_s = time.perf_counter() - t0
    cfg = HiMoEConfig.deap()
    cache = tmp_path / "windows-cache"
    timing: dict[str, float] = {}

    def run():
        shutil.rmtree(cache, ignore_errors=True)
        t = time.perf_counter()
        wd = prepare_windows("deap", deap_dir, cfg, cache_dir=cache, progress=False)
        timing["prepare_s"] = time.perf_counter() - t
        return wd

    try:
        wd = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
        assert wd.windows["eeg"].shape == (n * 40 * 60, 32, 128)
        assert wd.meta["from_cache"] is False and len(wd) == n * 40 * (60 // 8)     # 7 sequences of 8 s per trial
        size_mb = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) / 2**20
        benchmark.extra_info.update(subjects=n, prepare_s=round(timing["prepare_s"], 2),
                                    generate_or_reuse_s=round(generate_s, 2), cache_mb=round(size_mb))
        print(f"\nDEAP preprocessing, {n} subjects x 40 trials x 40 channels x 8064 samples: "
              f"{timing['prepare_s']:.1f} s ({timing['prepare_s'] / n:.2f} s/subject), "
              f"cache entry {size_mb:.0f} MB; synthetic data generated/reused in {generate_s:.1f} s")
        assert timing["prepare_s"] < TARGET_S * n / 32, timing
    finally:
        shutil.rmtree(cache, ignore_errors=True)
