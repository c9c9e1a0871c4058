"""The per-dataset adapters: the registry, what each data set says it provides, progress callbacks,
and the shared preparation pipeline driven by a data set it has never seen."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from himoe_fast.config import DEAP_MODALITIES, DEAP_SFREQ, DREAMER_MODALITIES, HiMoEConfig, ModalitySpec
from himoe_fast.data import (DatasetError, prepare_windows, recordings_config, write_synthetic_deap,
                             write_synthetic_dreamer)
from himoe_fast.data.adapters import DatasetAdapter, TrialDataset
from himoe_fast.data.cache import file_identity
from himoe_fast.data.prepare import ADAPTERS, DATASETS, adapter_for, prepare_dataset
from himoe_fast.data.synthetic_recordings import write_synthetic_recordings
from himoe_fast.data.windows import SubjectTrials


def test_registry_maps_each_dataset_name_to_its_adapter():
    assert DATASETS == ("deap", "dreamer", "recordings")
    for name in DATASETS:
        adapter = adapter_for(name)
        assert issubclass(adapter, DatasetAdapter) and adapter.name == name and ADAPTERS[name] is adapter
    with pytest.raises(ValueError, match="dataset must be one of"):
        adapter_for("seed")


def test_provided_modalities_match_the_data(tmp_path):
    deap = adapter_for("deap").provided_modalities(tmp_path)
    assert {m: ch for m, (ch, _) in deap.items()} == {**{m: len(v[0]) for m, v in DEAP_MODALITIES.items()}, "face": 17}
    assert all(sf == DEAP_SFREQ for m, (_, sf) in deap.items() if m != "face") and deap["face"][1] is None
    assert adapter_for("dreamer").provided_modalities(tmp_path) == {"eeg": (14, 128.0), "ecg": (2, 256.0)}
    assert set(DREAMER_MODALITIES) == {"eeg", "ecg"}
    rec = write_synthetic_recordings(tmp_path / "rec", 1, seed=0, n_recordings=1, recording_s=20.0)
    # the synthetic writer's layout: 32 EEG + 2 EOG at 128 Hz, 2 EMG at 256 Hz, physiology at 64 Hz
    assert adapter_for("recordings").provided_modalities(rec) == {
        "eeg": (32, 128.0), "eog": (2, 128.0), "gsr": (1, 64.0), "resp": (1, 64.0), "ppg": (1, 64.0),
        "temp": (1, 64.0), "emg": (2, 256.0)}


def test_progress_callback_hears_every_subject(tmp_path):
    write_synthetic_deap(tmp_path / "deap", 3, seed=0, n_trials=2, trial_s=6.0)
    calls = []
    wd = prepare_windows("deap", tmp_path / "deap", HiMoEConfig.deap(modalities=("gsr",)), use_cache=False,
                         progress=lambda done, total, label: calls.append((done, total, label)))
    assert calls == [(0, 3, ""), (1, 3, "s01.dat"), (2, 3, "s02.dat"), (3, 3, "s03.dat")]
    assert wd.n_subjects == 3

    write_synthetic_dreamer(tmp_path / "DREAMER.mat", 2, seed=0, n_trials=2, clip_s=(6.0, 7.0), baseline_s=3.0)
    calls.clear()
    prepare_windows("dreamer", tmp_path / "DREAMER.mat", HiMoEConfig.dreamer(), use_cache=False,
                    progress=lambda *a: calls.append(a))
    assert calls == [(0, 1, "reading DREAMER.mat"), (0, 2, ""), (1, 2, "subject 1"), (2, 2, "subject 2")]


def test_no_progress_prints_nothing(tmp_path, capsys):
    write_synthetic_deap(tmp_path, 1, seed=0, n_trials=1, trial_s=6.0)
    for quiet in (False, None):
        prepare_windows("deap", tmp_path, HiMoEConfig.deap(modalities=("gsr",)), use_cache=False, progress=quiet)
    assert capsys.readouterr().out == ""


def test_recordings_progress_names_subjects(tmp_path):
    rec = write_synthetic_recordings(tmp_path / "rec", 2, seed=0, n_recordings=1, recording_s=20.0)
    calls = []
    prepare_windows("recordings", rec, recordings_config(rec, ["gsr"]), use_cache=False,
                    progress=lambda *a: calls.append(a))
    assert calls == [(0, 2, ""), (1, 2, "sub-01"), (2, 2, "sub-02")]


# --------------------------------------------------------------------------- a data set of our own
class _Ramps(TrialDataset):
    """Two subjects of ramps: trial k of subject s holds ``value = 1000 s + 100 k + t`` at sample t,
    one channel at 20 Hz, trial k lasting 2 + k seconds; the rating is ``[s, k]``."""

    name = "ramps"
    title = "ramps"
    files: list[Path]

    def __init__(self, path: Path):
        self.files, self.n_subjects = [path], 2

    @classmethod
    def open(cls, data_dir, cfg, *, subjects=None, face_dir=None, strict_rates=False):
        if not data_dir.exists():
            raise DatasetError(data_dir, "ramps file not found")
        return cls(data_dir)

    @classmethod
    def provided_modalities(cls, data_dir):
        return {"x": (1, 20.0)}

    def identity(self):
        return [file_identity(self.files[0])]

    def iter_trials(self, req, progress=None):
        for s in range(2):
            trials = [np.array([1000.0 * s + 100.0 * k + np.arange(20 * (2 + k))], np.float32) for k in range(3)]
            yield self.files[0], SubjectTrials({"x": trials}, {"x": [None] * 3},
                                               np.array([[s, k] for k in range(3)], np.float32))


def test_a_new_dataset_needs_only_an_adapter(tmp_path):
    (tmp_path / "ramps.bin").write_bytes(b"")
    cfg = HiMoEConfig(modalities=[ModalitySpec("x", 1, 20.0, "signal")], targets=("valence", "arousal"), window_s=1.0)
    wd = prepare_dataset(_Ramps, tmp_path / "ramps.bin", cfg, seq_len=1, cache_dir=tmp_path / "c", progress=False)
    # trial k lasts 2 + k seconds: 2, 3, 4 one-second windows per subject
    assert wd.n_windows == 2 * (2 + 3 + 4)
    assert wd.subject.tolist() == [0] * 9 + [1] * 9
    assert wd.trial.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 4, 5, 5, 5, 5]
    win = np.asarray(wd.windows["x"])[:, 0]                         # [n, 20]
    k = wd.trial % 3
    first = 1000.0 * wd.subject + 100.0 * k + 20.0 * np.concatenate([np.arange(n) for n in (2, 3, 4, 2, 3, 4)])
    np.testing.assert_array_equal(win, first[:, None] + np.arange(20)[None, :])
    np.testing.assert_array_equal(wd.labels, np.stack([wd.subject, k], 1).astype(np.float32))
    assert wd.meta["dataset"] == "ramps" and Path(wd.meta["cache_path"]).name.startswith("ramps-")
    assert wd.meta["settings"]["versions"][1] == _Ramps.version
    again = prepare_dataset(_Ramps, tmp_path / "ramps.bin", cfg, seq_len=1, cache_dir=tmp_path / "c", progress=False)
    assert again.meta["from_cache"] is True
    np.testing.assert_array_equal(np.asarray(again.windows["x"]), np.asarray(wd.windows["x"]))
    with pytest.raises(DatasetError, match="ramps file not found"):
        prepare_dataset(_Ramps, tmp_path / "nothing", cfg, progress=False)
