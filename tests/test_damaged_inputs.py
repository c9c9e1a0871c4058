"""Failures around the data readers: run-folder states, damaged model files, numbers in outputs,
file permissions, byte-identical synthetic files, the face-feature folder.

Library-level tests; ``test_cli_errors.py`` drives the same failures through the command line.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import time

import numpy as np
import pytest
import torch

from himoe_fast import HiMoEConfig
from himoe_fast.data import (DatasetError, load_deap_subject, prepare_windows, write_synthetic_deap,
                             write_synthetic_dreamer)
from himoe_fast.data.deap import save_deap_subject
from himoe_fast.data.preprocess import standardize
from himoe_fast.errors import CheckpointError, RunDirError, UserInputError
from himoe_fast.io import atomic_write, atomic_write_json
from himoe_fast.metrics import aggregate_folds, evaluate
from himoe_fast.train import rundir
from himoe_fast.train.checkpoint import (MODEL_FORMAT, load_checkpoint, load_model, load_train_state, save_checkpoint,
                                         save_model)


# ------------------------------------------------------------------------------------------ run folder states
def _started(out):
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text("{}")
    (out / "folds" / "fold01").mkdir(parents=True)


def test_run_states_and_what_train_may_do(tmp_path):
    out = tmp_path / "run"
    assert rundir.run_state(out) == rundir.NEW
    rundir.check_fresh_run(out)
    with pytest.raises(RunDirError, match="no run to resume"):
        rundir.check_resumable(out)

    _started(out)                                   # killed before its first checkpoint
    assert rundir.run_state(out) == rundir.STARTED
    assert rundir.check_fresh_run(out) == rundir.STARTED          # a plain rerun may reuse it
    with pytest.raises(RunDirError, match="without --resume"):
        rundir.check_resumable(out)

    (out / "folds" / "fold01" / "checkpoint.pt").write_bytes(b"x")
    assert rundir.run_state(out) == rundir.PARTIAL
    with pytest.raises(RunDirError, match="pass --resume"):
        rundir.check_fresh_run(out)
    assert rundir.check_resumable(out) == rundir.PARTIAL

    (out / "metrics.json").write_text("{}")
    assert rundir.run_state(out) == rundir.DONE
    with pytest.raises(RunDirError, match="finished run"):
        rundir.check_fresh_run(out)


def test_clean_failed_start_removes_only_the_runs_own_files(tmp_path):
    out = tmp_path / "run"
    _started(out)
    (out / "notes.txt").write_text("the user's")
    rundir.clean_failed_start(out, created=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]

    fresh = tmp_path / "fresh"
    _started(fresh)
    rundir.clean_failed_start(fresh, created=True)
    assert not fresh.exists()                       # created by the run, empty again: gone

    kept = tmp_path / "kept"
    _started(kept)
    (kept / "folds" / "fold01" / "checkpoint.pt").write_bytes(b"x")
    rundir.clean_failed_start(kept, created=True)   # holds a checkpoint: --resume continues it
    assert (kept / "config.json").exists() and (kept / "folds" / "fold01" / "checkpoint.pt").exists()


def test_out_dir_checks(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunDirError, match="not a folder"):
        rundir.check_out_dir(f)
    with pytest.raises(RunDirError, match="is a file"):
        rundir.check_out_dir(f / "sub" / "run")
    assert rundir.check_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert not (tmp_path / "a").exists()            # checking writes nothing


def test_failed_experiment_leaves_no_run_behind(tmp_path, monkeypatch):
    """A failure inside training, before the first checkpoint, removes what the run wrote."""
    from himoe_fast.train import experiment

    write_synthetic_deap(tmp_path / "deap", 2, 0, n_trials=4, trial_s=8.0)
    cfg = HiMoEConfig.deap(modalities=("gsr",), d_model=8, expert_hidden=8, n_modality_experts=2,
                           n_emotion_experts=2, router_dim=4)
    rc = experiment.RunConfig(model=cfg, out=str(tmp_path / "run"), progress=False,
                              data=experiment.DataSettings(dataset="deap", data_dir=str(tmp_path / "deap"), seq_len=2,
                                                           cache_dir=str(tmp_path / "cache")),
                              protocol=experiment.ProtocolSettings(protocol="holdout"),
                              train=experiment.TrainSettings(epochs=1))

    def boom(*args, **kwargs):
        raise RuntimeError("died in the first epoch")

    monkeypatch.setattr(experiment, "train_fold", boom)
    with pytest.raises(RuntimeError, match="first epoch"):
        experiment.run_experiment(rc)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("field", ["align_weight", "temperature", "window_s"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_config_ranges_reject_nan_and_inf(field, value):
    with pytest.raises(ValueError, match=field):
        HiMoEConfig.deap(modalities=("gsr",), **{field: value})


# ------------------------------------------------------------------------------------------ model files
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))          # would create the marker file if ever unpickled


@pytest.fixture()
def model_file(tmp_path):
    cfg = HiMoEConfig.deap(modalities=("gsr",), d_model=8, expert_hidden=8, n_modality_experts=2,
                           n_emotion_experts=2, router_dim=4)
    from himoe_fast import HiMoE

    return save_model(tmp_path / "model.pt", HiMoE(cfg), cfg, {"model_name": "himoe"})


def _damaged(tmp_path, model_file):
    good = model_file.read_bytes()
    marker = tmp_path / "PAYLOAD_RAN"
    files = {
        "truncated": good[: len(good) // 2], "empty": b"", "text": b"hello, not a checkpoint\n",
        "plain_pickle": pickle.dumps({"format": MODEL_FORMAT, "x": _Payload(str(marker))}),
    }
    paths = {}
    for name, content in files.items():
        paths[name] = tmp_path / f"{name}.pt"
        paths[name].write_bytes(content)
    paths["torch_payload"] = tmp_path / "torch_payload.pt"
    torch.save({"format": MODEL_FORMAT, "x": _Payload(str(marker))}, paths["torch_payload"])
    return paths, marker


def test_damaged_or_hostile_model_files_are_one_typed_error(tmp_path, model_file):
    paths, marker = _damaged(tmp_path, model_file)
    for name, path in paths.items():
        with pytest.raises(CheckpointError) as err:
            load_model(path)
        msg = str(err.value)
        assert msg.startswith(f"{path}: not a valid himoe-fast checkpoint"), name
        assert "\n" not in msg and "weights_only" not in msg and "arbitrary code" not in msg, name
    assert not marker.exists()                      # no payload ran


def test_wrong_kind_of_himoe_file_and_missing_file(tmp_path, model_file):
    with pytest.raises(CheckpointError, match="expected a training state"):
        load_train_state(model_file)
    state = tmp_path / "checkpoint.pt"
    save_checkpoint(state, {"format": "himoe-fast/train-state/v1", "epoch": 0})
    with pytest.raises(CheckpointError, match="missing 'model'"):
        load_train_state(state)
    with pytest.raises(CheckpointError, match="expected a model file"):
        load_model(state)
    with pytest.raises(UserInputError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    model, cfg, extra = load_model(model_file)      # the good file still loads
    assert extra["model_name"] == "himoe" and cfg.modality_names == ("gsr",)


def test_weights_that_do_not_fit_their_config(tmp_path, model_file):
    state = torch.load(model_file, weights_only=True)
    state["state_dict"] = {k: v[..., :1] for k, v in state["state_dict"].items()}
    save_checkpoint(tmp_path / "bad.pt", state)
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path / "bad.pt")


# ------------------------------------------------------------------------------------------ numbers in outputs
def test_metrics_json_is_strict_json_with_null_for_undefined(tmp_path):
    pred = np.full((20, 2), 5.0)                    # constant predictions: Pearson is undefined
    true = np.random.default_rng(0).uniform(1, 9, (20, 2))
    per_fold = evaluate(pred, true, ("valence", "arousal"))
    assert np.isnan(per_fold["pcc"]["valence"])
    metrics = aggregate_folds([per_fold, per_fold])
    atomic_write_json(tmp_path / "metrics.json", metrics)
    text = (tmp_path / "metrics.json").read_text()

    def no_constants(name):
        raise AssertionError(f"non-JSON constant {name} in metrics.json")

    parsed = json.loads(text, parse_constant=no_constants)
    assert parsed["pcc"]["valence"] is None and parsed["pcc"]["mean"] is None
    assert parsed["ccc"]["valence"] == pytest.approx(metrics["ccc"]["valence"])
    assert parsed["per_fold"][0]["pcc"]["arousal"] is None


def test_metrics_table_says_why_a_value_is_missing(capsys):
    from himoe_fast.cli.train_cmds import print_metrics

    metrics = {"ccc": {"valence": 0.5, "mean": 0.5}, "pcc": {"valence": None, "mean": None},
               "mae": {"valence": 1.0, "mean": 1.0}, "per_fold": [{}]}
    print_metrics(metrics, "t")
    out = capsys.readouterr().out
    assert "n/a" in out and "constant" in out and "null" in out


def test_standardize_is_stable_for_huge_finite_values():
    rng = np.random.default_rng(1)
    trials = [rng.normal(2.0, 3.0, (3, 400)) * np.array([[1.0], [1e-4], [1e6]]) for _ in range(3)]
    valid = [None, rng.random(400) > 0.5, None]
    for mode in ("subject", "trial"):
        want = standardize(trials, mode, 10.0, valid)
        got = standardize([t * 1e200 for t in trials], mode, 10.0, valid)
        for g, w in zip(got, want):
            assert np.isfinite(g).all()
            np.testing.assert_allclose(g, w, atol=1e-5)
            assert np.abs(g).max() < 10.0           # standardised, not clipped garbage


def test_prepare_windows_huge_values_same_windows_or_one_line_error(tmp_path):
    write_synthetic_deap(tmp_path / "a", 1, 0, n_trials=2, trial_s=8.0)
    subj = load_deap_subject(tmp_path / "a" / "s01.dat")
    cfg = HiMoEConfig.deap(modalities=("eeg", "gsr"))
    ref = prepare_windows("deap", tmp_path / "a", cfg, seq_len=2, use_cache=False, progress=False)
    save_deap_subject(tmp_path / "b" / "s01.dat", subj.data * 1e200, subj.labels)
    big = prepare_windows("deap", tmp_path / "b", cfg, seq_len=2, use_cache=False, progress=False)
    for m in ("eeg", "gsr"):
        np.testing.assert_allclose(big.windows[m], ref.windows[m], atol=1e-4)
    # values at the float64 limit overflow the filters: rejected, naming the file
    save_deap_subject(tmp_path / "c" / "s01.dat", subj.data / np.abs(subj.data).max() * 1.5e308, subj.labels)
    with pytest.raises(DatasetError, match=r"c/s01.dat: .*too large"):
        prepare_windows("deap", tmp_path / "c", cfg, seq_len=2, use_cache=False, progress=False)


# ------------------------------------------------------------------------------------------ files others can read
@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "out.bin", lambda fh: fh.write(b"x"))
        write_synthetic_deap(tmp_path / "deap", 1, 0, n_trials=1, trial_s=4.0)
        plain = tmp_path / "plain"
        plain.write_bytes(b"x")                     # what open() gives under this umask
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == want
    assert stat.S_IMODE((tmp_path / "deap" / "s01.dat").stat().st_mode) == want


def test_synthetic_dreamer_is_byte_identical_per_seed(tmp_path, monkeypatch):
    kw = dict(n_subjects=1, n_trials=2, clip_s=(4.0, 5.0), baseline_s=2.0)
    monkeypatch.setattr(time, "asctime", lambda *a: "Mon Jan  1 00:00:00 2001")
    a = write_synthetic_dreamer(tmp_path / "a" / "DREAMER.mat", seed=3, **kw).read_bytes()
    monkeypatch.setattr(time, "asctime", lambda *a: "Tue Feb 27 13:14:15 2029")   # another write time
    b = write_synthetic_dreamer(tmp_path / "b" / "DREAMER.mat", seed=3, **kw).read_bytes()
    c = write_synthetic_dreamer(tmp_path / "c" / "DREAMER.mat", seed=4, **kw).read_bytes()
    assert a == b and a != c
    assert a.startswith(b"MATLAB 5.0 MAT-file")


# ------------------------------------------------------------------------------------------ face features
def test_deap_folder_holds_only_what_deap_readers_expect(tmp_path, monkeypatch):
    """TorchEEG-style readers unpickle every file in data_preprocessed_python/: face features live in
    their own folder, and a failed write leaves neither temporary nor partial files behind."""
    deap, faces = tmp_path / "data_preprocessed_python", tmp_path / "face"
    write_synthetic_deap(deap, 2, 0, n_trials=3, trial_s=8.0, face_dir=faces)
    for f in sorted(deap.iterdir()):                # what TorchEEG's DEAP loader does with each file
        with open(f, "rb") as fh:
            content = pickle.load(fh, encoding="latin1")
        assert set(content) == {"data", "labels"}
    assert sorted(p.name for p in faces.iterdir()) == ["s01_face.npz", "s02_face.npz"]

    cfg = HiMoEConfig.deap(modalities=("gsr", "face"))
    wd = prepare_windows("deap", deap, cfg, seq_len=2, face_dir=faces, use_cache=False, progress=False)
    assert wd.available[:, 1].any()                 # face windows come from the face folder
    with pytest.raises(DatasetError, match="face feature folder not found"):
        prepare_windows("deap", deap, cfg, seq_len=2, face_dir=tmp_path / "nope", use_cache=False, progress=False)

    from himoe_fast.data import synthetic

    calls = {"n": 0}
    real = synthetic.save_deap_subject

    def fail_second(path, data, labels):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(path, data, labels)

    monkeypatch.setattr(synthetic, "save_deap_subject", fail_second)
    before = sorted(p.name for p in deap.iterdir())
    with pytest.raises(OSError, match="disk full"):
        write_synthetic_deap(deap, 3, 5, n_trials=2, trial_s=6.0)
    assert sorted(p.name for p in deap.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_face_files_beside_the_deap_files_are_still_read(tmp_path):
    """The earlier layout keeps working when no face folder is given."""
    d = tmp_path / "deap"
    write_synthetic_deap(d, 1, 0, n_trials=2, trial_s=8.0, face_dir=d)
    cfg = HiMoEConfig.deap(modalities=("gsr", "face"))
    wd = prepare_windows("deap", d, cfg, seq_len=2, use_cache=False, progress=False)
    assert wd.available[:, 1].any()
