"""The asynchrony benchmark: per-subject random lags in the data pipeline and the ``asynchrony`` sweep."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from himoe_fast import HiMoEConfig
from himoe_fast.data import prepare_windows, write_synthetic_deap
from himoe_fast.data.prepare import subject_lags
from test_train_cli import SMALL, run_cli


def test_subject_lags_are_seeded_per_subject_and_bounded():
    fixed = {"eeg": 0.5}
    a = [subject_lags(fixed, {"gsr": 4.0}, lag_seed=7, subject=s) for s in range(5)]
    b = [subject_lags(fixed, {"gsr": 4.0}, lag_seed=7, subject=s) for s in range(3)]
    assert a[:3] == b                                     # a subject's lag does not depend on how many
    assert all(d["eeg"] == 0.5 and 0.0 <= d["gsr"] <= 4.0 for d in a)
    assert len({d["gsr"] for d in a}) == 5                # differs between subjects
    assert subject_lags(fixed, {"gsr": 4.0}, lag_seed=8, subject=0) != a[0]
    assert subject_lags(fixed, {}, lag_seed=7, subject=0) == fixed


def test_random_lags_shift_only_the_lagged_modality(tmp_path):
    folder = write_synthetic_deap(tmp_path / "deap", n_subjects=2, seed=0)
    cfg = HiMoEConfig.deap(modalities=("eeg", "gsr"))
    kw = dict(seq_len=4, stride_s=4.0, cache_dir=tmp_path / "cache", progress=False)
    plain = prepare_windows("deap", folder, cfg, **kw)
    lagged = prepare_windows("deap", folder, cfg, random_lags={"gsr": 5.0}, lag_seed=3, **kw)
    want = [subject_lags({}, {"gsr": 5.0}, 3, s) for s in range(2)]
    assert lagged.meta["subject_lags"] == want
    assert not lagged.meta["from_cache"]                  # a different cache entry from the plain one
    np.testing.assert_array_equal(lagged.windows["eeg"], plain.windows["eeg"])
    assert not np.allclose(lagged.windows["gsr"], plain.windows["gsr"])
    again = prepare_windows("deap", folder, cfg, random_lags={"gsr": 5.0}, lag_seed=3, **kw)
    assert again.meta["from_cache"]
    np.testing.assert_array_equal(again.windows["gsr"], lagged.windows["gsr"])


def _read(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_asynchrony_sweep_writes_rows_delays_and_plots(tmp_path):
    out = tmp_path / "asy"
    res = run_cli(["asynchrony", *SMALL, "--epochs", "1", "--protocol", "holdout", "--models", "himoe,late_fusion",
                   "--lags", "0,random", "--lagged", "gsr", "--random-max", "3", "--seeds", "0", "--out", out],
                  tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    rows = _read(out / "asynchrony.csv")
    assert [(r["model"], r["lag"], r["seed"]) for r in rows] == [
        ("himoe", "0", "0"), ("himoe", "random", "0"), ("late_fusion", "0", "0"), ("late_fusion", "random", "0")]
    assert all(np.isfinite(float(r["ccc_mean"])) for r in rows)
    delays = _read(out / "learned_delays.csv")
    assert {r["model"] for r in delays} == {"himoe"}      # the baseline has no aligner
    assert {r["modality"] for r in delays} == {"eeg", "gsr", "resp"}
    for r in delays:
        injected = float(r["injected_s"])
        if r["lag"] == "0" or r["modality"] != "gsr":
            assert injected == 0.0
        else:
            assert 0.0 < injected <= 3.0                  # the mean of the two subjects' random lags
        ref = next(d for d in delays if d["lag"] == r["lag"] and d["modality"] == "eeg")
        assert float(r["learned_rel_s"]) == pytest.approx(float(r["learned_s"]) - float(ref["learned_s"]))
    for png in ("asynchrony.png", "learned_delay.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert "random" in res.stdout and "Learned delay" in res.stdout
    # resume: nothing is trained again, the same rows come back
    again = run_cli(["asynchrony", *SMALL, "--epochs", "1", "--protocol", "holdout", "--models",
                     "himoe,late_fusion", "--lags", "0,random", "--lagged", "gsr", "--random-max", "3", "--seeds",
                     "0", "--out", out, "--resume"], tmp_path / "cache")
    assert again.returncode == 0, again.stderr
    assert _read(out / "asynchrony.csv") == rows


@pytest.mark.parametrize("args,needle", [
    (["--lags", "0,soon"], "--lags"),
    (["--lags", "0,-1"], "--lags"),
    (["--lagged", "ecg"], "--lagged"),
    (["--lagged", "eeg,gsr,resp"], "--lagged"),
    (["--models", "himoe,lstm"], "--models"),
    (["--jobs", "0"], "--jobs"),
])
def test_asynchrony_bad_flags_are_one_line(tmp_path, args, needle):
    res = run_cli(["asynchrony", *SMALL, "--epochs", "1", *args, "--out", tmp_path / "o"], tmp_path / "cache")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("himoe-fast: error:") and needle in lines[0]
    assert not (tmp_path / "o").exists()
