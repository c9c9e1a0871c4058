"""``prepare_windows``: raw files -> MNE preprocessing -> windows -> cache -> :class:`WindowedData`.

The steps every data set shares live here: argument checks, the cache key and entry
(:mod:`.cache`), progress, assembling the result. What differs per data set (finding the files,
their identity, the modalities, reading and preprocessing a subject) is its adapter
(:mod:`.adapters`), looked up by name in :data:`ADAPTERS`.

Data sets
    ``"deap"``: ``data_dir`` is the ``data_preprocessed_python`` folder (or a folder containing it)
    with ``s01.dat`` ...; face features come from ``face_dir`` (``sNN_face.npz``, see :mod:`.deap`).
    Modalities are those of :data:`himoe_fast.config.DEAP_MODALITIES` plus ``face``.
    ``"dreamer"``: ``data_dir`` is ``DREAMER.mat`` or a folder containing it; modalities ``eeg`` and
    ``ecg``.
    ``"recordings"``: a folder of MNE-readable recordings (:mod:`.recordings`).
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

import math
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..config import HiMoEConfig, canonical_modality
from ..progress import ProgressCallback, Reporter
from .adapters import DatasetAdapter, PrepareRequest
from .cache import WINDOW_ARRAYS, cache_key, cache_root, read_windows_entry, store_windows_entry
from .deap import DeapAdapter
from .dreamer import DreamerAdapter
from .errors import DatasetError
from .preprocess import PREPROCESS_VERSION, PreprocessConfig, subject_lags
from .recordings import RecordingsAdapter
from .windows import WINDOWS_VERSION, SubjectWindows, WindowedData, make_sequences

#: The registry: data set name -> its adapter (:mod:`.adapters`).
ADAPTERS: dict[str, type[DatasetAdapter]] = {a.name: a for a in (DeapAdapter, DreamerAdapter, RecordingsAdapter)}
DATASETS = tuple(ADAPTERS)


def adapter_for(dataset: str) -> type[DatasetAdapter]:
    """The adapter of ``dataset`` (``"deap"``, ``"dreamer"``, ``"recordings"``)."""
    if dataset not in ADAPTERS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    return ADAPTERS[dataset]


# ------------------------------------------------------------------------------------------ helpers
def _check_lags(cfg: HiMoEConfig, lags: dict[str, float] | None) -> dict[str, float]:
    """``lags`` keyed by the config's modality names (aliases resolved), non-zero only, sorted."""
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


@contextmanager
def progress_callback(progress: ProgressCallback | bool | None, description: str
                      ) -> Iterator[ProgressCallback | None]:
    """``progress`` as a callback: a callable as it is, True a :class:`~himoe_fast.progress.Reporter`
    of its own (gone when done, so an error stays a single line), False or None no progress."""
    if callable(progress):
        yield progress
    elif progress:
        with Reporter(description, transient=True) as rep:
            yield rep
    else:
        yield None


# ------------------------------------------------------------------------------------ entry points
def prepare_windows(dataset: str, data_dir: str | os.PathLike | None, cfg: HiMoEConfig, *, seq_len: int = 8,
                    stride_s: float | None = None, seq_stride: int | None = None, subjects: int | None = None,
                    lags: dict[str, float] | None = None, cache_dir: str | os.PathLike | None = None,
                    progress: ProgressCallback | bool | None = True, use_cache: bool = True,
                    face_dir: str | os.PathLike | None = None, random_lags: dict[str, float] | None = None,
                    lag_seed: int = 0, **preprocess_overrides) -> WindowedData:
    """Load, preprocess, window and cache a data set for ``cfg``.

    Args:
        dataset: ``"deap"``, ``"dreamer"`` or ``"recordings"`` (:data:`ADAPTERS`).
        data_dir: DEAP folder / DREAMER.mat (or its folder) / recordings folder.
        cfg: the model config: modalities (names, channels, rates), ``window_s``, ``targets``.
        seq_len: windows per sequence ``T``.
        stride_s: seconds between window starts (default ``cfg.window_s``: no overlap).
        seq_stride: windows between sequence starts (default ``seq_len``).
        subjects: use only the first N subjects.
        lags: modality -> lag in seconds (asynchrony, applied before windowing).
        random_lags: modality -> largest extra lag in seconds, drawn per subject uniformly from
            ``[0, max]`` with ``lag_seed`` (see :func:`subject_lags`); ``meta["subject_lags"]`` lists
            them. Not applied to recordings folders.
        cache_dir: cache root (default ``$HIMOE_FAST_CACHE`` or ``~/.cache/himoe-fast``).
        progress: a :data:`~himoe_fast.progress.ProgressCallback` called ``(done, total, label)``
            per subject; True (default): a progress reporter of its own (a bar on a terminal, plain
            lines elsewhere); False/None: none.
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
    return prepare_dataset(adapter_for(dataset), data_dir, cfg, seq_len=seq_len, stride_s=stride_s,
                           seq_stride=seq_stride, subjects=subjects, lags=lags, cache_dir=cache_dir,
                           progress=progress, use_cache=use_cache, face_dir=face_dir, random_lags=random_lags,
                           lag_seed=lag_seed, **preprocess_overrides)


def prepare_dataset(adapter: type[DatasetAdapter], data_dir: str | os.PathLike | None, cfg: HiMoEConfig, *,
                    seq_len: int = 8, stride_s: float | None = None, seq_stride: int | None = None,
                    subjects: int | None = None, lags: dict[str, float] | None = None,
                    cache_dir: str | os.PathLike | None = None, progress: ProgressCallback | bool | None = True,
                    use_cache: bool = True, face_dir: str | os.PathLike | None = None,
                    random_lags: dict[str, float] | None = None, lag_seed: int = 0, strict_rates: bool = False,
                    **preprocess_overrides) -> WindowedData:
    """:func:`prepare_windows` for the data set of ``adapter`` (``strict_rates``: recordings only,
    see :func:`~.recordings.prepare_recordings`)."""
    if data_dir is None:
        raise DatasetError(None, f"no data folder given for {adapter.name.upper()} "
                                 "(use ensure_synthetic() for synthetic data)")
    pp = PreprocessConfig.from_overrides(**preprocess_overrides)
    stride_s = float(cfg.window_s if stride_s is None else stride_s)
    if not stride_s > 0:
        raise ValueError(f"stride_s must be > 0, got {stride_s}")
    if subjects is not None and int(subjects) < 1:
        raise ValueError(f"subjects must be >= 1, got {subjects}")
    lag_map = _check_lags(cfg, lags)
    random_map = _check_lags(cfg, random_lags) if adapter.random_lags else {}
    if any(v < 0 for v in random_map.values()):
        raise ValueError(f"random lags must be >= 0 seconds, got {random_map}")
    names = cfg.modality_names
    source = adapter.open(Path(data_dir).expanduser(), cfg, subjects=subjects, face_dir=face_dir,
                          strict_rates=strict_rates)

    key_obj = {
        "versions": [PREPROCESS_VERSION, adapter.version], "dataset": adapter.name, "files": source.identity(),
        "subjects": subjects, **source.key_options(),
        "modalities": [[m.name, m.channels, m.sfreq, m.kind] for m in cfg.modalities],
        "targets": list(cfg.targets), "window_s": float(cfg.window_s), "stride_s": stride_s,
        "lags": lag_map, "preprocess": pp.to_dict(),
    }
    if random_map:                      # only then, so that existing cache keys stay valid
        key_obj.update(random_lags=random_map, lag_seed=int(lag_seed))
    key = cache_key(key_obj)
    folder = cache_root(cache_dir) / "windows" / f"{adapter.name}-{key}"
    meta = {"key": key, "dataset": adapter.name, "modalities": list(names), "targets": list(cfg.targets),
            "sfreq": {m.name: m.sfreq for m in cfg.modalities}, "window_s": float(cfg.window_s),
            "stride_s": stride_s, "lags": lag_map, "files": [str(f) for f in source.files],
            **source.meta_extra(), "settings": key_obj}
    if random_map and source.n_subjects is not None:
        meta["subject_lags"] = [subject_lags(lag_map, random_map, lag_seed, s) for s in range(source.n_subjects)]

    if use_cache and folder.is_dir():
        hit = read_windows_entry(folder, names, key)
        if hit is not None:
            return _assemble(hit["windows"], hit, names, cfg, seq_len, seq_stride,
                             dict(hit["meta"], from_cache=True, cache_path=str(folder)))
        shutil.rmtree(folder, ignore_errors=True)      # unreadable entry: rebuild it

    req = PrepareRequest(cfg, pp, stride_s, lag_map, random_map, int(lag_seed))
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in names}
    parts: dict[str, list[np.ndarray]] = {a: [] for a in WINDOW_ARRAYS}
    trial_offset = 0
    with progress_callback(progress, f"preprocessing {adapter.title}") as callback:
        for s, sw in enumerate(source.iter_subjects(req, callback)):
            _add_subject(chunks, parts, names, s, sw, trial_offset)
            trial_offset += sw.n_trials
    return _store_and_assemble(chunks, parts, names, cfg, seq_len, seq_stride, meta, folder, use_cache)


def _add_subject(chunks: dict[str, list[np.ndarray]], parts: dict[str, list[np.ndarray]], names, s: int,
                 sw: SubjectWindows, trial_offset: int) -> None:
    """Append subject ``s``'s windows; its trial ids are numbered on from ``trial_offset``."""
    for m in names:
        chunks[m].append(sw.windows[m])
    parts["available"].append(sw.available)
    parts["labels"].append(sw.labels)
    parts["trial"].append(sw.trial + trial_offset)
    parts["subject"].append(np.full(len(sw.trial), s, np.int64))


def _store_and_assemble(chunks: dict[str, list[np.ndarray]], parts: dict[str, list[np.ndarray]], names, cfg,
                        seq_len: int, seq_stride: int | None, meta: dict, folder: Path,
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
        hit = store_windows_entry(folder, chunks, arrays, names, meta)
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


__all__ = ["prepare_windows", "prepare_dataset", "adapter_for", "ADAPTERS", "DATASETS", "subject_lags",
           "progress_callback", "WINDOWS_VERSION"]
