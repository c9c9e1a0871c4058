"""Using a trained model: ``predict`` (causal definition, absent modalities, outputs, bad input) and
streaming (equal to offline window for window, never waits for an absent modality, reset, LSL).

The references are written independently of the code under test: a plain loop over windows with
the reference model, scipy's own ``sosfilt`` for the causal filter.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from himoe_fast import HiMoE, HiMoEConfig, ModalitySpec
from himoe_fast.predict import LoadedModels, block_plan, predict_windows, sequence_plan
from himoe_fast.stream import CausalFilter, StreamPredictor, causal_sos, predict_signals


def small_cfg(**over) -> HiMoEConfig:
    base = dict(modalities=[ModalitySpec("eeg", 4, 64.0, "eeg"), ModalitySpec("gsr", 1, 32.0),
                            ModalitySpec("emg", 2, 128.0)],
                d_model=16, n_modality_experts=2, expert_hidden=24, n_emotion_experts=3, router_dim=8,
                targets=("valence", "arousal"), dropout=0.0)
    base.update(over)
    return HiMoEConfig(**base)


def loaded_for(model: HiMoE, seq_len: int = 4, fast: bool = False) -> LoadedModels:
    m = model.eval()
    if fast:
        from himoe_fast.fast import to_fast

        m = to_fast(model).eval()
    return LoadedModels([m], model.cfg, ["m"], "test model", seq_len, torch.device("cpu"), "fast" if fast else "reference")


def perturbed(cfg: HiMoEConfig) -> HiMoE:
    """A model whose temporal stages are not the identity (they start as one)."""
    m = HiMoE(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return m.eval()


def random_windows(cfg: HiMoEConfig, n: int, rng) -> dict[str, np.ndarray]:
    return {s.name: rng.standard_normal((n, s.channels, s.samples(cfg.window_s))).astype(np.float32)
            for s in cfg.modalities}


# ------------------------------------------------------------------------------------------ plans
def test_sequence_and_block_plans():
    trial = np.array([0, 0, 0, 0, 0, 1, 1])
    plan = sequence_plan(trial, 3)
    rows = {int(t): list(idx) for L, (targets, idxs) in plan.items() for t, idx in zip(targets, idxs)}
    assert rows == {0: [0], 1: [0, 1], 2: [0, 1, 2], 3: [1, 2, 3], 4: [2, 3, 4], 5: [5], 6: [5, 6]}
    blocks = sorted(list(r) for idx in block_plan(trial, 3).values() for r in idx)
    assert blocks == [[0, 1, 2], [3, 4], [5, 6]]


# ------------------------------------------------------------------------------------------ causal
@pytest.mark.parametrize("temporal", ["none", "align+context"])
def test_causal_predictions_match_a_plain_loop(temporal):
    cfg = small_cfg(temporal=temporal, causal=False, max_shift=2)
    model = perturbed(cfg)
    rng = np.random.default_rng(0)
    n, T = 11, 4
    trial = np.array([0] * 7 + [1] * 4)
    win = random_windows(cfg, n, rng)
    avail = rng.random((n, cfg.n_modalities)) < 0.7
    avail[:, 0] |= ~avail.any(1)
    got = predict_windows(loaded_for(model, T), win, avail, trial, mode="causal", batch_size=5)
    # reference: for every window, the model on the windows of its trial ending there (<= T), last output
    want = np.zeros_like(got)
    with torch.no_grad():
        for t in range(n):
            first = max(np.flatnonzero(trial == trial[t])[0], t - T + 1)
            idx = np.arange(first, t + 1)
            x = {k: torch.from_numpy(np.where(avail[idx, cfg.modality_names.index(k), None, None], v[idx], 0))[None]
                 for k, v in win.items()}
            want[t] = model(x, torch.from_numpy(avail[idx])[None]).pred[0, -1].numpy()
    assert np.allclose(got, want, atol=1e-5), np.abs(got - want).max()
    blocks = predict_windows(loaded_for(model, T), win, avail, trial, mode="blocks")
    if temporal == "none":      # windows independent: every mode gives the same numbers
        assert np.allclose(blocks, got, atol=1e-5)
    else:                       # blocks let a window see later windows of its block
        assert not np.allclose(blocks, got, atol=1e-4)


def test_absent_modality_is_masked_not_zero_filled_and_fast_matches_reference():
    cfg = small_cfg()
    model = HiMoE(cfg).eval()
    rng = np.random.default_rng(1)
    n = 6
    win = random_windows(cfg, n, rng)
    avail = np.ones((n, 3), bool)
    avail[:, 1] = False                                   # gsr absent everywhere
    del win["gsr"]                                        # ... and not in the data at all
    got = predict_windows(loaded_for(model, fast=True), win, avail, np.zeros(n, np.int64))
    ref = predict_windows(loaded_for(model), win, avail, np.zeros(n, np.int64))
    assert np.allclose(got, ref, atol=1e-4)
    # absent is not "present with zeros": marking the zero windows present changes the prediction
    win0 = dict(win, gsr=np.zeros((n, 1, 32), np.float32))
    as_zeros = predict_windows(loaded_for(model), win0, np.ones((n, 3), bool), np.zeros(n, np.int64))
    assert not np.allclose(as_zeros, ref, atol=1e-4)


# ------------------------------------------------------------------------------------------ stream
def test_causal_filter_is_scipy_sosfilt_and_chunk_invariant():
    spec = ModalitySpec("eeg", 2, 128.0, "eeg")
    from himoe_fast.data.preprocess import PreprocessConfig

    sos = causal_sos(spec, PreprocessConfig())
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1000)) + 5.0
    zi = np.stack([scipy.signal.sosfilt_zi(sos) * x[c, 0] for c in range(2)], 1)   # steady state at x[:, 0]
    want, _ = scipy.signal.sosfilt(sos, x, axis=-1, zi=zi)
    whole = CausalFilter(spec).filter(x, np.ones(1000, bool))
    f = CausalFilter(spec)
    pieces = np.concatenate([f.filter(x[:, a:b], np.ones(b - a, bool)) for a, b in ((0, 7), (7, 300), (300, 1000))], 1)
    assert np.allclose(whole, want, atol=1e-10) and np.allclose(pieces, whole, atol=1e-10)


def _signals(cfg: HiMoEConfig, rng, dur: float = 14.0):
    """Modalities at their own rates and start times: gsr starts 1.37 s late with a NaN run, emg
    stops 3 s early. Timestamps are absolute (t0 = 100 s)."""
    starts = {"eeg": 100.0, "gsr": 101.37, "emg": 100.25}
    out = {}
    for s in cfg.modalities:
        n = int((dur - (starts[s.name] - 100.0)) * s.sfreq) - (int(3 * s.sfreq) if s.name == "emg" else 0)
        x = rng.standard_normal((n, s.channels)).cumsum(0) * 0.1 + rng.standard_normal((n, s.channels))
        if s.name == "gsr":
            x[100:200] = np.nan
        out[s.name] = (x, starts[s.name] + np.arange(n) / s.sfreq)
    return out


def _play(sp: StreamPredictor, signals: dict, chunk_s: float = 0.1, end: float | None = None) -> list:
    end = end or max(ts[-1] for _, ts in signals.values())
    pos = {k: 0 for k in signals}
    t, out = sp.t0, []
    while t <= end + chunk_s:
        t += chunk_s
        for name, (x, ts) in signals.items():
            j = int(np.searchsorted(ts, t))
            if j > pos[name]:
                out += sp.push(name, x[pos[name]:j], ts[pos[name]:j])
                pos[name] = j
    return out + sp.flush()


@pytest.mark.parametrize("temporal", ["none", "align+context"])
def test_stream_equals_offline_window_for_window(temporal):
    cfg = small_cfg(temporal=temporal, causal=True, max_shift=2)
    loaded = loaded_for(perturbed(cfg), seq_len=4, fast=True)
    signals = _signals(cfg, np.random.default_rng(3))
    pred, present, start = predict_signals(loaded, signals, t0=100.0)
    sp = StreamPredictor(loaded, t0=100.0, max_delay_s=1.0)
    live = _play(sp, signals)
    assert [p.window for p in live] == list(range(len(pred))) and len(pred) == 14
    assert np.array_equal(np.array([p.present for p in live]), present)
    assert np.allclose(np.array([p.values for p in live]), pred, atol=1e-4)
    # the gaps are absent: gsr before it started (1.37 s) and in its NaN run (4.50-7.62 s); emg
    # after it stopped (11.0 s)
    assert present[:, 1].tolist() == [False, False, True, True, False, False, False, False, True, True, True,
                                      True, True, True]
    assert present[:, 2].tolist() == [False] + [True] * 10 + [False] * 3
    # reset: the same stream again gives the same predictions
    sp.reset()
    again = _play(sp, signals)
    assert np.allclose(np.array([p.values for p in again]), pred, atol=1e-4)


def test_stream_never_waits_for_an_absent_modality():
    cfg = small_cfg()
    loaded = loaded_for(HiMoE(cfg), fast=True)
    rng = np.random.default_rng(4)
    sp = StreamPredictor(loaded, t0=0.0, max_delay_s=0.5)
    eeg = rng.standard_normal((64 * 6, 4))
    out = sp.push("eeg", eeg[:64 * 3], 0.0)               # 3 s of EEG; gsr and emg never come
    # windows [0,1) and [1,2) end at least max_delay before the newest sample: emitted now
    assert [p.window for p in out] == [0, 1]
    assert all(p.present.tolist() == [True, False, False] for p in out)
    out = sp.push("eeg", eeg[64 * 3:], 3.0)
    assert [p.window for p in out] == [2, 3, 4]
    # a modality declared absent is never waited for at all
    sp2 = StreamPredictor(loaded, t0=0.0, max_delay_s=10.0, expect=("eeg",))
    assert [p.window for p in sp2.push("eeg", eeg[:64 * 2], 0.0)] == [0, 1]
    # memory is bounded: a long stream keeps ring buffers of a fixed size
    sizes = {k: r.values.shape for k, r in sp.rings.items()}
    sp.push("eeg", rng.standard_normal((64 * 120, 4)), 6.0)
    assert {k: r.values.shape for k, r in sp.rings.items()} == sizes


def test_stream_bad_input():
    loaded = loaded_for(HiMoE(small_cfg()))
    sp = StreamPredictor(loaded)
    with pytest.raises(ValueError, match="unknown modality"):
        sp.push("ecg", np.zeros((3, 1)), 0.0)
    with pytest.raises(ValueError, match=r"\[n, 4\]"):
        sp.push("eeg", np.zeros((3, 2)), 0.0)


# ------------------------------------------------------------------------------------------ LSL
def test_stream_from_lsl_outlets_equals_offline():
    pylsl = pytest.importorskip("pylsl")
    cfg = small_cfg(temporal="align+context", causal=True, max_shift=2)
    loaded = loaded_for(perturbed(cfg), seq_len=4, fast=True)
    signals = _signals(cfg, np.random.default_rng(5), dur=8.0)
    suffix = f"{os.getpid()}-{time.monotonic_ns()}"
    outlets = {name: pylsl.StreamOutlet(pylsl.StreamInfo(f"{name}-{suffix}", f"test-{name}-{suffix}",
                                                         cfg.modality(name).channels, cfg.modality(name).sfreq,
                                                         "double64", f"src-{name}-{suffix}"))
               for name in signals}
    from himoe_fast.stream import lsl_inlets

    inlets = lsl_inlets(cfg, {m: f"{m}-{suffix}" for m in signals}, wait_s=2.0)
    base = pylsl.local_clock()

    def send():
        for name, (x, ts) in signals.items():
            for row, t in zip(x, ts):
                outlets[name].push_sample(row.tolist(), base + t - 100.0)

    sender = threading.Thread(target=send)
    sender.start()
    sp = StreamPredictor(loaded, t0=base, max_delay_s=math.inf)
    live, got = [], {k: 0 for k in signals}
    deadline = time.monotonic() + 30
    while sum(got.values()) < sum(len(x) for x, _ in signals.values()) and time.monotonic() < deadline:
        for name, inlet in inlets.items():
            samples, stamps = inlet.pull_chunk(timeout=0.05)
            if stamps:
                got[name] += len(stamps)
                live += sp.push(name, np.asarray(samples), np.asarray(stamps))
    sender.join()
    live += sp.flush()
    pred, present, _ = predict_signals(loaded, {k: (x, base + ts - 100.0) for k, (x, ts) in signals.items()}, t0=base)
    assert got == {k: len(x) for k, (x, _) in signals.items()}
    assert np.array_equal(np.array([p.present for p in live]), present)
    assert np.allclose(np.array([p.values for p in live]), pred, atol=1e-4)


# ------------------------------------------------------------------------------------------ CLI
def run_cli(args, cache: Path, timeout=600) -> subprocess.CompletedProcess:
    ext = os.environ.get("HIMOE_FAST_EXT_CACHE", str(Path.home() / ".cache" / "himoe-fast" / "ext"))
    env = {**os.environ, "HIMOE_FAST_CACHE": str(cache), "HIMOE_FAST_EXT_CACHE": ext, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "himoe_fast.cli.app", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory) -> Path:
    from himoe_fast.data import write_synthetic_recordings

    return write_synthetic_recordings(tmp_path_factory.mktemp("rec") / "data", n_subjects=3, seed=1,
                                      n_recordings=4, recording_s=24.0)


def _model_file(path: Path, cfg: HiMoEConfig) -> Path:
    from himoe_fast.train.checkpoint import save_model

    save_model(path, HiMoE(cfg), cfg, extra={"model_name": "himoe"})
    return path


def test_predict_cli_on_recordings_with_a_modality_missing(recordings, tmp_path):
    from himoe_fast.data import recordings_config

    cfg = recordings_config(recordings).replace(d_model=16, expert_hidden=24, router_dim=8)
    spec_ecg = ModalitySpec("ecg", 2, 256.0)                       # the data have no ECG
    cfg = cfg.replace(modalities=[*cfg.modalities, spec_ecg])
    model = _model_file(tmp_path / "model.pt", cfg)
    out = tmp_path / "pred"
    res = run_cli(["predict", model, recordings, "--out", out, "--subjects", "1", "--no-progress"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    assert "absent (not in the data): ecg" in res.stdout
    rows = list(csv.DictReader(open(out / "predictions.csv")))
    assert len(rows) == 4 * 24 and rows[0]["recording"] == "sub-01/rec-01"
    assert {r["present_ecg"] for r in rows} == {"0"}
    assert rows[1]["start_s"] == "1.000" and "label_valence" in rows[0]
    # physio starts late in every recording: its first window is absent; EEG is there
    assert rows[0]["present_gsr"] == "0" and rows[0]["present_eeg"] == "1"
    assert sorted(p.name for p in (out / "plots").iterdir())[0] == "sub-01_rec-01.png"
    assert (out / "summary.csv").read_text().startswith("recording,windows,valence_mean")


def test_predict_cli_bad_input_is_one_line_and_writes_nothing(recordings, tmp_path):
    from himoe_fast.data import recordings_config

    cfg = recordings_config(recordings, ["eeg", "gsr"]).replace(d_model=16, expert_hidden=24, router_dim=8)
    wrong_ch = cfg.replace(modalities=[ModalitySpec("eeg", 14, 128.0, "eeg"), cfg.modalities[1]])
    wrong_rate = cfg.replace(modalities=[cfg.modalities[0], ModalitySpec("gsr", 1, 128.0)])
    cases = [
        ([tmp_path / "nope.pt", recordings], "nope.pt"),
        ([_model_file(tmp_path / "ch.pt", wrong_ch), recordings], "'eeg' has 32 channel(s) here, the model was trained on 14"),
        ([_model_file(tmp_path / "rate.pt", wrong_rate), recordings], "'gsr' is sampled at 64 Hz here, the model was trained at 128 Hz"),
        ([_model_file(tmp_path / "ok.pt", cfg), recordings, "--fold", "fold01"], "--fold"),
    ]
    for args, needle in cases:
        out = tmp_path / "out"
        res = run_cli(["predict", *args, "--out", out, "--no-progress"], tmp_path / "c")
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("himoe-fast: error:") and needle in lines[0], lines
        assert not out.exists()


def test_stream_replay_cli_equals_offline(recordings, tmp_path):
    from himoe_fast.data import recordings_config
    from himoe_fast.data.recordings import read_signals, scan_recordings
    from himoe_fast.predict import load_models

    cfg = recordings_config(recordings, ["eeg", "gsr", "emg"]).replace(d_model=16, expert_hidden=24, router_dim=8)
    model = _model_file(tmp_path / "m.pt", cfg)
    rec = recordings / "sub-02" / "rec-03"
    res = run_cli(["stream", model, "--replay", rec, "--chunk", "0.2", "--out", tmp_path / "s.csv"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    sig = read_signals(scan_recordings(recordings), rec, cfg.modality_names)
    pred, present, _ = predict_signals(load_models(model), {k: (x, t) for k, (x, t, _) in sig.items()}, t0=0.0)
    assert len(rows) == len(pred) == 24
    got = np.array([[float(r["valence"]), float(r["arousal"])] for r in rows])
    assert np.allclose(got, pred, atol=2e-4)
    assert [r["present_emg"] for r in rows][-3:] == ["0", "0", "0"]          # EMG stopped 5 s early


@pytest.mark.parametrize("temporal", ["none", "align+context"])
def test_online_predict_equals_the_stream_window_for_window(recordings, tmp_path, temporal):
    """``predict --preprocessing online`` writes what a stream fed in chunks emits, for every recording."""
    from himoe_fast.data import recordings_config
    from himoe_fast.data.recordings import read_signals, scan_recordings
    from himoe_fast.predict import load_models, run_predict

    cfg = recordings_config(recordings, ["eeg", "gsr", "emg"]).replace(
        d_model=16, expert_hidden=24, router_dim=8, temporal=temporal, causal=True, max_shift=2)
    model = tmp_path / "m.pt"
    from himoe_fast.train.checkpoint import save_model

    save_model(model, perturbed(cfg), cfg, extra={"model_name": "himoe", "run_config": {"data": {"seq_len": 4}}})
    info = run_predict(model, recordings, tmp_path / "online", subjects=1, preprocessing="online", plots=False,
                       progress=False, impl="reference")
    assert info["preprocessing"] == "online"
    rows = list(csv.DictReader(open(tmp_path / "online" / "predictions.csv")))
    layout = scan_recordings(recordings)
    loaded = load_models(model, impl="reference")
    checked = 0
    for subj, rec, folder in layout.recordings[:4]:                     # subject 1's 4 recordings
        mine = [r for r in rows if r["recording"] == f"{subj}/{rec}"]
        sig = read_signals(layout, folder, cfg.modality_names)
        sp = StreamPredictor(loaded, t0=0.0, max_delay_s=1.0, expect=tuple(sig))
        live = []
        for lo in np.arange(0.0, 26.0, 0.7):                            # 0.7 s chunks, modalities interleaved
            for name, (x, ts, _) in sig.items():
                sel = (ts >= lo) & (ts < lo + 0.7)
                if sel.any():
                    live += sp.push(name, x[sel], ts[sel])
        live += sp.flush()
        assert len(mine) == len(live) > 0
        got = np.array([[float(r["valence"]), float(r["arousal"])] for r in mine])
        assert np.allclose(got, np.array([p.values for p in live]), atol=2e-4)
        present = np.array([[r[f"present_{m}"] == "1" for m in cfg.modality_names] for r in mine])
        assert np.array_equal(present, np.array([p.present for p in live]))
        checked += 1
    assert checked == 4 and len(rows) == sum(1 for r in rows if r["recording"].startswith("sub-01/"))


def test_recordings_train_eval_predict_end_to_end(recordings, tmp_path):
    run = tmp_path / "run"
    res = run_cli(["train", "--dataset", "recordings", "--data-dir", recordings, "--epochs", "2", "--protocol", "holdout",
                   "--seq-len", "4", "--batch-size", "16", "--out", run, "--no-progress"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    config = json.loads((run / "config.json").read_text())
    assert [m["name"] for m in config["model"]["modalities"]] == ["eeg", "eog", "emg", "gsr", "resp", "ppg", "temp"]
    assert config["model"]["targets"] == ["valence", "arousal"] and config["data"]["dataset"] == "recordings"
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["per_fold"]) == 1 and set(metrics["ccc"]) == {"valence", "arousal", "mean"}
    # continuous labels with unlabelled stretches: evaluation re-reads the same folds and agrees
    res = run_cli(["eval", run, "--json", tmp_path / "eval.json"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["ccc"]["mean"] == pytest.approx(metrics["ccc"]["mean"], abs=1e-5)
    res = run_cli(["predict", run, recordings, "--out", tmp_path / "pred", "--fold", "holdout", "--mode", "blocks",
                   "--no-plots", "--no-progress"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    info = json.loads((tmp_path / "pred" / "info.json").read_text())
    assert info["model"] == "fold holdout" and info["windows"] == 3 * 4 * 24 and info["mode"] == "blocks of T=4"
    assert set(info["metrics"]) == {"valence", "arousal"}


def test_synth_recordings_cli(tmp_path):
    res = run_cli(["synth", "--kind", "recordings", "--subjects", "1", "--out", tmp_path / "r"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["recordings.json", "sub-01"]
    res = run_cli(["synth", "--kind", "recordings", "--out", tmp_path / "r"], tmp_path / "c")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "not an empty folder" in res.stderr


def test_train_on_a_bad_recording_file_is_one_line(tmp_path):
    rec = tmp_path / "data" / "sub-01" / "rec-01"
    rec.mkdir(parents=True)
    (rec / "eeg.edf").write_bytes(b"0       not really an EDF header" * 8)
    out = tmp_path / "run"
    for cmd in (["train", "--dataset", "recordings", "--data-dir", tmp_path / "data", "--out", out],
                ["predict", tmp_path / "nothing.pt", tmp_path / "data", "--out", out]):
        res = run_cli(cmd, tmp_path / "c")
        assert res.returncode == 2, res.stderr
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("himoe-fast: error:")
        assert cmd[0] == "predict" or "eeg.edf" in res.stderr
        assert not out.exists()


def test_predict_reads_deap_face_features_only_from_face_dir(tmp_path):
    from himoe_fast.data import write_synthetic_deap
    from himoe_fast.data.errors import DatasetError
    from himoe_fast.predict import run_predict

    deap = write_synthetic_deap(tmp_path / "deap", n_subjects=1, seed=2, n_trials=2, trial_s=13.0,
                                face_dir=tmp_path / "face")
    cfg = HiMoEConfig.deap(["eeg", "gsr", "face"], d_model=16, expert_hidden=24, router_dim=8)
    model = _model_file(tmp_path / "m.pt", cfg)
    kw = dict(plots=False, progress=False, impl="reference")
    with_face = run_predict(model, deap, tmp_path / "with", face_dir=tmp_path / "face", **kw)
    without = run_predict(model, deap, tmp_path / "without", **kw)
    assert with_face["missing_modalities"] == [] and without["missing_modalities"] == ["face"]
    rows = list(csv.DictReader(open(tmp_path / "with" / "predictions.csv")))
    assert len(rows) == 2 * 10 and {r["present_face"] for r in rows} == {"1"}
    assert {r["present_face"] for r in csv.DictReader(open(tmp_path / "without" / "predictions.csv"))} == {"0"}
    with pytest.raises(DatasetError, match="no such face-feature folder"):
        run_predict(model, deap, tmp_path / "x", face_dir=tmp_path / "nope", **kw)
