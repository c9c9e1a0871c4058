"""One experiment end to end: data -> splits -> one model per fold -> aggregated metrics on disk.

:func:`run_experiment` is what ``himoe-fast train`` calls (and the robustness / ablation sweeps call
it repeatedly). A run directory holds::

    config.json          model config, training settings, data settings (everything to rerun it)
    metrics.json         {"ccc": {target: mean over folds, ..., "mean"}, "pcc", "mae" (+ "acc", "f1"),
                          "std": {...}, "per_fold": [...], ...}
    folds.csv            one row per fold: metric_target columns
    folds/<name>/        checkpoint.pt (resume state), model.pt (best weights), predictions.npz, result.json

Execution modes: one process; ``world_size > 1`` with ``parallel="ddp"`` (every fold trained by all
ranks with DistributedDataParallel); ``parallel="folds"`` (independent folds spread over the ranks,
one model per rank at a time).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import HiMoEConfig
from ..metrics import aggregate_folds
from ..io import atomic_write_json, atomic_write_text
from ..errors import CheckpointError, SettingsError, UserInputError
from .callbacks import load_callbacks
from .distributed import DistContext, context_from_env, launched_by_torchrun, single_process_context, spawn
from .rundir import STARTED, clean_failed_start, run_state
from .loop import FoldResult, TrainSettings, train_fold

DATASETS = ("synthetic", "deap", "dreamer", "recordings")
PROTOCOLS = ("holdout", "kfold", "loso")
SPLITS = ("trial", "window")


@dataclass
class DataSettings:
    """Which data and how it is cut (everything :func:`himoe_fast.data.prepare_windows` needs)."""

    dataset: str = "synthetic"
    data_dir: str | None = None
    subjects: int | None = None
    seq_len: int = 8
    stride_s: float | None = None
    lags: dict[str, float] = field(default_factory=dict)
    synthetic_seed: int = 0
    cache_dir: str | None = None
    face_dir: str | None = None       # DEAP face features (sNN_face.npz), a folder of their own
    random_lags: dict[str, float] = field(default_factory=dict)   # modality -> max extra lag per subject (s)
    lag_seed: int = 0                 # seed of the per-subject random lags


@dataclass
class ProtocolSettings:
    protocol: str = "kfold"
    folds: int = 10
    split: str = "trial"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    max_folds: int | None = None     # run only the first N folds (quick checks)


@dataclass
class RunConfig:
    model: HiMoEConfig
    train: TrainSettings = field(default_factory=TrainSettings)
    data: DataSettings = field(default_factory=DataSettings)
    protocol: ProtocolSettings = field(default_factory=ProtocolSettings)
    out: str = "runs/latest"
    gpus: int = 0
    procs: int = 1
    parallel: str = "ddp"             # ddp | folds
    resume: bool = False
    progress: bool = True
    #: import paths ``"module:attr"`` of TrainCallback factories; not stored in config.json (a resumed
    #: run names its callbacks again)
    callbacks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), "train": self.train.to_dict(), "data": asdict(self.data),
                "protocol": asdict(self.protocol), "gpus": self.gpus, "procs": self.procs,
                "parallel": self.parallel}

    @classmethod
    def from_dict(cls, d: dict[str, Any], **overrides: Any) -> "RunConfig":
        rc = cls(model=HiMoEConfig.from_dict(d["model"]), train=TrainSettings(**d["train"]),
                 data=DataSettings(**d["data"]), protocol=ProtocolSettings(**d["protocol"]),
                 gpus=d.get("gpus", 0), procs=d.get("procs", 1), parallel=d.get("parallel", "ddp"))
        return replace(rc, **overrides)

    @classmethod
    def from_stored(cls, d: Any, source: str | Path, what: str = "checkpoint", **overrides: Any) -> "RunConfig":
        """:meth:`from_dict` on settings read from ``source`` (a model.pt's run settings, or a config.json:
        ``what="run config"``); anything wrong with them raises :class:`~himoe_fast.errors.CheckpointError`."""
        try:
            return cls.from_dict(d, **overrides)
        except Exception as exc:  # noqa: BLE001 - any failure to rebuild the settings means a bad file
            raise CheckpointError(source, f"its run settings are missing or invalid: {type(exc).__name__}",
                                  what=what) from None


def load_run_config(path: str | Path, **overrides: Any) -> RunConfig:
    """Read a run's ``config.json``; a missing, unreadable or invalid file is a one-line error."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise UserInputError(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    except ValueError:     # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(path, "not JSON", what="run config") from None
    return RunConfig.from_stored(d, path, what="run config", **overrides)


# ------------------------------------------------------------------------------------------ data
def resolve_data_dir(data: DataSettings, modalities: tuple[str, ...] = ()) -> tuple[str, Path, Path | None]:
    """Map the CLI dataset name to a loader name, a path and the face-feature folder (or None).

    Synthetic data are written on first use, with face features in a folder of their own when the
    ``face`` modality is used."""
    from ..data import DatasetError, ensure_synthetic, synthetic_face_dir

    if data.dataset == "synthetic":
        n = data.subjects or 8
        options = {"face": True} if "face" in modalities else {}
        path = Path(ensure_synthetic("deap", n_subjects=n, seed=data.synthetic_seed, root=data.cache_dir, **options))
        return "deap", path, synthetic_face_dir(path) if options else None
    if data.dataset in ("deap", "dreamer", "recordings"):
        if not data.data_dir:
            raise DatasetError(f"--data-dir is required for --dataset {data.dataset}")
        path = Path(data.data_dir)
        if not path.exists():
            raise DatasetError(f"{path}: data directory does not exist")
        return data.dataset, path, Path(data.face_dir) if data.face_dir else None
    raise DatasetError(f"unknown dataset {data.dataset!r}; choose one of {', '.join(DATASETS)}")


def load_data(rc: RunConfig, progress: bool = True):
    """Prepare (or load from cache) the windows of the run's dataset."""
    from ..data import prepare_windows

    kind, path, face_dir = resolve_data_dir(rc.data, rc.model.modality_names)
    if kind == "dreamer" and path.is_dir():
        path = path / "DREAMER.mat"
    data = prepare_windows(kind, path, rc.model, seq_len=rc.data.seq_len, stride_s=rc.data.stride_s,
                           subjects=rc.data.subjects, lags=rc.data.lags or None, cache_dir=rc.data.cache_dir,
                           progress=progress, face_dir=face_dir, random_lags=rc.data.random_lags or None,
                           lag_seed=rc.data.lag_seed)
    if len(data) == 0:
        longest = int(np.bincount(np.unique(data.trial, return_inverse=True)[1]).max()) if data.n_windows else 0
        stride = rc.data.stride_s or rc.model.window_s
        raise SettingsError(f"{path}: no trial holds --seq-len {rc.data.seq_len} consecutive windows of "
                            f"{rc.model.window_s:g} s every {stride:g} s (the longest holds {longest}); "
                            "lower --seq-len or --stride")
    return data


def build_splits(rc: RunConfig, data) -> list:
    from ..data import make_splits

    p = rc.protocol
    try:
        splits = make_splits(data, p.protocol, folds=p.folds, split=p.split, seed=rc.train.seed,
                             test_fraction=p.test_fraction, val_fraction=p.val_fraction)
    except ValueError as exc:    # settings the data cannot satisfy (too many folds, one subject for loso)
        raise SettingsError(f"--protocol {p.protocol}: {exc}") from None
    return splits[: p.max_folds] if p.max_folds else splits


# ------------------------------------------------------------------------------------------ workers
def _fold_dir(out: Path, split) -> Path:
    return out / "folds" / split.name


def _load_done(fold_dir: Path) -> FoldResult | None:
    path = fold_dir / "result.json"
    if not (path.exists() and (fold_dir / "model.pt").exists()):
        return None
    try:
        r = json.loads(path.read_text())
        return FoldResult(name=r["name"], metrics=r["metrics"], best_epoch=r["best_epoch"],
                          epochs_run=r["epochs_run"], seconds=r["seconds"], history=r.get("history", []))
    except (OSError, ValueError, KeyError, TypeError):
        return None      # damaged: the fold is finished again from its checkpoint


def _run_folds(ctx: DistContext, rc: RunConfig, fold_ids: list[int], data=None) -> list[FoldResult]:
    """Train the folds ``fold_ids`` in this process (all ranks of a DDP group call it alike)."""
    if data is None:
        data = load_data(rc, progress=False)
    splits = build_splits(rc, data)
    out = Path(rc.out)
    callbacks = load_callbacks(rc.callbacks)     # per rank: instances never cross process boundaries
    results = []
    for k in fold_ids:
        split = splits[k]
        fold_dir = _fold_dir(out, split)
        done = _load_done(fold_dir) if rc.resume else None
        if done is None:
            done = train_fold(rc.model, rc.train, data, split, fold_dir, ctx, fold_index=k, resume=rc.resume,
                              progress=rc.progress, extra={"run_config": rc.to_dict()}, callbacks=callbacks)
        results.append(done)
    return results


def _ddp_worker(ctx: DistContext, rc: RunConfig, n_folds: int) -> None:
    _run_folds(ctx, rc, list(range(n_folds)))


def _fold_worker(ctx: DistContext, rc: RunConfig, n_folds: int) -> None:
    """``parallel="folds"``: rank r trains folds r, r + W, ... alone (no gradient sync)."""
    local = DistContext(rank=0, world_size=1, device=ctx.device)
    _run_folds(local, replace(rc, progress=rc.progress and ctx.is_main),
               list(range(ctx.rank, n_folds, ctx.world_size)))


# ------------------------------------------------------------------------------------------ main entry
def write_fold_table(path: Path, results: list[FoldResult]) -> None:
    buf = io.StringIO()
    rows = []
    for r in results:
        row: dict[str, Any] = {"fold": r.name, "best_epoch": r.best_epoch, "epochs_run": r.epochs_run,
                               "seconds": round(r.seconds, 2)}
        for metric, per_target in r.metrics.items():
            for target, value in per_target.items():
                row[f"{metric}_{target}"] = value
        rows.append(row)
    fields = list(dict.fromkeys(k for row in rows for k in row))
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def run_experiment(rc: RunConfig, data=None) -> dict[str, Any]:
    """Run every fold of ``rc`` and write the run directory. Returns the metrics dict.

    Data are prepared (and cached) before the run directory is written or any worker starts, so bad
    data fails early and leaves nothing behind. ``data`` may pass already prepared windows.
    """
    use_cuda = rc.gpus > 0 or (launched_by_torchrun() and torch.cuda.is_available())
    out = Path(rc.out)
    torchrun = launched_by_torchrun()
    ctx = context_from_env(use_cuda) if torchrun else single_process_context(use_cuda)
    load_callbacks(rc.callbacks)                      # a bad import path fails before anything is written
    if data is None:
        data = load_data(rc, progress=rc.progress and ctx.is_main)
    splits = build_splits(rc, data)
    if rc.train.impl == "auto":                       # decided once, before config.json records it
        rc = _resolve_auto_impl(rc, ctx.device if use_cuda else torch.device("cpu"), ctx.is_main)
    if rc.train.impl == "fast":
        _prebuild_extension(rc)
    created = not out.exists()
    if ctx.is_main:
        if not rc.resume and run_state(out) == STARTED:
            clean_failed_start(out, created=False)      # an earlier attempt died before its first checkpoint
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "config.json", rc.to_dict())
    try:
        return _train_and_aggregate(ctx, rc, splits, data, use_cuda, torchrun)
    except BaseException:
        if ctx.is_main:
            clean_failed_start(out, created)            # no checkpoint yet: leave the folder as it was
        raise


def _train_and_aggregate(ctx: DistContext, rc: RunConfig, splits: list, data, use_cuda: bool,
                         torchrun: bool) -> dict[str, Any]:
    out = Path(rc.out)
    n_folds = len(splits)
    world = rc.gpus or rc.procs
    if torchrun:
        results = _run_folds(ctx, rc, list(range(n_folds)), data) if rc.parallel == "ddp" else None
        if rc.parallel == "folds":
            _fold_worker(ctx, rc, n_folds)
            ctx.barrier()
            results = [_load_done(_fold_dir(out, s)) for s in splits]
        if not ctx.is_main:
            return {}
    elif world > 1:
        spawn(_fold_worker if rc.parallel == "folds" else _ddp_worker, world, use_cuda, (rc, n_folds))
        results = [_load_done(_fold_dir(out, s)) for s in splits]
        missing = [s.name for s, r in zip(splits, results) if r is None]
        if missing:
            raise RuntimeError(f"folds without results: {', '.join(missing)}")
    else:
        results = _run_folds(ctx, rc, list(range(n_folds)), data)

    metrics = aggregate_folds([r.metrics for r in results])
    metrics["folds"] = [r.name for r in results]
    metrics["protocol"] = asdict(rc.protocol)
    delays = _learned_delays(rc, [_fold_dir(out, s) / "model.pt" for s in splits])
    if delays:
        metrics["learned_delay_s"] = delays
    atomic_write_json(out / "metrics.json", metrics)
    write_fold_table(out / "folds.csv", results)
    return metrics


def _learned_delays(rc: RunConfig, model_files: list[Path]) -> dict[str, Any]:
    """The lag aligner's learned delay per modality in seconds (mean over folds, and per fold), for
    Hi-MoE runs with ``temporal="align*"``; empty otherwise."""
    if rc.train.model_name != "himoe" or rc.model.temporal == "none":
        return {}
    from .checkpoint import load_model

    step = rc.data.stride_s or rc.model.window_s
    per_fold = [load_model(f)[0].learned_delays(step_s=step) for f in model_files]
    mean = {m: float(np.mean([d[m] for d in per_fold])) for m in rc.model.modality_names}
    return {**mean, "per_fold": per_fold}


def _resolve_auto_impl(rc: RunConfig, device: torch.device, announce: bool) -> RunConfig:
    """``--impl auto``: fast if the fast path passes its (cached) self-check on ``device``, else the
    reference with one warning line (see :mod:`himoe_fast.fast.selfcheck`)."""
    from ..fast.selfcheck import resolve_impl

    impl = resolve_impl("auto", rc.model, device, rc.train.model_name,
                        warn=None if announce else (lambda message: None))
    return replace(rc, train=replace(rc.train, impl=impl))


def _prebuild_extension(rc: RunConfig) -> None:
    """Compile the NT-Xent extension once, before any worker process starts."""
    if rc.model.align_weight <= 0:
        return
    try:
        from ..ops import ext
    except ImportError:
        return
    prebuild = getattr(ext, "prebuild", None)
    if prebuild is not None:
        prebuild()
