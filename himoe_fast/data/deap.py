"""DEAP reader: ``data_preprocessed_python/sNN.dat`` plus optional per-trial face features.

File format (Koelstra et al. 2012, the "preprocessed data in python format" release)
-----------------------------------------------------------------------------------
One pickle per subject, ``s01.dat`` ... ``s32.dat``, written by Python 2 and therefore read with
``pickle.load(f, encoding="latin1")``. It holds a dict with two numpy arrays:

=========  ======================  ==========================================================
key        shape                   content
=========  ======================  ==========================================================
``data``   ``[40, 40, 8064]``      trials x channels x samples, float, 128 Hz, 63 s per trial;
                                   the first 3 s (384 samples) are the pre-trial baseline
``labels`` ``[40, 4]``             valence, arousal, dominance, liking self-ratings on 1-9
=========  ======================  ==========================================================

Channels 0-31 are EEG (Geneva order, :data:`himoe_fast.config.DEAP_EEG_CHANNELS`), then 32 hEOG,
33 vEOG, 34 zygomaticus EMG, 35 trapezius EMG, 36 GSR (skin resistance, Ohm), 37 respiration belt,
38 plethysmograph, 39 skin temperature (:data:`himoe_fast.config.DEAP_MODALITIES`). The reader also
accepts other trial counts and trial lengths (custom recordings in this layout) as long as there
are 40 channels, more than 3 s of samples and one label row per trial.

The pickle is read with a restricted unpickler that only rebuilds numpy arrays, dicts and plain
Python values, so a malicious ``.dat`` file cannot run code.

Optional face features (this project's layout)
----------------------------------------------
DEAP ships face *videos* (subjects 1-22), not features. Users who extract per-frame features
(e.g. OpenFace action-unit intensities) put them in a folder of their own, one ``sNN_face.npz`` per
subject file (``s01.dat`` -> ``FACE_DIR/s01_face.npz``; ``--face-dir FACE_DIR`` on the command
line, ``face_dir=`` in :func:`~himoe_fast.data.prepare_windows`). Keep them out of
``data_preprocessed_python/``: other DEAP readers (TorchEEG's, for one) unpickle every file in that
folder and fail on anything else. (Files beside ``sNN.dat``, the layout of earlier versions, are
still read when no face folder is given.) Each file holds

* ``fps``: scalar, frames per second of the feature rows;
* ``trial_01`` ... ``trial_40``: float arrays ``[n_frames, n_features]``, one per trial (1-based,
  in the same trial order as ``data``). Frame 0 is time 0 of the trial's 63 s recording, i.e. the
  start of the 3 s baseline, exactly like sample 0 of ``data``. A trial without a key has no face
  recording; a recording shorter than the trial ends early. Both are marked as not recorded
  (``WindowedData.available`` is False there) instead of being invented.

All trials must have the same number of features (``HiMoEConfig``'s ``face`` modality defaults to
17 features at 25 fps; other rates are resampled to the config's rate). NaN/Inf are rejected.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import (DEAP_FACE_FEATURES, DEAP_MODALITIES, DEAP_SFREQ, DEAP_TARGETS, HiMoEConfig, ModalitySpec,
                      canonical_modality)
from ..io import atomic_write
from ..progress import ProgressCallback, report
from .adapters import PrepareRequest, TrialDataset, label_columns
from .cache import file_identity
from .errors import DatasetError, require_file
from .preprocess import (PreprocessConfig, check_lags_fit, filter_signal, lag_samples, resample_signal, shift,
                         standardize)
from .windows import SubjectTrials

DEAP_CHANNELS = 40
DEAP_BASELINE_S = 3.0                  # pre-trial baseline at the start of every trial
DEAP_BASELINE_SAMPLES = 384            # = 3 s at 128 Hz
DEAP_TRIAL_SAMPLES = 8064              # 63 s at 128 Hz
DEAP_TRIALS = 40
DEAP_LABEL_RANGE = (1.0, 9.0)
FACE_SUFFIX = "_face.npz"

_FACE_KEY = re.compile(r"^trial_(\d+)$")


@dataclass
class DeapSubject:
    """One DEAP subject file.

    Attributes:
        path: the ``sNN.dat`` file.
        data: float ``[n_trials, 40, n_samples]`` (``[40, 40, 8064]`` for real DEAP), 128 Hz.
        labels: float ``[n_trials, 4]``: valence, arousal, dominance, liking on 1-9.
        face: ``None`` (no face file) or one entry per trial: float ``[n_frames, n_features]`` or
            ``None`` where that trial has no face recording.
        face_fps: frame rate of ``face`` (``None`` without a face file).
        face_path: the face file, if any.
    """

    path: Path
    data: np.ndarray
    labels: np.ndarray
    face: list[np.ndarray | None] | None = None
    face_fps: float | None = None
    face_path: Path | None = None

    sfreq: float = DEAP_SFREQ
    targets: tuple[str, ...] = DEAP_TARGETS

    @property
    def n_trials(self) -> int:
        return int(self.data.shape[0])


# ---------------------------------------------------------------------------------------------- read
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild numpy arrays / dtypes / scalars and builtin containers."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"),
        ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor"),
        ("__builtin__", "object"), ("builtins", "object"),
        ("_codecs", "encode"),                  # how protocol-2 pickles from Python 3 store bytes
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are allowed)")
        return super().find_class(module, name)


def _first_bad(a: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def _numeric(path: Path, name: str, value) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise DatasetError(path, f"{name!r} is not an array ({exc})") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DatasetError(path, f"{name!r} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def load_deap_subject(path: str | os.PathLike, *, face: bool | str | os.PathLike = True) -> DeapSubject:
    """Read and validate one DEAP ``sNN.dat`` file.

    Args:
        path: the subject pickle.
        face: a path reads that face file (it must exist); ``True`` (default) reads
            ``sNN_face.npz`` beside the subject file when it exists (the earlier layout; see the module
            docstring for the face folder); ``False`` skips face features.

    Returns:
        :class:`DeapSubject` with ``.data [n_trials, 40, n_samples]`` and ``.labels [n_trials, 4]``.

    Raises:
        DatasetError: missing file, truncated / non-pickle content, missing keys, wrong shapes,
            NaN/Inf values, labels outside 1-9, or a bad face file. The message names the file.
    """
    p = require_file(path, "DEAP subject file")
    try:
        with open(p, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="latin1").load()
    except MemoryError:
        raise
    except Exception as exc:
        raise DatasetError(p, f"not a readable DEAP pickle (truncated or corrupt?): {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise DatasetError(p, f"expected a dict with 'data' and 'labels', got {type(obj).__name__}")
    for key in ("data", "labels"):
        if key not in obj:
            raise DatasetError(p, f"missing key {key!r} (found: {', '.join(map(str, obj)) or 'nothing'})")
    data = _numeric(p, "data", obj["data"])
    labels = _numeric(p, "labels", obj["labels"])
    if data.ndim != 3 or data.shape[1] != DEAP_CHANNELS or data.shape[2] <= DEAP_BASELINE_SAMPLES or data.shape[0] < 1:
        raise DatasetError(p, f"'data' has shape {data.shape}, expected [trials, 40, samples] like "
                              f"(40, 40, 8064) with more than {DEAP_BASELINE_SAMPLES} samples")
    if labels.shape != (data.shape[0], len(DEAP_TARGETS)):
        raise DatasetError(p, f"'labels' has shape {labels.shape}, expected ({data.shape[0]}, 4) "
                              "(valence, arousal, dominance, liking per trial)")
    if not np.isfinite(data).all():
        t, c, s = _first_bad(data)
        raise DatasetError(p, f"'data' contains NaN/Inf (first at trial {t}, channel {c}, sample {s})")
    if not np.isfinite(labels).all():
        raise DatasetError(p, f"'labels' contains NaN/Inf (first at {_first_bad(labels)})")
    lo, hi = DEAP_LABEL_RANGE
    if labels.min() < lo or labels.max() > hi:
        raise DatasetError(p, f"labels out of range {lo:g}-{hi:g} (min {labels.min():g}, max {labels.max():g})")

    subject = DeapSubject(path=p, data=data, labels=labels.astype(np.float64))
    face_path = None
    if face is True:
        candidate = face_file_for(p)
        face_path = candidate if candidate.exists() else None
    elif face is not False:
        face_path = require_file(face, "face feature file")
    if face_path is not None:
        subject.face, subject.face_fps = load_face_features(face_path, n_trials=subject.n_trials)
        subject.face_path = face_path
    return subject


def face_file_for(subject_path: str | os.PathLike, face_dir: str | os.PathLike | None = None) -> Path:
    """``.../s01.dat`` -> ``FACE_DIR/s01_face.npz`` (without ``face_dir``: ``.../s01_face.npz`` beside it)."""
    p = Path(subject_path)
    return (Path(face_dir) if face_dir is not None else p.parent) / (p.stem + FACE_SUFFIX)


def load_face_features(path: str | os.PathLike, n_trials: int) -> tuple[list[np.ndarray | None], float]:
    """Read a ``sNN_face.npz`` file (layout in the module docstring).

    Returns:
        (per-trial list of float ``[n_frames, n_features]`` arrays or ``None``, frames per second).
    """
    p = require_file(path, "face feature file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            content = {k: npz[k] for k in npz.files}
    except Exception as exc:
        raise DatasetError(p, f"not a readable .npz face feature file: {type(exc).__name__}: {exc}") from None
    if "fps" not in content:
        raise DatasetError(p, "missing key 'fps' (frames per second)")
    fps_arr = _numeric(p, "fps", content.pop("fps"))
    if fps_arr.size != 1 or not np.isfinite(fps_arr).all() or float(fps_arr.reshape(())) <= 0:
        raise DatasetError(p, f"'fps' must be one positive number, got {fps_arr!r}")
    trials: list[np.ndarray | None] = [None] * n_trials
    n_feat = None
    for key in sorted(content):
        m = _FACE_KEY.match(key)
        if not m:
            raise DatasetError(p, f"unexpected key {key!r}; expected 'fps' and 'trial_01'..'trial_{n_trials:02d}'")
        k = int(m.group(1))
        if not 1 <= k <= n_trials:
            raise DatasetError(p, f"key {key!r} is outside trials 1-{n_trials}")
        arr = _numeric(p, key, content[key])
        if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
            raise DatasetError(p, f"{key!r} has shape {arr.shape}, expected [n_frames, n_features]")
        if n_feat is None:
            n_feat = arr.shape[1]
        elif arr.shape[1] != n_feat:
            raise DatasetError(p, f"{key!r} has {arr.shape[1]} features, other trials have {n_feat}")
        if not np.isfinite(arr).all():
            raise DatasetError(p, f"{key!r} contains NaN/Inf (first at frame/feature {_first_bad(arr)})")
        trials[k - 1] = arr.astype(np.float64)
    return trials, float(fps_arr.reshape(()))


# --------------------------------------------------------------------------------------------- write
def _py2_pickle_array(f, arr: np.ndarray) -> None:
    """Emit the protocol-2 opcodes with which Python 2 + numpy pickled an ndarray: ``_reconstruct``,
    the state tuple ``(1, shape, dtype, is_fortran, raw bytes as a BINSTRING)``."""
    def string(b: bytes) -> bytes:                      # SHORT_BINSTRING / BINSTRING
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + len(b).to_bytes(4, "little") + b

    def integer(v: int) -> bytes:                       # BININT1 / BININT2 / BININT
        return b"K" + bytes([v]) if v < 256 else b"M" + v.to_bytes(2, "little") if v < 65536 else \
            b"J" + v.to_bytes(4, "little", signed=True)

    arr = np.ascontiguousarray(arr)
    code = {np.dtype("<f8"): b"f8", np.dtype("<f4"): b"f4"}[arr.dtype.newbyteorder("<")]
    dtype = (b"cnumpy\ndtype\n" + string(code) + b"K\x00K\x01\x87R(K\x03" + string(b"<")
             + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb")
    f.write(b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + string(b"b") + b"\x87R(K\x01("
            + b"".join(integer(n) for n in arr.shape) + b"t" + dtype + b"\x89")
    raw = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    f.write(b"T" + len(raw).to_bytes(4, "little"))
    f.write(raw)
    f.write(b"tb")


def save_deap_subject(path: str | os.PathLike, data: np.ndarray, labels: np.ndarray) -> Path:
    """Write one subject exactly like DEAP's Python 2 pickles: protocol 2, ``{'labels', 'data'}``
    with the array buffers as raw byte strings (so Python 3 needs ``encoding="latin1"``).

    ``data`` and ``labels`` are written as float64 (or float32 if given so).
    """
    def write(f) -> None:
        f.write(b"\x80\x02}(")
        for key, arr in (("labels", labels), ("data", data)):
            arr = np.asarray(arr)
            if arr.dtype not in (np.float32, np.float64):
                arr = arr.astype(np.float64)
            f.write(b"U" + bytes([len(key)]) + key.encode())
            _py2_pickle_array(f, arr)
        f.write(b"u.")

    return atomic_write(path, write)


def save_face_features(path: str | os.PathLike, trials: list[np.ndarray | None], fps: float) -> Path:
    """Write a ``sNN_face.npz`` (trials that are ``None`` are left out, i.e. not recorded)."""
    arrays = {f"trial_{k + 1:02d}": np.asarray(a) for k, a in enumerate(trials) if a is not None}
    return atomic_write(path, lambda f: np.savez(f, fps=np.float64(fps), **arrays))


# ------------------------------------------------------------------------------------ adapter
#: DEAP channel index -> signal family (decides the filter).
DEAP_FAMILY = ("eeg",) * 32 + ("eog", "eog", "emg", "emg", "gsr", "resp", "ppg", "temp")
_FAMILY_CHANNELS = {f: [c for c, g in enumerate(DEAP_FAMILY) if g == f] for f in dict.fromkeys(DEAP_FAMILY)}
_POS_IN_FAMILY = {c: _FAMILY_CHANNELS[f].index(c) for c, f in enumerate(DEAP_FAMILY)}


def deap_files(data_dir: Path) -> list[Path]:
    """The subject files ``sNN.dat`` of a DEAP folder (or of its ``data_preprocessed_python``), sorted."""
    if not data_dir.exists():
        raise DatasetError(data_dir, "DEAP data folder not found")
    if data_dir.is_file():
        raise DatasetError(data_dir, "expected the DEAP data_preprocessed_python folder, got a file")
    folder = data_dir
    if not any(folder.glob("s*.dat")) and (folder / "data_preprocessed_python").is_dir():
        folder = folder / "data_preprocessed_python"
    files = sorted(p for p in folder.glob("s*.dat") if p.stem[1:].isdigit())
    if not files:
        raise DatasetError(data_dir, "no DEAP subject files (s01.dat, s02.dat, ...) in this folder")
    return files


def _deap_modalities(cfg: HiMoEConfig, where: Path) -> list[tuple[ModalitySpec, tuple[int, ...] | None]]:
    """Each config modality with its DEAP channel indices (None: face features)."""
    out = []
    for spec in cfg.modalities:
        name = canonical_modality(spec.name)
        if name == "face":
            out.append((spec, None))
            continue
        if name not in DEAP_MODALITIES:
            known = ", ".join(sorted([*DEAP_MODALITIES, "face"]))
            raise DatasetError(where, f"unknown DEAP modality {spec.name!r} (known: {known})")
        idx = DEAP_MODALITIES[name][0]
        if spec.channels != len(idx):
            raise DatasetError(where, f"modality {spec.name!r} has {len(idx)} channels in DEAP, the config says {spec.channels}")
        out.append((spec, idx))
    return out


def _baseline(arr: np.ndarray, n_base: int, mode: str) -> np.ndarray:
    """Drop the first ``n_base`` samples (and subtract their mean when ``mode == "subtract"``)."""
    if mode == "subtract" and n_base > 0:
        return arr[..., n_base:] - arr[..., :n_base].mean(-1, keepdims=True)
    return arr[..., n_base:]


def _face_trials(subj: DeapSubject, spec: ModalitySpec, pp: PreprocessConfig, lag_s: float
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Face features on the config's frame grid, lagged, baseline-handled, standardised."""
    total_s = subj.data.shape[-1] / DEAP_SFREQ
    fps = spec.sfreq
    n_out = int(round(total_s * fps))
    n_base = int(round(DEAP_BASELINE_S * fps))
    k = lag_samples(lag_s, fps)
    trials, valid = [], []
    faces = subj.face if subj.face is not None else [None] * subj.n_trials
    for arr in faces:
        if arr is None:
            x = np.zeros((spec.channels, n_out))
            v = np.zeros(n_out, bool)
        else:
            if arr.shape[1] != spec.channels:
                raise DatasetError(subj.face_path, f"face features have {arr.shape[1]} features per frame, "
                                                   f"the config's {spec.name!r} modality expects {spec.channels}")
            pos = np.arange(n_out) * (subj.face_fps / fps)            # fractional input frame per output frame
            i0 = np.minimum(np.floor(pos).astype(np.int64), arr.shape[0] - 1)
            i1 = np.minimum(i0 + 1, arr.shape[0] - 1)
            w = np.clip(pos - i0, 0.0, 1.0)[:, None]
            x = (arr[i0] * (1.0 - w) + arr[i1] * w).T
            v = pos <= arr.shape[0] - 1 + 1e-9
        x, v = shift(x, k), shift(v, k)
        if pp.baseline == "subtract" and v[:n_base].any():
            x = x - x[:, :n_base][:, v[:n_base]].mean(1, keepdims=True)
        trials.append(x[:, n_base:])
        valid.append(v[n_base:].copy())
    return standardize(trials, pp.normalize, pp.clip, valid), valid


def _process_deap(subj: DeapSubject, mods, cfg: HiMoEConfig, pp: PreprocessConfig, lags: dict[str, float],
                  label_cols: list[int]) -> SubjectTrials:
    """Filter each signal family once, resample, lag, handle the baseline and z-score one subject."""
    fs = DEAP_SFREQ
    needed = sorted({DEAP_FAMILY[c] for _, idx in mods if idx is not None for c in idx})
    filtered: dict[str, np.ndarray] = {}
    for fam in needed:                       # each family filtered once, all trials x channels in one call
        filtered[fam] = filter_signal(subj.data[:, _FAMILY_CHANNELS[fam]], fs, pp.filter_for(fam),
                                      line_freq=pp.line_freq, method=pp.method)
    signals, valid = {}, {}
    for spec, idx in mods:
        lag = lags.get(spec.name, 0.0)
        if idx is None:
            signals[spec.name], valid[spec.name] = _face_trials(subj, spec, pp, lag)
            continue
        parts = [filtered[DEAP_FAMILY[c]][:, _POS_IN_FAMILY[c]] for c in idx]
        arr = np.stack(parts, axis=1)                                       # [n_trials, C, n]
        arr = resample_signal(arr, fs, spec.sfreq)
        arr = shift(arr, lag_samples(lag, spec.sfreq))
        arr = _baseline(arr, int(round(DEAP_BASELINE_S * spec.sfreq)), pp.baseline)
        signals[spec.name] = standardize(list(arr), pp.normalize, pp.clip)
        valid[spec.name] = [None] * subj.n_trials
    return SubjectTrials(signals, valid, subj.labels[:, label_cols])


class DeapAdapter(TrialDataset):
    """DEAP for :func:`~himoe_fast.data.prepare_windows`: ``data_dir`` is the
    ``data_preprocessed_python`` folder (or one containing it); face features come from
    ``face_dir`` (``sNN_face.npz``; None: beside the ``sNN.dat`` files)."""

    name = "deap"
    title = "DEAP"

    def __init__(self, data_dir: Path, files: list[Path], mods, label_cols: list[int],
                 face_files: list[Path | None], face_dir: str | os.PathLike | None, uses_face: bool):
        self.data_dir, self.files, self.mods, self.label_cols = data_dir, files, mods, label_cols
        self.face_files, self.face_dir, self.uses_face = face_files, face_dir, uses_face
        self.n_subjects = len(files)

    @classmethod
    def open(cls, data_dir: Path, cfg: HiMoEConfig, *, subjects: int | None = None,
             face_dir: str | os.PathLike | None = None, strict_rates: bool = False) -> "DeapAdapter":
        files = deap_files(data_dir)
        if subjects is not None:
            if int(subjects) > len(files):
                raise DatasetError(data_dir, f"{subjects} subjects requested but only {len(files)} subject files found")
            files = files[: int(subjects)]
        mods = _deap_modalities(cfg, data_dir)
        label_cols = label_columns(cfg, DEAP_TARGETS, data_dir)
        uses_face = any(idx is None for _, idx in mods)
        if uses_face and face_dir is not None and not Path(face_dir).is_dir():
            raise DatasetError(face_dir, "face feature folder not found")
        face_files = [face_file_for(f, face_dir) if uses_face else None for f in files]
        face_files = [ff if ff is not None and ff.exists() else None for ff in face_files]
        return cls(data_dir, files, mods, label_cols, face_files, face_dir, uses_face)

    @classmethod
    def provided_modalities(cls, data_dir: Path) -> dict[str, tuple[int, float | None]]:
        out: dict[str, tuple[int, float | None]] = {m: (len(v[0]), DEAP_SFREQ) for m, v in DEAP_MODALITIES.items()}
        out["face"] = (DEAP_FACE_FEATURES, None)          # resampled to the config's frame rate
        return out

    def identity(self) -> list:
        identity = [file_identity(f) for f in self.files]
        if self.uses_face:
            identity += [file_identity(ff) if ff is not None else None for ff in self.face_files]
        return identity

    def iter_trials(self, req: PrepareRequest, progress: ProgressCallback | None = None
                    ) -> Iterator[tuple[Path, SubjectTrials]]:
        n_face = 0
        report(progress, 0, len(self.files), "")
        for s, f in enumerate(self.files):
            subj = load_deap_subject(f, face=self.face_files[s] if self.face_files[s] is not None else False)
            lags = req.lags_for(s)
            check_lags_fit(f, lags, subj.data.shape[-1] / DEAP_SFREQ - DEAP_BASELINE_S)
            n_face += subj.face is not None
            trials = _process_deap(subj, self.mods, req.cfg, req.pp, lags, self.label_cols)
            del subj
            yield f, trials
            report(progress, s + 1, len(self.files), f.name)
        if self.uses_face and n_face == 0:
            warnings.warn(f"{self.face_dir if self.face_dir is not None else self.data_dir}: no face feature files "
                          "(sNN_face.npz); the 'face' modality is marked unavailable everywhere", stacklevel=2)
