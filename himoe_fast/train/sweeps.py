"""Sweeps over runs: the missing-modality robustness sweep (paper Table 3 / Fig. 3).

Like the paper, each (model, rate, seed) trains a fresh model with modalities missing at rate ``r``
in training *and* evaluation, and records the mean test CCC over targets (averaged over folds).
Rows are appended to ``robustness.csv`` as they finish (atomic rewrite), so an interrupted sweep
keeps what it has and ``resume=True`` skips runs that already finished.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

from ..io import atomic_write_text
from .experiment import RunConfig, load_data, run_experiment

ROBUSTNESS_COLUMNS = ("model", "rate", "seed", "ccc_mean")
DEFAULT_RATES = tuple(round(0.05 * i, 2) for i in range(9))     # 0.00 .. 0.40
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def write_rows(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def robustness_sweep(base: RunConfig, models: Sequence[str], rates: Sequence[float], seeds: Sequence[int],
                     out: str | Path, *, resume: bool = False,
                     on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Train/evaluate every (model, rate, seed); write ``out/robustness.csv`` and ``out/robustness.png``."""
    from ..plots import plot_robustness

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(base, progress=base.progress)
    rows: list[dict] = []
    for model in models:
        for rate in rates:
            for seed in seeds:
                run_dir = out / "runs" / f"{model}_r{rate:.2f}_s{seed}"
                metrics_file = run_dir / "metrics.json"
                if resume and metrics_file.exists():
                    metrics = json.loads(metrics_file.read_text())
                else:
                    impl = base.train.impl if model == "himoe" else "reference"   # baselines have no fast path
                    rc = replace(base, out=str(run_dir), progress=False, resume=False,
                                 train=replace(base.train, missing_rate=float(rate), seed=int(seed), model_name=model,
                                               impl=impl))
                    metrics = run_experiment(rc, data=data)
                row = {"model": model, "rate": float(rate), "seed": int(seed), "ccc_mean": float(metrics["ccc"]["mean"])}
                rows.append(row)
                write_rows(out / "robustness.csv", rows, ROBUSTNESS_COLUMNS)
                if on_result is not None:
                    on_result(row)
    plot_robustness(rows, out / "robustness.png")
    return rows


#: Table 6 variants: name -> model-config overrides
ABLATIONS = {
    "w/o Emotion Expert Bank": {"emotion_bank": False},
    "w/o Cross-Modal Alignment": {"align_weight": 0.0},
    "w/o Soft Routing": {"routing": "top1"},
    "Full Model": {},
}
ABLATION_COLUMNS = ("variant", "seed", "ccc_mean", "pcc_mean", "mae_mean")
EXPERT_COUNT_COLUMNS = ("experts", "seed", "ccc_mean")
DEFAULT_EXPERT_COUNTS = (1, 2, 4, 8, 16)


def _run_variant(base: RunConfig, run_dir: Path, model_overrides: dict, seed: int, data, resume: bool) -> dict:
    metrics_file = run_dir / "metrics.json"
    if resume and metrics_file.exists():
        return json.loads(metrics_file.read_text())
    rc = replace(base, out=str(run_dir), progress=False, resume=False, model=base.model.replace(**model_overrides),
                 train=replace(base.train, seed=int(seed)))
    return run_experiment(rc, data=data)


def ablation_sweep(base: RunConfig, seeds: Sequence[int], out: str | Path, *, expert_counts: Sequence[int] = (),
                   resume: bool = False, on_result: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Table 6 (full model vs each component removed) and Fig. 4b (emotion-expert count).

    Writes ``ablation.csv`` and, when ``expert_counts`` is given, ``expert_count.csv`` and
    ``expert_count.png`` under ``out``.
    """
    from ..plots import plot_expert_count

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(base, progress=base.progress)
    rows: list[dict] = []
    for variant, overrides in ABLATIONS.items():
        for seed in seeds:
            slug = variant.lower().replace("/", "").replace(" ", "_")
            m = _run_variant(base, out / "runs" / f"{slug}_s{seed}", overrides, seed, data, resume)
            rows.append({"variant": variant, "seed": int(seed), "ccc_mean": m["ccc"]["mean"],
                         "pcc_mean": m["pcc"]["mean"], "mae_mean": m["mae"]["mean"]})
            write_rows(out / "ablation.csv", rows, ABLATION_COLUMNS)
            if on_result is not None:
                on_result(f"{variant} seed {seed}: CCC {m['ccc']['mean']:.3f}")
    count_rows: list[dict] = []
    for L in expert_counts:
        for seed in seeds:
            m = _run_variant(base, out / "runs" / f"experts{L}_s{seed}", {"n_emotion_experts": int(L)}, seed, data,
                             resume)
            count_rows.append({"experts": int(L), "seed": int(seed), "ccc_mean": m["ccc"]["mean"]})
            write_rows(out / "expert_count.csv", count_rows, EXPERT_COUNT_COLUMNS)
            if on_result is not None:
                on_result(f"L={L} seed {seed}: CCC {m['ccc']['mean']:.3f}")
    if count_rows:
        plot_expert_count(count_rows, out / "expert_count.png")
    return rows, count_rows
