"""Every model on every row: the paper's comparison tables (Tables 2, 4 and 5) and Fig. 2.

A *setting* is one row group of a table: a run configuration (data set, modality set, task,
protocol) under a name such as ``"EEG+PPS"``. :func:`compare_sweep` trains and evaluates every
``(setting, model, seed)`` with :func:`~himoe_fast.train.sweeps.model_run_config` (Hi-MoE as
configured, the paper-literal Hi-MoE, the baselines). Within a setting and seed all models see the
same folds, the same held-out trials and the same missing-modality masks (all are functions of the
seed), so the comparison is paired.

Outputs under ``out``:
    compare.csv        setting, model, seed, then the mean over folds of each metric (mean over
                       targets, and per target for CCC) -- one row per run, rewritten as runs finish
    compare.md         the table: mean (and std over seeds) per setting and model
    trajectories.png   Fig. 2: predictions of every model on the same held-out trials (first
                       setting, first seed, first fold) against the ratings
    runs/<setting>/<model>_s<seed>/   each run's own directory (resumable)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .experiment import RunConfig, load_data
from .sweeps import RowTable, model_run_config, number, run_grid, sweep_run

REGRESSION_METRICS = ("ccc", "pcc", "mae")
BINARY_METRICS = ("acc", "f1")


def slug(name: str) -> str:
    """A folder name for a setting (``"EEG+PPS+Face"`` -> ``"eeg+pps+face"``)."""
    return re.sub(r"[^a-z0-9+._-]+", "_", name.lower()).strip("_") or "setting"


def compare_columns(targets: Sequence[str], binary: bool) -> tuple[str, ...]:
    metrics = BINARY_METRICS if binary else REGRESSION_METRICS
    per_target = tuple(f"{m}_{t}" for m in (("acc",) if binary else ("ccc",)) for t in targets)
    return ("setting", "model", "seed", *metrics, *per_target)


def metrics_row(metrics: dict, metrics_names: Sequence[str], targets: Sequence[str], per_target_metric: str) -> dict:
    """The fold-averaged metrics of a run (``metrics.json``) as one flat row."""
    row = {m: number(metrics.get(m, {}).get("mean")) for m in metrics_names}
    for t in targets:
        row[f"{per_target_metric}_{t}"] = number(metrics.get(per_target_metric, {}).get(t))
    return row


def compare_sweep(settings: Mapping[str, RunConfig], models: Sequence[str], seeds: Sequence[int],
                  out: str | Path, *, resume: bool = False, jobs: int = 1,
                  on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Train/evaluate every (setting, model, seed); write ``compare.csv``, ``compare.md`` and
    ``trajectories.png`` under ``out`` (module docstring). ``jobs > 1`` runs that many at once.

    All settings must share one task (regression or binary), so that the table has one set of
    columns; the targets are those of the first setting (others may have fewer: DREAMER has no liking).
    """
    out = Path(out)
    if not settings:
        raise ValueError("compare_sweep needs at least one setting")
    tasks_kind = {rc.model.task for rc in settings.values()}
    if len(tasks_kind) != 1:
        raise ValueError(f"all settings must share one task, got {sorted(tasks_kind)}")
    binary = tasks_kind.pop() == "binary"
    targets = list(next(iter(settings.values())).model.targets)
    for rc in settings.values():
        targets += [t for t in rc.model.targets if t not in targets]
    metric_names = BINARY_METRICS if binary else REGRESSION_METRICS
    per_target = "acc" if binary else "ccc"
    columns = compare_columns(targets, binary)
    for rc in settings.values():
        load_data(rc, progress=rc.progress)          # bad data fail before anything is written
    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for name, base in settings.items():
        for model in models:
            for seed in seeds:
                run_dir = out / "runs" / slug(name) / f"{model}_s{seed}"
                tasks.append(((name, model, int(seed)),
                              *sweep_run(model_run_config(base, model, run_dir, seed=int(seed)), resume)))
    table = RowTable(out / "compare.csv", columns, [key for key, _, _ in tasks])

    def record(key, rc: RunConfig, metrics: dict) -> None:
        name, model, seed = key
        row = table.add(key, {"setting": name, "model": model, "seed": seed,
                              **metrics_row(metrics, metric_names, targets, per_target)})
        if on_result is not None:
            on_result(row)

    run_grid(tasks, record, jobs=jobs)
    rows = table.rows
    from ..io import atomic_write_text

    atomic_write_text(out / "compare.md", compare_table(rows, list(settings), list(models), metric_names))
    first = next(iter(settings))
    run_dirs = {model: out / "runs" / slug(first) / f"{model}_s{int(seeds[0])}" for model in models}
    try:
        plot_compared_trajectories(run_dirs, out / "trajectories.png", title=f"{first}, seed {int(seeds[0])}")
    except (OSError, ValueError, KeyError) as exc:      # a plot is a bonus: never lose the table to it
        print(f"trajectories.png not written: {exc}")
    return rows


def compare_table(rows: Sequence[dict], settings: Sequence[str], models: Sequence[str],
                  metric_names: Sequence[str]) -> str:
    """Markdown: one row per (setting, model); ``mean +- std`` over seeds for each metric."""
    head = "| setting | model | seeds | " + " | ".join(m.upper() for m in metric_names) + " |"
    lines = [head, "|" + "---|" * (3 + len(metric_names))]
    for setting in settings:
        for model in models:
            mine = [r for r in rows if r["setting"] == setting and r["model"] == model]
            if not mine:
                continue
            cells = []
            for m in metric_names:
                v = np.array([r[m] for r in mine], float)
                ok = v[np.isfinite(v)]
                cells.append("n/a" if ok.size == 0 else f"{ok.mean():.3f}" + (f" ± {ok.std():.3f}" if ok.size > 1 else ""))
            lines.append(f"| {setting} | {model} | {len(mine)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_compared_trajectories(run_dirs: Mapping[str, Path], path: Path, *, title: str = "",
                               n_trials: int = 2, targets: Sequence[str] = ("valence", "arousal")) -> Path:
    """Fig. 2: per held-out trial and target, the ratings and every model's predictions over time.

    Reads each run's first fold ``predictions.npz``; the runs must share their split (same seed), so
    they hold the same test trials. Windows are plotted in sequence order within a trial.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write

    loaded = {}
    for model, run in run_dirs.items():
        folds = sorted((Path(run) / "folds").glob("*/predictions.npz"))
        if folds:
            with np.load(folds[0]) as z:
                loaded[model] = {k: z[k] for k in ("pred", "labels", "label_mask", "subject", "trial", "targets")}
    if not loaded:
        raise ValueError("no run has predictions")
    ref = next(iter(loaded.values()))
    names = [str(t) for t in ref["targets"]]
    targets = [t for t in targets if t in names] or names[:2]
    keys = list(dict.fromkeys(zip(ref["subject"].tolist(), ref["trial"].tolist())))[:n_trials]
    fig, axes = plt.subplots(len(keys), len(targets), figsize=(5.5 * len(targets), 2.8 * len(keys)), squeeze=False)
    for i, key in enumerate(keys):
        for j, target in enumerate(targets):
            ax = axes[i][j]
            k = names.index(target)
            sel = (ref["subject"] == key[0]) & (ref["trial"] == key[1])
            truth = ref["labels"][sel][..., k].reshape(-1)
            ax.plot(truth, color="black", lw=2, label="rating")
            for model, z in loaded.items():
                s = (z["subject"] == key[0]) & (z["trial"] == key[1])
                ax.plot(z["pred"][s][..., k].reshape(-1), lw=1.2, label=model)
            ax.set_title(f"subject {key[0] + 1}, trial {key[1] + 1}: {target}", fontsize=9)
            ax.set_xlabel("window")
    axes[0][0].legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=110))
    plt.close(fig)
    return path


__all__ = ["compare_sweep", "compare_table", "compare_columns", "plot_compared_trajectories", "slug"]
