"""Analyses of trained models: routing weights per presence pattern (Fig. 4a), trajectories (Fig. 2),
and :func:`plot_run`, which draws both for a run folder (``himoe-fast plots``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .errors import CheckpointError, RunDirError, SettingsError, UserInputError


@torch.no_grad()
def routing_by_pattern(model, data, indices: np.ndarray, *, missing_rate: float = 0.3, seed: int = 0,
                       batch_size: int = 64, min_count: int = 1) -> tuple[list[str], np.ndarray, list[int]]:
    """Mean modality-bank gates ``alpha`` per modality-presence pattern.

    Runs ``model`` on the sequences ``indices`` with simulated missing modalities (evaluation masks
    of ``seed``), groups every window by its presence bit string (modality order, '1' = present)
    and averages ``alpha [M, K]`` within each group. Returns ``(patterns, weights [P, M, K], counts)``
    sorted by frequency.
    """
    from .data import make_loader

    model.eval()
    loader = make_loader(data, np.asarray(indices), batch_size, shuffle=False, missing_rate=missing_rate,
                         seed=seed, train=False)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for inputs, present, _, _ in loader:
        out = model(inputs, present, compute_alignment=False)
        gates = out.modality_gates.reshape(-1, *out.modality_gates.shape[-2:]).numpy()
        bits = present.reshape(-1, present.shape[-1]).numpy()
        keys = ["".join("1" if b else "0" for b in row) for row in bits]
        for key, g in zip(keys, gates):
            sums[key] = sums.get(key, 0.0) + g
            counts[key] = counts.get(key, 0) + 1
    order = sorted((k for k in counts if counts[k] >= min_count), key=lambda k: (-counts[k], k))
    if not order:
        raise ValueError("no windows to analyse")
    return order, np.stack([sums[k] / counts[k] for k in order]), [counts[k] for k in order]


_PREDICTION_ARRAYS = ("pred", "labels", "label_mask", "sequences", "subject", "trial")


def _read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """A fold's ``predictions.npz`` as arrays; a damaged or foreign file is a one-line error."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            z = {k: npz[k] for k in _PREDICTION_ARRAYS}
    except FileNotFoundError:
        raise UserInputError(f"{path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse the file means it is damaged
        raise CheckpointError(path, f"unreadable or incomplete: {type(exc).__name__}",
                              what="predictions file") from None
    n = z["subject"].shape[0]
    if z["subject"].ndim != 1 or z["pred"].ndim != 3 or any(a.shape[0] != n for a in z.values()):
        raise CheckpointError(path, "its arrays do not fit together", what="predictions file")
    return z


def subject_trajectory(predictions: str | Path, subject: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Test windows of one subject in time order from a fold's ``predictions.npz``.

    Returns ``(pred [n, n_targets], true [n, n_targets], subject)``; sequences are ordered by trial
    and start window, and masked labels are dropped.
    """
    z = _read_predictions(predictions)
    subjects = z["subject"]
    if subjects.size == 0:
        raise SettingsError(f"{predictions}: no test sequences")
    if subject is None:
        subject = int(np.bincount(subjects).argmax())
    pick = np.flatnonzero(subjects == subject)
    if pick.size == 0:
        raise SettingsError(f"{predictions}: subject {subject} has no test sequences "
                            f"(it has: {', '.join(map(str, np.unique(subjects)))})")
    pick = pick[np.lexsort((z["sequences"][pick], z["trial"][pick]))]
    n_t = z["pred"].shape[-1]
    pred = z["pred"][pick].reshape(-1, n_t)
    true = z["labels"][pick].reshape(-1, n_t)
    keep = z["label_mask"][pick].reshape(-1, n_t).all(axis=1)
    return pred[keep], true[keep], subject


#: ``plot_run``'s defaults (``himoe-fast plots``): the heatmap's simulated missing rate and how many of
#: the most frequent presence patterns it shows
HEATMAP_MISSING_RATE = 0.3
HEATMAP_PATTERNS = 16


def finished_folds(run: str | Path) -> list[Path]:
    """Fold folders of ``run`` with a model and its test predictions (``folds/*/model.pt`` and
    ``predictions.npz``), in name order."""
    run = Path(run)
    folds = sorted(run.glob("folds/*")) if run.is_dir() else []
    return [d for d in folds if (d / "model.pt").exists() and (d / "predictions.npz").exists()]


def plot_run(run: str | Path, *, fold: str | None = None, subject: int | None = None,
             missing_rate: float = HEATMAP_MISSING_RATE, patterns: int = HEATMAP_PATTERNS) -> tuple[Path, Path]:
    """Fig. 2 and Fig. 4a of a trained run, written into ``run``: ``trajectories.png`` (predicted vs
    true ratings of one test subject) and ``routing_heatmap.png`` (modality-bank gates per presence
    pattern, the ``patterns`` most frequent ones).

    Uses the first finished fold, or the one named ``fold``. The heatmap reruns the fold's model on
    its test sequences with ``missing_rate`` simulated missing modalities: the data and the split are
    rebuilt from the run settings stored in the checkpoint, and the masks are those of the run's seed.
    Returns the two paths.
    """
    from .plots import plot_routing_heatmap, plot_trajectories
    from .train.checkpoint import load_model
    from .train.experiment import RunConfig, build_splits, load_data

    if not 0.0 <= missing_rate < 1.0:
        raise SettingsError(f"missing rate must be in [0, 1), got {missing_rate}")
    if patterns < 1:
        raise SettingsError(f"the heatmap needs at least one presence pattern, got {patterns}")
    run = Path(run)
    folds = [d for d in finished_folds(run) if fold is None or d.name == fold]
    if not folds:
        raise RunDirError(f"{run}: no finished fold (folds/*/model.pt and predictions.npz) to plot")
    fold_dir = folds[0]
    model_path = fold_dir / "model.pt"
    pred, true, subj = subject_trajectory(fold_dir / "predictions.npz", subject)
    model, cfg, extra = load_model(model_path)
    if not hasattr(model, "modality_bank"):
        raise SettingsError(f"{fold_dir}: routing heatmap needs a Hi-MoE model, this is {extra.get('model_name')}")
    rc = RunConfig.from_stored(extra.get("run_config"), model_path, progress=False)
    data = load_data(rc, progress=False)
    splits = build_splits(rc, data)                    # the split seed is the training seed, as in training
    fold_index = extra.get("fold", 0)
    if not (isinstance(fold_index, int) and 0 <= fold_index < len(splits)):
        raise CheckpointError(model_path, f"its fold number {fold_index!r} is not a fold of its run")
    trajectories = plot_trajectories(pred, true, cfg.targets, run / "trajectories.png",
                                     title=f"Subject {subj}: predicted vs true ({fold_dir.name})", window_s=cfg.window_s)
    names, weights, counts = routing_by_pattern(model, data, splits[fold_index].test, missing_rate=missing_rate,
                                                seed=rc.train.seed)
    heatmap = plot_routing_heatmap(names[:patterns], weights[:patterns], cfg.modality_names,
                                   run / "routing_heatmap.png", counts[:patterns])
    return trajectories, heatmap
