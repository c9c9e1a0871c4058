"""DEAP / DREAMER readers on files written by hand in the documented layouts, and every bad input."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import scipy.io

from himoe_fast import HiMoEConfig, ModalitySpec
from himoe_fast.data import DatasetError, load_deap_subject, load_dreamer, load_face_features, prepare_windows


# ----------------------------------------------------------------------------------- DEAP helpers
def _write_pickle(path, obj, protocol=2):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def _deap_arrays(n_trials=3, n_samples=600, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.normal(0, 20, (n_trials, 40, n_samples))
    labels = rng.uniform(1, 9, (n_trials, 4)).round(2)
    return data, labels


def _expect(path, fn, *match):
    with pytest.raises(DatasetError) as info:
        fn()
    msg = str(info.value)
    assert str(path) in msg, msg
    assert "\n" not in msg
    for m in match:
        assert m.lower() in msg.lower(), msg
    return msg


# ----------------------------------------------------------------------------------- DEAP
def test_deap_real_shape_read_exactly(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(0, 30, (40, 40, 8064))
    labels = rng.uniform(1, 9, (40, 4))
    path = _write_pickle(tmp_path / "s01.dat", {"labels": labels, "data": data})
    subj = load_deap_subject(path)
    assert subj.data.shape == (40, 40, 8064) and subj.labels.shape == (40, 4)
    np.testing.assert_array_equal(subj.data, data)
    np.testing.assert_array_equal(subj.labels, labels)
    assert subj.path == path and subj.face is None


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_deap_pickle_protocols_and_float32(tmp_path, protocol):
    data, labels = _deap_arrays()
    path = _write_pickle(tmp_path / "s02.dat", {"data": data.astype(np.float32), "labels": labels}, protocol)
    subj = load_deap_subject(path)
    np.testing.assert_array_equal(subj.data, data.astype(np.float32))
    np.testing.assert_array_equal(subj.labels, labels)


def _py2_pickle(arrays: dict) -> bytes:
    """A dict of float64 arrays pickled the way Python 2 + numpy did (protocol 2, byte strings as
    BINSTRING), written opcode by opcode. Python 3 can only read it with encoding="latin1"."""
    def s(b: bytes) -> bytes:                                   # SHORT_BINSTRING / BINSTRING
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + len(b).to_bytes(4, "little") + b)

    def i(v: int) -> bytes:                                     # BININT2
        return b"M" + v.to_bytes(2, "little")

    out = b"\x80\x02}("
    for key, arr in arrays.items():
        arr = np.ascontiguousarray(arr, dtype="<f8")
        dtype = (b"cnumpy\ndtype\n" + s(b"f8") + b"K\x00K\x01\x87R"
                 + b"(K\x03" + s(b"<") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
        shape = b"(" + b"".join(i(n) for n in arr.shape) + b"t"
        out += s(key.encode()) + (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
                                  + b"K\x00\x85" + s(b"b") + b"\x87R"
                                  + b"(K\x01" + shape + dtype + b"\x89" + s(arr.tobytes()) + b"tb")
    return out + b"u."


def test_deap_python2_pickle_needs_latin1(tmp_path):
    data, labels = _deap_arrays()
    data[0, 0, :4] = [np.pi, -1e300, 5e-324, 0.0]          # bytes >= 0x80 in the raw buffer
    blob = _py2_pickle({"labels": labels, "data": data})
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(blob)                                    # the default (ASCII) decoding fails
    path = tmp_path / "s03.dat"
    path.write_bytes(blob)
    subj = load_deap_subject(path)
    np.testing.assert_array_equal(subj.data, data)
    np.testing.assert_array_equal(subj.labels, labels)


def test_writer_emits_python2_pickles(tmp_path):
    import pickletools

    from himoe_fast.data.deap import save_deap_subject

    data, labels = _deap_arrays(n_trials=2, n_samples=1750)
    path = save_deap_subject(tmp_path / "s01.dat", data, labels)
    blob = path.read_bytes()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(blob)]
    assert ops[0] == ("PROTO", 2)
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    raw = [arg for name, arg in ops if name in ("BINSTRING", "SHORT_BINSTRING") and len(arg) > 8]
    assert sorted(len(r) for r in raw) == [labels.nbytes, data.nbytes]     # raw buffers as Python 2 strings
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(blob)
    subj = load_deap_subject(path)
    np.testing.assert_array_equal(subj.data, data)
    np.testing.assert_array_equal(subj.labels, labels)
    assert [p.name for p in tmp_path.iterdir()] == ["s01.dat"]


def test_deap_face_file_read(tmp_path):
    data, labels = _deap_arrays(n_trials=3)
    path = _write_pickle(tmp_path / "s04.dat", {"data": data, "labels": labels})
    f1 = np.arange(20 * 17, dtype=float).reshape(20, 17)
    f3 = np.ones((10, 17))
    np.savez(tmp_path / "s04_face.npz", fps=np.float64(30.0), trial_01=f1, trial_03=f3)
    subj = load_deap_subject(path)
    assert subj.face_fps == 30.0 and subj.face_path == tmp_path / "s04_face.npz"
    np.testing.assert_array_equal(subj.face[0], f1)
    assert subj.face[1] is None
    np.testing.assert_array_equal(subj.face[2], f3)
    assert load_deap_subject(path, face=False).face is None


def test_deap_missing_file(tmp_path):
    path = tmp_path / "s09.dat"
    _expect(path, lambda: load_deap_subject(path), "not found")


def test_deap_directory_instead_of_file(tmp_path):
    _expect(tmp_path, lambda: load_deap_subject(tmp_path), "directory")


def test_deap_truncated(tmp_path):
    data, labels = _deap_arrays()
    blob = pickle.dumps({"data": data, "labels": labels}, protocol=2)
    path = tmp_path / "s01.dat"
    path.write_bytes(blob[: len(blob) // 2])
    _expect(path, lambda: load_deap_subject(path), "pickle")


def test_deap_not_a_pickle(tmp_path):
    path = tmp_path / "s01.dat"
    path.write_text("subject,trial,value\n1,1,0.5\n")
    _expect(path, lambda: load_deap_subject(path), "pickle")


def test_deap_code_in_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = _write_pickle(tmp_path / "s01.dat", {"data": Evil(), "labels": 1})
    _expect(path, lambda: load_deap_subject(path))
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("obj, match", [
    ([1, 2, 3], "dict"),
    ({"data": np.zeros((3, 40, 600))}, "labels"),
    ({"labels": np.ones((3, 4))}, "data"),
    ({"data": np.zeros((3, 39, 600)), "labels": np.ones((3, 4))}, "shape"),
    ({"data": np.zeros((40, 600)), "labels": np.ones((40, 4))}, "shape"),
    ({"data": np.zeros((3, 40, 300)), "labels": np.ones((3, 4))}, "shape"),          # no room after the baseline
    ({"data": np.zeros((3, 40, 600)), "labels": np.ones((3, 3))}, "labels"),
    ({"data": np.zeros((3, 40, 600)), "labels": np.ones((2, 4))}, "labels"),
    ({"data": np.array(["a"] * 3), "labels": np.ones((3, 4))}, "numeric"),
])
def test_deap_bad_layout(tmp_path, obj, match):
    path = _write_pickle(tmp_path / "s01.dat", obj)
    _expect(path, lambda: load_deap_subject(path), match)


def test_deap_nan_and_inf(tmp_path):
    data, labels = _deap_arrays()
    data[1, 36, 77] = np.nan
    path = _write_pickle(tmp_path / "s01.dat", {"data": data, "labels": labels})
    msg = _expect(path, lambda: load_deap_subject(path), "nan")
    assert "trial 1" in msg and "channel 36" in msg
    data, labels = _deap_arrays()
    labels[0, 2] = np.inf
    path = _write_pickle(tmp_path / "s02.dat", {"data": data, "labels": labels})
    _expect(path, lambda: load_deap_subject(path), "labels", "nan/inf")


@pytest.mark.parametrize("bad", [0.5, 9.5, -3.0])
def test_deap_labels_out_of_range(tmp_path, bad):
    data, labels = _deap_arrays()
    labels[2, 1] = bad
    path = _write_pickle(tmp_path / "s01.dat", {"data": data, "labels": labels})
    _expect(path, lambda: load_deap_subject(path), "range")


@pytest.mark.parametrize("content, match", [
    (dict(trial_01=np.ones((5, 17))), "fps"),
    (dict(fps=np.float64(-1.0), trial_01=np.ones((5, 17))), "fps"),
    (dict(fps=np.float64(25.0), frames=np.ones((5, 17))), "unexpected key"),
    (dict(fps=np.float64(25.0), trial_07=np.ones((5, 17))), "outside"),
    (dict(fps=np.float64(25.0), trial_01=np.ones(5)), "shape"),
    (dict(fps=np.float64(25.0), trial_01=np.ones((5, 17)), trial_02=np.ones((5, 16))), "features"),
    (dict(fps=np.float64(25.0), trial_01=np.full((5, 17), np.nan)), "nan"),
])
def test_face_file_bad(tmp_path, content, match):
    path = tmp_path / "s01_face.npz"
    np.savez(path, **content)
    _expect(path, lambda: load_face_features(path, n_trials=3), match)


def test_face_file_corrupt(tmp_path):
    path = tmp_path / "s01_face.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    _expect(path, lambda: load_face_features(path, n_trials=3), "npz")


def test_unknown_modality_names_the_data_folder(tmp_path):
    data, labels = _deap_arrays()
    _write_pickle(tmp_path / "s01.dat", {"data": data, "labels": labels})
    cfg = HiMoEConfig(modalities=[ModalitySpec("eeg", 32, 128, "eeg"), ModalitySpec("heartbeat", 1, 128)],
                      targets=("valence",))
    _expect(tmp_path, lambda: prepare_windows("deap", tmp_path, cfg, use_cache=False, progress=False),
            "unknown DEAP modality", "heartbeat")
    cfg = HiMoEConfig(modalities=[ModalitySpec("gsr", 3, 128)], targets=("valence",))
    _expect(tmp_path, lambda: prepare_windows("deap", tmp_path, cfg, use_cache=False, progress=False), "channels")


def test_prepare_missing_folder_and_empty_folder(tmp_path):
    cfg = HiMoEConfig.deap(modalities=("gsr",))
    missing = tmp_path / "nope"
    _expect(missing, lambda: prepare_windows("deap", missing, cfg, progress=False), "not found")
    _expect(tmp_path, lambda: prepare_windows("deap", tmp_path, cfg, progress=False), "no DEAP subject files")


# ----------------------------------------------------------------------------------- DREAMER
def _cell(arrays):
    c = np.empty((len(arrays), 1), dtype=object)
    for i, a in enumerate(arrays):
        c[i, 0] = a
    return c


def _dreamer_subject(rng, n_trials=3, eeg_ch=14, ecg_ch=2, scores=None):
    lens = rng.integers(300, 500, n_trials)
    eeg = [rng.normal(4200, 10, (n, eeg_ch)) for n in lens]
    ecg = [rng.normal(2000, 10, (2 * n, ecg_ch)) for n in lens]
    eeg_b = [rng.normal(4200, 10, (256, eeg_ch)) for _ in lens]
    ecg_b = [rng.normal(2000, 10, (512, ecg_ch)) for _ in lens]
    if scores is None:
        scores = rng.integers(1, 6, (n_trials, 3)).astype(float)
    return {
        "Age": "25", "Gender": "female",
        "EEG": {"stimuli": _cell(eeg), "baseline": _cell(eeg_b)},
        "ECG": {"stimuli": _cell(ecg), "baseline": _cell(ecg_b)},
        "ScoreValence": scores[:, :1], "ScoreArousal": scores[:, 1:2], "ScoreDominance": scores[:, 2:3],
    }, (eeg, eeg_b, ecg, ecg_b, scores)


def _write_dreamer(path, subjects, eeg_rate=128.0, ecg_rate=256.0, drop=()):
    data = np.empty((1, len(subjects)), dtype=object)
    for i, s in enumerate(subjects):
        data[0, i] = s
    root = {"Data": data, "EEG_SamplingRate": eeg_rate, "ECG_SamplingRate": ecg_rate,
            "noOfSubjects": float(len(subjects)), "noOfVideoSequences": 18.0}
    for k in drop:
        root.pop(k)
    scipy.io.savemat(path, {"DREAMER": root})
    return path


def test_dreamer_read_exactly(tmp_path):
    rng = np.random.default_rng(0)
    s1, raw1 = _dreamer_subject(rng)
    s2, raw2 = _dreamer_subject(rng)
    path = _write_dreamer(tmp_path / "DREAMER.mat", [s1, s2])
    subjects = load_dreamer(path)
    assert len(subjects) == 2
    for subj, (eeg, eeg_b, ecg, ecg_b, scores) in zip(subjects, (raw1, raw2)):
        assert subj.eeg_sfreq == 128.0 and subj.ecg_sfreq == 256.0
        assert len(subj.eeg) == len(subj.ecg) == 3
        for got, want in zip(subj.eeg, eeg):
            assert got.shape == (14, want.shape[0])
            np.testing.assert_array_equal(got, want.T)
        for got, want in zip(subj.eeg_baseline, eeg_b):
            np.testing.assert_array_equal(got, want.T)
        for got, want in zip(subj.ecg, ecg):
            assert got.shape == (2, want.shape[0])
            np.testing.assert_array_equal(got, want.T)
        for got, want in zip(subj.ecg_baseline, ecg_b):
            np.testing.assert_array_equal(got, want.T)
        np.testing.assert_array_equal(subj.scores, scores)
        assert subj.scores.shape == (3, 3)


def test_dreamer_squeeze_quirks(tmp_path):
    # one subject (1 x 1 cell collapses), one trial per subject (1 x 1 cells), scores as row vectors
    rng = np.random.default_rng(1)
    s, (eeg, _, ecg, _, scores) = _dreamer_subject(rng, n_trials=1)
    s["ScoreValence"] = np.array([[scores[0, 0]]])
    s["ScoreArousal"] = scores[:, 1]
    path = _write_dreamer(tmp_path / "one.mat", [s])
    (subj,) = load_dreamer(path)
    np.testing.assert_array_equal(subj.eeg[0], eeg[0].T)
    np.testing.assert_array_equal(subj.ecg[0], ecg[0].T)
    np.testing.assert_array_equal(subj.scores, scores)


def test_dreamer_missing_file(tmp_path):
    path = tmp_path / "DREAMER.mat"
    _expect(path, lambda: load_dreamer(path), "not found")


def test_dreamer_corrupt_and_truncated(tmp_path):
    path = tmp_path / "DREAMER.mat"
    path.write_bytes(os.urandom(4096))
    _expect(path, lambda: load_dreamer(path), "matlab")
    rng = np.random.default_rng(2)
    good = _write_dreamer(tmp_path / "good.mat", [_dreamer_subject(rng)[0]])
    blob = good.read_bytes()
    cut = tmp_path / "cut.mat"
    cut.write_bytes(blob[: len(blob) // 2])
    _expect(cut, lambda: load_dreamer(cut))


def test_dreamer_no_variable(tmp_path):
    path = tmp_path / "x.mat"
    scipy.io.savemat(path, {"something": np.ones(3)})
    _expect(path, lambda: load_dreamer(path), "DREAMER")


@pytest.mark.parametrize("drop", ["EEG_SamplingRate", "ECG_SamplingRate", "Data"])
def test_dreamer_missing_top_field(tmp_path, drop):
    rng = np.random.default_rng(3)
    path = _write_dreamer(tmp_path / "d.mat", [_dreamer_subject(rng)[0]], drop=(drop,))
    _expect(path, lambda: load_dreamer(path), "missing field", drop)


@pytest.mark.parametrize("field", ["ECG", "ScoreArousal"])
def test_dreamer_missing_subject_field(tmp_path, field):
    rng = np.random.default_rng(4)
    s = _dreamer_subject(rng)[0]
    s.pop(field)
    path = _write_dreamer(tmp_path / "d.mat", [_dreamer_subject(rng)[0], s])
    _expect(path, lambda: load_dreamer(path), "missing field", "Data{2}", field)


def test_dreamer_missing_stimuli(tmp_path):
    rng = np.random.default_rng(5)
    s = _dreamer_subject(rng)[0]
    s["EEG"] = {"baseline": s["EEG"]["baseline"]}
    path = _write_dreamer(tmp_path / "d.mat", [s])
    _expect(path, lambda: load_dreamer(path), "EEG.stimuli")


@pytest.mark.parametrize("eeg_ch, ecg_ch", [(13, 2), (14, 3)])
def test_dreamer_wrong_channel_count(tmp_path, eeg_ch, ecg_ch):
    rng = np.random.default_rng(6)
    path = _write_dreamer(tmp_path / "d.mat", [_dreamer_subject(rng, eeg_ch=eeg_ch, ecg_ch=ecg_ch)[0]])
    _expect(path, lambda: load_dreamer(path), "channel")


@pytest.mark.parametrize("bad", [0.0, 6.0])
def test_dreamer_scores_out_of_range(tmp_path, bad):
    rng = np.random.default_rng(7)
    scores = np.full((3, 3), 3.0)
    scores[1, 2] = bad
    path = _write_dreamer(tmp_path / "d.mat", [_dreamer_subject(rng, scores=scores)[0]])
    _expect(path, lambda: load_dreamer(path), "ScoreDominance", "range")


def test_dreamer_nan(tmp_path):
    rng = np.random.default_rng(8)
    s = _dreamer_subject(rng)[0]
    s["ECG"]["stimuli"][1, 0][5, 1] = np.nan
    path = _write_dreamer(tmp_path / "d.mat", [s])
    _expect(path, lambda: load_dreamer(path), "ECG.stimuli{2}", "nan")


def test_dreamer_inconsistent_trials(tmp_path):
    rng = np.random.default_rng(9)
    s = _dreamer_subject(rng)[0]
    s["ScoreValence"] = np.ones((2, 1))
    path = _write_dreamer(tmp_path / "d.mat", [s])
    _expect(path, lambda: load_dreamer(path), "inconsistent")


def test_dreamer_unknown_modality(tmp_path):
    rng = np.random.default_rng(10)
    path = _write_dreamer(tmp_path / "DREAMER.mat", [_dreamer_subject(rng)[0]])
    cfg = HiMoEConfig(modalities=[ModalitySpec("eeg", 14, 128, "eeg"), ModalitySpec("gsr", 1, 128)],
                      targets=("valence",), label_range=(1, 5))
    _expect(path, lambda: prepare_windows("dreamer", tmp_path, cfg, use_cache=False, progress=False),
            "unknown DREAMER modality")
