"""Signal preprocessing with MNE, on whole trials before windowing.

Order of operations per subject (each modality at its own rate):

1. **Filter** each signal family on the whole trial at its native rate (DEAP: including the 3 s
   baseline, so filter edge transients fall into the part that is dropped), with
   ``mne.filter.filter_data`` (zero-phase FIR, ``firwin`` design, by default) and
   ``mne.filter.notch_filter`` at the line frequency where it matters (see below).
2. **Resample** with ``mne.filter.resample`` only when the config asks for a rate different from
   the file's (``ModalitySpec.sfreq``); otherwise rates are kept, e.g. DREAMER EEG 128 Hz next to
   ECG 256 Hz.
3. **Lag** (optional asynchrony): shift a modality by ``lag`` seconds, ``y[t] = x[t - lag]``, on the
   continuous trial (DEAP: the first seconds come from the baseline period; beyond the start of the
   recording the first sample is held). Negative lags advance the modality (the end is held).
4. **Baseline**: ``"drop"`` (default) discards DEAP's first 3 s (384 samples at 128 Hz) and ignores
   DREAMER's separate baseline clips. ``"subtract"`` also subtracts, per trial and channel, the mean
   of the (filtered) baseline: DEAP's first 3 s, DREAMER's baseline clip of that trial.
5. **Standardise** (the model has no BatchNorm and expects z-scored inputs): ``"subject"`` (default)
   z-scores each channel with the mean and SD over all of that subject's trials (unsupervised,
   label-free, like per-user calibration; it uses the subject's test trials' signal statistics but
   never labels), ``"trial"`` per trial and channel (removes level information such as tonic skin
   conductance), ``"none"``. Then values are clipped to ``+-clip`` SD (default 10) against
   artefacts, and stored as float32.

Filter table (per signal family; ``pps`` uses each of its channels' own rows):

==========  ===============  ==============================================================
family      band (Hz)        notes
==========  ===============  ==============================================================
eeg         4-45             transitions 2 / 5 Hz: 50 Hz already lies in the stop band
eog         0.3-10           blinks and saccades
emg         20-               high-pass only (up to Nyquist, 64 Hz for DEAP); 50 Hz notch
gsr         -1               low-pass only: the tonic level carries arousal
resp        -1               low-pass only
ppg         0.5-8            pulse wave
temp        -1               low-pass only
ecg         0.5-40           DREAMER ECG (256 Hz): removes DC offset, wander and 50 Hz
face        none             pre-computed features are not filtered
==========  ===============  ==============================================================

The line-noise notch (``line_freq``, default 50 Hz; 60 for American recordings; ``None`` disables)
is applied to a family whose spec has ``notch=True`` only when the line frequency is below Nyquist
and inside the pass band (above ``l_freq`` and below ``h_freq + h_trans``). Any row can be replaced
through ``PreprocessConfig(filters={"eeg": (1.0, 40.0)})`` (a ``FilterSpec``, a dict of its fields,
an ``(l_freq, h_freq)`` tuple or ``None`` for no filtering). ``method="iir"`` switches to
zero-phase Butterworth filters (faster, non-linear phase before the forward-backward pass).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import mne
import numpy as np

from .errors import DatasetError

#: Bump when the preprocessing code changes its output (part of every cache key).
PREPROCESS_VERSION = 1

BASELINE_MODES = ("drop", "subtract")
NORMALIZE_MODES = ("subject", "trial", "none")


@dataclass(frozen=True)
class FilterSpec:
    """Band-pass of one signal family (``None`` edge = no high-/low-pass)."""

    l_freq: float | None = None
    h_freq: float | None = None
    l_trans: float | str = "auto"
    h_trans: float | str = "auto"
    notch: bool = False

    def notch_applies(self, line_freq: float | None, sfreq: float) -> bool:
        """Whether the line-frequency notch is inside this filter's pass band at ``sfreq``."""
        if not self.notch or line_freq is None or line_freq >= sfreq / 2:
            return False
        if self.l_freq is not None and line_freq <= self.l_freq:
            return False
        if self.h_freq is not None:
            h_trans = self.h_trans if isinstance(self.h_trans, (int, float)) else min(max(0.25 * self.h_freq, 2.0),
                                                                                    sfreq / 2 - self.h_freq)
            if line_freq >= self.h_freq + h_trans:
                return False
        return True


NO_FILTER = FilterSpec()

DEFAULT_FILTERS: dict[str, FilterSpec] = {
    "eeg": FilterSpec(4.0, 45.0, 2.0, 5.0, notch=True),
    "eog": FilterSpec(0.3, 10.0, 0.3, 2.5),
    "emg": FilterSpec(20.0, None, 5.0, "auto", notch=True),
    "gsr": FilterSpec(None, 1.0, "auto", 1.0),
    "resp": FilterSpec(None, 1.0, "auto", 1.0),
    "ppg": FilterSpec(0.5, 8.0, 0.5, 2.0),
    "temp": FilterSpec(None, 1.0, "auto", 1.0),
    "ecg": FilterSpec(0.5, 40.0, 0.5, 5.0, notch=True),
    "face": NO_FILTER,
}


def _as_filter(name: str, value: Any) -> FilterSpec:
    if value is None:
        return NO_FILTER
    if isinstance(value, FilterSpec):
        return value
    if isinstance(value, Mapping):
        return FilterSpec(**value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return FilterSpec(*(None if v is None else float(v) for v in value))
    raise ValueError(f"filters[{name!r}] must be a FilterSpec, a dict, an (l_freq, h_freq) pair or None, got {value!r}")


@dataclass(frozen=True)
class PreprocessConfig:
    """Every preprocessing setting (all of them are part of the cache key).

    Attributes:
        filters: per-family :class:`FilterSpec`; entries given here replace the defaults.
        line_freq: mains frequency for the notch, or None.
        method: ``"fir"`` or ``"iir"`` (MNE filter method).
        baseline: ``"drop"`` or ``"subtract"``.
        normalize: ``"subject"``, ``"trial"`` or ``"none"``.
        clip: clip standardised values to +-clip (None: no clipping).
    """

    filters: Mapping[str, FilterSpec] = field(default_factory=dict)
    line_freq: float | None = 50.0
    method: str = "fir"
    baseline: str = "drop"
    normalize: str = "subject"
    clip: float | None = 10.0

    def __post_init__(self) -> None:
        merged = dict(DEFAULT_FILTERS)
        for name, value in dict(self.filters).items():
            merged[name] = _as_filter(name, value)
        object.__setattr__(self, "filters", merged)
        if self.method not in ("fir", "iir"):
            raise ValueError(f"method must be 'fir' or 'iir', got {self.method!r}")
        if self.baseline not in BASELINE_MODES:
            raise ValueError(f"baseline must be one of {BASELINE_MODES}, got {self.baseline!r}")
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"clip must be > 0 or None, got {self.clip!r}")
        if self.line_freq is not None and not self.line_freq > 0:
            raise ValueError(f"line_freq must be > 0 or None, got {self.line_freq!r}")

    @classmethod
    def from_overrides(cls, **overrides: Any) -> "PreprocessConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown preprocessing option(s) {unknown}; known: {sorted(known)}")
        return cls(**overrides)

    def filter_for(self, family: str, kind: str = "signal") -> FilterSpec:
        """The filter of a family; unknown families fall back on their encoder kind (``eeg``) or none."""
        if family in self.filters:
            return self.filters[family]
        return self.filters["eeg"] if kind == "eeg" else NO_FILTER

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["filters"] = {k: dataclasses.asdict(v) for k, v in sorted(self.filters.items())}
        return d


# ------------------------------------------------------------------------------------- operations
def filter_signal(x: np.ndarray, sfreq: float, spec: FilterSpec, *, line_freq: float | None = 50.0,
                  method: str = "fir") -> np.ndarray:
    """Band-pass (and notch) ``x [..., n_times]`` along the last axis; returns float64 (a copy).

    All leading dimensions (trials, channels) are filtered in one MNE call.
    """
    x = np.array(x, dtype=np.float64, order="C")      # a private contiguous copy: MNE filters it in place
    l_freq, h_freq = spec.l_freq, spec.h_freq
    nyq = sfreq / 2.0
    if h_freq is not None and h_freq >= nyq:
        h_freq = None                                   # nothing to remove above Nyquist
    # overflow of near-float64-limit input is not warned about here: the caller rejects non-finite output
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore"):
        warnings.filterwarnings("ignore", message=".*filter_length.*longer than the signal.*")
        if l_freq is not None or h_freq is not None:
            kw: dict[str, Any] = {}
            if method == "fir":
                kw = dict(l_trans_bandwidth=spec.l_trans, h_trans_bandwidth=spec.h_trans, fir_design="firwin")
            x = mne.filter.filter_data(x, sfreq, l_freq, h_freq, method=method, copy=False, verbose=False,
                                       n_jobs=None, **kw)
        if spec.notch_applies(line_freq, sfreq):
            x = mne.filter.notch_filter(x, sfreq, [line_freq], method=method, copy=False, verbose=False)
    return x


def resample_signal(x: np.ndarray, from_sfreq: float, to_sfreq: float) -> np.ndarray:
    """Resample along the last axis with ``mne.filter.resample`` (no-op when rates are equal)."""
    if abs(from_sfreq - to_sfreq) < 1e-9:
        return x
    return mne.filter.resample(np.asarray(x, dtype=np.float64), up=float(to_sfreq), down=float(from_sfreq),
                               axis=-1, verbose=False)


def lag_samples(lag_s: float, sfreq: float) -> int:
    return int(round(float(lag_s) * sfreq))


def subject_lags(lag_map: dict[str, float], random_lags: dict[str, float], lag_seed: int,
                 subject: int) -> dict[str, float]:
    """The lags of one subject: the fixed ``lag_map`` plus, for each modality in ``random_lags``, a
    lag drawn uniformly from ``[0, random_lags[m]]`` seconds (seeded by ``(lag_seed, subject)``, so a
    subject's lag does not depend on how many subjects are used)."""
    if not random_lags:
        return lag_map
    rng = np.random.default_rng([int(lag_seed), int(subject)])
    out = dict(lag_map)
    for name in sorted(random_lags):
        out[name] = out.get(name, 0.0) + float(rng.uniform(0.0, random_lags[name]))
    return out


def check_lags_fit(where, lags: dict[str, float], trial_s: float, who: str = "") -> None:
    """A lag must be shorter than the shortest trial: a longer one would shift the whole recording
    out of it and leave only a repeated edge value. Raises :class:`~.errors.DatasetError` naming ``where``."""
    for name, lag in lags.items():
        if abs(lag) >= trial_s:
            raise DatasetError(where, f"lag of {lag:g} s for {name!r} is not shorter than the shortest trial"
                                      f"{' of ' + who if who else ''} ({trial_s:.1f} s)")


def shift(x: np.ndarray, k: int) -> np.ndarray:
    """``y[..., t] = x[..., t - k]`` with the edge value held (``k < 0`` advances)."""
    if k == 0:
        return x
    n = x.shape[-1]
    idx = np.clip(np.arange(n) - k, 0, n - 1)
    return x[..., idx]


def standardize(trials: list[np.ndarray], mode: str, clip: float | None,
                valid: list[np.ndarray | None] | None = None) -> list[np.ndarray]:
    """Z-score a subject's trials (each ``[C, n_i]``) per channel; returns float32 arrays.

    ``mode="subject"`` pools all trials, ``"trial"`` uses each trial alone, ``"none"`` only casts.
    ``valid`` (per trial bool ``[n_i]`` or None) restricts the statistics to recorded samples and
    zeroes the rest.
    """
    valid = valid if valid is not None else [None] * len(trials)
    if mode == "none":
        out = [t.astype(np.float32) for t in trials]
    else:
        def stats(parts: list[tuple[np.ndarray, np.ndarray | None]]) -> tuple[np.ndarray, np.ndarray]:
            used = [t if v is None else t[:, v] for t, v in parts]
            cnt = sum(tv.shape[1] for tv in used)
            if cnt == 0:
                c = parts[0][0].shape[0]
                return np.zeros(c), np.ones(c)
            # Moments of x / 2^k with 2^k near each channel's peak: the squares cannot overflow even for
            # finite inputs near the float64 limit (1e200), and a power of two rescales exactly, so
            # ordinary recordings get the very same numbers as without it.
            peak = np.max([np.abs(tv).max(1) for tv in used if tv.shape[1]], axis=0)
            scale = np.exp2(np.floor(np.log2(np.where(peak > 0, peak, 1.0))))[:, None]
            s1 = sum((tv / scale).sum(1) for tv in used)
            s2 = sum(np.square(tv / scale).sum(1) for tv in used)
            mean = s1 / cnt
            sd = np.sqrt(np.maximum(s2 / cnt - np.square(mean), 0.0))
            sd = np.where(sd > 1e-12 * np.maximum(np.abs(mean), 1.0 / scale[:, 0]), sd, 1.0 / scale[:, 0])
            return mean * scale[:, 0], sd * scale[:, 0]

        if mode == "subject":
            mean, sd = stats(list(zip(trials, valid)))
            out = [((t - mean[:, None]) / sd[:, None]).astype(np.float32) for t in trials]
        else:
            out = []
            for t, v in zip(trials, valid):
                mean, sd = stats([(t, v)])
                out.append(((t - mean[:, None]) / sd[:, None]).astype(np.float32))
        if clip is not None:
            for t in out:
                np.clip(t, -clip, clip, out=t)
    for t, v in zip(out, valid):
        if v is not None:
            t[:, ~v] = 0.0
    return out
