"""``himoe-fast train / eval / robustness / synth / doctor``.

Defaults follow the paper's recipe (10-fold subject-dependent protocol, 75 epochs, Adam + cosine
annealing + early stopping, batch 32 per GPU). The embedded synthetic dataset is the exception: with
no flags, ``himoe-fast train`` runs a quick-start (see :data:`SYNTHETIC_QUICKSTART`) that finishes in a
few minutes on a laptop CPU, and says so.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from himoe_fast.config import TEMPORAL_MODES

from .common import (check_out, check_output_file, check_range, choice, fail, parse_lags, parse_list,
                     sweep_progress, user_errors)

DATASETS = ("synthetic", "deap", "dreamer", "recordings")
TASKS = ("regression", "binary")
PROTOCOLS = ("holdout", "kfold", "loso")
SPLITS = ("trial", "window")
IMPLS = ("auto", "reference", "fast")
BACKENDS = ("auto", "triton", "torch")
PARALLEL = ("ddp", "folds")

#: Used for --dataset synthetic when the flag is not given (the paper's recipe stays the default for
#: real data: kfold, 75 epochs).
SYNTHETIC_QUICKSTART = {"subjects": 6, "epochs": 12, "protocol": "holdout"}
PAPER_RECIPE = {"epochs": 75, "protocol": "kfold"}

# ---------------------------------------------------------------------------------------------------
# Options shared by train / robustness (typer reuses Annotated aliases)
# ---------------------------------------------------------------------------------------------------
Dataset = Annotated[str, typer.Option(help="synthetic | deap | dreamer | recordings (your own files)")]
DataDir = Annotated[Optional[Path], typer.Option(help="DEAP: folder with sNN.dat; DREAMER: DREAMER.mat or its folder; recordings: DIR/<subject>/<recording>/<files> (README)")]
FaceDir = Annotated[Optional[Path], typer.Option(help="DEAP face features: folder with sNN_face.npz (for --modalities ...,face)")]
Modalities = Annotated[Optional[str], typer.Option(help="comma-separated, e.g. eeg,gsr (default: all of the dataset)")]
Task = Annotated[str, typer.Option(help="regression | binary")]
Protocol = Annotated[Optional[str], typer.Option(help="holdout | kfold | loso (default: kfold; synthetic: holdout)")]
Folds = Annotated[int, typer.Option(help="folds of the kfold protocol")]
Split = Annotated[str, typer.Option(help="trial (no trial on both sides; the paper's stated protocol) | window "
                                         "(common leaky variant)")]
Epochs = Annotated[Optional[int], typer.Option(help="max epochs (paper: 75; synthetic quick-start: 12)")]
BatchSize = Annotated[int, typer.Option(help="per GPU / process (paper: 32)")]
Lr = Annotated[float, typer.Option(help="Adam learning rate")]
MissingRate = Annotated[float, typer.Option(help="simulated missing-modality rate in [0, 1), train and eval")]
MissingPerStep = Annotated[bool, typer.Option(help="draw missing modalities per time step, not per sample")]
Impl = Annotated[str, typer.Option(help="auto (fast after a one-time self-check on the device, else reference) | reference | fast")]
Backend = Annotated[str, typer.Option(help="fast-path backend: auto | triton | torch")]
Gpus = Annotated[int, typer.Option(help="train on N GPUs (one process each, NCCL, DDP)")]
Procs = Annotated[int, typer.Option(help="train with N CPU processes (gloo, DDP)")]
Parallel = Annotated[str, typer.Option(help="ddp: all ranks train each fold | folds: one fold per rank")]
Subjects = Annotated[Optional[int], typer.Option(help="use the first N subjects (synthetic: how many to write)")]
Seed = Annotated[int, typer.Option(help="seed of initialisation, shuffling, splits and missing masks")]
Router = Annotated[str, typer.Option(help="DA-router: dot | cosine | diff")]
Routing = Annotated[str, typer.Option(help="modality-bank routing: soft | uniform | top1")]
EmotionBank = Annotated[bool, typer.Option(help="use the Emotion Expert Bank (--no-emotion-bank: ablation)")]
AlignWeight = Annotated[float, typer.Option(help="lambda of Eq. 8 (0 = no alignment)")]
SeqLen = Annotated[int, typer.Option(help="windows per sample (T)")]
Window = Annotated[float, typer.Option(help="window length in seconds")]
Stride = Annotated[Optional[float], typer.Option(help="window stride in seconds (default: window)")]
Lag = Annotated[Optional[list[str]], typer.Option(help="asynchrony: MODALITY=SECONDS, repeatable")]
Patience = Annotated[int, typer.Option(help="early stopping patience in epochs")]
MaxFolds = Annotated[Optional[int], typer.Option(help="run only the first N folds")]
Model = Annotated[str, typer.Option(help="himoe (baselines: late_fusion, bilstm, tacoformer, ianet)")]
#: The CLI's default temporal variant: the one that won the asynchrony benchmark (docs/EXPERIMENTS.md).
#: The library's HiMoEConfig keeps "none", the paper-literal model.
DEFAULT_TEMPORAL = "align+context"
Temporal = Annotated[str, typer.Option(help="Hi-MoE temporal stages (ours): none (paper-literal) | align | "
                                            "align+context")]
Causal = Annotated[bool, typer.Option(help="temporal stages see only past windows (streaming)")]
Jobs = Annotated[int, typer.Option(help="runs of a sweep trained at once, in worker processes")]


def build_run_config(*, dataset, data_dir, modalities, task, protocol, folds, split, epochs, batch_size, lr,
                     missing_rate, missing_per_step, impl, backend, gpus, procs, parallel, subjects, seed,
                     router, routing, emotion_bank, align_weight, seq_len, window, stride, lag, patience,
                     max_folds, model, out, progress=True, announce=True, temporal="none", causal=False,
                     face_dir=None):
    """Validate flags (one-line errors, exit 2) and build a :class:`RunConfig`. Writes nothing."""
    from himoe_fast import HiMoEConfig
    from himoe_fast.train import DataSettings, ProtocolSettings, RunConfig, TrainSettings
    from himoe_fast.train.distributed import check_gpus

    choice(dataset, "--dataset", DATASETS)
    choice(task, "--task", TASKS)
    choice(split, "--split", SPLITS)
    choice(impl, "--impl", IMPLS)
    choice(backend, "--backend", BACKENDS)
    choice(parallel, "--parallel", PARALLEL)
    choice(router, "--router", ("dot", "cosine", "diff"))
    choice(routing, "--routing", ("soft", "uniform", "top1"))
    choice(temporal, "--temporal", TEMPORAL_MODES)
    if protocol is not None:
        choice(protocol, "--protocol", PROTOCOLS)
    from himoe_fast.baselines import BASELINES

    choice(model, "--model", ("himoe", *BASELINES))
    check_range("--missing-rate", missing_rate, 0.0, 1.0, hi_open=True)
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--seq-len", seq_len),
                        ("--subjects", subjects), ("--patience", patience), ("--max-folds", max_folds)):
        if value is not None and value < 1:
            fail(f"{flag} must be >= 1, got {value}")
    if folds < 2:
        fail(f"--folds must be >= 2 (the kfold protocol), got {folds}")
    if seed < 0:
        fail(f"--seed must be >= 0, got {seed}")
    check_range("--lr", lr, 0.0, lo_open=True)
    check_range("--align-weight", align_weight, 0.0)
    check_range("--window", window, 0.0, lo_open=True)
    check_range("--stride", stride, 0.0, lo_open=True)
    if protocol == "loso" and subjects is not None and subjects < 2:
        fail(f"--protocol loso needs at least 2 subjects, got --subjects {subjects}")
    check_out(out)
    if gpus < 0 or procs < 1:
        fail("--gpus must be >= 0 and --procs >= 1")
    if gpus and procs > 1:
        fail("use either --gpus or --procs, not both")
    if gpus:
        with user_errors():
            check_gpus(gpus)
    if impl == "fast" and model != "himoe":
        fail(f"--impl fast exists for --model himoe only (got --model {model})")

    used_quickstart = []
    if dataset == "synthetic":
        for key, flag_value in (("subjects", subjects), ("epochs", epochs), ("protocol", protocol)):
            if flag_value is None:
                used_quickstart.append(f"{key}={SYNTHETIC_QUICKSTART[key]}")
        subjects = subjects or SYNTHETIC_QUICKSTART["subjects"]
        epochs = epochs or SYNTHETIC_QUICKSTART["epochs"]
        protocol = protocol or SYNTHETIC_QUICKSTART["protocol"]
    else:
        if data_dir is None:
            fail(f"--data-dir is required for --dataset {dataset}")
        if not Path(data_dir).exists():
            fail(f"--data-dir {data_dir}: no such file or directory")
    if face_dir is not None:
        if dataset != "deap":
            fail(f"--face-dir applies to --dataset deap (synthetic data bring their own face features), "
                 f"not --dataset {dataset}")
        if not Path(face_dir).is_dir():
            fail(f"--face-dir {face_dir}: no such folder")
        epochs = epochs or PAPER_RECIPE["epochs"]
        protocol = protocol or PAPER_RECIPE["protocol"]

    mods = parse_list(modalities, "--modalities")
    overrides = dict(router=router, routing=routing, emotion_bank=emotion_bank, align_weight=align_weight,
                     task=task, window_s=window, temporal=temporal, causal=causal)
    try:
        if dataset == "dreamer":
            cfg = HiMoEConfig.dreamer(**({"modalities": mods} if mods else {}), **overrides)
        elif dataset == "recordings":       # modalities, rates and targets come from the folder
            from himoe_fast.data import recordings_config

            cfg = recordings_config(data_dir, mods, **overrides)
        else:
            cfg = HiMoEConfig.deap(**({"modalities": mods} if mods else {}), **overrides)
    except ValueError as exc:
        fail(f"--modalities: {exc}" if "modalit" in str(exc) else str(exc))
    lags = parse_lags(lag)
    unknown = sorted(set(lags) - set(cfg.modality_names))
    if unknown:
        fail(f"--lag names modalities not in use: {', '.join(unknown)}")
    if face_dir is not None and "face" not in cfg.modality_names:
        fail("--face-dir is given but --modalities does not include face")

    if announce and used_quickstart:
        typer.echo(f"synthetic quick-start: {', '.join(used_quickstart)} "
                   f"(paper recipe: --protocol kfold --epochs 75 --subjects 32)")
    return RunConfig(
        model=cfg,
        train=TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                            missing_rate=missing_rate, missing_per_step=missing_per_step, seed=seed, impl=impl,
                            backend=backend, model_name=model),
        data=DataSettings(dataset=dataset, data_dir=str(data_dir) if data_dir else None, subjects=subjects,
                          seq_len=seq_len, stride_s=stride, lags=lags, face_dir=str(face_dir) if face_dir else None),
        protocol=ProtocolSettings(protocol=protocol, folds=folds, split=split, max_folds=max_folds),
        out=str(out), gpus=gpus, procs=procs, parallel=parallel, progress=progress,
    )


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


def default_out(prefix: str, dataset: str) -> Path:
    return Path("runs") / f"{prefix}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


def register(app: typer.Typer) -> None:
    @app.command()
    def train(
        dataset: Dataset = "synthetic", data_dir: DataDir = None, face_dir: FaceDir = None,
        modalities: Modalities = None,
        task: Task = "regression", protocol: Protocol = None, folds: Folds = 10, split: Split = "trial",
        epochs: Epochs = None, batch_size: BatchSize = 32, lr: Lr = 1e-3, missing_rate: MissingRate = 0.0,
        missing_per_step: MissingPerStep = False, impl: Impl = "auto", backend: Backend = "auto",
        gpus: Gpus = 0, procs: Procs = 1, parallel: Parallel = "ddp", subjects: Subjects = None, seed: Seed = 0,
        router: Router = "dot", routing: Routing = "soft", emotion_bank: EmotionBank = True,
        align_weight: AlignWeight = 0.1, seq_len: SeqLen = 8, window: Window = 1.0, stride: Stride = None,
        lag: Lag = None, patience: Patience = 10, max_folds: MaxFolds = None, model: Model = "himoe",
        temporal: Temporal = DEFAULT_TEMPORAL, causal: Causal = False,
        out: Annotated[Optional[Path], typer.Option(help="run directory (default runs/train-<dataset>-<time>)")] = None,
        resume: Annotated[bool, typer.Option(help="continue the run in --out from its checkpoints")] = False,
        progress: Annotated[bool, typer.Option(help="live progress display")] = True,
        callback: Annotated[Optional[list[str]], typer.Option(
            help="import path module:attr of a himoe_fast.train.callbacks.TrainCallback (class or factory) "
                 "run at each fold's start, each epoch's end and each fold's end; repeatable")] = None,
    ) -> None:
        """Train Hi-MoE (one model per fold) and write config.json, metrics.json, folds.csv, checkpoints."""
        from himoe_fast.train import run_experiment
        from himoe_fast.train.experiment import load_run_config
        from himoe_fast.train.rundir import check_fresh_run, check_resumable

        if resume:
            if out is None:
                fail("--resume needs --out DIR of the run to continue")
            check_out(out)
            with user_errors():
                check_resumable(out)
                rc = load_run_config(Path(out) / "config.json", out=str(out), resume=True, progress=progress)
            typer.echo(f"resuming {out}")
        else:
            from himoe_fast.train.distributed import launched_by_torchrun

            if out is None and launched_by_torchrun():
                fail("under torchrun, pass --out DIR (one run directory shared by all ranks)")
            out = out or default_out("train", dataset)
            with user_errors():
                check_fresh_run(out)        # a folder whose earlier attempt died before a checkpoint is reused
            rc = build_run_config(
                dataset=dataset, data_dir=data_dir, modalities=modalities, task=task, protocol=protocol,
                folds=folds, split=split, epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate,
                missing_per_step=missing_per_step, impl=impl, backend=backend, gpus=gpus, procs=procs,
                parallel=parallel, subjects=subjects, seed=seed, router=router, routing=routing,
                emotion_bank=emotion_bank, align_weight=align_weight, seq_len=seq_len, window=window,
                stride=stride, lag=lag, patience=patience, max_folds=max_folds, model=model, out=out,
                progress=progress, temporal=temporal, causal=causal, face_dir=face_dir)
        if callback:
            from dataclasses import replace

            rc = replace(rc, callbacks=tuple(callback))
        with user_errors():
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
        data_dir: DataDir = None, impl: Impl = "auto",
        split: Annotated[str, typer.Option(help="test | val | train")] = "test",
        json_out: Annotated[Optional[Path], typer.Option("--json", help="write the metrics here")] = None,
    ) -> None:
        """Evaluate saved models on their folds (optionally with simulated missing modalities)."""
        from himoe_fast.io import atomic_write_json
        from himoe_fast.train.evaluate import evaluate_checkpoints

        choice(impl, "--impl", IMPLS)
        choice(split, "--split", ("test", "val", "train"))
        check_range("--missing-rate", missing_rate, 0.0, 1.0, hi_open=True)
        if seed is not None and seed < 0:
            fail(f"--seed must be >= 0, got {seed}")
        if not path.exists():
            fail(f"{path}: no such run directory or checkpoint")
        check_output_file(json_out, "--json")        # before the work, not after the table is printed
        with user_errors():
            metrics = evaluate_checkpoints(path, missing_rate=missing_rate, seed=seed, data_dir=data_dir,
                                           impl=impl, split=split)
        print_metrics(metrics, f"eval {path} ({split}, missing rate "
                               f"{'as trained' if missing_rate is None else missing_rate})")
        if json_out:
            atomic_write_json(json_out, metrics)

    @app.command()
    def robustness(
        models: Annotated[str, typer.Option(help="comma-separated models to compare: himoe, himoe_paper (temporal "
                                                  "none), late_fusion, bilstm, tacoformer, ianet")] = "himoe",
        rates: Annotated[Optional[str], typer.Option(help="comma-separated missing rates (default 0.00..0.40 step 0.05)")] = None,
        seeds: Annotated[Optional[str], typer.Option(help="comma-separated seeds (default 0,1,2,3,4)")] = None,
        dataset: Dataset = "synthetic", data_dir: DataDir = None, modalities: Modalities = None,
        protocol: Protocol = None, folds: Folds = 10, split: Split = "trial", epochs: Epochs = None,
        batch_size: BatchSize = 32, lr: Lr = 1e-3, missing_per_step: MissingPerStep = False,
        impl: Annotated[str, typer.Option(help="auto | reference | fast (fast applies to himoe; baselines run "
                                                "reference)")] = "auto",
        gpus: Gpus = 0, procs: Procs = 1, subjects: Subjects = None, seq_len: SeqLen = 8, stride: Stride = None,
        patience: Patience = 10, max_folds: MaxFolds = None, temporal: Temporal = DEFAULT_TEMPORAL,
        causal: Causal = False, jobs: Jobs = 1,
        out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/robustness-<dataset>-<time>)")] = None,
        resume: Annotated[bool, typer.Option(help="skip runs already finished in --out")] = False,
    ) -> None:
        """Missing-rate sweep (paper Table 3 / Fig. 3): robustness.csv, a table and robustness.png."""
        from rich.console import Console
        from rich.table import Table

        from himoe_fast.plots import robustness_summary
        from himoe_fast.train.sweeps import DEFAULT_RATES, DEFAULT_SEEDS, SWEEP_MODELS, robustness_sweep

        model_list = parse_list(models, "--models")
        for m in model_list:
            choice(m, "--models", SWEEP_MODELS)
        rate_list = parse_list(rates, "--rates", float) or list(DEFAULT_RATES)
        seed_list = parse_list(seeds, "--seeds", int) or list(DEFAULT_SEEDS)
        if min(seed_list) < 0:
            fail(f"--seeds must be >= 0, got {min(seed_list)}")
        if jobs < 1:
            fail(f"--jobs must be >= 1, got {jobs}")
        for r in rate_list:
            if not 0.0 <= r < 1.0:
                fail(f"--rates: every rate must be in [0, 1), got {r}")
        out = out or default_out("robustness", dataset)
        base = build_run_config(
            dataset=dataset, data_dir=data_dir, modalities=modalities, task="regression", protocol=protocol,
            folds=folds, split=split, epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=0.0,
            missing_per_step=missing_per_step, impl=impl, backend="auto", gpus=gpus, procs=procs, parallel="ddp",
            subjects=subjects, seed=0, router="dot", routing="soft", emotion_bank=True, align_weight=0.1,
            seq_len=seq_len, window=1.0, stride=stride, lag=None, patience=patience, max_folds=max_folds,
            model="himoe", out=out, temporal=temporal, causal=causal)   # the sweep sets the model of each run
        total = len(model_list) * len(rate_list) * len(seed_list)
        with user_errors(), sweep_progress("robustness sweep", total) as advance:
            rows = robustness_sweep(base, model_list, rate_list, seed_list, out, resume=resume, jobs=jobs,
                                    on_result=lambda row: advance(f"{row['model']} r={row['rate']:.2f} "
                                                                  f"seed={row['seed']}: CCC {row['ccc_mean']:.3f}"))
        summary = robustness_summary(rows)
        title = "CCC vs missing-modality rate (mean over seeds; cf. paper Table 3)"
        table = Table(title=title, min_width=len(title))   # keep the title on one line
        table.add_column("Missing Rate (r)")
        rates_sorted = sorted({round(float(r), 4) for r in rate_list})
        for r in rates_sorted:
            table.add_column(f"{r:.2f}", justify="right")
        for m, per in summary.items():
            table.add_row(m, *[f"{per[r][0]:.4f}" if r in per else "-" for r in rates_sorted])
        Console().print(table)
        typer.echo(f"wrote {out}/robustness.csv and {out}/robustness.png")

    @app.command()
    def synth(
        kind: Annotated[str, typer.Option(help="deap | dreamer | recordings")] = "deap",
        subjects: Annotated[int, typer.Option(help="number of subjects to write")] = 4,
        seed: Annotated[int, typer.Option(help="generator seed")] = 0,
        out: Annotated[Path, typer.Option(help="DEAP, recordings: output folder; DREAMER: output .mat path")] = Path("synthetic"),
        face_dir: Annotated[Optional[Path], typer.Option(help="DEAP: also write face features (sNN_face.npz) "
                                                              "into this folder")] = None,
    ) -> None:
        """Write synthetic data in the exact DEAP / DREAMER file formats."""
        from himoe_fast.data import write_synthetic_deap, write_synthetic_dreamer

        choice(kind, "--kind", ("deap", "dreamer", "recordings"))
        if seed < 0:
            fail(f"--seed must be >= 0, got {seed}")
        if face_dir is not None and kind != "deap":
            fail("--face-dir applies to --kind deap")
        if kind == "recordings":          # own layout: several MNE files per recording, continuous ratings
            from himoe_fast.data import write_synthetic_recordings

            if subjects < 1:
                fail(f"--subjects must be >= 1, got {subjects}")
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                fail(f"--out {out}: already exists and is not an empty folder")
            with user_errors():
                path = write_synthetic_recordings(out, subjects, seed)
            typer.echo(f"wrote synthetic recordings ({subjects} subjects, seed {seed}) to {path}")
            return
        if subjects < 1:
            fail(f"--subjects must be >= 1, got {subjects}")
        target = out / "DREAMER.mat" if kind == "dreamer" and out.suffix != ".mat" else out
        if kind == "deap" or target != out:
            check_out(out)
        check_output_file(target if kind == "dreamer" else None, "--out")
        check_out(face_dir, "--face-dir")
        with user_errors():
            if kind == "deap":
                path = write_synthetic_deap(out, subjects, seed, face_dir=face_dir)
            else:
                path = write_synthetic_dreamer(target, subjects, seed)
        typer.echo(f"wrote synthetic {kind.upper()} ({subjects} subjects, seed {seed}) to {path}")

    @app.command()
    def doctor() -> None:
        """Show torch, triton, CUDA/GPUs, the C++ extension's build status and MNE."""
        import platform

        import torch
        from rich.console import Console
        from rich.table import Table

        table = Table(title="himoe-fast doctor", show_header=False)
        table.add_row("python", platform.python_version())
        table.add_row("torch", f"{torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
        if torch.cuda.is_available():
            gpus = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
            table.add_row("GPUs", f"{torch.cuda.device_count()}: {gpus}")
        else:
            table.add_row("GPUs", "none visible (Triton kernels run only under TRITON_INTERPRET=1)")
        try:
            import triton

            table.add_row("triton", triton.__version__)
        except Exception as exc:  # noqa: BLE001 - report whatever went wrong
            table.add_row("triton", f"unavailable ({type(exc).__name__}: {exc})")
        try:
            from himoe_fast.ops import ext

            status = ext.build_status()
            table.add_row("NT-Xent extension", ", ".join(f"{k}={v}" for k, v in status.items()))
        except Exception as exc:  # noqa: BLE001
            table.add_row("NT-Xent extension", f"unavailable ({type(exc).__name__}: {exc})")
        try:
            import mne

            table.add_row("mne", mne.__version__)
        except Exception as exc:  # noqa: BLE001
            table.add_row("mne", f"unavailable ({exc})")
        table.add_row("threads", str(torch.get_num_threads()))
        Console().print(table)
