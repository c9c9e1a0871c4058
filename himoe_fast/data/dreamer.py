"""DREAMER reader: ``DREAMER.mat`` (Katsigiannis & Ramzan 2018).

File format
-----------
A MATLAB (v5) file with one struct variable ``DREAMER``::

    DREAMER.Data{s}                 1 x 23 cell, one struct per subject
        .Age, .Gender               (informational, optional here)
        .EEG.stimuli{k}             18 x 1 cell; (n_samples, 14) double, time-major, 128 Hz
        .EEG.baseline{k}            18 x 1 cell; (n_samples, 14), the neutral clip before trial k
        .ECG.stimuli{k}             (n_samples, 2) at 256 Hz
        .ECG.baseline{k}            (n_samples, 2)
        .ScoreValence               (18, 1) self-ratings on 1-5 (integers)
        .ScoreArousal               (18, 1)
        .ScoreDominance             (18, 1)
    DREAMER.EEG_SamplingRate        128
    DREAMER.ECG_SamplingRate        256
    DREAMER.EEG_Electrodes          AF3 F7 F3 FC5 T7 P7 O1 O2 P8 T8 FC6 F4 F8 AF4 (optional here)

Clip lengths differ per trial (and EEG/ECG cover the same seconds at their own rates). The raw
Emotiv / Shimmer values carry DC offsets and line noise; :mod:`himoe_fast.data.preprocess` filters
them. The file is read with ``scipy.io.loadmat(simplify_cells=True)``; the reader copes with the
usual squeezing quirks (a 1 x 1 cell collapsing to its content, (18, 1) vs (18,) score vectors).
MATLAB v7.3 (HDF5) files are not supported: re-save with ``save(..., '-v7')``. The reader accepts
any number of subjects and trials (>= 1) as long as the fields agree with each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import scipy.io

from ..config import DREAMER_EEG_CHANNELS, DREAMER_MODALITIES, DREAMER_TARGETS, HiMoEConfig, ModalitySpec
from ..progress import ProgressCallback, report
from .adapters import PrepareRequest, TrialDataset, label_columns
from .cache import file_identity
from .errors import DatasetError, require_file
from .preprocess import PreprocessConfig, check_lags_fit, filter_signal, lag_samples, resample_signal, shift, standardize
from .windows import SubjectTrials

DREAMER_N_EEG = 14    # EEG channels
DREAMER_N_ECG = 2     # ECG leads
DREAMER_SCORE_RANGE = (1.0, 5.0)
DREAMER_SCORE_FIELDS = ("ScoreValence", "ScoreArousal", "ScoreDominance")


@dataclass
class DreamerSubject:
    """One DREAMER subject.

    Attributes:
        index: 0-based position in ``DREAMER.Data``.
        eeg, eeg_baseline: per trial float ``[14, n]`` (channel-major) at ``eeg_sfreq``.
        ecg, ecg_baseline: per trial float ``[2, n]`` at ``ecg_sfreq``.
        scores: float ``[n_trials, 3]``: valence, arousal, dominance on 1-5.
    """

    index: int
    eeg: list[np.ndarray]
    eeg_baseline: list[np.ndarray]
    ecg: list[np.ndarray]
    ecg_baseline: list[np.ndarray]
    scores: np.ndarray
    eeg_sfreq: float = 128.0
    ecg_sfreq: float = 256.0
    age: Any = None
    gender: Any = None
    path: Path | None = None
    targets: tuple[str, ...] = field(default=DREAMER_TARGETS)

    @property
    def n_trials(self) -> int:
        return int(self.scores.shape[0])


def _cells(value: Any) -> list:
    """A MATLAB cell / struct array as a Python list, whatever loadmat squeezed it into."""
    if isinstance(value, list):
        return value
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.ravel())
    return [value]    # a 1 x 1 cell squeezed to its content


def _get(path: Path, obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise DatasetError(path, f"{where} is not a struct (got {type(obj).__name__})")
    if key not in obj:
        raise DatasetError(path, f"missing field {where}.{key}")
    return obj[key]


def _rate(path: Path, value: Any, where: str) -> float:
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise DatasetError(path, f"{where} is not a number") from None
    if arr.size != 1 or not np.isfinite(arr[0]) or arr[0] <= 0:
        raise DatasetError(path, f"{where} must be one positive number, got {value!r}")
    return float(arr[0])


def _signal(path: Path, value: Any, channels: int, where: str) -> np.ndarray:
    """Validate one ``(n_samples, channels)`` clip and return it channel-major ``[channels, n]``."""
    if not isinstance(value, np.ndarray) or value.dtype == object or not (
        np.issubdtype(value.dtype, np.floating) or np.issubdtype(value.dtype, np.integer)
    ):
        raise DatasetError(path, f"{where} must be a numeric (n_samples, {channels}) array, got {type(value).__name__}"
                                 f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}")
    if value.ndim != 2 or value.shape[1] != channels or value.shape[0] < 2:
        raise DatasetError(path, f"{where} has shape {value.shape}, expected (n_samples, {channels}) time-major "
                                 f"(wrong channel count?)")
    if not np.isfinite(value).all():
        raise DatasetError(path, f"{where} contains NaN/Inf")
    return np.ascontiguousarray(value.T, dtype=np.float64)


def load_dreamer(path: str | os.PathLike) -> list[DreamerSubject]:
    """Read and validate ``DREAMER.mat``.

    Returns:
        one :class:`DreamerSubject` per entry of ``DREAMER.Data`` (file order) with ``.eeg`` /
        ``.eeg_baseline`` (lists of ``[14, n]``), ``.ecg`` / ``.ecg_baseline`` (lists of ``[2, n]``)
        and ``.scores [n_trials, 3]``.

    Raises:
        DatasetError: missing / corrupt file, missing fields, wrong channel counts, NaN/Inf, scores
            outside 1-5, inconsistent trial counts. The message names the file and the field.
    """
    p = require_file(path, "DREAMER .mat file")
    try:
        mat = scipy.io.loadmat(p, simplify_cells=True)
    except NotImplementedError:
        raise DatasetError(p, "MATLAB v7.3 (HDF5) files are not supported; re-save it with save(..., '-v7')") from None
    except MemoryError:
        raise
    except Exception as exc:
        raise DatasetError(p, f"not a readable MATLAB file (truncated or corrupt?): {type(exc).__name__}: {exc}") from None
    if "DREAMER" not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise DatasetError(p, f"no variable 'DREAMER' (found: {found})")
    root = mat["DREAMER"]
    eeg_sf = _rate(p, _get(p, root, "EEG_SamplingRate", "DREAMER"), "DREAMER.EEG_SamplingRate")
    ecg_sf = _rate(p, _get(p, root, "ECG_SamplingRate", "DREAMER"), "DREAMER.ECG_SamplingRate")
    entries = _cells(_get(p, root, "Data", "DREAMER"))
    if not entries:
        raise DatasetError(p, "DREAMER.Data is empty")

    subjects = []
    for s, entry in enumerate(entries):
        where = f"DREAMER.Data{{{s + 1}}}"
        clips: dict[str, list[np.ndarray]] = {}
        for sig, channels in (("EEG", DREAMER_N_EEG), ("ECG", DREAMER_N_ECG)):
            block = _get(p, entry, sig, where)
            for part in ("stimuli", "baseline"):
                cells = _cells(_get(p, block, part, f"{where}.{sig}"))
                clips[f"{sig}.{part}"] = [
                    _signal(p, c, channels, f"{where}.{sig}.{part}{{{k + 1}}}") for k, c in enumerate(cells)
                ]
        scores = []
        for name in DREAMER_SCORE_FIELDS:
            raw = _get(p, entry, name, where)
            try:
                arr = np.asarray(raw, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                raise DatasetError(p, f"{where}.{name} is not numeric") from None
            if not np.isfinite(arr).all():
                raise DatasetError(p, f"{where}.{name} contains NaN/Inf")
            lo, hi = DREAMER_SCORE_RANGE
            if arr.size and (arr.min() < lo or arr.max() > hi):
                raise DatasetError(p, f"{where}.{name} out of range {lo:g}-{hi:g} (min {arr.min():g}, max {arr.max():g})")
            scores.append(arr)
        n = len(clips["EEG.stimuli"])
        counts = {k: len(v) for k, v in clips.items()} | {f: len(a) for f, a in zip(DREAMER_SCORE_FIELDS, scores)}
        if n < 1 or any(c != n for c in counts.values()):
            detail = ", ".join(f"{k}: {c}" for k, c in counts.items())
            raise DatasetError(p, f"{where} has inconsistent trial counts ({detail})")
        subjects.append(DreamerSubject(
            index=s, eeg=clips["EEG.stimuli"], eeg_baseline=clips["EEG.baseline"],
            ecg=clips["ECG.stimuli"], ecg_baseline=clips["ECG.baseline"],
            scores=np.stack(scores, axis=1), eeg_sfreq=eeg_sf, ecg_sfreq=ecg_sf,
            age=entry.get("Age"), gender=entry.get("Gender"), path=p,
        ))
    return subjects


def dreamer_struct(subjects: list[dict], eeg_sfreq: float = 128.0, ecg_sfreq: float = 256.0) -> dict:
    """Build the nested ``DREAMER`` struct for ``scipy.io.savemat`` from plain per-subject dicts.

    Each dict holds ``eeg``, ``eeg_baseline`` (lists of ``[n, 14]`` time-major arrays), ``ecg``,
    ``ecg_baseline`` (lists of ``[n, 2]``), ``scores [n_trials, 3]`` and optionally ``age``, ``gender``.
    Lists become MATLAB cells (``n_trials x 1``), dicts become structs.
    """
    def cell(items: list[np.ndarray]) -> np.ndarray:
        c = np.empty((len(items), 1), dtype=object)
        for k, a in enumerate(items):
            c[k, 0] = np.asarray(a, dtype=np.float64)
        return c

    data = np.empty((1, len(subjects)), dtype=object)
    for s, subj in enumerate(subjects):
        scores = np.asarray(subj["scores"], dtype=np.float64)
        data[0, s] = {
            "Age": str(subj.get("age", "")), "Gender": str(subj.get("gender", "")),
            "EEG": {"baseline": cell(subj["eeg_baseline"]), "stimuli": cell(subj["eeg"])},
            "ECG": {"baseline": cell(subj["ecg_baseline"]), "stimuli": cell(subj["ecg"])},
            "ScoreValence": scores[:, 0:1], "ScoreArousal": scores[:, 1:2], "ScoreDominance": scores[:, 2:3],
        }
    electrodes = np.empty((1, DREAMER_N_EEG), dtype=object)
    for k, name in enumerate(DREAMER_EEG_CHANNELS):
        electrodes[0, k] = name
    return {
        "Data": data, "EEG_SamplingRate": float(eeg_sfreq), "ECG_SamplingRate": float(ecg_sfreq),
        "EEG_Electrodes": electrodes, "noOfSubjects": float(len(subjects)),
        "noOfVideoSequences": float(len(subjects[0]["scores"]) if subjects else 0),
    }


# ------------------------------------------------------------------------------------ adapter
def dreamer_file(data_dir: Path) -> Path:
    """``DREAMER.mat`` given the file or its folder."""
    if data_dir.is_dir():
        data_dir = data_dir / "DREAMER.mat"
    if not data_dir.exists():
        raise DatasetError(data_dir, "DREAMER .mat file not found")
    return data_dir


def _dreamer_modalities(cfg: HiMoEConfig, where: Path) -> list[ModalitySpec]:
    for spec in cfg.modalities:
        if spec.name not in DREAMER_MODALITIES:
            raise DatasetError(where, f"unknown DREAMER modality {spec.name!r} (known: {', '.join(DREAMER_MODALITIES)})")
        channels = DREAMER_MODALITIES[spec.name][0]
        if spec.channels != channels:
            raise DatasetError(where, f"modality {spec.name!r} has {channels} channels in DREAMER, the config says {spec.channels}")
    return list(cfg.modalities)


def _process_dreamer(subj: DreamerSubject, mods: list[ModalitySpec], pp: PreprocessConfig,
                     lags: dict[str, float], label_cols: list[int]) -> SubjectTrials:
    """Filter, resample, lag, subtract the baseline clip's mean and z-score one subject."""
    signals, valid = {}, {}
    for spec in mods:
        clips, bases, sf = ((subj.eeg, subj.eeg_baseline, subj.eeg_sfreq) if spec.name == "eeg"
                            else (subj.ecg, subj.ecg_baseline, subj.ecg_sfreq))
        filt = pp.filter_for(spec.name, spec.kind)
        k = lag_samples(lags.get(spec.name, 0.0), spec.sfreq)
        trials = []
        for clip, base in zip(clips, bases):
            x = resample_signal(filter_signal(clip, sf, filt, line_freq=pp.line_freq, method=pp.method), sf, spec.sfreq)
            x = shift(x, k)
            if pp.baseline == "subtract":
                b = resample_signal(filter_signal(base, sf, filt, line_freq=pp.line_freq, method=pp.method), sf, spec.sfreq)
                x = x - b.mean(-1, keepdims=True)
            trials.append(x)
        signals[spec.name] = standardize(trials, pp.normalize, pp.clip)
        valid[spec.name] = [None] * len(trials)
    return SubjectTrials(signals, valid, subj.scores[:, label_cols])


class DreamerAdapter(TrialDataset):
    """DREAMER for :func:`~himoe_fast.data.prepare_windows`: ``data_dir`` is ``DREAMER.mat`` or its
    folder. The number of subjects is known only once the file is read."""

    name = "dreamer"
    title = "DREAMER"

    def __init__(self, mat: Path, mods: list[ModalitySpec], label_cols: list[int], subjects: int | None):
        self.files, self.mods, self.label_cols, self.subjects = [mat], mods, label_cols, subjects
        self.n_subjects = int(subjects) if subjects is not None else None

    @classmethod
    def open(cls, data_dir: Path, cfg: HiMoEConfig, *, subjects: int | None = None,
             face_dir: str | os.PathLike | None = None, strict_rates: bool = False) -> "DreamerAdapter":
        mat = dreamer_file(data_dir)
        return cls(mat, _dreamer_modalities(cfg, mat), label_columns(cfg, DREAMER_TARGETS, mat), subjects)

    @classmethod
    def provided_modalities(cls, data_dir: Path) -> dict[str, tuple[int, float | None]]:
        return {m: (v[0], v[1]) for m, v in DREAMER_MODALITIES.items()}

    def identity(self) -> list:
        return [file_identity(self.files[0])]

    def iter_trials(self, req: PrepareRequest, progress: ProgressCallback | None = None
                    ) -> Iterator[tuple[Path, SubjectTrials]]:
        mat = self.files[0]
        report(progress, 0, 1, f"reading {mat.name}")
        dreamer = load_dreamer(mat)
        if self.subjects is not None:
            if int(self.subjects) > len(dreamer):
                raise DatasetError(mat, f"{self.subjects} subjects requested but the file has {len(dreamer)}")
            dreamer = dreamer[: int(self.subjects)]
        report(progress, 0, len(dreamer), "")
        for s, subj in enumerate(dreamer):
            lags = req.lags_for(s)
            check_lags_fit(mat, lags, min(c.shape[-1] for c in subj.eeg) / subj.eeg_sfreq, f"subject {s + 1}")
            trials = _process_dreamer(subj, self.mods, req.pp, lags, self.label_cols)
            yield mat, trials
            report(progress, s + 1, len(dreamer), f"subject {s + 1}")
