"""The comparison sweep behind the paper-table runs: every model on every setting, paired, resumable."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest

from himoe_fast import HiMoEConfig
from himoe_fast.train import DataSettings, ProtocolSettings, RunConfig, TrainSettings
from himoe_fast.train.compare import compare_sweep, compare_table


def setting(tmp_path, modalities):
    return RunConfig(model=HiMoEConfig.deap(modalities, d_model=16, expert_hidden=16, router_dim=8, dropout=0.0),
                     train=TrainSettings(epochs=1, batch_size=32, impl="reference"),
                     data=DataSettings(subjects=2, seq_len=4, stride_s=4.0, cache_dir=str(tmp_path / "cache")),
                     protocol=ProtocolSettings(protocol="holdout"), progress=False)


def test_every_model_on_every_setting_paired_and_resumable(tmp_path):
    settings = {"EEG+GSR": setting(tmp_path, ["eeg", "gsr"]), "EEG+PPS": setting(tmp_path, ["eeg", "pps"])}
    models = ["himoe_paper", "late_fusion"]
    out = tmp_path / "cmp"
    rows = compare_sweep(settings, models, [0], out)
    assert [(r["setting"], r["model"]) for r in rows] == [(s, m) for s in settings for m in models]
    written = list(csv.DictReader(open(out / "compare.csv")))
    assert len(written) == 4
    for r in written:
        run = out / "runs" / r["setting"].lower() / f"{r['model']}_s0"
        metrics = json.loads((run / "metrics.json").read_text())       # each run's own record
        assert float(r["ccc"]) == metrics["ccc"]["mean"] and float(r["mae"]) == metrics["mae"]["mean"]
        assert float(r["ccc_valence"]) == metrics["ccc"]["valence"]
    # paired: within a setting both models were tested on the same held-out sequences
    a = np.load(out / "runs" / "eeg+pps" / "himoe_paper_s0" / "folds" / "holdout" / "predictions.npz")
    b = np.load(out / "runs" / "eeg+pps" / "late_fusion_s0" / "folds" / "holdout" / "predictions.npz")
    assert np.array_equal(a["sequences"], b["sequences"]) and np.array_equal(a["labels"], b["labels"])
    # the PPS setting has one 8-channel peripheral modality
    cfg = json.loads((out / "runs" / "eeg+pps" / "himoe_paper_s0" / "config.json").read_text())["model"]
    assert [(m["name"], m["channels"]) for m in cfg["modalities"]] == [("eeg", 32), ("pps", 8)]
    assert cfg["temporal"] == "none"                                     # himoe_paper is the paper-literal model
    table = (out / "compare.md").read_text().splitlines()
    assert len(table) == 2 + 4 and table[2].startswith("| EEG+GSR | himoe_paper | 1 |")
    assert (out / "trajectories.png").stat().st_size > 10_000
    # resume: finished runs are read back, not trained again
    stamp = (out / "runs" / "eeg+gsr" / "late_fusion_s0" / "metrics.json").stat().st_mtime_ns
    again = compare_sweep(settings, models, [0], out, resume=True)
    assert (out / "runs" / "eeg+gsr" / "late_fusion_s0" / "metrics.json").stat().st_mtime_ns == stamp
    assert again == rows


def test_resumed_sweep_trains_only_the_folds_it_lacks(tmp_path, monkeypatch):
    """--resume after the grid grows (--max-folds 1 -> 2) or after a kill: finished folds are read
    back, only missing ones are trained, and the result equals a sweep run in one go."""
    from himoe_fast.train import experiment

    trained = []
    real_train_fold = experiment.train_fold

    def counting_train_fold(*args, **kwargs):
        trained.append((kwargs["fold_index"], kwargs["resume"]))
        return real_train_fold(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_fold", counting_train_fold)

    def grid(max_folds):
        rc = setting(tmp_path, ["eeg", "gsr"])
        rc = replace(rc, protocol=ProtocolSettings(protocol="kfold", folds=3, split="trial", max_folds=max_folds))
        return {"EEG+GSR": rc}

    out, whole = tmp_path / "grown", tmp_path / "whole"
    run = out / "runs" / "eeg+gsr" / "late_fusion_s0"
    compare_sweep(grid(1), ["late_fusion"], [0], out)
    first_fold = (run / "folds" / "fold01" / "result.json").read_bytes()
    trained.clear()
    grown = compare_sweep(grid(2), ["late_fusion"], [0], out, resume=True)
    assert trained == [(1, True)]                                    # fold01 read back, fold02 trained
    assert (run / "folds" / "fold01" / "result.json").read_bytes() == first_fold
    assert json.loads((run / "metrics.json").read_text())["folds"] == ["fold01", "fold02"]
    trained.clear()
    in_one_go = compare_sweep(grid(2), ["late_fusion"], [0], whole)
    assert len(trained) == 2
    for key in ("ccc", "pcc", "mae", "ccc_valence"):
        assert grown[0][key] == pytest.approx(in_one_go[0][key], abs=1e-6)
    # the same grid again: read back whole, nothing trained
    trained.clear()
    assert compare_sweep(grid(2), ["late_fusion"], [0], out, resume=True) == grown and trained == []
    # killed before its metrics were written and during fold02: fold02 continues from its checkpoint
    (run / "metrics.json").unlink()
    (run / "folds" / "fold02" / "result.json").unlink()
    again = compare_sweep(grid(2), ["late_fusion"], [0], out, resume=True)
    assert trained == [(1, True)] and again[0]["ccc"] == pytest.approx(grown[0]["ccc"], abs=1e-6)


def test_compare_table_is_mean_and_std_over_seeds():
    rows = [{"setting": "S", "model": "m", "seed": s, "ccc": v, "pcc": v, "mae": 1 - v} for s, v in ((0, 0.5), (1, 0.7))]
    line = compare_table(rows, ["S"], ["m"], ("ccc", "pcc", "mae")).splitlines()[2]
    assert line == f"| S | m | 2 | 0.600 ± {np.std([0.5, 0.7]):.3f} | 0.600 ± 0.100 | 0.400 ± 0.100 |"


def test_compare_cli_runs_a_small_grid_and_refuses_bad_sets(tmp_path):
    from test_train_cli import run_cli

    cache = tmp_path / "cache"
    small = ["--subjects", "2", "--seq-len", "4", "--stride", "4", "--epochs", "1", "--protocol", "holdout",
             "--impl", "reference"]
    res = run_cli(["compare", "--modality-sets", "eeg,gsr", "--models", "himoe,bilstm", *small,
                   "--expert-init", "torch", "--out", tmp_path / "c"], cache)
    assert res.returncode == 0, res.stderr
    configs = [json.loads(p.read_text()) for p in sorted((tmp_path / "c").rglob("config.json"))]
    assert len(configs) == 2 and {c["model"]["expert_init"] for c in configs} == {"torch"}
    rows = list(csv.DictReader(open(tmp_path / "c" / "compare.csv")))
    assert [(r["setting"], r["model"]) for r in rows] == [("EEG+GSR", "himoe"), ("EEG+GSR", "bilstm")]
    assert "| EEG+GSR | bilstm | 1 |" in (tmp_path / "c" / "compare.md").read_text()
    bad = run_cli(["compare", "--modality-sets", " ; ", *small, "--out", tmp_path / "bad"], cache)
    assert bad.returncode == 2 and bad.stderr.strip() == \
        "himoe-fast: error: --modality-sets: give at least one modality set, e.g. eeg,pps"
    assert not (tmp_path / "bad").exists()
    unknown = run_cli(["compare", "--models", "himoe,nope", *small, "--out", tmp_path / "bad"], cache)
    assert unknown.returncode == 2 and "--models" in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
