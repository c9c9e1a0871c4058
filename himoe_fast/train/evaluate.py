"""Evaluate saved models: one ``model.pt`` or every fold of a run directory.

The data and split of each fold are rebuilt from the run settings stored in the checkpoint, so an
evaluation sees exactly the fold's test sequences; ``missing_rate`` / ``seed`` override the
simulated missing modalities (evaluation masks are deterministic per seed).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, UserInputError
from ..metrics import aggregate_folds
from .checkpoint import load_model
from .distributed import single_process_context
from .experiment import RunConfig, build_splits, load_data
from .loop import fold_metrics, predict_split


def natural_key(name: str) -> list:
    """``fold2`` sorts before ``fold10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def model_paths(path: str | Path) -> list[Path]:
    """``model.pt`` files of a checkpoint path or a run directory (fold order)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise UserInputError(f"{path}: no such checkpoint or run directory")
    found = sorted(path.glob("folds/*/model.pt"), key=lambda p: natural_key(p.parent.name))
    if not found:
        raise UserInputError(f"{path}: no folds/*/model.pt checkpoints in this directory")
    return found


def evaluate_checkpoints(path: str | Path, *, missing_rate: float | None = None, seed: int | None = None,
                         data_dir: str | None = None, impl: str = "reference", split: str = "test",
                         progress: bool = True) -> dict[str, Any]:
    """Evaluate every model under ``path`` on its own fold. Returns aggregated metrics (+ "per_fold")."""
    ctx = single_process_context(False)
    per_fold, names, cache = [], [], {}
    for mp in model_paths(path):
        model, cfg, extra = load_model(mp, impl=impl)
        if "run_config" not in extra:
            raise CheckpointError(mp, "it lacks its run settings (not written by himoe-fast train)")
        rc = RunConfig.from_stored(extra["run_config"], mp, progress=False)
        if data_dir is not None:
            rc = replace(rc, data=replace(rc.data, data_dir=str(data_dir)))
        train = replace(rc.train, missing_rate=rc.train.missing_rate if missing_rate is None else missing_rate,
                        seed=rc.train.seed if seed is None else seed, impl=impl)
        key = repr((rc.data, rc.model.to_dict()))
        if key not in cache:
            cache[key] = load_data(rc, progress=progress)
        data = cache[key]
        splits = build_splits(rc, data)          # the split seed is the training seed, as in training
        fold_index = extra.get("fold", 0)
        if not (isinstance(fold_index, int) and 0 <= fold_index < len(splits)):
            raise CheckpointError(mp, f"its fold number {fold_index!r} is not a fold of its run")
        fold = splits[fold_index]
        indices = getattr(fold, split)
        pred, y, m = predict_split(model, data, np.asarray(indices), ctx, train)
        per_fold.append(fold_metrics(pred, y, m, cfg))
        names.append(fold.name)
    result = aggregate_folds(per_fold)
    result["folds"] = names
    return result
