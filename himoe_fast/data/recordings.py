"""Your own recordings: a folder of MNE-readable files with per-trial or continuous ratings.

Folder layout (``--dataset recordings --data-dir DIR``)::

    DIR/
      recordings.json          optional settings (below)
      labels.csv               optional per-recording ratings: subject,recording,<target>,...
      <subject>/               one folder per subject (sorted by name)
        <recording>/           one folder per recording (a "trial" for the protocols)
          *.fif *.edf *.bdf *.gdf *.vhdr *.set ...   one or more files read with mne.io.read_raw
          ratings.csv          optional continuous ratings: time,<target>,... (seconds, any rate)

* **Files and time.** A recording's modalities may sit in separate files at their own sampling
  rates. Each file starts at its ``meas_date`` (plus ``first_samp / sfreq``); time 0 of the
  recording is the earliest start among its files, so a device that starts late simply begins later
  (files without a ``meas_date`` start at time 0). Timestamps, not sample counts, align files.
* **Channels -> modalities.** By MNE channel type: ``eeg``->``eeg``, ``eog``, ``emg``, ``ecg``,
  ``gsr``, ``resp``, ``temperature``->``temp``; other types (``bio``, ``misc``, ``stim``, ...) are
  ignored unless ``recordings.json`` maps them by name: ``{"channels": {"Pleth": "ppg",
  "Status": "ignore"}}``. All channels of one modality must come from one file of the recording and
  have the same names (in the same order) in every recording; a recording may lack a modality
  (it is then absent in all of its windows).
* **Gaps.** NaN samples, spans annotated ``BAD_*`` (``reject_by_annotation="NaN"``), time before a
  file starts and after it stops are *unrecorded*. A window is present for a modality when at least
  :data:`MIN_COVERAGE` of its samples are recorded; otherwise it is absent (its samples are zeros and
  the model masks it).
* **Labels.** ``ratings.csv`` in a recording folder holds continuous ratings: a ``time`` column
  (seconds from the recording's time 0) and one column per target, at any rate. A window's label
  is the mean of the finite ratings inside the window; when there is none it is the linear
  interpolation at the window centre between the neighbouring ratings, provided both are finite
  (empty cells or NaN mark unlabelled stretches); windows before the first or after the last
  rating are unlabelled. Otherwise ``labels.csv`` gives one rating per recording (per-trial
  labels). Unlabelled windows are masked out of losses and metrics; a folder without any labels
  can still be used by ``predict``.
* **recordings.json** (all keys optional): ``"channels"`` (name -> modality or ``"ignore"``),
  ``"targets"`` (default: the rating columns), ``"scale"`` ``[low, high]`` of the ratings (default:
  1-9), ``"threshold"`` (binary task; default: middle of the scale).

Preprocessing is the library's (see :mod:`.preprocess`): per-modality filters by family (the
modality name, else the encoder kind), resampling only when the config's rate differs, optional
lag, z-scoring per subject and channel over recorded samples, clipping. Unrecorded samples are
linearly bridged before filtering (so a gap does not ring through the filter) and zeroed after.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..config import HiMoEConfig, ModalitySpec
from ..progress import ProgressCallback, report
from .adapters import DatasetAdapter, PrepareRequest
from .cache import file_identity
from .errors import DatasetError
from .preprocess import PreprocessConfig, filter_signal, lag_samples, resample_signal, shift, standardize
from .windows import SubjectWindows, WindowedData, empty_subject_windows, window_count

#: Bump when reading / windowing recordings changes its output (part of the cache key).
RECORDINGS_VERSION = 1
#: Fraction of a window's samples that must be recorded for the modality to count as present.
MIN_COVERAGE = 0.9
#: File name endings read with ``mne.io.read_raw``.
RAW_SUFFIXES = (".fif", ".fif.gz", ".edf", ".bdf", ".gdf", ".vhdr", ".set", ".cnt", ".mff", ".nxe", ".snirf")
#: MNE channel type -> modality name.
TYPE_TO_MODALITY = {"eeg": "eeg", "eog": "eog", "emg": "emg", "ecg": "ecg", "gsr": "gsr", "resp": "resp",
                    "temperature": "temp"}
SETTINGS_FILE = "recordings.json"
LABELS_FILE = "labels.csv"
RATINGS_FILE = "ratings.csv"
DEFAULT_SCALE = (1.0, 9.0)


# ------------------------------------------------------------------------------------------ layout
@dataclass
class RecordingsLayout:
    """What a recordings folder holds (headers only; no signal is read).

    Attributes:
        root: the folder.
        recordings: ``[(subject, recording, folder)]`` sorted by subject then recording.
        modalities: inferred specs (name, channels, rate of the first recording that has it, kind).
        channels: modality -> channel names (in order).
        targets: target names; scale: (low, high); threshold: binary threshold.
        mapping: channel name -> modality (from ``recordings.json``).
        labels_csv: per-recording ratings ``{(subject, recording): [values]}`` (may be empty).
        files: every file the data depend on (for the cache key).
    """

    root: Path
    recordings: list[tuple[str, str, Path]]
    modalities: list[ModalitySpec]
    channels: dict[str, list[str]]
    targets: tuple[str, ...]
    scale: tuple[float, float]
    threshold: float
    mapping: dict[str, str] = field(default_factory=dict)
    labels_csv: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    @property
    def subjects(self) -> list[str]:
        return list(dict.fromkeys(s for s, _, _ in self.recordings))


def raw_files(folder: Path) -> list[Path]:
    """The MNE-readable files of one recording folder (sorted; BrainVision/EEGLAB sidecars excluded)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(RAW_SUFFIXES))


def read_raw(path: Path, preload: bool = False):
    """``mne.io.read_raw`` with a :class:`DatasetError` naming the file on any failure."""
    import mne

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mne.io.read_raw(path, preload=preload, verbose="error")
    except Exception as exc:  # noqa: BLE001 - every reader has its own errors
        raise DatasetError(path, f"cannot be read by mne.io.read_raw ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else 'no message'})") from None


def _channel_modalities(raw, mapping: dict[str, str]) -> dict[str, list[str]]:
    """modality -> channel names of one file (mapping file first, then channel type)."""
    out: dict[str, list[str]] = {}
    for name, kind in zip(raw.ch_names, raw.get_channel_types()):
        mod = mapping.get(name, TYPE_TO_MODALITY.get(kind))
        if mod is None or mod == "ignore":
            continue
        out.setdefault(mod, []).append(name)
    return out


def _file_start(raw) -> float | None:
    """Absolute start of the first sample in seconds (POSIX), or None without a measurement date."""
    md = raw.info["meas_date"]
    if md is None:
        return None
    return md.timestamp() + raw.first_samp / raw.info["sfreq"]


def _read_settings(root: Path) -> dict:
    path = root / SETTINGS_FILE
    if not path.exists():
        return {}
    try:
        settings = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(path, f"not valid JSON ({exc})") from None
    if not isinstance(settings, dict):
        raise DatasetError(path, "must hold a JSON object")
    unknown = sorted(set(settings) - {"channels", "targets", "scale", "threshold"})
    if unknown:
        raise DatasetError(path, f"unknown key(s) {', '.join(unknown)} (known: channels, targets, scale, threshold)")
    ch = settings.get("channels", {})
    if not isinstance(ch, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ch.items()):
        raise DatasetError(path, '"channels" must map channel names to modality names, e.g. {"Pleth": "ppg"}')
    scale = settings.get("scale", DEFAULT_SCALE)
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and float(scale[0]) < float(scale[1])):
        raise DatasetError(path, f'"scale" must be [low, high] with low < high, got {scale!r}')
    return settings


def _read_labels_csv(path: Path) -> tuple[list[str], dict[tuple[str, str], list[float]]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError as exc:
        raise DatasetError(path, f"cannot be read ({exc})") from None
    if not rows or rows[0][:2] != ["subject", "recording"] or len(rows[0]) < 3:
        raise DatasetError(path, "expected a header 'subject,recording,<target>,...'")
    targets = [t.strip() for t in rows[0][2:]]
    out = {}
    for i, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(rows[0]):
            raise DatasetError(path, f"line {i} has {len(row)} fields, the header {len(rows[0])}")
        try:
            out[(row[0].strip(), row[1].strip())] = [float(v) if v.strip() else math.nan for v in row[2:]]
        except ValueError:
            raise DatasetError(path, f"line {i}: ratings must be numbers, got {row[2:]}") from None
    return targets, out


def scan_recordings(data_dir: str | os.PathLike) -> RecordingsLayout:
    """Read the folder structure and file headers of a recordings folder.

    Raises:
        DatasetError: missing folder, no recordings, unreadable file, inconsistent channels.
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DatasetError(root, "recordings folder not found")
    if not root.is_dir():
        raise DatasetError(root, "expected a recordings folder (DIR/<subject>/<recording>/<files>), got a file")
    settings = _read_settings(root)
    mapping = dict(settings.get("channels", {}))
    files: list[Path] = [root / SETTINGS_FILE] if (root / SETTINGS_FILE).exists() else []
    recordings = []
    for subj in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for rec in sorted(p for p in subj.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if raw_files(rec):
                recordings.append((subj.name, rec.name, rec))
    if not recordings:
        raise DatasetError(root, "no recordings found (expected DIR/<subject>/<recording>/<file.fif|.edf|...>)")

    channels: dict[str, list[str]] = {}
    rates: dict[str, float] = {}
    rating_targets: list[str] | None = None
    for _, _, rec in recordings:
        for f in raw_files(rec):
            files.append(f)
            raw = read_raw(f)
            for mod, names in _channel_modalities(raw, mapping).items():
                if mod not in channels:
                    channels[mod], rates[mod] = names, float(raw.info["sfreq"])
                elif channels[mod] != names:
                    raise DatasetError(f, f"modality {mod!r} has channels {names}, other recordings have "
                                          f"{channels[mod]} (same names and order needed)")
        ratings = rec / RATINGS_FILE
        if ratings.exists():
            files.append(ratings)
            if rating_targets is None:
                rating_targets = _read_ratings(ratings)[0]
    if not channels:
        raise DatasetError(root, "no channel maps to a modality (types eeg/eog/emg/ecg/gsr/resp/temperature, "
                                 f"or map names in {SETTINGS_FILE})")
    labels_csv: dict[tuple[str, str], list[float]] = {}
    csv_targets: list[str] | None = None
    if (root / LABELS_FILE).exists():
        files.append(root / LABELS_FILE)
        csv_targets, labels_csv = _read_labels_csv(root / LABELS_FILE)
    targets = tuple(settings.get("targets") or rating_targets or csv_targets or ("valence", "arousal"))
    scale = tuple(float(v) for v in settings.get("scale", DEFAULT_SCALE))
    threshold = float(settings.get("threshold", sum(scale) / 2))
    mods = [ModalitySpec(m, len(channels[m]), rates[m], "eeg" if m == "eeg" else "signal") for m in channels]
    return RecordingsLayout(root, recordings, mods, channels, targets, scale, threshold, mapping,  # type: ignore[arg-type]
                            labels_csv, files)


def recordings_config(data_dir: str | os.PathLike, modalities: Sequence[str] | None = None,
                      **overrides) -> HiMoEConfig:
    """A :class:`HiMoEConfig` for a recordings folder: its modalities (channels, rates), targets and
    rating scale; ``modalities`` selects some of them; ``overrides`` set other fields."""
    layout = scan_recordings(data_dir)
    specs = layout.modalities
    if modalities:
        known = {m.name: m for m in specs}
        missing = [m for m in modalities if m not in known]
        if missing:
            raise DatasetError(layout.root, f"no channel of modality {', '.join(map(repr, missing))} "
                                            f"(the folder has: {', '.join(known)})")
        specs = [known[m] for m in modalities]
    base = dict(modalities=specs, targets=layout.targets, label_range=layout.scale, threshold=layout.threshold,
                dataset="recordings")
    base.update(overrides)
    return HiMoEConfig(**base)


# ------------------------------------------------------------------------------------------ labels
def _read_ratings(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(targets, time [n], values [n, n_targets])`` of a continuous ratings file (NaN = unlabelled)."""
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except OSError as exc:
        raise DatasetError(path, f"cannot be read ({exc})") from None
    if not rows or rows[0][0].strip() != "time" or len(rows[0]) < 2:
        raise DatasetError(path, "expected a header 'time,<target>,...' (time in seconds)")
    targets = [t.strip() for t in rows[0][1:]]
    try:
        arr = np.array([[float(v) if v.strip() else math.nan for v in r] for r in rows[1:]], np.float64)
    except ValueError:
        raise DatasetError(path, "ratings must be numbers (empty cell = unlabelled)") from None
    if arr.ndim != 2 or (arr.size and arr.shape[1] != len(rows[0])):
        raise DatasetError(path, "every line needs one value per column")
    arr = arr.reshape(-1, len(rows[0]))
    t = arr[:, 0]
    if not np.isfinite(t).all() or np.any(np.diff(t) <= 0):
        raise DatasetError(path, "the time column must be finite and strictly increasing")
    return targets, t, arr[:, 1:]


def window_ratings(time: np.ndarray, values: np.ndarray, starts: np.ndarray, window_s: float) -> np.ndarray:
    """Continuous ratings onto windows ``[starts[i], starts[i] + window_s)``: ``[n_windows, n_targets]``.

    Mean of the finite ratings inside the window; if none, linear interpolation at the window
    centre between the neighbouring rating samples when both are finite; else NaN.
    """
    n_w, n_t = starts.size, values.shape[1]
    out = np.full((n_w, n_t), np.nan)
    lo = np.searchsorted(time, starts, side="left")
    hi = np.searchsorted(time, starts + window_s, side="left")
    centre = starts + window_s / 2
    after = np.searchsorted(time, centre, side="left")           # first sample at or after the centre
    for j in range(n_t):
        v = values[:, j]
        ok = np.isfinite(v)
        csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
        ccnt = np.concatenate([[0], np.cumsum(ok)])
        cnt = ccnt[hi] - ccnt[lo]
        mean = np.divide(csum[hi] - csum[lo], cnt, out=np.full(n_w, np.nan), where=cnt > 0)
        # interpolation between the samples around the centre (exact hit: that sample)
        i1 = np.minimum(after, time.size - 1)
        i0 = np.maximum(after - 1, 0)
        exact = (after < time.size) & (time[i1] == centre)
        inside = (after > 0) & (after < time.size)
        both = inside & ok[i0] & ok[i1]
        span = np.where(both, time[i1] - time[i0], 1.0)
        w = np.clip((centre - time[i0]) / span, 0.0, 1.0)
        interp = np.where(both, v[i0] * (1 - w) + v[i1] * w, np.nan)
        interp = np.where(exact & ok[i1], v[i1], interp)
        out[:, j] = np.where(cnt > 0, mean, interp)
    return out


# ------------------------------------------------------------------------------------------ signals
@dataclass
class _Signal:
    """One modality of one recording on the config's rate: ``x [C, n]``, ``valid [n]``, start ``offset_s``."""

    x: np.ndarray
    valid: np.ndarray
    offset_s: float


def _bridge(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linearly interpolate unrecorded samples (edges held) so filters do not ring on gaps."""
    if valid.all():
        return x
    idx = np.flatnonzero(valid)
    t = np.arange(x.shape[-1])
    return np.stack([np.interp(t, idx, row[idx]) for row in x])


def _read_recording(layout: RecordingsLayout, folder: Path, cfg: HiMoEConfig, pp: PreprocessConfig,
                    lags: dict[str, float], strict_rates: bool) -> tuple[dict[str, _Signal], float]:
    """The config's modalities of one recording, filtered and resampled, and its duration in s."""
    found: dict[str, tuple[Path, object, list[str]]] = {}
    starts = {}
    for f in raw_files(folder):
        raw = read_raw(f)
        starts[f] = _file_start(raw)
        for mod, names in _channel_modalities(raw, layout.mapping).items():
            if mod in found:
                raise DatasetError(f, f"modality {mod!r} also appears in {found[mod][0].name}; "
                                      "put each modality in one file per recording")
            found[mod] = (f, raw, names)
    known = [s for s in starts.values() if s is not None]
    t0 = min(known) if known else 0.0
    signals: dict[str, _Signal] = {}
    end = 0.0
    for spec in cfg.modalities:
        if spec.name not in found:
            continue
        f, raw, names = found[spec.name]
        if len(names) != spec.channels:
            raise DatasetError(f, f"modality {spec.name!r} has {len(names)} channel(s), the model/config "
                                  f"expects {spec.channels}")
        sf = float(raw.info["sfreq"])  # type: ignore[attr-defined]
        if strict_rates and abs(sf - spec.sfreq) > 1e-6:
            raise DatasetError(f, f"modality {spec.name!r} is sampled at {sf:g} Hz, the model expects "
                                  f"{spec.sfreq:g} Hz (pass --resample to resample it)")
        try:
            x = raw.get_data(picks=names, reject_by_annotation="NaN", verbose="error")  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001
            raise DatasetError(f, f"cannot read samples ({type(exc).__name__}: {exc})") from None
        offset = (starts[f] - t0) if starts[f] is not None else 0.0
        end = max(end, offset + x.shape[-1] / sf)
        valid = np.isfinite(x).all(0)
        if not valid.any():
            continue                              # nothing recorded: absent throughout
        x = filter_signal(_bridge(x, valid), sf, pp.filter_for(spec.name, spec.kind), line_freq=pp.line_freq,
                          method=pp.method)
        if abs(sf - spec.sfreq) > 1e-9:
            x = resample_signal(x, sf, spec.sfreq)
            pos = np.minimum(np.round(np.arange(x.shape[-1]) * sf / spec.sfreq).astype(np.int64), valid.size - 1)
            valid = valid[pos]
        k = lag_samples(lags.get(spec.name, 0.0), spec.sfreq)
        x, valid = shift(x, k), shift(valid, k)
        signals[spec.name] = _Signal(x, valid, offset)
    return signals, end


def read_signals(layout: RecordingsLayout, folder: Path, names: Sequence[str] | None = None
                 ) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Raw samples of one recording for streaming: ``{modality: (x [n, C], times [n], sfreq)}`` with
    times in seconds from the recording's time 0, ``BAD_*`` spans as NaN, unfiltered."""
    opened = [(f, read_raw(f)) for f in raw_files(folder)]
    starts = {f: _file_start(raw) for f, raw in opened}
    known = [s for s in starts.values() if s is not None]
    t0 = min(known) if known else 0.0
    out = {}
    for f, raw in opened:
        for mod, chans in _channel_modalities(raw, layout.mapping).items():
            if names is not None and mod not in names:
                continue
            try:
                x = raw.get_data(picks=chans, reject_by_annotation="NaN", verbose="error")
            except Exception as exc:  # noqa: BLE001
                raise DatasetError(f, f"cannot read samples ({type(exc).__name__}: {exc})") from None
            sf = float(raw.info["sfreq"])
            offset = (starts[f] - t0) if starts[f] is not None else 0.0
            out[mod] = (x.T, offset + np.arange(x.shape[1]) / sf, sf)
    return out


def _cut(sig: _Signal | None, spec: ModalitySpec, starts: np.ndarray, window_s: float
         ) -> tuple[np.ndarray, np.ndarray]:
    """Windows ``[n, C, S]`` (zeros where unrecorded) and present ``[n]`` of one modality."""
    S = spec.samples(window_s)
    n = starts.size
    if sig is None:
        return np.zeros((n, spec.channels, S), np.float32), np.zeros(n, bool)
    first = np.round((starts - sig.offset_s) * spec.sfreq).astype(np.int64)
    idx = first[:, None] + np.arange(S)[None, :]                     # [n, S] sample indices
    inside = (idx >= 0) & (idx < sig.x.shape[-1])
    safe = np.clip(idx, 0, sig.x.shape[-1] - 1)
    ok = inside & sig.valid[safe]
    win = sig.x[:, safe].transpose(1, 0, 2) * ok[:, None, :]
    return np.ascontiguousarray(win, dtype=np.float32), ok.mean(1) >= MIN_COVERAGE


def _subject_windows(layout: RecordingsLayout, recs: list[tuple[str, Path]], cfg: HiMoEConfig, pp: PreprocessConfig,
                     lags: dict[str, float], stride_s: float, strict_rates: bool, subject: str):
    """Windows of one subject's recordings: (name -> [n, C, S], available [n, M], labels [n, n_t],
    local recording index [n])."""
    names = cfg.modality_names
    per_rec = [(_read_recording(layout, folder, cfg, pp, lags, strict_rates), rec, folder) for rec, folder in recs]
    # z-score per subject and channel over the recorded samples of all its recordings
    for m in names:
        have = [(s[m], i) for i, ((s, _), _, _) in enumerate(per_rec) if m in s]
        if have:
            normed = standardize([sig.x for sig, _ in have], pp.normalize, pp.clip, [sig.valid for sig, _ in have])
            for (sig, _), x in zip(have, normed):
                sig.x = x
    wins: dict[str, list[np.ndarray]] = {m: [] for m in names}
    avail, labels, trial = [], [], []
    for k, ((signals, dur), rec, folder) in enumerate(per_rec):
        n = window_count(dur, cfg.window_s, stride_s)
        if n == 0:
            continue
        starts = np.arange(n) * stride_s
        rec_avail = []
        for m in names:
            w, p = _cut(signals.get(m), cfg.modality(m), starts, cfg.window_s)
            wins[m].append(w)
            rec_avail.append(p)
        avail.append(np.stack(rec_avail, 1))
        labels.append(_recording_labels(layout, cfg, subject, rec, folder, starts))
        trial.append(np.full(n, k, np.int64))
    return wins, avail, labels, trial


def _recording_labels(layout: RecordingsLayout, cfg: HiMoEConfig, subject: str, rec: str, folder: Path,
                      starts: np.ndarray) -> np.ndarray:
    n_t = len(cfg.targets)
    path = folder / RATINGS_FILE
    if path.exists():
        targets, t, values = _read_ratings(path)
        cols = [targets.index(x) if x in targets else None for x in cfg.targets]
        on = window_ratings(t, values, starts, cfg.window_s)
        out = np.stack([on[:, c] if c is not None else np.full(starts.size, np.nan) for c in cols], 1)
        where = path
    elif (subject, rec) in layout.labels_csv:
        targets, _ = _read_labels_csv(layout.root / LABELS_FILE)
        row = layout.labels_csv[(subject, rec)]
        out = np.array([[row[targets.index(x)] if x in targets else math.nan for x in cfg.targets]] * starts.size)
        where = layout.root / LABELS_FILE
    else:
        return np.full((starts.size, n_t), np.nan, np.float32)
    lo, hi = layout.scale
    finite = out[np.isfinite(out)]
    if finite.size and (finite.min() < lo - 1e-9 or finite.max() > hi + 1e-9):
        raise DatasetError(where, f"ratings outside the scale {lo:g}-{hi:g} (found {finite.min():g}..{finite.max():g}); "
                                  f"set \"scale\" in {SETTINGS_FILE}")
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------ entry
class RecordingsAdapter(DatasetAdapter):
    """A recordings folder for :func:`~himoe_fast.data.prepare_windows`. Fixed and per-subject random
    lags apply as for DEAP and DREAMER."""

    name = "recordings"
    title = "recordings"
    version = RECORDINGS_VERSION
    random_lags = True

    def __init__(self, layout: RecordingsLayout, subj_names: list[str], strict_rates: bool):
        self.layout, self.subj_names, self.strict_rates = layout, subj_names, strict_rates
        self.files = layout.files
        self.n_subjects = len(subj_names)

    @classmethod
    def open(cls, data_dir: Path, cfg: HiMoEConfig, *, subjects: int | None = None,
             face_dir: str | os.PathLike | None = None, strict_rates: bool = False) -> "RecordingsAdapter":
        """The config's modalities are looked up in the folder; one that no recording has is absent
        in every window (a warning names it)."""
        layout = scan_recordings(data_dir)
        names = cfg.modality_names
        have = {m.name for m in layout.modalities}
        if not have & set(names):
            raise DatasetError(layout.root, f"has none of the modalities {', '.join(names)} "
                                            f"(the folder has: {', '.join(sorted(have))})")
        absent = [m for m in names if m not in have]
        if absent:
            warnings.warn(f"{layout.root}: no channel of modality {', '.join(absent)}; marked absent everywhere",
                          stacklevel=3)
        subj_names = layout.subjects
        if subjects is not None:
            if int(subjects) > len(subj_names):
                raise DatasetError(layout.root, f"{subjects} subjects requested but the folder has {len(subj_names)}")
            subj_names = subj_names[: int(subjects)]
        return cls(layout, subj_names, strict_rates)

    @classmethod
    def provided_modalities(cls, data_dir: Path) -> dict[str, tuple[int, float | None]]:
        return {m.name: (m.channels, m.sfreq) for m in scan_recordings(data_dir).modalities}

    def identity(self) -> list:
        return [file_identity(f) for f in self.layout.files]

    def key_options(self) -> dict:
        return {"strict_rates": self.strict_rates}

    def meta_extra(self) -> dict:
        trial_names = [f"{s}/{r}" for s, r, _ in self.layout.recordings if s in self.subj_names]
        return {"subject_names": self.subj_names, "trial_names": trial_names}

    def iter_subjects(self, req: PrepareRequest, progress: ProgressCallback | None = None
                      ) -> Iterator[SubjectWindows]:
        cfg, names = req.cfg, req.cfg.modality_names
        any_window = False
        report(progress, 0, len(self.subj_names), "")
        for s, subj in enumerate(self.subj_names):
            recs = [(r, f) for sname, r, f in self.layout.recordings if sname == subj]
            wins, avail, labels, trial = _subject_windows(self.layout, recs, cfg, req.pp, req.lags_for(s),
                                                          req.stride_s, self.strict_rates, subj)
            if trial:
                any_window = True
                yield SubjectWindows({m: np.concatenate(wins[m]) for m in names}, np.concatenate(avail),
                                     np.concatenate(labels), np.concatenate(trial), len(recs))
            else:
                yield empty_subject_windows(cfg, len(recs))
            report(progress, s + 1, len(self.subj_names), subj)
        if not any_window:
            raise DatasetError(self.layout.root, f"no recording is at least one window ({cfg.window_s:g} s) long")


def prepare_recordings(data_dir: str | os.PathLike, cfg: HiMoEConfig, *, seq_len: int = 8,
                       stride_s: float | None = None, seq_stride: int | None = None, subjects: int | None = None,
                       lags: dict[str, float] | None = None, cache_dir: str | os.PathLike | None = None,
                       progress: ProgressCallback | bool | None = True, use_cache: bool = True,
                       strict_rates: bool = False, **preprocess_overrides) -> WindowedData:
    """:func:`~himoe_fast.data.prepare_windows` for a recordings folder (same arguments and cache).

    The config's modalities are looked up in the folder; one that no recording has is absent in
    every window (a warning names it). ``strict_rates`` turns a sampling-rate difference between
    the files and the config into a :class:`DatasetError` instead of resampling.
    ``meta["trial_names"]`` lists ``"subject/recording"`` per trial id.
    """
    from .prepare import prepare_dataset

    return prepare_dataset(RecordingsAdapter, data_dir, cfg, seq_len=seq_len, stride_s=stride_s,
                           seq_stride=seq_stride, subjects=subjects, lags=lags, cache_dir=cache_dir,
                           progress=progress, use_cache=use_cache, strict_rates=strict_rates,
                           **preprocess_overrides)


__all__ = ["scan_recordings", "recordings_config", "prepare_recordings", "window_ratings", "read_raw", "read_signals",
           "RecordingsLayout", "RecordingsAdapter", "MIN_COVERAGE", "TYPE_TO_MODALITY"]
