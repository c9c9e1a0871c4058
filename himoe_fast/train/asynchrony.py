"""The asynchrony benchmark: every model trained and evaluated with injected lags.

For each lag setting -- a fixed lag of ``L`` seconds applied to the chosen modalities (``0, 1, 2, 4,
6`` by default), or ``"random"``: per subject, a lag drawn uniformly from ``[0, max]`` for each chosen
modality -- the windows are prepared once, and every (model, seed) is trained on the same split with
the same missing masks (both are functions of the seed alone), so the comparison is paired.

Outputs under ``out``:
    asynchrony.csv       model, lag, seed, ccc_mean (one row per run, rewritten atomically as runs finish)
    learned_delays.csv   model, lag, seed, modality, injected_s, learned_s, learned_rel_s
                         (Hi-MoE runs with a lag aligner; ``learned_rel_s`` is relative to the
                         reference modality, the first one that is not lagged)
    asynchrony.png       CCC against lag per model (mean and +-1 std over seeds)
    learned_delay.png    learned against injected delay for the lagged modalities
    runs/<model>_lag<L>_s<seed>/   each run's own directory
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .experiment import RunConfig, load_data
from .sweeps import model_run_config, number, run_grid, sweep_run, write_rows

ASYNCHRONY_COLUMNS = ("model", "lag", "seed", "ccc_mean")
DELAY_COLUMNS = ("model", "lag", "seed", "modality", "injected_s", "learned_s", "learned_rel_s")
DEFAULT_LAGS = ("0", "1", "2", "4", "6", "random")
DEFAULT_LAGGED = ("gsr", "ppg")
RANDOM = "random"


def lag_label(lag: str | float) -> str:
    """Canonical name of a lag setting: ``"random"`` or the seconds as ``"%g"``."""
    return RANDOM if str(lag) == RANDOM else f"{float(lag):g}"


def lag_data(base: RunConfig, lag: str, lagged: Sequence[str], random_max: float) -> RunConfig:
    """``base`` with the data settings of one lag setting."""
    if lag == RANDOM:
        data = replace(base.data, lags={}, random_lags={m: float(random_max) for m in lagged})
    else:
        data = replace(base.data, lags={m: float(lag) for m in lagged if float(lag) != 0.0}, random_lags={})
    return replace(base, data=data)


def injected_delays(rc: RunConfig, data_meta: dict) -> dict[str, float]:
    """Seconds of injected lag per modality (the mean over subjects for random lags)."""
    if rc.data.random_lags:
        per_subject = data_meta.get("subject_lags") or []
        return {m: float(np.mean([s.get(m, 0.0) for s in per_subject])) if per_subject else float("nan")
                for m in rc.model.modality_names}
    return {m: float(rc.data.lags.get(m, 0.0)) for m in rc.model.modality_names}


def asynchrony_sweep(base: RunConfig, models: Sequence[str], lags: Sequence[str], seeds: Sequence[int],
                     out: str | Path, *, lagged: Sequence[str] = DEFAULT_LAGGED, random_max: float = 6.0,
                     resume: bool = False, jobs: int = 1,
                     on_result: Callable[[dict], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Train/evaluate every (lag, model, seed); returns ``(rows, delay_rows)`` and writes the outputs."""
    from ..plots import plot_asynchrony, plot_learned_delays

    out = Path(out)
    unknown = sorted(set(lagged) - set(base.model.modality_names))
    if unknown:
        raise ValueError(f"lagged modalities not in the model: {', '.join(unknown)}")
    reference = next((m for m in base.model.modality_names if m not in lagged), None)
    settings = [lag_label(x) for x in lags]
    prepared = {lag: lag_data(base, lag, lagged, random_max) for lag in settings}
    metas = {lag: load_data(rc, progress=base.progress).meta for lag, rc in prepared.items()}   # fail early
    out.mkdir(parents=True, exist_ok=True)

    tasks = []          # seed-major: an interrupted sweep has whole curves for the seeds it finished
    for seed in seeds:
        for lag in settings:
            for model in models:
                run_dir = out / "runs" / f"{model}_lag{lag}_s{seed}"
                tasks.append(((model, lag, int(seed)),
                              *sweep_run(model_run_config(prepared[lag], model, run_dir, seed=int(seed)), resume)))

    rows: list[dict] = []
    delay_rows: list[dict] = []

    def record(key, rc: RunConfig, metrics: dict) -> None:
        model, lag, seed = key
        row = {"model": model, "lag": lag, "seed": seed, "ccc_mean": number(metrics["ccc"]["mean"])}
        rows.append(row)
        learned = {m: v for m, v in (metrics.get("learned_delay_s") or {}).items() if m != "per_fold"}
        if learned:
            injected = injected_delays(rc, metas[lag])
            ref = learned.get(reference, 0.0) if reference else 0.0
            for m in rc.model.modality_names:
                delay_rows.append({"model": model, "lag": lag, "seed": seed, "modality": m,
                                   "injected_s": injected[m], "learned_s": learned[m],
                                   "learned_rel_s": learned[m] - ref})
        write_rows(out / "asynchrony.csv", sorted(rows, key=_order(settings, models)), ASYNCHRONY_COLUMNS)
        if delay_rows:
            write_rows(out / "learned_delays.csv", delay_rows, DELAY_COLUMNS)
        if on_result is not None:
            on_result(row)

    run_grid(tasks, record, jobs=jobs)
    rows.sort(key=_order(settings, models))
    plot_asynchrony(rows, out / "asynchrony.png", lags=settings)
    if delay_rows:
        plot_learned_delays(delay_rows, out / "learned_delay.png", modalities=lagged)
    return rows, delay_rows


def _order(settings: Sequence[str], models: Sequence[str]):
    return lambda r: (list(models).index(r["model"]), settings.index(r["lag"]), r["seed"])


def asynchrony_summary(rows: Sequence[dict]) -> dict[str, dict[str, tuple[float, float, int]]]:
    """``{model: {lag: (mean, std, n_seeds)}}`` of ``ccc_mean`` over seeds (lags in first-seen order)."""
    from ..plots import seed_summary

    return seed_summary(rows, lambda r: lag_label(r["lag"]))
