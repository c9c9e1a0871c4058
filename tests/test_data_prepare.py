"""prepare_windows: windows, preprocessing choices, lag, availability, cache keys and atomicity."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from himoe_fast import HiMoEConfig, ModalitySpec
from himoe_fast.data import DatasetError, load_deap_subject, prepare_windows, write_synthetic_deap, write_synthetic_dreamer
from himoe_fast.data.preprocess import DEFAULT_FILTERS, filter_signal

N_TRIALS, TRIAL_S = 4, 16.0          # 13 s after the 3 s baseline
NO_FILTERS = {k: None for k in DEFAULT_FILTERS}


@pytest.fixture(scope="module")
def deap_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("deap")
    write_synthetic_deap(d, n_subjects=2, seed=5, n_trials=N_TRIALS, trial_s=TRIAL_S)
    return d


def _cfg(mods=("eeg", "gsr", "ppg"), **kw):
    return HiMoEConfig.deap(modalities=mods, **kw)


def _prep(data_dir, cfg, cache, **kw):
    kw.setdefault("progress", False)
    return prepare_windows("deap", data_dir, cfg, cache_dir=cache, **kw)


def _tmp_entries(cache):
    return [p for p in cache.rglob("*") if p.name.startswith(".tmp")]


# ------------------------------------------------------------------------------------ windows
def test_windows_are_the_raw_signal_when_nothing_is_done(deap_dir, tmp_path):
    cfg = _cfg(("eeg", "pps"), targets=("arousal", "valence"))
    wd = _prep(deap_dir, cfg, tmp_path, filters=NO_FILTERS, normalize="none", clip=None, seq_len=3)
    assert wd.modalities == ("eeg", "pps") and wd.targets == ("arousal", "valence")
    per_trial = 13                                                      # 1 s windows, no overlap
    assert wd.windows["eeg"].shape == (2 * N_TRIALS * per_trial, 32, 128)
    assert wd.windows["pps"].shape == (2 * N_TRIALS * per_trial, 8, 128)
    assert wd.windows["eeg"].dtype == np.float32 and wd.labels.dtype == np.float32
    assert wd.available.all() and wd.available.shape == (2 * N_TRIALS * per_trial, 2)
    np.testing.assert_array_equal(wd.subject, np.repeat([0, 1], N_TRIALS * per_trial))
    np.testing.assert_array_equal(wd.trial, np.repeat(np.arange(2 * N_TRIALS), per_trial))
    for s in range(2):
        raw = load_deap_subject(deap_dir / f"s0{s + 1}.dat")
        for k in range(N_TRIALS):
            rows = np.flatnonzero(wd.trial == s * N_TRIALS + k)
            body = raw.data[k, :, 384:384 + per_trial * 128].astype(np.float32)
            expect = body.reshape(40, per_trial, 128).transpose(1, 0, 2)
            np.testing.assert_array_equal(wd.windows["eeg"][rows], expect[:, :32])
            np.testing.assert_array_equal(wd.windows["pps"][rows], expect[:, 32:])
            np.testing.assert_array_equal(wd.labels[rows], np.repeat(raw.labels[k, [1, 0]][None], per_trial, 0).astype(np.float32))
    # sequences: 3 consecutive windows of one trial, non-overlapping -> 4 per trial
    assert wd.sequences.shape == (2 * N_TRIALS * 4, 3)
    assert (np.diff(wd.sequences, axis=1) == 1).all()
    assert (wd.trial[wd.sequences] == wd.seq_trial[:, None]).all()
    assert len(wd) == wd.sequences.shape[0]


def test_overlapping_windows_and_sequences(deap_dir, tmp_path):
    cfg = _cfg(("gsr",), window_s=2.0)
    wd = _prep(deap_dir, cfg, tmp_path, stride_s=0.5, seq_len=4, seq_stride=2, subjects=1,
               filters=NO_FILTERS, normalize="none", clip=None)
    per_trial = int((13 - 2) / 0.5) + 1                                   # 23
    assert wd.windows["gsr"].shape == (N_TRIALS * per_trial, 1, 256)
    raw = load_deap_subject(deap_dir / "s01.dat").data[0, 36, 384:].astype(np.float32)
    np.testing.assert_array_equal(wd.windows["gsr"][5, 0], raw[5 * 64:5 * 64 + 256])
    assert wd.sequences.shape == (N_TRIALS * 10, 4)                       # starts 0, 2, ..., 18
    np.testing.assert_array_equal(wd.sequences[1], [2, 3, 4, 5])
    assert set(np.unique(wd.subject)) == {0}


def test_default_standardisation_per_subject_and_channel(deap_dir, tmp_path):
    wd = _prep(deap_dir, _cfg(("eeg", "gsr", "temp")), tmp_path)
    for s in range(2):
        for name in ("eeg", "gsr", "temp"):
            x = np.asarray(wd.windows[name][wd.subject == s], dtype=np.float64)
            mean = x.mean(axis=(0, 2))
            sd = x.std(axis=(0, 2))
            np.testing.assert_allclose(mean, 0.0, atol=1e-3)
            np.testing.assert_allclose(sd, 1.0, atol=5e-3)


def test_filtering_uses_mne_on_whole_trials(deap_dir, tmp_path):
    wd = _prep(deap_dir, _cfg(("eeg",)), tmp_path, normalize="none", clip=None, subjects=1)
    raw = load_deap_subject(deap_dir / "s01.dat").data
    expect = filter_signal(raw[:, :32], 128.0, DEFAULT_FILTERS["eeg"])[:, :, 384:384 + 13 * 128]
    got = np.asarray(wd.windows["eeg"]).reshape(N_TRIALS, 13, 32, 128).transpose(0, 2, 1, 3).reshape(N_TRIALS, 32, -1)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-4)
    # the 4-45 Hz band-pass removed the slow part: little power below 2 Hz
    spec = np.abs(np.fft.rfft(got, axis=-1)) ** 2
    f = np.fft.rfftfreq(got.shape[-1], 1 / 128)
    assert spec[..., f < 2].sum() < 1e-3 * spec.sum()


def test_baseline_subtract(deap_dir, tmp_path):
    kw = dict(normalize="none", clip=None, subjects=1)
    drop = _prep(deap_dir, _cfg(("gsr",)), tmp_path, **kw)
    sub = _prep(deap_dir, _cfg(("gsr",)), tmp_path, baseline="subtract", **kw)
    raw = load_deap_subject(deap_dir / "s01.dat").data[:, 36:37]
    base = filter_signal(raw, 128.0, DEFAULT_FILTERS["gsr"])[:, 0, :384].mean(-1)        # [trials]
    diff = np.asarray(drop.windows["gsr"], np.float64) - np.asarray(sub.windows["gsr"], np.float64)
    per_trial = diff.reshape(N_TRIALS, -1)
    np.testing.assert_allclose(per_trial, np.repeat(base[:, None], per_trial.shape[1], 1), rtol=1e-5)


def test_resampling_only_when_asked(deap_dir, tmp_path):
    cfg = HiMoEConfig(modalities=[ModalitySpec("eeg", 32, 64.0, "eeg"), ModalitySpec("gsr", 1, 128.0)],
                      targets=("valence",))
    wd = _prep(deap_dir, cfg, tmp_path, subjects=1)
    assert wd.windows["eeg"].shape[1:] == (32, 64) and wd.windows["gsr"].shape[1:] == (1, 128)
    assert wd.meta["sfreq"] == {"eeg": 64.0, "gsr": 128.0}


@pytest.mark.parametrize("lag_s", [1.0, 2.0, -1.0])
def test_lag_shifts_the_signal(deap_dir, tmp_path, lag_s):
    kw = dict(normalize="none", clip=None, subjects=1)
    cfg = _cfg(("eeg", "gsr"))
    plain = _prep(deap_dir, cfg, tmp_path, **kw)
    lagged = _prep(deap_dir, cfg, tmp_path, lags={"gsr": lag_s}, **kw)
    k = int(lag_s)                                                 # lag in whole windows (1 s each)
    np.testing.assert_array_equal(lagged.windows["eeg"], plain.windows["eeg"])   # other modalities untouched
    for t in range(N_TRIALS):
        rows = np.flatnonzero(plain.trial == t)
        a, b = np.asarray(lagged.windows["gsr"][rows]), np.asarray(plain.windows["gsr"][rows])
        if k > 0:
            np.testing.assert_array_equal(a[k:], b[:-k])           # the lagged modality shows the past
        else:
            np.testing.assert_array_equal(a[:k], b[-k:])
        assert not np.array_equal(a, b)
    # DEAP: a positive lag pulls the end of the (filtered) baseline into the first window
    if lag_s > 0:
        raw = load_deap_subject(deap_dir / "s01.dat").data[:1, 36:37]
        filt = filter_signal(raw, 128.0, DEFAULT_FILTERS["gsr"])[0, 0]
        np.testing.assert_allclose(lagged.windows["gsr"][0, 0], filt[384 - k * 128:384 - k * 128 + 128], rtol=1e-6)


def test_bad_lag_arguments(deap_dir, tmp_path):
    with pytest.raises(ValueError, match="not a modality"):
        _prep(deap_dir, _cfg(("eeg",)), tmp_path, lags={"gsr": 1.0})
    with pytest.raises(ValueError, match="finite"):
        _prep(deap_dir, _cfg(("gsr",)), tmp_path, lags={"gsr": float("nan")})
    with pytest.raises(TypeError, match="unknown preprocessing"):
        _prep(deap_dir, _cfg(("gsr",)), tmp_path, bandpass=(1, 2))


# ------------------------------------------------------------------------------------ face / availability
def test_face_availability(tmp_path):
    d, faces = tmp_path / "data", tmp_path / "face"
    write_synthetic_deap(d, n_subjects=2, seed=0, n_trials=3, trial_s=TRIAL_S)
    frames = int(TRIAL_S * 30)
    # subject 1: trial 1 full at 30 fps (resampled to 25), trial 2 missing, trial 3 ends after 8 s
    faces.mkdir()
    np.savez(faces / "s01_face.npz", fps=np.float64(30.0), trial_01=np.random.rand(frames, 17),
             trial_03=np.random.rand(8 * 30, 17))
    cfg = _cfg(("gsr", "face"))
    wd = _prep(d, cfg, tmp_path / "cache", face_dir=faces)
    face = wd.available[:, 1]
    assert wd.available[:, 0].all()
    assert wd.windows["face"].shape[1:] == (17, 25)
    rows = lambda trial: np.flatnonzero(wd.trial == trial)  # noqa: E731
    assert face[rows(0)].all()
    assert not face[rows(1)].any()
    # trial 3 recording ends at 8 s = 5 s after the baseline: windows 0-4 recorded, later ones not
    np.testing.assert_array_equal(face[rows(2)], np.arange(13) < 5)
    assert not face[wd.subject == 1].any()                          # no face file at all
    assert np.all(np.asarray(wd.windows["face"])[~face] == 0)


def test_face_without_any_face_file_warns(tmp_path):
    write_synthetic_deap(tmp_path / "noface", 1, 0, n_trials=2, trial_s=6.0)
    with pytest.warns(UserWarning, match="no face feature files"):
        wd = _prep(tmp_path / "noface", _cfg(("gsr", "face")), tmp_path / "cache")
    assert not wd.available[:, 1].any() and wd.available[:, 0].all()


def test_face_feature_count_mismatch(tmp_path):
    d = tmp_path / "data"
    write_synthetic_deap(d, n_subjects=1, seed=0, n_trials=2, trial_s=6.0)
    np.savez(d / "s01_face.npz", fps=np.float64(25.0), trial_01=np.random.rand(100, 5))
    with pytest.raises(DatasetError, match="s01_face.npz.*5 features"):
        _prep(d, _cfg(("face",)), tmp_path / "cache")


# ------------------------------------------------------------------------------------ cache
CHANGES = {
    "window_s": lambda: dict(cfg=_cfg(window_s=2.0)),
    "stride_s": lambda: dict(stride_s=0.5),
    "subjects": lambda: dict(subjects=1),
    "modalities": lambda: dict(cfg=_cfg(("eeg", "gsr"))),
    "sfreq": lambda: dict(cfg=HiMoEConfig(modalities=[ModalitySpec("eeg", 32, 64.0, "eeg"), ModalitySpec("gsr", 1, 128.0),
                                                      ModalitySpec("ppg", 1, 128.0)])),
    "targets": lambda: dict(cfg=_cfg(targets=("valence",))),
    "lags": lambda: dict(lags={"gsr": 2.0}),
    "filter": lambda: dict(filters={"eeg": (1.0, 40.0)}),
    "line_freq": lambda: dict(line_freq=60.0),
    "method": lambda: dict(method="iir"),
    "baseline": lambda: dict(baseline="subtract"),
    "normalize": lambda: dict(normalize="trial"),
    "clip": lambda: dict(clip=5.0),
}


@pytest.fixture(scope="module")
def cached(deap_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    first = _prep(deap_dir, _cfg(), cache)
    return cache, first


def test_cache_hit_when_nothing_changed(deap_dir, cached):
    cache, first = cached
    assert first.meta["from_cache"] is False
    again = _prep(deap_dir, _cfg(), cache, seq_len=4)             # sequences are not part of the key
    assert again.meta["from_cache"] is True and again.meta["cache_path"] == first.meta["cache_path"]
    for name in first.modalities:
        np.testing.assert_array_equal(again.windows[name], first.windows[name])
    np.testing.assert_array_equal(again.labels, first.labels)
    np.testing.assert_array_equal(again.available, first.available)
    assert again.sequences.shape[1] == 4
    assert not _tmp_entries(cache)


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_cache_miss_when_a_setting_changes(deap_dir, cached, change):
    cache, first = cached
    kw = CHANGES[change]()
    cfg = kw.pop("cfg", _cfg())
    other = _prep(deap_dir, cfg, cache, **kw)
    assert other.meta["from_cache"] is False, change
    assert other.meta["cache_path"] != first.meta["cache_path"]
    assert _prep(deap_dir, cfg, cache, **kw).meta["from_cache"] is True


def test_cache_miss_when_a_file_changes(tmp_path):
    d = tmp_path / "data"
    write_synthetic_deap(d, n_subjects=1, seed=0, n_trials=2, trial_s=6.0)
    first = _prep(d, _cfg(), tmp_path / "cache")
    write_synthetic_deap(d, n_subjects=1, seed=1, n_trials=2, trial_s=6.0)     # same name, new content
    st = os.stat(d / "s01.dat")
    os.utime(d / "s01.dat", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = _prep(d, _cfg(), tmp_path / "cache")
    assert second.meta["from_cache"] is False
    assert not np.array_equal(second.labels, first.labels)


def test_no_cache_left_after_an_error(tmp_path, monkeypatch):
    d = tmp_path / "data"
    write_synthetic_deap(d, n_subjects=3, seed=0, n_trials=2, trial_s=6.0)
    (d / "s02.dat").write_bytes(pickle.dumps({"data": np.zeros((2, 40, 768)), "labels": np.full((2, 4), 11.0)}))
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError, match="s02.dat.*range"):
        _prep(d, _cfg(), cache)
    assert not (cache / "windows").exists() or not any((cache / "windows").iterdir())
    # a failure while writing the entry leaves neither a partial entry nor temporary files
    write_synthetic_deap(d, n_subjects=3, seed=0, n_trials=2, trial_s=6.0)
    import himoe_fast.data.cache as cache_mod

    real = cache_mod.write_windows_entry

    def failing(tmp, *args, **kwargs):
        real(tmp, *args, **kwargs)
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod, "write_windows_entry", failing)
    with pytest.raises(OSError, match="disk full"):
        _prep(d, _cfg(), cache)
    assert not any((cache / "windows").iterdir())
    monkeypatch.setattr(cache_mod, "write_windows_entry", real)
    assert _prep(d, _cfg(), cache).meta["from_cache"] is False


def test_use_cache_false_writes_nothing(deap_dir, tmp_path):
    wd = _prep(deap_dir, _cfg(("gsr",)), tmp_path / "c", use_cache=False, subjects=1)
    assert wd.meta["from_cache"] is False and not (tmp_path / "c").exists()
    assert isinstance(wd.windows["gsr"], np.ndarray)


def test_subjects_more_than_available(deap_dir, tmp_path):
    with pytest.raises(DatasetError, match="3 subjects requested"):
        _prep(deap_dir, _cfg(), tmp_path, subjects=3)


def test_progress_bar_runs(deap_dir, tmp_path, capsys):
    _prep(deap_dir, _cfg(("gsr",)), tmp_path, progress=True, subjects=1, use_cache=False)
    assert "preprocessing DEAP" in capsys.readouterr().out   # not a terminal: plain progress lines on stdout


# ------------------------------------------------------------------------------------ DREAMER
def test_dreamer_windows(tmp_path):
    path = write_synthetic_dreamer(tmp_path / "DREAMER.mat", n_subjects=2, seed=0, n_trials=3,
                                   clip_s=(10.0, 14.0), baseline_s=4.0)
    cfg = HiMoEConfig.dreamer()
    wd = prepare_windows("dreamer", tmp_path, cfg, cache_dir=tmp_path / "cache", progress=False, seq_len=2)
    assert wd.modalities == ("eeg", "ecg") and wd.targets == ("valence", "arousal", "dominance")
    assert wd.windows["eeg"].shape[1:] == (14, 128) and wd.windows["ecg"].shape[1:] == (2, 256)
    from himoe_fast.data import load_dreamer

    subjects = load_dreamer(path)
    counts = [int(e.shape[1] / 128) for s in subjects for e in s.eeg]
    np.testing.assert_array_equal(np.bincount(wd.trial), counts)               # floor(duration) windows per clip
    scores = np.concatenate([s.scores for s in subjects])
    np.testing.assert_array_equal(wd.labels[np.searchsorted(wd.trial, np.arange(6))], scores)
    np.testing.assert_array_equal(wd.subject, np.repeat([0, 1], [sum(counts[:3]), sum(counts[3:])]))
    # ECG filtered: the DC offset (~2000) is gone, then z-scored
    assert abs(float(np.mean(wd.windows["ecg"]))) < 0.05
    sub = prepare_windows("dreamer", path, cfg, cache_dir=tmp_path / "cache", progress=False, baseline="subtract",
                          subjects=1, normalize="none", clip=None)
    assert sub.meta["from_cache"] is False and sub.subject.max() == 0
    with pytest.raises(DatasetError, match="5 subjects requested"):
        prepare_windows("dreamer", path, cfg, cache_dir=tmp_path / "cache", progress=False, subjects=5)
    with pytest.raises(DatasetError, match="DREAMER .mat file not found"):
        prepare_windows("dreamer", tmp_path / "missing", cfg, progress=False)


def test_fractional_window_positions_and_face_lag(tmp_path):
    d = tmp_path / "data"
    write_synthetic_deap(d, n_subjects=1, seed=0, n_trials=2, trial_s=8.0)
    np.savez(d / "s01_face.npz", fps=np.float64(25.0), trial_01=np.random.rand(200, 17),
             trial_02=np.random.rand(100, 17))                       # trial 2: 4 s, i.e. 1 s after the baseline
    cfg = _cfg(("gsr", "face"))
    wd = _prep(d, cfg, tmp_path / "c", stride_s=0.3, seq_len=2)     # 7.5 face frames per stride
    assert wd.windows["face"].shape == (2 * 14, 17, 25)              # floor((5 - 1) / 0.3) + 1 = 14 per trial
    face = wd.available[:, 1].reshape(2, 14)
    assert face[0].all() and face[1, 0] and not face[1, 4:].any()
    # a 2 s lag moves the end of trial 2's face recording 2 s later
    lagged = _prep(d, cfg, tmp_path / "c", stride_s=0.3, seq_len=2, lags={"face": 2.0}).available[:, 1].reshape(2, 14)
    assert lagged[1].sum() > face[1].sum() and lagged[1, 8] and not lagged[1, 12:].any()


def test_concurrent_prepare_writes_one_entry(deap_dir, tmp_path):
    import threading

    out, errors = [], []

    def run():
        try:
            out.append(_prep(deap_dir, _cfg(("gsr", "temp")), tmp_path))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(out) == 3
    assert len(list((tmp_path / "windows").iterdir())) == 1 and not _tmp_entries(tmp_path)
    for wd in out[1:]:
        np.testing.assert_array_equal(wd.windows["gsr"], out[0].windows["gsr"])
