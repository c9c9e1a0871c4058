"""Apply trained models to new recordings: per-window predictions, plots and a summary.

Causal definition (shared with :mod:`himoe_fast.stream`)
    The model reads sequences of ``T`` windows. The prediction for window ``t`` of a recording is
    the model's output at the *last* position of the sequence of the ``T`` windows ending at ``t``
    (the first ``T - 1`` windows of a recording use the shorter sequence of the windows so far).
    So every prediction depends on the present and the past only, and a stream gives the same
    numbers as an offline run. When the model has no temporal stage (``cfg.temporal == "none"``:
    windows are encoded and fused independently) the output at a position depends on that window
    alone, so every window is predicted once, in large batches (:func:`windows_independent`).

Missing modalities
    A modality the data do not have, or a window where it was not recorded, is *absent*: the model
    gets ``present = False`` there (and zeros in the raw slot, which the model never reads through
    the mask); nothing is invented. The CSV records which modalities were present per window.

Outputs of :func:`write_predictions` (``--out DIR``, built in a temporary folder and renamed)::

    predictions.csv   recording, subject, window, start_s, <target>..., [label_<target>...], present_<modality>...
    summary.csv       per recording: windows, mean and SD of each target (+ mean rating where labelled),
                      fraction of windows with each modality present
    ...               info.json also holds CCC / PCC / MAE per target over all labelled windows
    plots/<recording>.png   predicted trajectory per recording (ratings, or P(high) for binary models)
    info.json         model source, fold or ensemble, mode, T, implementation, device, windows/s
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .config import DEAP_TARGETS, DREAMER_TARGETS, HiMoEConfig
from .data.errors import DatasetError


# ------------------------------------------------------------------------------------------ models
@dataclass
class LoadedModels:
    """Models ready for inference (eval mode, on ``device``).

    ``description`` says what is used: ``"fold fold03"``, ``"ensemble of 10 folds (mean of their
    predictions)"`` or ``"model.pt"``.
    """

    models: list[nn.Module]
    cfg: HiMoEConfig
    names: list[str]
    description: str
    seq_len: int
    device: torch.device
    impl: str
    sources: list[Path] = field(default_factory=list)
    run_config: dict | None = None


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"``: the first GPU when there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_models(path: str | Path, fold: str | None = None, *, impl: str = "fast", backend: str = "auto",
                device: str | torch.device | None = None, seq_len: int | None = None) -> LoadedModels:
    """Load one ``model.pt`` or the folds of a run folder.

    Args:
        path: a ``model.pt`` or a run folder (``folds/*/model.pt``).
        fold: a fold name (``fold03``, ``holdout``, ``subject01``) to use one fold; ``None`` or
            ``"ensemble"`` averages all folds' predictions.
        impl: ``"fast"`` (default; Hi-MoE models only, baselines stay reference) or ``"reference"``.
        seq_len: windows per sequence ``T`` (default: the training run's).

    Raises:
        FileNotFoundError: no model under ``path``; ValueError: unknown fold or bad checkpoint.
    """
    from .train.checkpoint import load_model
    from .train.evaluate import model_paths

    path = Path(path)
    paths = model_paths(path)
    if path.is_dir():
        available = [p.parent.name for p in paths]
        if fold not in (None, "ensemble"):
            if fold not in available:
                raise ValueError(f"--fold {fold}: {path} has folds {', '.join(available)} (or use 'ensemble')")
            paths = [paths[available.index(fold)]]
    elif fold not in (None, "ensemble"):
        raise ValueError(f"--fold applies to a run folder; {path} is one model file")
    dev = pick_device(device)
    models, cfg, rc = [], None, None
    for p in paths:
        model, c, extra = load_model(p, impl="reference")
        if cfg is not None and c.to_dict() != cfg.to_dict():
            raise ValueError(f"{p}: its model config differs from {paths[0]}'s; cannot ensemble them")
        cfg, rc = c, rc or extra.get("run_config")
        if impl == "fast" and extra.get("model_name", "himoe") == "himoe":
            from .fast import to_fast

            model = to_fast(model, backend=backend)
        models.append(model.to(dev).eval())
    assert cfg is not None
    if seq_len is None:
        seq_len = int((rc or {}).get("data", {}).get("seq_len", 8))
    if path.is_file():
        description = path.name
    elif len(paths) == 1:
        description = f"fold {paths[0].parent.name}"
    else:
        description = f"ensemble of {len(paths)} folds (mean of their predictions)"
    return LoadedModels(models, cfg, [p.parent.name for p in paths], description, int(seq_len), dev, impl,
                        list(paths), rc)


def windows_independent(model: nn.Module) -> bool:
    """True when the model's output at a position depends on that window alone (Hi-MoE without a
    temporal stage), so windows can be predicted one by one in any batch."""
    from .fast.model import FastHiMoE
    from .model import HiMoE

    return type(model) in (HiMoE, FastHiMoE) and getattr(model.cfg, "temporal", "none") == "none"


# ------------------------------------------------------------------------------------------ engine
def _batch_inputs(cfg: HiMoEConfig, windows: Mapping[str, np.ndarray], available: np.ndarray, idx: np.ndarray,
                  device: torch.device) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``idx [B, L]`` window indices -> (inputs ``{name: [B, L, C, S]}``, present ``[B, L, M]``)."""
    B, L = idx.shape
    flat = idx.reshape(-1)
    present = np.asarray(available[flat], bool).reshape(B, L, -1)
    inputs = {}
    for m, spec in enumerate(cfg.modalities):
        S = spec.samples(cfg.window_s)
        if spec.name in windows:
            x = np.asarray(windows[spec.name][flat], np.float32).reshape(B, L, spec.channels, S)
            absent = ~present[:, :, m]
            if absent.any():
                x = x.copy() if not x.flags.writeable else x
                x[absent] = 0.0        # never read (present is False there); keeps NaN/garbage out
        else:
            x = np.zeros((B, L, spec.channels, S), np.float32)
        inputs[spec.name] = torch.from_numpy(x).to(device, non_blocking=True)
    return inputs, torch.from_numpy(present).to(device)


def positions(trial: np.ndarray) -> np.ndarray:
    """Index of each window within its trial (``trial`` lists trials contiguously, in time order)."""
    n = trial.size
    change = np.flatnonzero(np.diff(trial)) + 1
    first = np.zeros(n, np.int64)
    first[change] = change
    return np.arange(n) - np.maximum.accumulate(first) if n else np.zeros(0, np.int64)


def sequence_plan(trial: np.ndarray, seq_len: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Causal sequences: ``{L: (targets [n_L], idx [n_L, L])}`` where row ``i`` lists the ``L``
    windows ending at window ``targets[i]`` (``L = min(T, position in its trial + 1)``).

    ``trial [n]`` lists each trial's windows contiguously and in time order.
    """
    if trial.size == 0:
        return {}
    length = np.minimum(positions(trial) + 1, seq_len)
    plan = {}
    for L in np.unique(length):
        targets = np.flatnonzero(length == L)
        plan[int(L)] = (targets, targets[:, None] - (L - 1) + np.arange(L)[None, :])
    return plan


def block_plan(trial: np.ndarray, seq_len: int) -> dict[int, np.ndarray]:
    """Non-overlapping sequences of ``T`` windows per trial, as in training and evaluation (a
    trial's last, shorter block keeps its length): ``{L: idx [n_L, L]}``."""
    if trial.size == 0:
        return {}
    start = np.flatnonzero(positions(trial) % seq_len == 0)               # first window of every block
    left = positions(trial[::-1])[::-1] + 1                                # windows left in the trial
    length = np.minimum(left[start], seq_len)
    return {int(L): start[length == L][:, None] + np.arange(L)[None, :] for L in np.unique(length)}


MODES = ("causal", "blocks")


@torch.inference_mode()
def predict_windows(loaded: LoadedModels, windows: Mapping[str, np.ndarray], available: np.ndarray,
                    trial: np.ndarray, *, mode: str = "causal", batch_size: int = 1024,
                    on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Predictions ``[n_windows, n_targets]`` (ratings, or P(high) for binary models); ensembles
    average over models.

    Args:
        windows: ``{name: [n, C, S]}`` (modalities of the model that are missing here are absent);
        available: bool ``[n, M]`` in the model's modality order; trial: int ``[n]``.
        mode: ``"causal"`` (module docstring; what a stream gives) or ``"blocks"`` (non-overlapping
            sequences of ``T`` as in evaluation: windows see later windows of their block; about
            ``T`` times cheaper for models with temporal stages). Models without temporal stage
            give the same numbers either way and are run window by window.
        batch_size: windows per forward pass (a length-``L`` sequence counts ``L``).
        on_batch: called with the number of windows finished after each batch (progress).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    cfg, dev = loaded.cfg, loaded.device
    n = int(available.shape[0])
    out = np.zeros((n, cfg.n_targets), np.float32)
    if n == 0:
        return out
    trial = np.asarray(trial)
    if all(windows_independent(m) for m in loaded.models):
        order = np.arange(n)
        plan, last_only = {1: order[:, None]}, False
    elif mode == "causal":
        plan, last_only = {L: idx for L, (_, idx) in sequence_plan(trial, loaded.seq_len).items()}, True
    else:
        plan, last_only = block_plan(trial, loaded.seq_len), False
    for L, idx in plan.items():
        step = max(1, batch_size // L)
        for s in range(0, idx.shape[0], step):
            rows = idx[s:s + step]
            inputs, present = _batch_inputs(cfg, windows, available, rows, dev)
            acc = None
            for model in loaded.models:
                o = model(inputs, present, compute_alignment=False)
                p = model.predict_scores(o).float()
                p = p[:, -1] if last_only else p
                acc = p if acc is None else acc + p
            res = (acc / len(loaded.models)).cpu().numpy()
            if last_only:
                out[rows[:, -1]] = res
            else:
                out[rows.reshape(-1)] = res.reshape(-1, cfg.n_targets)
            if on_batch is not None:
                on_batch(rows.shape[0] if last_only else rows.size)
    return out


# ------------------------------------------------------------------------------------------ data
@dataclass
class PredictionData:
    """Windows of new data for one model: everything :func:`predict_windows` and the writers need.

    ``windows`` holds the model's modalities that the data have; ``available [n, M]`` is in the
    model's modality order (False for the others); ``labels [n, n_targets]`` NaN where unlabelled.
    """

    windows: dict[str, np.ndarray]
    available: np.ndarray
    trial: np.ndarray
    subject: np.ndarray
    labels: np.ndarray
    trial_names: list[str]
    subject_names: list[str]
    stride_s: float
    dataset: str
    missing_modalities: list[str]

    @property
    def position(self) -> np.ndarray:
        """int ``[n]``: index of each window within its recording / trial."""
        return positions(self.trial)

    @property
    def start_s(self) -> np.ndarray:
        """Start of each window in seconds from the start of its recording / trial."""
        return self.position * self.stride_s


def detect_dataset(path: Path) -> str:
    """``deap`` (sNN.dat files), ``dreamer`` (DREAMER.mat) or ``recordings`` (anything else)."""
    if path.is_file():
        return "dreamer" if path.suffix.lower() == ".mat" else "unknown"
    if (path / "DREAMER.mat").exists():
        return "dreamer"
    if any(path.glob("s[0-9]*.dat")) or (path / "data_preprocessed_python").is_dir():
        return "deap"
    return "recordings"


def load_prediction_data(data_dir: str | Path, cfg: HiMoEConfig, *, dataset: str = "auto",
                         stride_s: float | None = None, subjects: int | None = None, resample: bool = False,
                         cache_dir: str | None = None, progress: bool = True,
                         face_dir: str | Path | None = None) -> PredictionData:
    """Preprocess (and cache) new data for a model trained with ``cfg``.

    ``face_dir``: DEAP only, the folder of the ``sNN_face.npz`` face features (as ``train --face-dir``);
    without it a model's ``face`` modality is absent throughout.

    The model's modalities that the data have are used; the others are absent everywhere (listed
    in ``missing_modalities``). A modality with another channel count, or (unless ``resample``) another
    sampling rate than the model's, is a :class:`DatasetError` saying what differs; so is data
    with none of the model's modalities.
    """
    from .data import prepare_windows
    from .data.recordings import prepare_recordings

    path = Path(data_dir).expanduser()
    if not path.exists():
        raise DatasetError(path, "no such data folder or file")
    if dataset == "auto":
        dataset = detect_dataset(path)
    if dataset not in ("deap", "dreamer", "recordings"):
        raise DatasetError(path, "cannot tell the data set (expected a DEAP folder, DREAMER.mat or a recordings folder)")
    if face_dir is not None and dataset != "deap":
        raise DatasetError(Path(face_dir), f"face features are read for DEAP data only, these are {dataset} data")
    from .data.prepare import adapter_for

    provided = dict(adapter_for(dataset).provided_modalities(path))
    if dataset == "deap" and face_dir is None:
        provided.pop("face", None)            # face features come only from a --face-dir here
    if face_dir is not None and not Path(face_dir).is_dir():
        raise DatasetError(Path(face_dir), "no such face-feature folder")
    use, missing = [], []
    for spec in cfg.modalities:
        if spec.name not in provided:
            missing.append(spec.name)
            continue
        ch, sf = provided[spec.name]
        if ch != spec.channels:
            raise DatasetError(path, f"modality {spec.name!r} has {ch} channel(s) here, the model was trained on {spec.channels}")
        if sf is not None and abs(sf - spec.sfreq) > 1e-6 and not resample:
            raise DatasetError(path, f"modality {spec.name!r} is sampled at {sf:g} Hz here, the model was trained at "
                                     f"{spec.sfreq:g} Hz (pass --resample to resample it)")
        use.append(spec)
    if not use:
        raise DatasetError(path, f"has none of the model's modalities ({', '.join(cfg.modality_names)}; "
                                 f"the data have {', '.join(provided)})")
    known_targets = {"deap": DEAP_TARGETS, "dreamer": DREAMER_TARGETS}.get(dataset)
    targets = tuple(cfg.targets)
    if known_targets is not None:
        targets = tuple(t for t in cfg.targets if t in known_targets) or tuple(known_targets)
    sub = cfg.replace(modalities=use, targets=targets)
    kw = dict(seq_len=1, stride_s=stride_s, subjects=subjects, cache_dir=cache_dir, progress=progress)
    if dataset == "recordings":
        wd = prepare_recordings(path, sub, strict_rates=not resample, **kw)
    else:
        target = path / "DREAMER.mat" if dataset == "dreamer" and path.is_dir() else path
        wd = prepare_windows(dataset, target, sub, **kw, **({"face_dir": face_dir} if face_dir is not None else {}))
    n = wd.n_windows
    available = np.zeros((n, cfg.n_modalities), bool)
    for j, name in enumerate(wd.modalities):
        available[:, cfg.modality_names.index(name)] = wd.available[:, j]
    labels = np.full((n, cfg.n_targets), np.nan, np.float32)
    for j, t in enumerate(targets):
        labels[:, list(cfg.targets).index(t)] = wd.labels[:, j]
    subject_names, trial_names = _names(wd, dataset)
    return PredictionData(dict(wd.windows), available, np.asarray(wd.trial), np.asarray(wd.subject), labels,
                          trial_names, subject_names, float(wd.meta["stride_s"]), dataset, missing)


def _names(wd, dataset: str) -> tuple[list[str], list[str]]:
    """Subject names and ``subject/recording`` names per trial id."""
    if "trial_names" in wd.meta:
        return list(wd.meta["subject_names"]), list(wd.meta["trial_names"])
    n_subj = wd.n_subjects
    if dataset == "deap":
        subjects = [Path(f).stem for f in wd.meta.get("files", [])][:n_subj]
    else:
        subjects = [f"subject{s + 1:02d}" for s in range(n_subj)]
    n_trials = int(wd.trial.max()) + 1 if wd.trial.size else 0
    names = [f"trial{t + 1:02d}" for t in range(n_trials)]
    for s in range(n_subj):                                # local trial numbers per subject
        ids = np.unique(wd.trial[wd.subject == s])
        for k, t in enumerate(ids):
            names[t] = f"{subjects[s]}/{'trial' if dataset == 'deap' else 'clip'}{k + 1:02d}"
    return subjects, names


# ------------------------------------------------------------------------------------------ outputs
def summarize(data: PredictionData, pred: np.ndarray, cfg: HiMoEConfig) -> list[dict]:
    """One row per recording: windows, mean and SD of each predicted target, the mean rating where
    labels exist, and the fraction of windows in which each modality was present."""
    rows = []
    for t in np.unique(data.trial):
        sel = data.trial == t
        row: dict = {"recording": data.trial_names[int(t)], "windows": int(sel.sum())}
        for j, name in enumerate(cfg.targets):
            row[f"{name}_mean"] = float(pred[sel, j].mean())
            row[f"{name}_sd"] = float(pred[sel, j].std())
            lab = data.labels[sel, j]
            if np.isfinite(lab).any():
                row[f"label_{name}_mean"] = float(np.nanmean(lab))
        for m, name in enumerate(cfg.modality_names):
            row[f"present_{name}"] = float(data.available[sel, m].mean())
        rows.append(row)
    return rows


def overall_metrics(data: PredictionData, pred: np.ndarray, cfg: HiMoEConfig) -> dict[str, dict[str, float]]:
    """CCC, PCC and MAE per target over all labelled windows (empty without labels). For binary
    models the scores are P(high) against the 0/1 label, as in training."""
    from .metrics import ccc, mae, pcc

    out: dict[str, dict[str, float]] = {}
    for j, name in enumerate(cfg.targets):
        ok = np.isfinite(data.labels[:, j])
        if ok.sum() < 2:
            continue
        y = data.labels[ok, j]
        if cfg.task == "binary":
            y = (y >= cfg.threshold).astype(np.float32)
        p = pred[ok, j]
        out[name] = {"ccc": float(ccc(p, y)), "pcc": float(pcc(p, y)), "mae": float(mae(p, y)), "windows": int(ok.sum())}
    return out


def _csv_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()


def predictions_csv(data: PredictionData, pred: np.ndarray, cfg: HiMoEConfig) -> str:
    """The per-window CSV text (columns in the module docstring); empty label cells = unlabelled."""
    buf = io.StringIO()
    has_labels = bool(np.isfinite(data.labels).any())
    header = ["recording", "subject", "window", "start_s", *cfg.targets]
    if has_labels:
        header += [f"label_{t}" for t in cfg.targets]
    header += [f"present_{m}" for m in cfg.modality_names]
    buf.write(",".join(header) + "\n")
    start, local = data.start_s, data.position
    for i in range(data.trial.size):
        cells = [data.trial_names[int(data.trial[i])], data.subject_names[int(data.subject[i])], str(int(local[i])),
                 f"{start[i]:.3f}", *(f"{v:.5f}" for v in pred[i])]
        if has_labels:
            cells += ["" if not np.isfinite(v) else f"{v:.4f}" for v in data.labels[i]]
        cells += ["1" if p else "0" for p in data.available[i]]
        buf.write(",".join(cells) + "\n")
    return buf.getvalue()


def plot_recording(times: np.ndarray, pred: np.ndarray, labels: np.ndarray, present: np.ndarray,
                   cfg: HiMoEConfig, path: Path, title: str) -> None:
    """Predicted trajectory per target (with labels where known) and a presence strip per modality."""
    from .plots import _figure, save_figure

    plt = _figure()
    n = cfg.n_targets
    fig, axes = plt.subplots(n + 1, 1, figsize=(8, 1.9 * n + 1.2), sharex=True, squeeze=False,
                             gridspec_kw={"height_ratios": [3] * n + [max(1, cfg.n_modalities) * 0.35]})
    for j, (ax, name) in enumerate(zip(axes[:n, 0], cfg.targets)):
        if np.isfinite(labels[:, j]).any():
            ax.plot(times, labels[:, j], color="black", lw=1.3, label="rating")
        ax.plot(times, pred[:, j], color="tab:blue", lw=1.0, label="prediction")
        ax.set_ylabel(name if cfg.task == "regression" else f"P({name} high)")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right", fontsize=8)
    strip = axes[n, 0]
    strip.imshow(present.T.astype(float), aspect="auto", cmap="Greens", vmin=0, vmax=1, interpolation="nearest",
                 extent=(times[0], times[-1] + (times[1] - times[0] if times.size > 1 else 1.0), cfg.n_modalities, 0))
    strip.set_yticks(np.arange(cfg.n_modalities) + 0.5, cfg.modality_names, fontsize=7)
    strip.set_xlabel("window start (s)")
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def write_predictions(out: str | Path, loaded: LoadedModels, data: PredictionData, pred: np.ndarray, *,
                      plots: bool = True, info: dict | None = None,
                      on_plot: Callable[[], None] | None = None) -> list[dict]:
    """Write ``out`` (see the module docstring) atomically: built under a temporary name, renamed into
    place. ``out`` must not exist or be an empty folder. Returns the summary rows."""
    from .data.cache import atomic_dir
    from .io import atomic_write_json, atomic_write_text

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty; choose another --out")
    if out.is_dir():
        out.rmdir()
    cfg = loaded.cfg
    rows = summarize(data, pred, cfg)
    metrics = overall_metrics(data, pred, cfg)
    with atomic_dir(out) as tmp:
        atomic_write_text(tmp / "predictions.csv", predictions_csv(data, pred, cfg))
        atomic_write_text(tmp / "summary.csv", _csv_text(rows))
        atomic_write_json(tmp / "info.json", dict(info or {}, model=loaded.description,
                                                  sources=[str(p) for p in loaded.sources], impl=loaded.impl,
                                                  device=str(loaded.device), seq_len=loaded.seq_len,
                                                  targets=list(cfg.targets), modalities=list(cfg.modality_names),
                                                  missing_modalities=data.missing_modalities,
                                                  metrics=metrics))
        if plots:
            (tmp / "plots").mkdir()
            start = data.start_s
            for t in np.unique(data.trial):
                sel = data.trial == t
                name = data.trial_names[int(t)]
                plot_recording(start[sel], pred[sel], data.labels[sel], data.available[sel], cfg,
                               tmp / "plots" / f"{safe_name(name)}.png", f"{name} ({loaded.description})")
                if on_plot is not None:
                    on_plot()
    return rows


#: ``offline``: the training pipeline (zero-phase filters, per-subject z-score over whole recordings);
#: ``online``: the streaming pipeline (causal filters, running z-score; :mod:`himoe_fast.stream`)
PREPROCESSING = ("offline", "online")


def online_predictions(loaded: LoadedModels, data_dir: str | Path, data: PredictionData, *,
                       batch_size: int = 1024, on_recording: Callable[[], None] | None = None
                       ) -> tuple[PredictionData, np.ndarray]:
    """Predict every recording of ``data`` through the streaming pipeline, as ``himoe-fast stream
    --replay`` would, window for window (:func:`himoe_fast.stream.predict_signals`).

    ``data`` (the offline windows of the same folder) gives the recordings, names and labels; the
    windows, present-masks and predictions come from the stream's causal preprocessing. Window ``w``
    of a recording starts at ``w * stride`` in both pipelines, so labels carry over by position
    (windows only the stream has are unlabelled). Recordings folders only: a stream replays one.

    Returns ``(data', pred [n', n_targets])`` where ``data'`` has the stream's windows.
    """
    from .data.recordings import read_signals, scan_recordings
    from .stream import predict_signals

    if data.dataset != "recordings":
        raise DatasetError(Path(data_dir), "online preprocessing replays recordings folders "
                                           f"(DIR/<subject>/<recording>/...), not {data.dataset} data")
    layout = scan_recordings(data_dir)
    folders = {f"{s}/{r}": folder for s, r, folder in layout.recordings}
    cfg = loaded.cfg
    preds, avail, trial, subject, labels = [], [], [], [], []
    for t in np.unique(data.trial):
        t = int(t)
        name = data.trial_names[t]
        sig = read_signals(layout, folders[name], [m for m in cfg.modality_names if m not in data.missing_modalities])
        pred, present, _ = predict_signals(loaded, {k: (x, ts) for k, (x, ts, _) in sig.items()}, t0=0.0,
                                           stride_s=data.stride_s, batch_size=batch_size)
        n = pred.shape[0]
        off = data.labels[data.trial == t]
        lab = np.full((n, cfg.n_targets), np.nan, np.float32)
        k = min(n, off.shape[0])
        lab[:k] = off[:k]
        preds.append(pred)
        avail.append(present)
        trial.append(np.full(n, t, np.int64))
        subject.append(np.full(n, int(data.subject[data.trial == t][0]), np.int64))
        labels.append(lab)
        if on_recording is not None:
            on_recording()
    cat = (lambda xs, shape: np.concatenate(xs) if xs else np.zeros(shape))
    online = PredictionData({}, cat(avail, (0, cfg.n_modalities)).astype(bool), cat(trial, (0,)).astype(np.int64),
                            cat(subject, (0,)).astype(np.int64), cat(labels, (0, cfg.n_targets)).astype(np.float32),
                            data.trial_names, data.subject_names, data.stride_s, data.dataset,
                            data.missing_modalities)
    return online, cat(preds, (0, cfg.n_targets)).astype(np.float32)


def run_predict(model_path: str | Path, data_dir: str | Path, out: str | Path, *, fold: str | None = None,
                dataset: str = "auto", impl: str = "fast", device: str | None = None, batch_size: int = 1024,
                stride_s: float | None = None, subjects: int | None = None, resample: bool = False,
                plots: bool = True, progress: bool = True, seq_len: int | None = None, mode: str = "causal",
                preprocessing: str = "offline", face_dir: str | Path | None = None) -> dict:
    """``himoe-fast predict`` as a function: load models, preprocess data, predict, write ``out``.

    ``preprocessing="online"`` runs recordings through the streaming pipeline instead
    (:func:`online_predictions`; equal to ``himoe-fast stream --replay`` window for window).
    Returns ``info`` (what was used, windows, seconds, windows/s) plus ``summary`` rows.
    """
    from .progress import Reporter

    if preprocessing not in PREPROCESSING:
        raise ValueError(f"preprocessing must be one of {PREPROCESSING}, got {preprocessing!r}")
    loaded = load_models(model_path, fold, impl=impl, device=device, seq_len=seq_len)
    data = load_prediction_data(data_dir, loaded.cfg, dataset=dataset, stride_s=stride_s, subjects=subjects,
                                resample=resample, progress=progress, face_dir=face_dir)
    t0 = time.perf_counter()
    if preprocessing == "online":
        n_rec = int(np.unique(data.trial).size)
        with Reporter("streaming recordings", total=n_rec, enabled=progress, transient=True) as rep:
            data, pred = online_predictions(loaded, data_dir, data, batch_size=batch_size, on_recording=rep.advance)
        how = f"online preprocessing, causal sequences of T={loaded.seq_len} (as a stream)"
    else:
        with Reporter("predicting windows", total=int(data.trial.size), enabled=progress, transient=True) as rep:
            pred = predict_windows(loaded, data.windows, data.available, data.trial, mode=mode,
                                   batch_size=batch_size, on_batch=rep.advance)
        how = ("window by window (no temporal stage)" if all(windows_independent(m) for m in loaded.models)
               else f"causal sequences of T={loaded.seq_len}" if mode == "causal" else f"blocks of T={loaded.seq_len}")
    seconds = time.perf_counter() - t0
    n = int(data.trial.size)
    info = {"data": str(data_dir), "dataset": data.dataset, "windows": n, "recordings": int(np.unique(data.trial).size),
            "mode": how, "preprocessing": preprocessing, "seconds": round(seconds, 3),
            "windows_per_s": round(n / max(seconds, 1e-9), 1)}
    n_plots = int(np.unique(data.trial).size) if plots else 0
    with Reporter("plotting", total=n_plots, enabled=progress and n_plots > 0, transient=True) as rep:
        rows = write_predictions(out, loaded, data, pred, plots=plots, info=info, on_plot=rep.advance)
    info["summary"] = rows
    info["metrics"] = overall_metrics(data, pred, loaded.cfg)
    info["model"] = loaded.description
    info["missing_modalities"] = data.missing_modalities
    return info


__all__ = ["LoadedModels", "PredictionData", "load_models", "load_prediction_data", "predict_windows",
           "online_predictions", "PREPROCESSING",
           "windows_independent", "sequence_plan", "write_predictions", "run_predict", "pick_device",
           "summarize", "overall_metrics", "predictions_csv", "detect_dataset"]
