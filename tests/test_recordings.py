"""Recordings folders: timestamp alignment across files and rates, gaps made absent, per-trial and
continuous labels, channel mapping, bad files, and the synthetic recordings writer.

Expected values come from the files as written here (known signals at known times), not from the
reader under test.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mne
import numpy as np
import pytest

from himoe_fast.data import DatasetError, prepare_windows, recordings_config, scan_recordings
from himoe_fast.data.recordings import MIN_COVERAGE, window_ratings

T0 = dt.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=dt.timezone.utc)
NO_FILTERS = {"eeg": None, "gsr": None, "ppg": None}


def _save(path: Path, data: np.ndarray, names, types, sfreq: float, start: dt.datetime, annotations=None):
    raw = mne.io.RawArray(data, mne.create_info(list(names), sfreq, list(types), verbose="error"), verbose="error")
    raw.set_meas_date(start)
    if annotations is not None:
        raw.set_annotations(annotations)
    raw.save(path, verbose="error")


def _known_folder(root: Path, n_subjects: int = 2) -> Path:
    """Per recording: EEG (3 ch, 128 Hz, 10 s from t0) whose value is time since t0, a GSR file
    (32 Hz) that starts 1.5 s late and lasts 8 s whose value is time since t0 too, and a 'Pleth'
    channel (type bio) mapped to ppg by recordings.json. EEG of recording 2 has a BAD span at
    4.2-5.0 s; GSR of recording 1 holds NaN at 6.0-6.5 s."""
    root.mkdir(parents=True)
    (root / "recordings.json").write_text(json.dumps({"channels": {"Pleth": "ppg"}, "scale": [1, 9]}))
    lines = ["subject,recording,valence,arousal"]
    for s in range(n_subjects):
        for r in range(2):
            rec = root / f"s{s}" / f"r{r}"
            rec.mkdir(parents=True)
            start = T0 + dt.timedelta(days=s, hours=r)
            t = np.arange(1280) / 128.0
            ann = mne.Annotations([4.2], [0.8], ["BAD_blink"], orig_time=start) if r == 1 else None
            _save(rec / "eeg_raw.fif", np.stack([t, t + 100, t + 200]), ["C3", "C4", "Cz"], ["eeg"] * 3, 128.0,
                  start, ann)
            tg = 1.5 + np.arange(256) / 32.0
            gsr = tg.copy()
            if r == 0:
                gsr[(tg >= 6.0) & (tg < 6.5)] = np.nan
            _save(rec / "physio_raw.fif", np.stack([gsr, 2 * tg]), ["GSR", "Pleth"], ["gsr", "bio"], 32.0,
                  start + dt.timedelta(seconds=1.5))
            lines.append(f"s{s},r{r},{2 + s + r},{7 - r}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def known(tmp_path) -> Path:
    return _known_folder(tmp_path / "rec")


def test_scan_infers_modalities_rates_and_targets(known):
    layout = scan_recordings(known)
    specs = {m.name: (m.channels, m.sfreq, m.kind) for m in layout.modalities}
    assert specs == {"eeg": (3, 128.0, "eeg"), "gsr": (1, 32.0, "signal"), "ppg": (1, 32.0, "signal")}
    assert layout.targets == ("valence", "arousal") and layout.scale == (1.0, 9.0)
    assert [(s, r) for s, r, _ in layout.recordings] == [("s0", "r0"), ("s0", "r1"), ("s1", "r0"), ("s1", "r1")]
    cfg = recordings_config(known, ["gsr", "eeg"])
    assert cfg.modality_names == ("gsr", "eeg") and cfg.dataset == "recordings"


def test_timestamps_align_files_and_gaps_are_absent(known, tmp_path):
    cfg = recordings_config(known)
    d = prepare_windows("recordings", known, cfg, seq_len=2, cache_dir=tmp_path / "cache", progress=False,
                        filters=NO_FILTERS, normalize="none", clip=None)
    gi, ei, pi = (cfg.modality_names.index(m) for m in ("gsr", "eeg", "ppg"))
    assert d.n_windows == 4 * 10 and d.meta["trial_names"][1] == "s0/r1"
    for k in range(4):
        sel = np.flatnonzero(d.trial == k)
        av = d.available[sel]
        for w in range(10):
            # GSR: recorded 1.5-9.5 s; window w covers [w, w+1): enough coverage for w = 2..8
            recorded = min(w + 1, 9.5) - max(w, 1.5)
            nan_overlap = max(0.0, min(w + 1, 6.5) - max(w, 6.0)) if k % 2 == 0 else 0.0
            assert av[w, gi] == ((recorded - nan_overlap) >= MIN_COVERAGE), (k, w)
            assert av[w, pi] == (recorded >= MIN_COVERAGE)
            bad = max(0.0, min(w + 1, 5.0) - max(w, 4.2)) if k % 2 == 1 else 0.0
            assert av[w, ei] == (1 - bad >= MIN_COVERAGE), (k, w)
            if av[w, gi]:   # values are seconds since the recording's time 0: the files are aligned
                g = d.windows["gsr"][sel[w], 0]
                ok = g != 0
                assert g[0] == pytest.approx(w, abs=1e-6) and ok.mean() >= MIN_COVERAGE
                assert np.allclose(g[ok], w + np.flatnonzero(ok) / 32.0, atol=1e-5)
            if av[w, ei]:
                e = d.windows["eeg"][sel[w]]
                assert np.allclose(e[1], w + 100 + np.arange(128) / 128.0, atol=1e-4)
        # per-trial labels from labels.csv, constant over the recording
        s, r = divmod(k, 2)
        assert np.all(d.labels[sel] == np.array([2 + s + r, 7 - r], np.float32))


def test_window_ratings_average_interpolate_and_mask():
    t = np.array([0.0, 0.5, 1.2, 3.0, 3.5, 4.0, 6.0])
    v = np.array([[1.0], [3.0], [5.0], [np.nan], [7.0], [8.0], [9.0]])
    out = window_ratings(t, v, np.arange(7.0), 1.0)[:, 0]
    assert out[0] == pytest.approx(2.0)                  # mean of 1 and 3 inside [0, 1)
    assert out[1] == pytest.approx(5.0)                  # the one sample at 1.2
    assert np.isnan(out[2])        # nothing inside [2, 3); the centre's right neighbour (3.0) is NaN
    assert out[3] == pytest.approx(7.0)                  # 3.0 is NaN, 3.5 is 7
    assert out[4] == pytest.approx(8.0)
    assert out[5] == pytest.approx(8.75)                 # centre 5.5 between 4.0 (8) and 6.0 (9)
    assert out[6] == pytest.approx(9.0)                  # 6.0 lies inside [6, 7)


def test_window_ratings_edges():
    t = np.array([1.0, 2.0])
    v = np.array([[4.0], [6.0]])
    out = window_ratings(t, v, np.array([-1.0, 0.4, 1.4, 2.5]), 0.2)[:, 0]
    assert np.isnan(out[0]) and np.isnan(out[1])         # before the first rating
    assert out[2] == pytest.approx(5.0)                  # centre 1.5 halfway between the two ratings
    assert np.isnan(out[3])                              # after the last rating


def test_bad_file_is_one_error_naming_it(known, tmp_path):
    bad = known / "s1" / "r0" / "broken.edf"
    bad.write_bytes(b"this is not an EDF file at all" * 10)
    for call in (lambda: recordings_config(known),
                 lambda: prepare_windows("recordings", known, _eeg_only_config(3), cache_dir=tmp_path / "c",
                                         progress=False)):
        with pytest.raises(DatasetError) as exc:
            call()
        assert "broken.edf" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.npy"))


def _eeg_only_config(channels: int):
    from himoe_fast import HiMoEConfig, ModalitySpec

    return HiMoEConfig(modalities=[ModalitySpec("eeg", channels, 128.0, "eeg")], targets=("valence", "arousal"),
                       dataset="recordings")


def test_channel_mismatch_and_ratings_out_of_scale(known, tmp_path):
    cfg = _eeg_only_config(4)
    with pytest.raises(DatasetError, match="3 channel"):
        prepare_windows("recordings", known, cfg, cache_dir=tmp_path / "c", progress=False)
    (known / "labels.csv").write_text("subject,recording,valence,arousal\ns0,r0,12,3\n")
    with pytest.raises(DatasetError, match="labels.csv.*scale|scale"):
        prepare_windows("recordings", known, recordings_config(known), cache_dir=tmp_path / "c", progress=False)


def test_synthetic_recordings_folder(tmp_path):
    from himoe_fast.data import write_synthetic_recordings

    root = write_synthetic_recordings(tmp_path / "syn", n_subjects=1, seed=3, n_recordings=4, recording_s=24.0)
    layout = scan_recordings(root)
    rates = {m.name: m.sfreq for m in layout.modalities}
    assert rates == {"eeg": 128.0, "eog": 128.0, "emg": 256.0, "gsr": 64.0, "resp": 64.0, "ppg": 64.0, "temp": 64.0}
    rec = root / "sub-01"
    files = sorted(p.name for p in (rec / "rec-01").iterdir())
    assert files == ["eeg_raw.fif", "emg_raw.fif", "physio_raw.fif", "ratings.csv"]
    # different start times, a real NaN run, a BAD annotation, an early stop, an unlabelled stretch
    eeg = mne.io.read_raw(rec / "rec-01" / "eeg_raw.fif", verbose="error")
    phys = mne.io.read_raw(rec / "rec-01" / "physio_raw.fif", verbose="error")
    assert (phys.info["meas_date"] - eeg.info["meas_date"]).total_seconds() > 0.4
    assert np.isnan(phys.get_data(picks=["GSR"])).any()
    assert any(a["description"].startswith("BAD_") for a in mne.io.read_raw(rec / "rec-02" / "eeg_raw.fif",
                                                                             verbose="error").annotations)
    emg3 = mne.io.read_raw(rec / "rec-03" / "emg_raw.fif", verbose="error")
    assert emg3.n_times / emg3.info["sfreq"] < 24.0 - 4.0
    ratings = (rec / "rec-04" / "ratings.csv").read_text().splitlines()
    assert ratings[0] == "time,valence,arousal" and any(line.endswith(",,") for line in ratings)
    # determinism: the same seed writes the same samples
    again = write_synthetic_recordings(tmp_path / "syn2", n_subjects=1, seed=3, n_recordings=4, recording_s=24.0)
    a = mne.io.read_raw(again / "sub-01" / "rec-01" / "eeg_raw.fif", verbose="error").get_data()
    assert np.array_equal(a, eeg.get_data())


def test_random_per_subject_lags_equal_the_fixed_lag_of_each_subject(known, tmp_path):
    """Random lags apply to recordings too: subject s's windows equal a run with its drawn lag fixed."""
    cfg = recordings_config(known)
    kw = dict(seq_len=2, cache_dir=tmp_path / "cache", progress=False, filters=NO_FILTERS, normalize="none", clip=None)
    rand = prepare_windows("recordings", known, cfg, random_lags={"gsr": 3.0}, lag_seed=5, **kw)
    drawn = [lag["gsr"] for lag in rand.meta["subject_lags"]]
    assert len(drawn) == 2 and all(0.0 <= v <= 3.0 for v in drawn) and drawn[0] != drawn[1]
    for s, lag in enumerate(drawn):
        fixed = prepare_windows("recordings", known, cfg, lags={"gsr": lag}, **kw)
        a, b = rand.subject == s, fixed.subject == s
        assert np.array_equal(rand.windows["gsr"][a], fixed.windows["gsr"][b])
        assert np.array_equal(rand.available[a], fixed.available[b])
    plain = prepare_windows("recordings", known, cfg, **kw)
    assert not np.array_equal(rand.windows["gsr"], plain.windows["gsr"])
