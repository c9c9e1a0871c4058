"""``prepare_windows``: raw files -> MNE preprocessing -> windows -> cache -> :class:`WindowedData`.

Data sets
    ``"deap"``: ``data_dir`` is the ``data_preprocessed_python`` folder (or a folder containing it)
    with ``s01.dat`` ...; face features come from ``face_dir`` (``sNN_face.npz``, see :mod:`.deap`).
    Modalities are those of :data:`himoe_fast.config.DEAP_MODALITIES` plus ``face``.
    ``"dreamer"``: ``data_dir`` is ``DREAMER.mat`` or a folder containing it; modalities ``eeg`` and
    ``ecg``.
    ``subjects=N`` uses the first N subjects (file order). The config's ``ModalitySpec`` must have
    the data set's channel count; its ``sfreq`` decides the rate (resampled only if it differs).

Availability
    ``WindowedData.available`` is False where a modality was not recorded: DEAP face windows of
    subjects without a face file, of trials without face features, or past the end of a shorter
    recording (a window counts as recorded when at least half of its frames are). Such windows
    hold zeros.

Cache
    The result is stored under ``<cache root>/windows/<dataset>-<key>/`` (one ``.npy`` per array,
    window arrays memory-mapped on load). ``key`` hashes the identity (path, size, mtime) of every
    input file used, the modality specs, targets, window and stride, lags, every preprocessing
    setting and the code versions; sequences (``seq_len``/``seq_stride``) are rebuilt on load and
    not part of it. The entry is written to a temporary folder and renamed into place, so an error
    or a kill never leaves a half-written entry. ``use_cache=False`` bypasses it.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..config import (DEAP_MODALITIES, DEAP_SFREQ, DEAP_TARGETS, DREAMER_MODALITIES, DREAMER_TARGETS,
                      HiMoEConfig, ModalitySpec, canonical_modality)
from .cache import atomic_dir, cache_key, cache_root, file_identity, remove_stale_tmp
from .deap import DEAP_BASELINE_S, DeapSubject, face_file_for, load_deap_subject
from .dreamer import DreamerSubject, load_dreamer
from .errors import DatasetError
from .preprocess import (PREPROCESS_VERSION, PreprocessConfig, filter_signal, lag_samples, resample_signal,
                         shift, standardize)
from .windows import WindowedData, cut_windows, make_sequences, window_count

#: Bump when windowing / assembly changes its output (part of the cache key).
WINDOWS_VERSION = 1
DATASETS = ("deap", "dreamer", "recordings")

#: DEAP channel index -> signal family (decides the filter).
DEAP_FAMILY = ("eeg",) * 32 + ("eog", "eog", "emg", "emg", "gsr", "resp", "ppg", "temp")
_FAMILY_CHANNELS = {f: [c for c, g in enumerate(DEAP_FAMILY) if g == f] for f in dict.fromkeys(DEAP_FAMILY)}
_POS_IN_FAMILY = {c: _FAMILY_CHANNELS[f].index(c) for c, f in enumerate(DEAP_FAMILY)}


@dataclass
class _Trials:
    """One subject after preprocessing: per modality a list of per-trial ``[C, n]`` float32 arrays."""

    signals: dict[str, list[np.ndarray]]
    valid: dict[str, list[np.ndarray | None]]        # per-sample recorded mask (None: all recorded)
    labels: np.ndarray                                # [n_trials, n_targets]


# ------------------------------------------------------------------------------------------ helpers
def _label_columns(cfg: HiMoEConfig, known: Sequence[str], where: Path) -> list[int]:
    cols = []
    for t in cfg.targets:
        if t not in known:
            raise DatasetError(where, f"target {t!r} is not rated in this data set (targets: {', '.join(known)})")
        cols.append(list(known).index(t))
    return cols


def _check_lags(cfg: HiMoEConfig, lags: dict[str, float] | None) -> dict[str, float]:
    out = {}
    by_canonical = {canonical_modality(n): n for n in cfg.modality_names}
    for raw, value in (lags or {}).items():
        name = raw if raw in cfg.modality_names else by_canonical.get(canonical_modality(raw))
        if name is None:
            raise ValueError(f"lag given for {raw!r}, which is not a modality of the config {cfg.modality_names}")
        v = float(value)
        if not math.isfinite(v):
            raise ValueError(f"lag of {raw!r} must be finite, got {value!r}")
        if v != 0.0:
            out[name] = v
    return dict(sorted(out.items()))


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


def _check_lags_fit(where: Path, lags: dict[str, float], trial_s: float, who: str = "") -> None:
    """A lag must be shorter than the shortest trial: a longer one would shift the whole recording
    out of it and leave only a repeated edge value."""
    for name, lag in lags.items():
        if abs(lag) >= trial_s:
            raise DatasetError(where, f"lag of {lag:g} s for {name!r} is not shorter than the shortest trial"
                                      f"{' of ' + who if who else ''} ({trial_s:.1f} s)")


def _deap_files(data_dir: Path) -> list[Path]:
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


def _dreamer_file(data_dir: Path) -> Path:
    if data_dir.is_dir():
        data_dir = data_dir / "DREAMER.mat"
    if not data_dir.exists():
        raise DatasetError(data_dir, "DREAMER .mat file not found")
    return data_dir


def _deap_modalities(cfg: HiMoEConfig, where: Path) -> list[tuple[ModalitySpec, tuple[int, ...] | None]]:
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


def _dreamer_modalities(cfg: HiMoEConfig, where: Path) -> list[ModalitySpec]:
    for spec in cfg.modalities:
        if spec.name not in DREAMER_MODALITIES:
            raise DatasetError(where, f"unknown DREAMER modality {spec.name!r} (known: {', '.join(DREAMER_MODALITIES)})")
        channels = DREAMER_MODALITIES[spec.name][0]
        if spec.channels != channels:
            raise DatasetError(where, f"modality {spec.name!r} has {channels} channels in DREAMER, the config says {spec.channels}")
    return list(cfg.modalities)


# ------------------------------------------------------------------------------------ per subject
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
                  label_cols: list[int]) -> _Trials:
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
    return _Trials(signals, valid, subj.labels[:, label_cols])


def _process_dreamer(subj: DreamerSubject, mods: list[ModalitySpec], pp: PreprocessConfig,
                     lags: dict[str, float], label_cols: list[int]) -> _Trials:
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
    return _Trials(signals, valid, subj.scores[:, label_cols])


def _last_sample(n: int, spec: ModalitySpec, window_s: float, stride_s: float) -> int:
    """Index of the last sample of window ``n - 1`` (as :func:`cut_windows` places it)."""
    return int(round((n - 1) * stride_s * spec.sfreq)) + spec.samples(window_s) - 1


def _window_subject(tr: _Trials, cfg: HiMoEConfig, stride_s: float
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
    """Windows of one subject: (name -> [n, C, S], available [n, M], labels [n, n_t], local trial [n])."""
    names = cfg.modality_names
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
        empty = {m: np.zeros((0, cfg.modality(m).channels, cfg.modality(m).samples(cfg.window_s)), np.float32)
                 for m in names}
        return empty, np.zeros((0, len(names)), bool), np.zeros((0, len(cfg.targets)), np.float32), np.zeros(0, np.int64)
    return ({m: np.concatenate(v) for m, v in per_mod.items()}, np.concatenate(avail),
            np.concatenate(labels).astype(np.float32), np.concatenate(trial))


# ------------------------------------------------------------------------------------ progress
@contextmanager
def _progress(enabled: bool, total: int, description: str) -> Iterator:
    """Rich progress bar on stderr (transient: gone when done, so an error stays a single line);
    where stderr is not a terminal (logs, CI), a start and an end line on stdout instead."""
    import time

    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    console = Console(stderr=True)
    plain = enabled and not console.is_terminal
    log = Console(stderr=False)
    t0 = time.perf_counter()
    if plain:
        log.print(f"{description}: {total} step(s)...", highlight=False)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                  disable=not enabled or plain, transient=True) as bar:
        task = bar.add_task(description, total=total)

        def advance(label: str | None = None) -> None:
            bar.update(task, advance=1, description=f"{description} {label}" if label else description)

        yield advance
    if plain:
        log.print(f"{description}: done in {time.perf_counter() - t0:.1f} s", highlight=False)


# ------------------------------------------------------------------------------------ cache I/O
_ARRAYS = ("labels", "subject", "trial", "available")


def _load_cached(folder: Path, names: Sequence[str], key: str) -> dict | None:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("key") != key:
            return None
        out = {a: np.load(folder / f"{a}.npy") for a in _ARRAYS}
        out["windows"] = {m: np.load(folder / f"win_{i}.npy", mmap_mode="r") for i, m in enumerate(names)}
        out["meta"] = meta
        return out
    except (OSError, ValueError, KeyError):
        return None


def _write_cache(tmp: Path, chunks: dict[str, list[np.ndarray]], arrays: dict[str, np.ndarray],
                 names: Sequence[str], meta: dict) -> None:
    """Stream the per-subject window chunks into .npy files (the chunk lists are emptied)."""
    for i, m in enumerate(names):
        parts = chunks[m]
        n = sum(p.shape[0] for p in parts)
        shape = (n, *parts[0].shape[1:]) if parts else (0,)
        out = np.lib.format.open_memmap(tmp / f"win_{i}.npy", mode="w+", dtype=np.float32, shape=shape)
        row = 0
        while parts:
            p = parts.pop(0)
            out[row:row + p.shape[0]] = p
            row += p.shape[0]
        out.flush()
        del out
    for a in _ARRAYS:
        np.save(tmp / f"{a}.npy", arrays[a])
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


# ------------------------------------------------------------------------------------ entry point
def prepare_windows(dataset: str, data_dir: str | os.PathLike | None, cfg: HiMoEConfig, *, seq_len: int = 8,
                    stride_s: float | None = None, seq_stride: int | None = None, subjects: int | None = None,
                    lags: dict[str, float] | None = None, cache_dir: str | os.PathLike | None = None,
                    progress: bool = True, use_cache: bool = True, face_dir: str | os.PathLike | None = None,
                    random_lags: dict[str, float] | None = None, lag_seed: int = 0,
                    **preprocess_overrides) -> WindowedData:
    """Load, preprocess, window and cache a data set for ``cfg``.

    Args:
        dataset: ``"deap"``, ``"dreamer"`` or ``"recordings"`` (:mod:`.recordings`).
        data_dir: DEAP folder / DREAMER.mat (or its folder) / recordings folder.
        cfg: the model config: modalities (names, channels, rates), ``window_s``, ``targets``.
        seq_len: windows per sequence ``T``.
        stride_s: seconds between window starts (default ``cfg.window_s``: no overlap).
        seq_stride: windows between sequence starts (default ``seq_len``).
        subjects: use only the first N subjects.
        lags: modality -> lag in seconds (asynchrony, applied before windowing).
        random_lags: modality -> largest extra lag in seconds, drawn per subject uniformly from
            ``[0, max]`` with ``lag_seed`` (see :func:`subject_lags`); ``meta["subject_lags"]`` lists them.
        cache_dir: cache root (default ``$HIMOE_FAST_CACHE`` or ``~/.cache/himoe-fast``).
        progress: show a rich progress bar on stderr.
        use_cache: read/write the cache.
        face_dir: DEAP only: the folder of the ``sNN_face.npz`` face-feature files, for a ``face``
            modality (None: files beside ``sNN.dat``, the earlier layout, if any).
        **preprocess_overrides: fields of :class:`~.preprocess.PreprocessConfig` (``filters``,
            ``line_freq``, ``method``, ``baseline``, ``normalize``, ``clip``).

    Returns:
        :class:`WindowedData`; ``meta["from_cache"]`` tells whether it came from the cache.

    Raises:
        DatasetError: missing / bad files, unknown modality or target, channel-count mismatch.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset == "recordings" and data_dir is not None:   # own layout, same cache and outputs
        from .recordings import prepare_recordings

        return prepare_recordings(data_dir, cfg, seq_len=seq_len, stride_s=stride_s, seq_stride=seq_stride,
                                  subjects=subjects, lags=lags, cache_dir=cache_dir, progress=progress,
                                  use_cache=use_cache, **preprocess_overrides)
    if data_dir is None:
        raise DatasetError(None, f"no data folder given for {dataset.upper()} (use ensure_synthetic() for synthetic data)")
    pp = PreprocessConfig.from_overrides(**preprocess_overrides)
    stride_s = float(cfg.window_s if stride_s is None else stride_s)
    if not stride_s > 0:
        raise ValueError(f"stride_s must be > 0, got {stride_s}")
    if subjects is not None and int(subjects) < 1:
        raise ValueError(f"subjects must be >= 1, got {subjects}")
    lag_map = _check_lags(cfg, lags)
    random_map = _check_lags(cfg, random_lags)
    if any(v < 0 for v in random_map.values()):
        raise ValueError(f"random lags must be >= 0 seconds, got {random_map}")
    names = cfg.modality_names
    data_dir = Path(data_dir).expanduser()

    if dataset == "deap":
        files = _deap_files(data_dir)
        if subjects is not None:
            if int(subjects) > len(files):
                raise DatasetError(data_dir, f"{subjects} subjects requested but only {len(files)} subject files found")
            files = files[: int(subjects)]
        mods = _deap_modalities(cfg, data_dir)
        label_cols = _label_columns(cfg, DEAP_TARGETS, data_dir)
        uses_face = any(idx is None for _, idx in mods)
        if uses_face and face_dir is not None and not Path(face_dir).is_dir():
            raise DatasetError(face_dir, "face feature folder not found")
        face_files = [face_file_for(f, face_dir) if uses_face else None for f in files]
        face_files = [ff if ff is not None and ff.exists() else None for ff in face_files]
        identity = [file_identity(f) for f in files]
        if uses_face:
            identity += [file_identity(ff) if ff is not None else None for ff in face_files]
    else:
        mat = _dreamer_file(data_dir)
        files = [mat]
        mods_d = _dreamer_modalities(cfg, mat)
        label_cols = _label_columns(cfg, DREAMER_TARGETS, mat)
        identity = [file_identity(mat)]

    key_obj = {
        "versions": [PREPROCESS_VERSION, WINDOWS_VERSION], "dataset": dataset, "files": identity,
        "subjects": subjects, "modalities": [[m.name, m.channels, m.sfreq, m.kind] for m in cfg.modalities],
        "targets": list(cfg.targets), "window_s": float(cfg.window_s), "stride_s": stride_s,
        "lags": lag_map, "preprocess": pp.to_dict(),
    }
    if random_map:                      # only then, so that existing cache keys stay valid
        key_obj.update(random_lags=random_map, lag_seed=int(lag_seed))
    key = cache_key(key_obj)
    root = cache_root(cache_dir) / "windows"
    folder = root / f"{dataset}-{key}"
    meta = {"key": key, "dataset": dataset, "modalities": list(names), "targets": list(cfg.targets),
            "sfreq": {m.name: m.sfreq for m in cfg.modalities}, "window_s": float(cfg.window_s),
            "stride_s": stride_s, "lags": lag_map, "files": [str(f) for f in files], "settings": key_obj}
    if random_map:
        n_subj = len(files) if dataset == "deap" else (int(subjects) if subjects is not None else None)
        if n_subj is not None:
            meta["subject_lags"] = [subject_lags(lag_map, random_map, lag_seed, s) for s in range(n_subj)]

    if use_cache and folder.is_dir():
        hit = _load_cached(folder, names, key)
        if hit is not None:
            return _assemble(hit["windows"], hit, names, cfg, seq_len, seq_stride,
                             dict(hit["meta"], from_cache=True, cache_path=str(folder)))
        shutil.rmtree(folder, ignore_errors=True)      # unreadable entry: rebuild it

    chunks: dict[str, list[np.ndarray]] = {m: [] for m in names}
    parts: dict[str, list[np.ndarray]] = {a: [] for a in _ARRAYS}
    trial_offset = 0

    def add(s: int, tr: _Trials) -> None:
        nonlocal trial_offset
        for m in names:       # finite input can still overflow float64 filtering (|x| near 1e308)
            if not all(np.isfinite(x).all() for x in tr.signals[m]):
                raise DatasetError(files[s] if dataset == "deap" else files[0],
                                   f"{m!r} values are too large to preprocess (they overflow float64 filtering)")
        wins, avail, labels, trial = _window_subject(tr, cfg, stride_s)
        for m in names:
            chunks[m].append(wins[m])
        parts["available"].append(avail)
        parts["labels"].append(labels)
        parts["trial"].append(trial + trial_offset)
        parts["subject"].append(np.full(len(trial), s, np.int64))
        trial_offset += tr.labels.shape[0]

    if dataset == "deap":
        with _progress(progress, len(files), "preprocessing DEAP") as advance:
            n_face = 0
            for s, f in enumerate(files):
                subj = load_deap_subject(f, face=face_files[s] if face_files[s] is not None else False)
                lags_s = subject_lags(lag_map, random_map, lag_seed, s)
                _check_lags_fit(f, lags_s, subj.data.shape[-1] / DEAP_SFREQ - DEAP_BASELINE_S)
                n_face += subj.face is not None
                add(s, _process_deap(subj, mods, cfg, pp, lags_s, label_cols))
                del subj
                advance(f.name)
        if uses_face and n_face == 0:
            warnings.warn(f"{face_dir if face_dir is not None else data_dir}: no face feature files (sNN_face.npz); "
                          "the 'face' modality is marked unavailable everywhere", stacklevel=2)
    else:
        with _progress(progress, 1, "reading DREAMER.mat") as advance:
            dreamer = load_dreamer(files[0])
            advance()
        if subjects is not None:
            if int(subjects) > len(dreamer):
                raise DatasetError(files[0], f"{subjects} subjects requested but the file has {len(dreamer)}")
            dreamer = dreamer[: int(subjects)]
        with _progress(progress, len(dreamer), "preprocessing DREAMER") as advance:
            for s, subj in enumerate(dreamer):
                lags_s = subject_lags(lag_map, random_map, lag_seed, s)
                _check_lags_fit(files[0], lags_s, min(c.shape[-1] for c in subj.eeg) / subj.eeg_sfreq,
                                f"subject {s + 1}")
                add(s, _process_dreamer(subj, mods_d, pp, lags_s, label_cols))
                advance(f"subject {s + 1}")
        del dreamer

    return _store_and_assemble(chunks, parts, names, cfg, seq_len, seq_stride, meta, folder, key, use_cache)


def _store_and_assemble(chunks: dict[str, list[np.ndarray]], parts: dict[str, list[np.ndarray]], names, cfg,
                        seq_len: int, seq_stride: int | None, meta: dict, folder: Path, key: str,
                        use_cache: bool) -> WindowedData:
    """Concatenate the per-subject pieces, write them as the cache entry ``folder`` (atomically) and
    return the windows read back from it; without the cache, straight from memory."""
    arrays = {
        "labels": np.concatenate(parts["labels"]).astype(np.float32),
        "subject": np.concatenate(parts["subject"]).astype(np.int64),
        "trial": np.concatenate(parts["trial"]).astype(np.int64),
        "available": np.concatenate(parts["available"]).astype(bool),
    }
    if use_cache:
        remove_stale_tmp(folder.parent)
        with atomic_dir(folder) as tmp:
            _write_cache(tmp, chunks, arrays, names, meta)
        hit = _load_cached(folder, names, key)
        if hit is None:   # pragma: no cover - only if the folder vanished right after writing
            raise DatasetError(folder, "cache entry could not be read back")
        return _assemble(hit["windows"], hit, names, cfg, seq_len, seq_stride,
                         dict(meta, from_cache=False, cache_path=str(folder)))
    windows = {m: np.concatenate(chunks[m]) for m in names}
    return _assemble(windows, arrays, names, cfg, seq_len, seq_stride, dict(meta, from_cache=False, cache_path=None))


def _assemble(windows, arrays, names, cfg, seq_len, seq_stride, meta) -> WindowedData:
    sequences = make_sequences(arrays["trial"], seq_len, seq_stride)
    meta = dict(meta, seq_len=seq_len, seq_stride=seq_stride or seq_len)
    return WindowedData(modalities=tuple(names), windows=windows, labels=arrays["labels"],
                        subject=arrays["subject"], trial=arrays["trial"], available=arrays["available"],
                        sequences=sequences, targets=tuple(cfg.targets), meta=meta)
