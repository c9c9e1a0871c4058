"""Evaluation metrics (paper, "Metrics") and fold aggregation.

Every metric takes two 1-D arrays (numpy or torch; computed in float64) and returns a Python float.

* ``ccc``: Lin's concordance correlation coefficient with population (1/n) moments,
  ``2 cov / (var_x + var_y + (mean_x - mean_y)^2)``; 1.0 for two identical constant series.
* ``pcc``: Pearson correlation; ``nan`` when either series is constant.
* ``mae``: mean absolute error.
* ``accuracy``, ``f1``: on binary labels (positive class = high = 1/True); ``f1`` is 0 when there
  are no true and no predicted positives.

Protocol (DESIGN.md section 4): metrics are computed per target over all test windows of a fold
(:func:`evaluate`), then averaged over folds with a standard deviation (:func:`aggregate_folds`).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

REGRESSION_METRICS = ("ccc", "pcc", "mae")
BINARY_METRICS = ("acc", "f1")


def _as_1d(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 2 and 1 in a.shape:      # column or row vector
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


def _pair(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_1d(x, "x"), _as_1d(y, "y")
    if a.shape != b.shape:
        raise ValueError(f"metric inputs differ in length: {a.shape[0]} vs {b.shape[0]}")
    if a.size == 0:
        raise ValueError("metric inputs are empty")
    return a, b


def ccc(x: Any, y: Any) -> float:
    """Lin's concordance correlation coefficient (population moments)."""
    a, b = _pair(x, y)
    ma, mb = a.mean(), b.mean()
    va, vb = ((a - ma) ** 2).mean(), ((b - mb) ** 2).mean()
    cov = ((a - ma) * (b - mb)).mean()
    denom = va + vb + (ma - mb) ** 2
    if denom == 0.0:
        return 1.0   # both constant and equal: perfect agreement
    return float(2.0 * cov / denom)


def pcc(x: Any, y: Any) -> float:
    """Pearson correlation coefficient; ``nan`` if either input is constant."""
    a, b = _pair(x, y)
    da, db = a - a.mean(), b - b.mean()
    denom = math.sqrt(float((da ** 2).sum() * (db ** 2).sum()))
    if denom == 0.0:
        return float("nan")
    return float((da * db).sum() / denom)


def mae(x: Any, y: Any) -> float:
    """Mean absolute error."""
    a, b = _pair(x, y)
    return float(np.abs(a - b).mean())


def _binary(x: Any, name: str) -> np.ndarray:
    a = _as_1d(x, name)
    if not np.isin(a, (0.0, 1.0)).all():
        raise ValueError(f"{name} must hold binary labels (0/1 or bool)")
    return a.astype(bool)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of equal binary labels."""
    t, p = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if t.shape != p.shape or t.size == 0:
        raise ValueError("accuracy: inputs must be non-empty and of equal length")
    return float((t == p).mean())


def f1(y_true: Any, y_pred: Any) -> float:
    """F1 score of the positive (high) class: ``2 TP / (2 TP + FP + FN)``."""
    t, p = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if t.shape != p.shape or t.size == 0:
        raise ValueError("f1: inputs must be non-empty and of equal length")
    tp = float((t & p).sum())
    denom = 2 * tp + float((~t & p).sum()) + float((t & ~p).sum())
    return 0.0 if denom == 0 else 2 * tp / denom


# --------------------------------------------------------------------------------------------------
# Per-fold evaluation and aggregation (the metrics.json schema of DESIGN.md section 6)
# --------------------------------------------------------------------------------------------------

def evaluate(pred: Any, true: Any, targets: Sequence[str], task: str = "regression",
             threshold: float = 5.0) -> dict[str, dict[str, float]]:
    """Metrics per target over all test windows of one fold.

    pred, true: ``[n_windows, n_targets]``. For ``task="regression"`` pred holds ratings; for
    ``"binary"`` pred holds probabilities of "high" (>= 0.5 counts as high) and true holds ratings,
    binarised at ``threshold`` (high = rating >= threshold); for binary, ``ccc``/``pcc``/``mae``
    compare the probabilities with the 0/1 labels and ``acc``/``f1`` threshold them at 0.5.
    Returns ``{metric: {target: value, ..., "mean": mean over targets}}``.
    """
    P = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred, dtype=np.float64)
    Y = np.asarray(true.detach().cpu() if hasattr(true, "detach") else true, dtype=np.float64)
    if P.ndim == 1:
        P, Y = P[:, None], Y[:, None]
    if P.shape != Y.shape or P.shape[1] != len(targets):
        raise ValueError(f"evaluate: pred {P.shape} and true {Y.shape} must be [n, {len(targets)}]")
    out: dict[str, dict[str, float]] = {}
    if task == "regression":
        reference = Y
    elif task == "binary":
        reference = (Y >= threshold).astype(np.float64)   # probabilities are compared with 0/1 labels
    else:
        raise ValueError(f"unknown task {task!r}")
    for name, fn in (("ccc", ccc), ("pcc", pcc), ("mae", mae)):
        out[name] = {t: fn(P[:, i], reference[:, i]) for i, t in enumerate(targets)}
    if task == "binary":
        hi_true, hi_pred = Y >= threshold, P >= 0.5
        out["acc"] = {t: accuracy(hi_true[:, i], hi_pred[:, i]) for i, t in enumerate(targets)}
        out["f1"] = {t: f1(hi_true[:, i], hi_pred[:, i]) for i, t in enumerate(targets)}
    for per_target in out.values():
        values = np.array([per_target[t] for t in targets], dtype=np.float64)
        # mean over the targets where the metric is defined (NaN when none is; no empty-slice warning)
        per_target["mean"] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


def aggregate_folds(per_fold: Sequence[Mapping[str, Mapping[str, float]]]) -> dict[str, Any]:
    """Mean and std (population, over folds) of each metric and target.

    per_fold: list of :func:`evaluate` results. Returns
    ``{metric: {target: mean, ..., "mean": ...}, "std": {metric: {target: std, ..., "mean": ...}},
    "per_fold": [...]}``.
    """
    if not per_fold:
        raise ValueError("aggregate_folds: no folds")
    result: dict[str, Any] = {}
    std: dict[str, dict[str, float]] = {}
    for metric, per_target in per_fold[0].items():
        result[metric], std[metric] = {}, {}
        for key in per_target:
            vals = np.array([fold[metric][key] for fold in per_fold], dtype=np.float64)
            result[metric][key] = float(np.nanmean(vals)) if np.isfinite(vals).any() else float("nan")
            std[metric][key] = float(np.nanstd(vals)) if np.isfinite(vals).any() else float("nan")
    result["std"] = std
    result["per_fold"] = [dict(fold) for fold in per_fold]
    return result


__all__ = ["ccc", "pcc", "mae", "accuracy", "f1", "evaluate", "aggregate_folds",
           "REGRESSION_METRICS", "BINARY_METRICS"]
