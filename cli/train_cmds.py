"""``himoe-fast train``, ``eval`` and ``plots``: one run -- train it, evaluate it, draw its figures."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer

from himoe_fast.analysis import HEATMAP_MISSING_RATE, HEATMAP_PATTERNS, plot_run
from himoe_fast.config import HiMoEConfig
from himoe_fast.train import DataSettings, ProtocolSettings, RunConfig, TrainSettings

from . import choices as ch
from . import options as opt
from .common import check_out, check_output_file, check_range
from .errors import fail
from .run_config import build_run_config, default_out

app = typer.Typer()


@app.command()
def train(
    dataset: opt.Dataset = ch.Dataset(DataSettings.dataset), data_dir: opt.DataDir = None,
    face_dir: opt.FaceDir = None, modalities: opt.Modalities = None, task: opt.Task = ch.Task(HiMoEConfig.task),
    protocol: opt.Protocol = None, folds: opt.Folds = ProtocolSettings.folds,
    split: opt.Split = ch.Split(ProtocolSettings.split), epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = TrainSettings.batch_size, lr: opt.Lr = TrainSettings.lr,
    missing_rate: opt.MissingRate = TrainSettings.missing_rate,
    missing_per_step: opt.MissingPerStep = TrainSettings.missing_per_step, impl: opt.Impl = opt.DEFAULT_IMPL,
    backend: opt.Backend = ch.Backend(TrainSettings.backend), gpus: opt.Gpus = RunConfig.gpus,
    procs: opt.Procs = RunConfig.procs, parallel: opt.Parallel = ch.Parallel(RunConfig.parallel),
    subjects: opt.Subjects = None, seed: opt.Seed = TrainSettings.seed,
    router: opt.Router = ch.Router(HiMoEConfig.router), routing: opt.Routing = ch.Routing(HiMoEConfig.routing),
    emotion_bank: opt.EmotionBank = HiMoEConfig.emotion_bank, align_weight: opt.AlignWeight = HiMoEConfig.align_weight,
    seq_len: opt.SeqLen = DataSettings.seq_len, window: opt.Window = HiMoEConfig.window_s,
    stride: opt.Stride = None, lag: opt.Lag = None, patience: opt.Patience = TrainSettings.patience,
    max_folds: opt.MaxFolds = None, model: opt.Model = ch.Model(TrainSettings.model_name),
    temporal: opt.Temporal = opt.DEFAULT_TEMPORAL, causal: opt.Causal = HiMoEConfig.causal,
    expert_init: opt.ExpertInit = ch.ExpertInit(HiMoEConfig.expert_init),
    out: Annotated[Optional[Path], typer.Option(help="run directory (default runs/train-<dataset>-<time>)")] = None,
    resume: Annotated[bool, typer.Option(help="continue the run in --out from its checkpoints")] = False,
    progress: Annotated[bool, typer.Option(help="live progress display")] = True,
    callback: Annotated[Optional[list[str]], typer.Option(
        help="import path module:attr of a himoe_fast.train.callbacks.TrainCallback (class or factory) "
             "run at each fold's start, each epoch's end and each fold's end; repeatable")] = None,
) -> None:
    """Train Hi-MoE (one model per fold) and write config.json, metrics.json, folds.csv, checkpoints."""
    from dataclasses import replace

    from himoe_fast.train import run_experiment
    from himoe_fast.train.experiment import load_run_config
    from himoe_fast.train.rundir import check_fresh_run, check_resumable

    if resume:
        if out is None:
            fail("--resume needs --out DIR of the run to continue")
        check_out(out)
        check_resumable(out)
        rc = load_run_config(Path(out) / "config.json", out=str(out), resume=True, progress=progress)
        typer.echo(f"resuming {out}")
    else:
        from himoe_fast.train.distributed import launched_by_torchrun

        if out is None and launched_by_torchrun():
            fail("under torchrun, pass --out DIR (one run directory shared by all ranks)")
        out = out or default_out("train", dataset)
        check_fresh_run(out)        # a folder whose earlier attempt died before a checkpoint is reused
        rc = build_run_config(
            dataset=dataset, data_dir=data_dir, modalities=modalities, task=task, protocol=protocol,
            folds=folds, split=split, epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate,
            missing_per_step=missing_per_step, impl=impl, backend=backend, gpus=gpus, procs=procs,
            parallel=parallel, subjects=subjects, seed=seed, router=router, routing=routing,
            emotion_bank=emotion_bank, align_weight=align_weight, seq_len=seq_len, window=window,
            stride=stride, lag=lag, patience=patience, max_folds=max_folds, model=model, out=out,
            progress=progress, temporal=temporal, causal=causal, face_dir=face_dir,
            expert_init=expert_init)
    if callback:
        rc = replace(rc, callbacks=tuple(callback))
    metrics = run_experiment(rc)
    if metrics:
        print_metrics(metrics, f"{rc.data.dataset} / {rc.protocol.protocol} / {rc.train.model_name} "
                               f"({len(metrics['per_fold'])} fold(s), test windows)")
        typer.echo(f"wrote {rc.out}/metrics.json")


@app.command("eval")
def eval_(
    path: Annotated[Path, typer.Argument(help="a run directory or a fold's model.pt")],
    missing_rate: Annotated[Optional[float], typer.Option(help="override the simulated missing rate")] = None,
    seed: Annotated[Optional[int], typer.Option(help="seed of the evaluation missing masks")] = None,
    data_dir: opt.DataDir = None, impl: opt.Impl = opt.DEFAULT_IMPL,
    split: Annotated[ch.EvalSplit, typer.Option(help="which part of each fold")] = ch.EvalSplit.test,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="write the metrics here")] = None,
) -> None:
    """Evaluate saved models on their folds (optionally with simulated missing modalities)."""
    from himoe_fast.io import atomic_write_json
    from himoe_fast.train.evaluate import evaluate_checkpoints

    check_range("--missing-rate", missing_rate, 0.0, 1.0, hi_open=True)
    if seed is not None and seed < 0:
        fail(f"--seed must be >= 0, got {seed}")
    if not path.exists():
        fail(f"{path}: no such run directory or checkpoint")
    check_output_file(json_out, "--json")        # before the work, not after the table is printed
    metrics = evaluate_checkpoints(path, missing_rate=missing_rate, seed=seed, data_dir=data_dir,
                                   impl=ch.plain(impl), split=ch.plain(split))
    print_metrics(metrics, f"eval {path} ({split}, missing rate "
                           f"{'as trained' if missing_rate is None else missing_rate})")
    if json_out:
        atomic_write_json(json_out, metrics)


@app.command()
def plots(
    run: Annotated[Path, typer.Argument(help="a run directory written by `himoe-fast train`")],
    fold: Annotated[Optional[str], typer.Option(help="fold name (default: the first)")] = None,
    subject: Annotated[Optional[int], typer.Option(help="subject for the trajectory plot")] = None,
    missing_rate: Annotated[float, typer.Option(help="missing rate for the routing heatmap")] = HEATMAP_MISSING_RATE,
    patterns: Annotated[int, typer.Option(help="most frequent presence patterns in the heatmap")] = HEATMAP_PATTERNS,
) -> None:
    """Trajectories (Fig. 2) and routing weights per presence pattern (Fig. 4a) of a trained run."""
    check_range("--missing-rate", missing_rate, 0.0, 1.0, hi_open=True)
    if patterns < 1:
        fail(f"--patterns must be >= 1, got {patterns}")
    trajectories, heatmap = plot_run(run, fold=fold, subject=subject, missing_rate=missing_rate, patterns=patterns)
    typer.echo(f"wrote {trajectories} and {heatmap}")


def print_metrics(metrics: dict, title: str) -> None:
    """Per-target table (mean +- std over folds) plus per-fold rows."""
    from rich.console import Console
    from rich.table import Table

    names = [m for m in ("ccc", "pcc", "mae", "acc", "f1") if m in metrics]
    targets = [t for t in metrics[names[0]] if t != "mean"]
    table = Table(title=title)
    table.add_column("metric")
    for t in [*targets, "mean"]:
        table.add_column(t, justify="right")
    undefined = False

    def cell(value) -> str:        # NaN in memory, null in metrics.json: the metric is undefined there
        nonlocal undefined
        if value is None or not math.isfinite(value):
            undefined = True
            return "n/a"
        return f"{value:.4f}"

    for m in names:
        cells = []
        for t in [*targets, "mean"]:
            mean, std = metrics[m][t], metrics.get("std", {}).get(m, {}).get(t, float("nan"))
            n = len(metrics.get("per_fold", []))
            cells.append(cell(mean) + (f" ± {cell(std)}" if n > 1 and cell(mean) != "n/a" else ""))
        table.add_row(m.upper(), *cells)
    console = Console()
    console.print(table)
    if len(metrics.get("per_fold", [])) > 1:
        folds = Table(title="per fold (mean over targets)")
        folds.add_column("fold")
        for m in names:
            folds.add_column(m.upper(), justify="right")
        for name, fold in zip(metrics.get("folds", []), metrics["per_fold"]):
            folds.add_row(str(name), *[cell(fold[m]["mean"]) for m in names])
        console.print(folds)
    if undefined:
        console.print("n/a: undefined, because the predictions or the labels are constant over the test windows "
                      "(a correlation needs variance on both sides); metrics.json holds null there",
                      highlight=False)
