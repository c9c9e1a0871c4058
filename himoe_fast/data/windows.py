"""Sliding windows and sequences of windows: :class:`WindowedData`.

A trial lasting ``dur`` seconds (the shortest of its modalities, after baseline handling) gives
``n = floor((dur - window_s) / stride_s) + 1`` windows; window ``i`` covers seconds
``[i * stride_s, i * stride_s + window_s)`` in *every* modality, each at its own rate
(``S_m = round(window_s * sfreq_m)`` samples starting at ``round(i * stride_s * sfreq_m)``).
Windows are numbered trial after trial, subject after subject.

A *sequence* is ``T = seq_len`` consecutive windows of one trial; sequences start every
``seq_stride`` windows (default ``T``: non-overlapping). Trials shorter than ``T`` windows give no
sequence. Sequences are what the model sees (``[B, T, C, S]``), and what protocols split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DatasetError

if TYPE_CHECKING:
    from ..config import HiMoEConfig, ModalitySpec

#: Bump when windowing trials (:func:`window_trials`) changes its output (part of the cache key).
WINDOWS_VERSION = 1


@dataclass
class WindowedData:
    """Windowed, preprocessed recordings of several subjects.

    Attributes:
        modalities: modality names, same order as ``HiMoEConfig.modality_names``.
        windows: name -> float32 ``[n_windows, C_m, S_m]`` (may be a read-only memmap).
        labels: float32 ``[n_windows, n_targets]``, the trial's ratings.
        subject: int64 ``[n_windows]``, 0-based subject index in file order.
        trial: int64 ``[n_windows]``, globally unique trial id (subject-major).
        available: bool ``[n_windows, M]``, the modality was truly recorded there.
        sequences: int64 ``[n_seq, T]`` window indices (consecutive windows of one trial).
        targets: target names (columns of ``labels``).
        meta: settings that produced the data (rates, window, stride, dataset, cache key...).
    """

    modalities: tuple[str, ...]
    windows: dict[str, np.ndarray]
    labels: np.ndarray
    subject: np.ndarray
    trial: np.ndarray
    available: np.ndarray
    sequences: np.ndarray
    targets: tuple[str, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.sequences.shape[0])

    @property
    def n_windows(self) -> int:
        return int(self.labels.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.sequences.shape[1])

    @property
    def seq_subject(self) -> np.ndarray:
        """int64 ``[n_seq]`` subject of each sequence."""
        return self.subject[self.sequences[:, 0]] if len(self) else np.zeros(0, np.int64)

    @property
    def seq_trial(self) -> np.ndarray:
        """int64 ``[n_seq]`` trial id of each sequence."""
        return self.trial[self.sequences[:, 0]] if len(self) else np.zeros(0, np.int64)

    @property
    def n_subjects(self) -> int:
        return int(self.subject.max()) + 1 if self.subject.size else 0

    def with_sequences(self, seq_len: int, seq_stride: int | None = None) -> "WindowedData":
        """The same windows grouped into other sequences (shares the arrays)."""
        seqs = make_sequences(self.trial, seq_len, seq_stride)
        meta = dict(self.meta, seq_len=seq_len, seq_stride=seq_stride or seq_len)
        return WindowedData(self.modalities, self.windows, self.labels, self.subject, self.trial,
                            self.available, seqs, self.targets, meta)


def window_count(duration_s: float, window_s: float, stride_s: float) -> int:
    """Number of whole windows in ``duration_s`` seconds (0 if shorter than one window)."""
    if duration_s + 1e-9 < window_s:
        return 0
    return int(np.floor((duration_s - window_s) / stride_s + 1e-9)) + 1


def cut_windows(x: np.ndarray, sfreq: float, n_windows: int, window_s: float, stride_s: float,
                valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cut one trial ``x [C, n]`` into ``[n_windows, C, S]`` float32 windows.

    Returns:
        (windows, recorded) where ``recorded [n_windows]`` is True where at least half of the
        window's samples are valid (all True when ``valid`` is None).
    """
    S = int(round(window_s * sfreq))
    starts = np.round(np.arange(n_windows) * stride_s * sfreq).astype(np.int64)
    idx = starts[:, None] + np.arange(S)[None, :]                       # [n_windows, S]
    if n_windows and idx[-1, -1] >= x.shape[-1]:
        raise ValueError(f"window {n_windows - 1} ends at sample {idx[-1, -1]} beyond the trial ({x.shape[-1]})")
    win = np.ascontiguousarray(x[:, idx].transpose(1, 0, 2), dtype=np.float32)
    if valid is None:
        recorded = np.ones(n_windows, bool)
    else:
        recorded = valid[idx].mean(1) >= 0.5
    return win, recorded


@dataclass
class SubjectTrials:
    """One subject after preprocessing: per modality a list of per-trial ``[C, n]`` float32 arrays
    that all start at the trial's time 0 (each modality at its own rate).

    Attributes:
        signals: modality -> per-trial ``[C, n_i]``.
        valid: modality -> per-trial recorded mask ``[n_i]`` (None: all recorded).
        labels: ``[n_trials, n_targets]``, the trial ratings.
    """

    signals: dict[str, list[np.ndarray]]
    valid: dict[str, list[np.ndarray | None]]
    labels: np.ndarray


@dataclass
class SubjectWindows:
    """The windows of one subject, in the layout of :class:`WindowedData`.

    Attributes:
        windows: modality -> float32 ``[n, C, S]``.
        available: bool ``[n, M]``.
        labels: float32 ``[n, n_targets]`` (NaN: unlabelled).
        trial: int64 ``[n]``, the subject's own trial index (0-based).
        n_trials: number of trials of the subject (including those too short for a window).
    """

    windows: dict[str, np.ndarray]
    available: np.ndarray
    labels: np.ndarray
    trial: np.ndarray
    n_trials: int


def _last_sample(n: int, spec: "ModalitySpec", window_s: float, stride_s: float) -> int:
    """Index of the last sample of window ``n - 1`` (as :func:`cut_windows` places it)."""
    return int(round((n - 1) * stride_s * spec.sfreq)) + spec.samples(window_s) - 1


def window_trials(tr: SubjectTrials, cfg: "HiMoEConfig", stride_s: float, where: Path | None = None
                  ) -> SubjectWindows:
    """Windows of one subject's trials: as many as the shortest modality of each trial holds.

    Raises:
        DatasetError: (naming ``where``) a signal is not finite after preprocessing.
    """
    names = cfg.modality_names
    for m in names:       # finite input can still overflow float64 filtering (|x| near 1e308)
        if not all(np.isfinite(x).all() for x in tr.signals[m]):
            raise DatasetError(where, f"{m!r} values are too large to preprocess (they overflow float64 filtering)")
    n_trials = tr.labels.shape[0]
    per_mod: dict[str, list[np.ndarray]] = {m: [] for m in names}
    avail, labels, trial = [], [], []
    for k in range(n_trials):
        dur = min(tr.signals[m][k].shape[-1] / cfg.modality(m).sfreq for m in names)
        n = window_count(dur, cfg.window_s, stride_s)
        while n > 0 and any(_last_sample(n, cfg.modality(m), cfg.window_s, stride_s) >= tr.signals[m][k].shape[-1]
                            for m in names):
            n -= 1                                   # rounding of fractional sample positions
        if n == 0:
            continue
        rec = []
        for m in names:
            w, r = cut_windows(tr.signals[m][k], cfg.modality(m).sfreq, n, cfg.window_s, stride_s, tr.valid[m][k])
            per_mod[m].append(w)
            rec.append(r)
        avail.append(np.stack(rec, 1))
        labels.append(np.repeat(tr.labels[k][None, :], n, 0))
        trial.append(np.full(n, k, np.int64))
    if not avail:
        return empty_subject_windows(cfg, n_trials)
    return SubjectWindows({m: np.concatenate(v) for m, v in per_mod.items()}, np.concatenate(avail),
                          np.concatenate(labels).astype(np.float32), np.concatenate(trial), n_trials)


def empty_subject_windows(cfg: "HiMoEConfig", n_trials: int) -> SubjectWindows:
    """A subject whose trials are all shorter than one window."""
    names = cfg.modality_names
    return SubjectWindows({m: np.zeros((0, cfg.modality(m).channels, cfg.modality(m).samples(cfg.window_s)), np.float32)
                           for m in names}, np.zeros((0, len(names)), bool),
                          np.zeros((0, len(cfg.targets)), np.float32), np.zeros(0, np.int64), n_trials)


def make_sequences(trial: np.ndarray, seq_len: int, seq_stride: int | None = None) -> np.ndarray:
    """``[n_seq, seq_len]`` indices of ``seq_len`` consecutive windows within one trial.

    ``trial [n_windows]`` must list each trial's windows contiguously and in time order.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    seq_stride = seq_len if seq_stride is None else int(seq_stride)
    if seq_stride < 1:
        raise ValueError(f"seq_stride must be >= 1, got {seq_stride}")
    trial = np.asarray(trial)
    if trial.size == 0:
        return np.zeros((0, seq_len), np.int64)
    change = np.flatnonzero(np.diff(trial)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [trial.size]])
    out = []
    for s, e in zip(starts, ends):
        n = e - s
        if n >= seq_len:
            first = s + np.arange(0, n - seq_len + 1, seq_stride)
            out.append(first[:, None] + np.arange(seq_len)[None, :])
    if not out:
        return np.zeros((0, seq_len), np.int64)
    return np.concatenate(out).astype(np.int64)
