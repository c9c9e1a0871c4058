"""Protocols: trial splits never share a trial, LOSO never shares a subject, k-fold covers everything."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from himoe_fast.data import WindowedData, make_sequences, make_splits


def fake_data(n_subjects=4, n_trials=10, windows_per_trial=6, seq_len=2, seq_stride=None) -> WindowedData:
    """Windowed data without files: tiny random windows, one label row per trial."""
    rng = np.random.default_rng(0)
    n_trial_total = n_subjects * n_trials
    trial = np.repeat(np.arange(n_trial_total), windows_per_trial)
    subject = trial // n_trials
    n = trial.size
    labels = np.repeat(rng.uniform(1, 9, (n_trial_total, 2)), windows_per_trial, 0).astype(np.float32)
    return WindowedData(
        modalities=("eeg", "gsr"),
        windows={"eeg": rng.normal(size=(n, 3, 16)).astype(np.float32),
                 "gsr": rng.normal(size=(n, 1, 16)).astype(np.float32)},
        labels=labels, subject=subject.astype(np.int64), trial=trial.astype(np.int64),
        available=np.ones((n, 2), bool), sequences=make_sequences(trial, seq_len, seq_stride),
        targets=("valence", "arousal"))


def _trials(data, idx):
    return set(data.seq_trial[idx].tolist())


def _subjects(data, idx):
    return set(data.seq_subject[idx].tolist())


def _disjoint_trials(data, split):
    tr, va, te = _trials(data, split.train), _trials(data, split.val), _trials(data, split.test)
    assert not tr & va and not tr & te and not va & te, split.name
    return tr, va, te


def test_kfold_trial_split(tmp_path):
    data = fake_data()
    splits = make_splits(data, "kfold", folds=5, seed=1)
    assert [s.name for s in splits] == [f"fold{k:02d}" for k in range(1, 6)]
    seen = np.zeros(len(data), int)
    for s in splits:
        tr, va, te = _disjoint_trials(data, s)
        assert tr | va | te == set(range(40))                          # nothing lost
        seen[s.test] += 1
        # each subject's trials are spread evenly: 10 trials / 5 folds = 2 test trials per subject
        per_subject = np.bincount(np.array(sorted(te)) // 10, minlength=4)
        np.testing.assert_array_equal(per_subject, [2, 2, 2, 2])
        assert _subjects(data, s.val) == {0, 1, 2, 3}                   # validation from every subject
        for arr in (s.train, s.val, s.test):
            assert arr.dtype == np.int64 and (np.diff(arr) > 0).all()
    np.testing.assert_array_equal(seen, 1)                              # every sequence tested exactly once


def test_kfold_default_is_ten_folds_and_deterministic():
    data = fake_data()
    a = make_splits(data)
    b = make_splits(data)
    c = make_splits(data, seed=3)
    assert len(a) == 10
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.test, y.test)
        np.testing.assert_array_equal(x.val, y.val)
    assert any(not np.array_equal(x.test, y.test) for x, y in zip(a, c))


def test_kfold_window_split_warns_and_covers():
    data = fake_data()
    with pytest.warns(UserWarning, match="both training and test"):
        splits = make_splits(data, "kfold", folds=4, split="window")
    seen = np.zeros(len(data), int)
    leaked = False
    for s in splits:
        assert not set(s.train) & set(s.test) and not set(s.val) & set(s.test) and not set(s.train) & set(s.val)
        seen[s.test] += 1
        leaked |= bool(_trials(data, s.train) & _trials(data, s.test))
    np.testing.assert_array_equal(seen, 1)
    assert leaked                                   # the documented leak really happens with split="window"


def test_trial_split_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_splits(fake_data(), "kfold", folds=3)
        make_splits(fake_data(), "holdout")
        make_splits(fake_data(), "loso")


def test_holdout():
    data = fake_data()
    (s,) = make_splits(data, "holdout", test_fraction=0.2, val_fraction=0.25, seed=2)
    assert s.name == "holdout"
    tr, va, te = _disjoint_trials(data, s)
    assert len(te) == 8 and _subjects(data, s.test) == {0, 1, 2, 3}    # 2 of 10 trials per subject
    assert len(va) == 8                                                 # 25% of the 8 remaining per subject
    assert len(tr) == 24


def test_loso():
    data = fake_data()
    splits = make_splits(data, "loso", val_fraction=0.2)
    assert [s.name for s in splits] == ["subject01", "subject02", "subject03", "subject04"]
    for k, s in enumerate(splits):
        assert _subjects(data, s.test) == {k}
        assert k not in _subjects(data, s.train) | _subjects(data, s.val)
        assert _subjects(data, s.val) == {0, 1, 2, 3} - {k}
        _disjoint_trials(data, s)
        assert len(s.test) == int((data.seq_subject == k).sum())


def test_protocol_errors():
    data = fake_data(n_subjects=1, n_trials=3)
    with pytest.raises(ValueError, match="no test"):
        make_splits(data, "kfold", folds=10)
    with pytest.raises(ValueError, match="two subjects"):
        make_splits(data, "loso")
    with pytest.raises(ValueError, match="protocol"):
        make_splits(data, "bootstrap")
    with pytest.raises(ValueError, match="split"):
        make_splits(data, split="subject")
    with pytest.raises(ValueError, match="no sequences"):
        make_splits(fake_data(windows_per_trial=1, seq_len=2))


def test_windowed_data_helpers():
    data = fake_data(seq_len=3, seq_stride=1)
    assert len(data) == 40 * 4
    np.testing.assert_array_equal(data.seq_trial, data.trial[data.sequences[:, 0]])
    np.testing.assert_array_equal(data.seq_subject, data.seq_trial // 10)
    other = data.with_sequences(6)
    assert len(other) == 40 and other.windows is data.windows
