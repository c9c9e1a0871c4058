"""Figures (matplotlib, headless Agg backend), each written atomically as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from .io import atomic_write


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    plt = _figure()
    out = atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=130, bbox_inches="tight"))
    plt.close(fig)
    return out


def seed_summary(rows: Sequence[Mapping], setting: Callable[[Mapping], Hashable],
                 sort: bool = False) -> dict[str, dict]:
    """``{model: {setting(row): (mean, std, n_seeds)}}`` of ``ccc_mean`` over the seeds of a sweep
    (settings sorted, or in first-seen order)."""
    table: dict[str, dict] = {}
    for r in rows:
        table.setdefault(str(r["model"]), {}).setdefault(setting(r), []).append(float(r["ccc_mean"]))
    return {m: {key: (float(np.mean(v)), float(np.std(v)), len(v))
                for key, v in (sorted(per.items()) if sort else per.items())}
            for m, per in table.items()}


def robustness_summary(rows: Sequence[Mapping]) -> dict[str, dict[float, tuple[float, float, int]]]:
    """``{model: {rate: (mean, std, n_seeds)}}`` of ``ccc_mean`` over seeds."""
    return seed_summary(rows, lambda r: round(float(r["rate"]), 4), sort=True)


def plot_robustness(rows: Sequence[Mapping], path: str | Path, title: str = "CCC under missing modalities") -> Path:
    """Mean CCC over seeds vs missing rate, one line per model with a +-1 std band (paper Fig. 3)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for model, per_rate in robustness_summary(rows).items():
        rates = np.array(list(per_rate))
        mean = np.array([v[0] for v in per_rate.values()])
        std = np.array([v[1] for v in per_rate.values()])
        ax.plot(rates, mean, marker="o", label=model)
        ax.fill_between(rates, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("missing rate r")
    ax.set_ylabel("CCC (mean over targets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def plot_trajectories(pred: np.ndarray, true: np.ndarray, targets: Sequence[str], path: str | Path,
                      title: str = "Predicted vs true ratings over time", window_s: float = 1.0) -> Path:
    """Predicted and true ratings along consecutive test windows (paper Fig. 2).

    pred, true: ``[n_windows, n_targets]`` in time order (trials of one subject back to back).
    """
    plt = _figure()
    n = len(targets)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), sharex=True, squeeze=False)
    t = np.arange(pred.shape[0]) * window_s
    for i, (ax, name) in enumerate(zip(axes[:, 0], targets)):
        ax.plot(t, true[:, i], color="black", lw=1.5, label="ground truth")
        ax.plot(t, pred[:, i], color="tab:blue", lw=1.0, alpha=0.85, label="Hi-MoE")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(loc="upper right")
    axes[-1, 0].set_xlabel("time (s, test windows back to back)")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_routing_heatmap(patterns: Sequence[str], weights: np.ndarray, modalities: Sequence[str],
                         path: str | Path, counts: Sequence[int] | None = None) -> Path:
    """Mean modality-bank routing weights per modality-presence pattern (paper Fig. 4a).

    weights: ``[n_patterns, M, K]``; rows of the heatmap are (modality, expert) pairs, columns the
    presence patterns as bit strings in modality order ('1' = present).
    """
    plt = _figure()
    P, M, K = weights.shape
    grid = weights.transpose(1, 2, 0).reshape(M * K, P)
    fig, ax = plt.subplots(figsize=(max(5, 0.55 * P + 2), max(3, 0.28 * M * K + 1)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(P))
    labels = [f"{p}\n(n={c})" for p, c in zip(patterns, counts)] if counts is not None else list(patterns)
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_yticks(range(M * K))
    ax.set_yticklabels([f"{m} / E{k + 1}" for m in modalities for k in range(K)], fontsize=7)
    ax.set_xlabel(f"presence pattern, one bit per modality: {' '.join(modalities)}")
    ax.set_title("Modality Expert Bank: mean routing weight alpha")
    fig.colorbar(im, ax=ax, fraction=0.03)
    return save_figure(fig, path)


def plot_expert_count(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Test CCC vs the number of emotion experts L (paper Fig. 4b); rows: {"experts", "ccc_mean"}."""
    plt = _figure()
    by_l: dict[int, list[float]] = {}
    for r in rows:
        by_l.setdefault(int(r["experts"]), []).append(float(r["ccc_mean"]))
    ls = sorted(by_l)
    mean = np.array([np.mean(by_l[v]) for v in ls])
    std = np.array([np.std(by_l[v]) for v in ls])
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.errorbar(ls, mean, yerr=std, marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ls)
    ax.set_xticklabels([str(v) for v in ls])
    ax.set_xlabel("emotion experts L")
    ax.set_ylabel("CCC (mean over targets)")
    ax.set_title("Emotion Expert Bank size")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_asynchrony(rows: Sequence[Mapping], path: str | Path, lags: Sequence[str] | None = None,
                    title: str = "CCC under injected lags") -> Path:
    """Mean CCC over seeds against the injected lag, one line per model with a +-1 std band; the
    ``random`` (per-subject) setting is drawn as separate points at the right."""
    from .train.asynchrony import RANDOM, asynchrony_summary

    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.8, 4.2))
    summary = asynchrony_summary(rows)
    fixed = [lag for lag in (lags or next(iter(summary.values()), {})) if lag != RANDOM]
    xs = np.array([float(lag) for lag in fixed])
    x_random = (xs.max() if xs.size else 0.0) + 1.5
    for model, per in summary.items():
        mean = np.array([per[lag][0] if lag in per else np.nan for lag in fixed])
        std = np.array([per[lag][1] if lag in per else np.nan for lag in fixed])
        line, = ax.plot(xs, mean, marker="o", label=model)
        ax.fill_between(xs, mean - std, mean + std, alpha=0.15, color=line.get_color())
        if RANDOM in per:
            m, sd, _ = per[RANDOM]
            ax.errorbar([x_random], [m], yerr=[sd], fmt="s", color=line.get_color(), capsize=3)
    if any(RANDOM in per for per in summary.values()):
        ax.set_xticks([*xs, x_random], [*(f"{x:g}" for x in xs), "random"])
    ax.set_xlabel("injected lag of the lagged modalities (s)")
    ax.set_ylabel("CCC (mean over targets)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_learned_delays(delay_rows: Sequence[Mapping], path: str | Path, modalities: Sequence[str],
                        title: str = "Delay learned by the lag aligner") -> Path:
    """Learned delay (relative to the reference modality) against the injected lag, per lagged
    modality and model, with the ideal line: the lag-0 value plus the injected lag."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for r in delay_rows:
        if r["modality"] in modalities:
            groups.setdefault((str(r["model"]), str(r["modality"])), []).append(r)
    top = 0.0
    for (model, modality), rs in sorted(groups.items()):
        x = np.array([float(r["injected_s"]) for r in rs])
        y = np.array([float(r["learned_rel_s"]) for r in rs])
        pts = ax.scatter(x, y, s=18, alpha=0.7, label=f"{model}: {modality}")
        base = y[np.isclose(x, 0.0)]
        if base.size and x.size:
            xx = np.linspace(0.0, x.max(), 2)
            ax.plot(xx, base.mean() + xx, ls="--", lw=1, color=pts.get_facecolor()[0])
        top = max(top, float(x.max()) if x.size else 0.0)
    ax.set_xlabel("injected lag (s)")
    ax.set_ylabel("learned delay rel. to reference modality (s)")
    ax.set_title(title + " (dashed: ideal)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
