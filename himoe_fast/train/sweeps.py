"""Sweeps over runs: the missing-modality robustness sweep (paper Table 3 / Fig. 3).

Like the paper, each (model, rate, seed) trains a fresh model with modalities missing at rate ``r``
in training *and* evaluation, and records the mean test CCC over targets (averaged over folds).
Rows are appended to ``robustness.csv`` as they finish (atomic rewrite), so an interrupted sweep
keeps what it has and ``resume=True`` skips runs that already finished (see :func:`sweep_run`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Sequence

from ..io import atomic_write_text
from .experiment import RunConfig, load_data, run_experiment
from .rundir import DONE, PARTIAL, run_state

ROBUSTNESS_COLUMNS = ("model", "rate", "seed", "ccc_mean")
DEFAULT_RATES = tuple(round(0.05 * i, 2) for i in range(9))     # 0.00 .. 0.40
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def write_rows(path: Path, rows: Sequence[dict], columns: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


class RowTable:
    """A sweep's CSV table: rows kept in the order of the sweep's task keys (not in completion order,
    which differs with ``jobs > 1``) and the file rewritten atomically as each run finishes."""

    def __init__(self, path: Path, columns: Sequence[str], keys: Sequence):
        self.path, self.columns = Path(path), tuple(columns)
        self.position = {key: i for i, key in enumerate(keys)}
        self._rows: list[tuple[int, dict]] = []

    def add(self, key, row: dict) -> dict:
        self._rows.append((self.position[key], row))
        self._rows.sort(key=lambda item: item[0])
        write_rows(self.path, self.rows, self.columns)
        return row

    @property
    def rows(self) -> list[dict]:
        return [row for _, row in self._rows]


def number(value) -> float:
    """A metric as a float: metrics.json stores an undefined value (NaN) as null."""
    return float("nan") if value is None else float(value)


def read_finished(run_dir: Path) -> dict | None:
    """The metrics of a finished run in ``run_dir``, or None (not finished, or its metrics.json is
    damaged: the run is then trained again)."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        return metrics if isinstance(metrics, dict) and "ccc" in metrics else None
    except (OSError, ValueError):
        return None


def sweep_run(rc: RunConfig, resume: bool) -> tuple[RunConfig, dict | None]:
    """What a sweep does with the run folder ``rc.out``: ``(rc, metrics)`` for a run to read back,
    ``(rc, None)`` for one to train.

    With ``resume``, a finished run whose folds are the ones asked for (same protocol, ``max_folds``
    included) is read back. A folder with fold results but no matching ``metrics.json`` -- a run
    killed mid-sweep, or a grid grown to more folds (``--max-folds 2`` -> ``10``) -- is continued
    with ``resume=True``: finished folds are read back, a started one continues from its checkpoint
    (exact, like ``train --resume``), and only the missing folds are trained. A resumed sweep trusts
    its folders' other settings: give a sweep with other settings another ``--out``.
    """
    if not resume:
        return rc, None
    run_dir = Path(rc.out)
    metrics = read_finished(run_dir)
    if metrics is not None and metrics.get("protocol") == asdict(rc.protocol):
        return rc, metrics
    if run_state(run_dir) in (PARTIAL, DONE):
        return replace(rc, resume=True), None
    return rc, None


#: Model names a sweep accepts: Hi-MoE as configured (``--temporal``), the paper-literal Hi-MoE and
#: the baselines of :mod:`himoe_fast.baselines`.
PAPER_LITERAL = "himoe_paper"
SWEEP_MODELS = ("himoe", PAPER_LITERAL, "late_fusion", "bilstm", "tacoformer", "ianet")


def model_run_config(base: RunConfig, model: str, run_dir: Path, **train_overrides) -> RunConfig:
    """The run of ``model`` in a sweep: ``himoe`` keeps the base model config, ``himoe_paper`` is the
    same with ``temporal="none"``, baselines run the reference path (they have no fast path)."""
    if model not in SWEEP_MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(SWEEP_MODELS)}")
    is_himoe = model in ("himoe", PAPER_LITERAL)
    cfg = base.model.replace(temporal="none") if model == PAPER_LITERAL else base.model
    train = replace(base.train, model_name="himoe" if is_himoe else model,
                    impl=base.train.impl if is_himoe else "reference", **train_overrides)
    return replace(base, model=cfg, train=train, out=str(run_dir), progress=False, resume=False)


def _grid_task(rc: RunConfig, threads: int) -> dict:
    """One run of a grid in a worker process (data come from the on-disk cache)."""
    import torch

    torch.set_num_threads(threads)
    return run_experiment(rc, data=load_data(rc, progress=False))


def _die_with_parent(parent: int) -> None:
    """In a grid worker: be killed when the sweep process dies (Linux), so that a sweep stopped with
    ``kill`` leaves no orphan still training; Ctrl-C already reaches the whole process group."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return                                                                  # not Linux: nothing to do
    if os.getppid() != parent:            # the sweep died while this worker was starting up
        os._exit(1)


def run_grid(tasks: Sequence[tuple], record: Callable[[object, RunConfig, dict], None], jobs: int = 1) -> None:
    """Run ``tasks`` = ``[(key, run_config, finished_metrics_or_None), ...]`` and call
    ``record(key, run_config, metrics)`` as each finishes (in completion order when ``jobs > 1``).

    ``jobs > 1`` runs that many runs at once in worker processes, each with its share of the
    intra-op threads; every run is a function of its config alone, so results do not depend on it.
    """
    import torch

    todo = []
    for key, rc, done in tasks:
        if done is not None:
            record(key, rc, done)
        else:
            todo.append((key, rc))
    if jobs <= 1 or len(todo) <= 1:
        for key, rc in todo:
            record(key, rc, run_experiment(rc))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, torch.get_num_threads() // jobs)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(_grid_task, rc, threads): (key, rc) for key, rc in todo}
        for fut in as_completed(futures):
            key, rc = futures[fut]
            record(key, rc, fut.result())


def robustness_sweep(base: RunConfig, models: Sequence[str], rates: Sequence[float], seeds: Sequence[int],
                     out: str | Path, *, resume: bool = False, jobs: int = 1,
                     on_result: Callable[[dict], None] | None = None) -> list[dict]:
    """Train/evaluate every (model, rate, seed); write ``out/robustness.csv`` and ``out/robustness.png``.
    ``jobs > 1`` runs that many at once (see :func:`run_grid`)."""
    from ..plots import plot_robustness

    out = Path(out)
    load_data(base, progress=base.progress)              # bad data fail before anything is written
    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for model in models:
        for rate in rates:
            for seed in seeds:
                run_dir = out / "runs" / f"{model}_r{rate:.2f}_s{seed}"
                rc = model_run_config(base, model, run_dir, missing_rate=float(rate), seed=int(seed))
                tasks.append(((model, float(rate), int(seed)), *sweep_run(rc, resume)))
    table = RowTable(out / "robustness.csv", ROBUSTNESS_COLUMNS, [key for key, _, _ in tasks])

    def record(key, rc: RunConfig, metrics: dict) -> None:
        model, rate, seed = key
        row = table.add(key, {"model": model, "rate": rate, "seed": seed, "ccc_mean": number(metrics["ccc"]["mean"])})
        if on_result is not None:
            on_result(row)

    run_grid(tasks, record, jobs=jobs)
    plot_robustness(table.rows, out / "robustness.png")
    return table.rows


#: Table 6 variants: name -> model-config overrides
ABLATIONS = {
    "w/o Emotion Expert Bank": {"emotion_bank": False},
    "w/o Cross-Modal Alignment": {"align_weight": 0.0},
    # the paper does not say which hard router "w/o Soft Routing" is: a fixed one (the gate gets no
    # gradient) and a learned one (straight-through) are both run
    "w/o Soft Routing (fixed top-1)": {"routing": "top1"},
    "w/o Soft Routing (learned top-1)": {"routing": "top1_st"},
    "Full Model": {},
}
ABLATION_COLUMNS = ("variant", "seed", "ccc_mean", "pcc_mean", "mae_mean")
EXPERT_COUNT_COLUMNS = ("experts", "seed", "ccc_mean")
DEFAULT_EXPERT_COUNTS = (1, 2, 4, 8, 16)


def variant_slug(variant: str) -> str:
    """Folder name of an ablation variant (``"w/o Soft Routing (fixed top-1)"`` -> ``wo_soft_routing_fixed_top-1``)."""
    return re.sub(r"[^a-z0-9-]+", "_", variant.lower().replace("/", "")).strip("_")


def ablation_sweep(base: RunConfig, seeds: Sequence[int], out: str | Path, *, expert_counts: Sequence[int] = (),
                   resume: bool = False, jobs: int = 1,
                   on_result: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """Table 6 (full model vs each component removed) and Fig. 4b (emotion-expert count).

    Writes ``ablation.csv`` and, when ``expert_counts`` is given, ``expert_count.csv`` and
    ``expert_count.png`` under ``out``. ``jobs > 1`` runs that many at once (see :func:`run_grid`).
    """
    from ..plots import plot_expert_count

    out = Path(out)
    load_data(base, progress=base.progress)              # bad data fail before anything is written
    out.mkdir(parents=True, exist_ok=True)

    def task(key, run_dir: Path, overrides: dict, seed: int):
        rc = replace(base, out=str(run_dir), progress=False, resume=False, model=base.model.replace(**overrides),
                     train=replace(base.train, seed=int(seed)))
        return (key, *sweep_run(rc, resume))

    tasks = [task(("variant", variant, int(seed)), out / "runs" / f"{variant_slug(variant)}_s{seed}", overrides, seed)
             for variant, overrides in ABLATIONS.items() for seed in seeds]
    tasks += [task(("experts", int(L), int(seed)), out / "runs" / f"experts{L}_s{seed}", {"n_emotion_experts": int(L)},
                   seed) for L in expert_counts for seed in seeds]
    keys = [key for key, _, _ in tasks]
    variants = RowTable(out / "ablation.csv", ABLATION_COLUMNS, [k for k in keys if k[0] == "variant"])
    counts = RowTable(out / "expert_count.csv", EXPERT_COUNT_COLUMNS, [k for k in keys if k[0] == "experts"])

    def record(key, rc: RunConfig, m: dict) -> None:
        kind, name, seed = key
        if kind == "variant":
            variants.add(key, {"variant": name, "seed": seed, "ccc_mean": number(m["ccc"]["mean"]),
                               "pcc_mean": number(m["pcc"]["mean"]), "mae_mean": number(m["mae"]["mean"])})
            message = f"{name} seed {seed}: CCC {number(m['ccc']['mean']):.3f}"
        else:
            counts.add(key, {"experts": name, "seed": seed, "ccc_mean": number(m["ccc"]["mean"])})
            message = f"L={name} seed {seed}: CCC {number(m['ccc']['mean']):.3f}"
        if on_result is not None:
            on_result(message)

    run_grid(tasks, record, jobs=jobs)
    rows, count_rows = variants.rows, counts.rows
    if count_rows:
        plot_expert_count(count_rows, out / "expert_count.png")
    return rows, count_rows
