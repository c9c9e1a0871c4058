"""Synthetic DEAP / DREAMER: formats, determinism, atomic writes, and that the labels are learnable."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from himoe_fast.data import ensure_synthetic, load_deap_subject, load_dreamer, write_synthetic_deap, write_synthetic_dreamer
from himoe_fast.data.synthetic import synthetic_deap_subject

SMALL = dict(n_trials=6, trial_s=13.0)


def _no_tmp(folder):
    return [p.name for p in folder.rglob("*") if ".tmp" in p.name]


def test_deap_default_format_is_deaps(tmp_path):
    out = write_synthetic_deap(tmp_path, n_subjects=1, seed=3)
    assert out == tmp_path and sorted(p.name for p in tmp_path.iterdir()) == ["s01.dat"]
    subj = load_deap_subject(tmp_path / "s01.dat")
    assert subj.data.shape == (40, 40, 8064) and subj.data.dtype == np.float64
    assert subj.labels.shape == (40, 4)
    assert subj.labels.min() >= 1 and subj.labels.max() <= 9
    np.testing.assert_array_equal(subj.labels, subj.labels.round(2))
    assert np.isfinite(subj.data).all()
    # all four valence/arousal quadrants are represented, like DEAP's stimulus selection
    hv, ha = subj.labels[:, 0] >= 5, subj.labels[:, 1] >= 5
    assert {(a, b) for a, b in zip(hv, ha)} == {(False, False), (False, True), (True, False), (True, True)}
    # plausible physiology: EEG in uV, GSR in Ohm (10 k - 10 M), temperature in degrees C
    assert 2 < subj.data[:, :32].std() < 100
    assert 1e4 < subj.data[:, 36].min() and subj.data[:, 36].max() < 1e7
    assert 25 < subj.data[:, 39].mean() < 40
    assert not _no_tmp(tmp_path)


def test_deap_deterministic_per_seed(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_synthetic_deap(a, 2, seed=7, **SMALL)
    write_synthetic_deap(b, 2, seed=7, **SMALL)
    write_synthetic_deap(c, 2, seed=8, **SMALL)
    for name in ("s01.dat", "s02.dat"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
        assert not np.allclose(load_deap_subject(a / name).data, load_deap_subject(c / name).data)
    assert not np.array_equal(load_deap_subject(a / "s01.dat").data, load_deap_subject(a / "s02.dat").data)
    # a subject does not depend on how many subjects are written
    write_synthetic_deap(tmp_path / "one", 1, seed=7, **SMALL)
    assert (tmp_path / "one" / "s01.dat").read_bytes() == (a / "s01.dat").read_bytes()


def test_deap_face_round_trip(tmp_path):
    write_synthetic_deap(tmp_path / "deap", 1, seed=0, face_dir=tmp_path / "face", n_trials=20, trial_s=10.0)
    assert sorted(p.name for p in (tmp_path / "deap").iterdir()) == ["s01.dat"]   # face features kept apart
    subj = load_deap_subject(tmp_path / "deap" / "s01.dat", face=tmp_path / "face" / "s01_face.npz")
    assert subj.face_fps == 25.0 and len(subj.face) == 20
    recorded = [f for f in subj.face if f is not None]
    assert 10 <= len(recorded) < 20                       # ~10% of trials have no recording
    assert all(f.shape == (250, 17) for f in recorded)
    assert all((f >= 0).all() and (f <= 5).all() for f in recorded)


def test_dreamer_format_round_trip(tmp_path):
    path = write_synthetic_dreamer(tmp_path / "sub" / "DREAMER.mat", n_subjects=2, seed=1, clip_s=(20.0, 40.0),
                                   baseline_s=8.0)
    assert path == tmp_path / "sub" / "DREAMER.mat"
    subjects = load_dreamer(path)
    assert len(subjects) == 2
    for s in subjects:
        assert len(s.eeg) == len(s.eeg_baseline) == len(s.ecg) == len(s.ecg_baseline) == 18
        assert s.eeg_sfreq == 128.0 and s.ecg_sfreq == 256.0
        assert s.scores.shape == (18, 3)
        np.testing.assert_array_equal(s.scores, s.scores.round())
        assert s.scores.min() >= 1 and s.scores.max() <= 5
        lengths = [e.shape[1] for e in s.eeg]
        assert len(set(lengths)) > 1 and min(lengths) >= 20 * 128 and max(lengths) <= 40 * 128
        for eeg, ecg in zip(s.eeg, s.ecg):
            assert eeg.shape[0] == 14 and ecg.shape[0] == 2
            assert abs(ecg.shape[1] - 2 * eeg.shape[1]) <= 2          # same seconds at twice the rate
        assert all(b.shape == (14, 8 * 128) for b in s.eeg_baseline)
        assert all(b.shape == (2, 8 * 256) for b in s.ecg_baseline)
        assert 3000 < s.eeg[0].mean() < 5000                         # raw Emotiv values with a DC offset
    assert not _no_tmp(tmp_path)


def test_dreamer_deterministic_per_seed(tmp_path):
    kw = dict(n_subjects=1, n_trials=3, clip_s=(10.0, 12.0), baseline_s=5.0)
    a = write_synthetic_dreamer(tmp_path / "a.mat", seed=4, **kw)
    b = write_synthetic_dreamer(tmp_path / "b.mat", seed=4, **kw)
    c = write_synthetic_dreamer(tmp_path / "c.mat", seed=5, **kw)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_ensure_synthetic_writes_once(tmp_path):
    path = ensure_synthetic("deap", n_subjects=2, seed=1, root=tmp_path, **SMALL)
    assert sorted(p.name for p in path.iterdir()) == ["s01.dat", "s02.dat"]
    stamp = (path / "s01.dat").stat().st_mtime_ns
    again = ensure_synthetic("deap", n_subjects=2, seed=1, root=tmp_path, **SMALL)
    assert again == path and (path / "s01.dat").stat().st_mtime_ns == stamp
    other = ensure_synthetic("deap", n_subjects=2, seed=2, root=tmp_path, **SMALL)
    assert other != path
    mat = ensure_synthetic("dreamer", n_subjects=1, seed=0, root=tmp_path, n_trials=2, clip_s=(8.0, 9.0),
                           baseline_s=4.0)
    assert mat.name == "DREAMER.mat" and len(load_dreamer(mat)) == 1
    assert not _no_tmp(tmp_path)


def test_ensure_synthetic_default_root_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HIMOE_FAST_CACHE", str(tmp_path / "envcache"))
    path = ensure_synthetic("deap", n_subjects=1, seed=0, n_trials=2, trial_s=5.0)
    assert str(path).startswith(str(tmp_path / "envcache"))


def test_ensure_synthetic_concurrent_callers(tmp_path):
    results, errors = [], []

    def call():
        try:
            results.append(ensure_synthetic("deap", n_subjects=2, seed=3, root=tmp_path, **SMALL))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    for name in ("s01.dat", "s02.dat"):
        load_deap_subject(results[0] / name)
    assert not _no_tmp(tmp_path)


def test_ensure_synthetic_failure_leaves_nothing(tmp_path, monkeypatch):
    import himoe_fast.data.synthetic as syn

    calls = {"n": 0}
    real = syn.save_deap_subject

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(syn, "save_deap_subject", flaky)
    with pytest.raises(OSError):
        ensure_synthetic("deap", n_subjects=3, seed=0, root=tmp_path, **SMALL)
    assert list((tmp_path / "synthetic").iterdir()) == []


# ------------------------------------------------------------------------------ learnability
def _band_features(data: np.ndarray) -> np.ndarray:
    """Per-trial log band power (theta, alpha, beta, gamma) of the 32 EEG channels after the baseline."""
    x = data[:, :32, 384:]
    f = np.fft.rfftfreq(x.shape[-1], 1 / 128)
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    bands = [(4, 8), (8, 13), (13, 30), (30, 45)]
    return np.concatenate([np.log(power[..., (f >= lo) & (f < hi)].mean(-1)) for lo, hi in bands], 1)


def _ridge(x_tr, y_tr, x_te, lam=50.0):
    mu = y_tr.mean(0)
    w = np.linalg.solve(x_tr.T @ x_tr + lam * np.eye(x_tr.shape[1]), x_tr.T @ (y_tr - mu))
    return x_te @ w + mu


def _corr(a, b):
    return float(np.corrcoef(a, b)[0, 1])


@pytest.mark.slow
def test_ratings_are_learnable_from_band_powers():
    feats, labels, subject, gsr, ppg = [], [], [], [], []
    for s in range(5):
        data, lab, _ = synthetic_deap_subject(11, s, trial_s=33.0)
        f = _band_features(data)
        feats.append((f - f.mean(0)) / f.std(0))                     # per-subject feature standardisation
        labels.append(lab)
        subject.append(np.full(len(lab), s))
        gsr.append(np.log(1.0 / data[:, 36, 384:]).mean(-1))          # log skin conductance
        ppg.append(data[:, 38, 384:])
    x, y, subj = np.concatenate(feats), np.concatenate(labels), np.concatenate(subject)

    # held-out subjects (leave one out) and held-out trials
    pred = np.zeros_like(y)
    for s in range(5):
        pred[subj == s] = _ridge(x[subj != s], y[subj != s], x[subj == s])
    r_subject = [_corr(pred[:, k], y[:, k]) for k in (0, 1)]
    test = np.random.default_rng(0).random(len(y)) < 0.3
    p = _ridge(x[~test], y[~test], x[test])
    r_trial = [_corr(p[:, k], y[test, k]) for k in (0, 1)]
    assert min(r_subject) > 0.45, r_subject
    assert min(r_trial) > 0.45, r_trial
    # not trivial: far from perfect
    assert max(r_subject + r_trial) < 0.97, (r_subject, r_trial)
    # chance level: the same model on shuffled labels
    y_shuf = y[np.random.default_rng(1).permutation(len(y))]
    p = _ridge(x[~test], y_shuf[~test], x[test])
    assert max(abs(_corr(p[:, k], y_shuf[test, k])) for k in (0, 1)) < 0.3

    # peripheral physiology: skin conductance and heart rate rise with arousal (within subject)
    cond = np.concatenate([g - g.mean() for g in gsr])
    arousal = np.concatenate([l[:, 1] - l[:, 1].mean() for l in labels])
    assert _corr(cond, arousal) > 0.3
    rates = []
    for sig in ppg:
        spec = np.abs(np.fft.rfft(sig - sig.mean(-1, keepdims=True), axis=-1))
        f = np.fft.rfftfreq(sig.shape[-1], 1 / 128)
        band = (f > 0.8) & (f < 2.0)
        hr = f[band][spec[:, band].argmax(-1)]
        rates.append(hr - hr.mean())
    assert _corr(np.concatenate(rates), arousal) > 0.3


# ------------------------------------------------------------------------------------ coupling table
def _zygomaticus_valence_r(seed: int) -> float:
    """Correlation over 40 trials between the zygomaticus EMG level (log RMS after the baseline) and
    the valence rating."""
    data, labels, _ = synthetic_deap_subject(seed, 0, n_trials=40, trial_s=10.0)
    x = data[:, 34, 384:]
    level = np.log(x.std(-1))
    return float(np.corrcoef(level, labels[:, 0])[0, 1])


def test_coupling_table_sets_how_strongly_a_signal_carries_an_affect(monkeypatch):
    from himoe_fast.data.synthetic_coupling import AFFECT_COUPLING

    assert AFFECT_COUPLING["emg_zygomaticus"]["valence"] > 0      # smiling goes with pleasant ratings
    assert _zygomaticus_valence_r(1) > 0.7
    monkeypatch.setitem(AFFECT_COUPLING["emg_zygomaticus"], "valence", -0.8)
    monkeypatch.setitem(AFFECT_COUPLING["emg_zygomaticus"], "liking", -0.2)
    assert _zygomaticus_valence_r(1) < -0.7                        # the table's sign is the generator's
    monkeypatch.setitem(AFFECT_COUPLING["emg_zygomaticus"], "valence", 0.0)
    monkeypatch.setitem(AFFECT_COUPLING["emg_zygomaticus"], "liking", 0.0)
    assert abs(_zygomaticus_valence_r(1)) < 0.35                  # no coupling, no relation
