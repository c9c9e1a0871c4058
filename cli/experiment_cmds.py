"""``himoe-fast ablate`` (paper Table 6, Fig. 4b) and ``himoe-fast plots`` (Fig. 2, Fig. 4a)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import check_range, fail, parse_list, sweep_progress, user_errors
from .train_cmds import (DEFAULT_TEMPORAL, BatchSize, Causal, DataDir, Dataset, Epochs, Folds, Impl, Lr, MaxFolds,
                         MissingRate, Modalities, Patience, Procs, Protocol, SeqLen, Split, Stride, Subjects, Temporal,
                         build_run_config, default_out)


def register(app: typer.Typer) -> None:
    @app.command()
    def ablate(
        seeds: Annotated[Optional[str], typer.Option(help="comma-separated seeds")] = "0",
        expert_counts: Annotated[Optional[str], typer.Option(help="emotion-expert counts for Fig. 4b ('' to skip)")] = "1,2,4,8,16",
        dataset: Dataset = "synthetic", data_dir: DataDir = None, modalities: Modalities = None,
        protocol: Protocol = None, folds: Folds = 10, split: Split = "trial", epochs: Epochs = None,
        batch_size: BatchSize = 32, lr: Lr = 1e-3, missing_rate: MissingRate = 0.0, impl: Impl = "auto",
        procs: Procs = 1,
        subjects: Subjects = None, seq_len: SeqLen = 8, stride: Stride = None, patience: Patience = 10,
        max_folds: MaxFolds = None, temporal: Temporal = DEFAULT_TEMPORAL, causal: Causal = False,
        out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/ablate-<dataset>-<time>)")] = None,
        resume: Annotated[bool, typer.Option(help="skip runs already finished in --out")] = False,
    ) -> None:
        """Ablations (Table 6: full vs w/o emotion bank, alignment, soft routing) and the expert-count sweep."""
        import numpy as np
        from rich.console import Console
        from rich.table import Table

        from himoe_fast.train.sweeps import ABLATIONS, ablation_sweep

        seed_list = parse_list(seeds, "--seeds", int)
        if min(seed_list) < 0:
            fail(f"--seeds must be >= 0, got {min(seed_list)}")
        counts = parse_list(expert_counts, "--expert-counts", int) if expert_counts else []
        if any(c < 1 for c in counts):
            fail("--expert-counts must be >= 1")
        out = out or default_out("ablate", dataset)
        base = build_run_config(
            dataset=dataset, data_dir=data_dir, modalities=modalities, task="regression", protocol=protocol,
            folds=folds, split=split, epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate,
            missing_per_step=False, impl=impl, backend="auto", gpus=0, procs=procs, parallel="ddp",
            subjects=subjects, seed=0, router="dot", routing="soft", emotion_bank=True, align_weight=0.1,
            seq_len=seq_len, window=1.0, stride=stride, lag=None, patience=patience, max_folds=max_folds,
            model="himoe", out=out, temporal=temporal, causal=causal)
        total = (len(ABLATIONS) + len(counts)) * len(seed_list)
        with user_errors(), sweep_progress("ablations", total) as advance:
            rows, count_rows = ablation_sweep(base, seed_list, out, expert_counts=counts, resume=resume,
                                              on_result=advance)
        title = "Ablation: overall average performance (cf. paper Table 6)"
        table = Table(title=title, min_width=len(title))   # keep the title on one line
        for col in ("Module Setting", "CCC", "PCC", "MAE", "CCC sd over seeds"):
            table.add_column(col, justify="left" if col == "Module Setting" else "right")
        for variant in ABLATIONS:
            sel = [r for r in rows if r["variant"] == variant]
            table.add_row(variant, *[f"{np.mean([r[k] for r in sel]):.4f}" for k in ("ccc_mean", "pcc_mean", "mae_mean")],
                          f"{np.std([r['ccc_mean'] for r in sel]):.4f}")
        console = Console()
        console.print(table)
        if count_rows:
            t2 = Table(title="Emotion expert count (cf. paper Fig. 4b)", min_width=40)
            t2.add_column("L")
            t2.add_column("CCC", justify="right")
            for L in counts:
                t2.add_row(str(L), f"{np.mean([r['ccc_mean'] for r in count_rows if r['experts'] == L]):.4f}")
            console.print(t2)
        typer.echo(f"wrote {out}/ablation.csv" + (f", {out}/expert_count.csv, {out}/expert_count.png" if counts else ""))

    @app.command()
    def plots(
        run: Annotated[Path, typer.Argument(help="a run directory written by `himoe-fast train`")],
        fold: Annotated[Optional[str], typer.Option(help="fold name (default: the first)")] = None,
        subject: Annotated[Optional[int], typer.Option(help="subject for the trajectory plot")] = None,
        missing_rate: Annotated[float, typer.Option(help="missing rate for the routing heatmap")] = 0.3,
        patterns: Annotated[int, typer.Option(help="most frequent presence patterns in the heatmap")] = 16,
    ) -> None:
        """Trajectories (Fig. 2) and routing weights per presence pattern (Fig. 4a) of a trained run."""
        from himoe_fast.analysis import routing_by_pattern, subject_trajectory
        from himoe_fast.errors import CheckpointError
        from himoe_fast.plots import plot_routing_heatmap, plot_trajectories
        from himoe_fast.train.checkpoint import load_model
        from himoe_fast.train.experiment import RunConfig, build_splits, load_data

        check_range("--missing-rate", missing_rate, 0.0, 1.0, hi_open=True)
        if patterns < 1:
            fail(f"--patterns must be >= 1, got {patterns}")
        fold_dirs = sorted(run.glob("folds/*")) if run.is_dir() else []
        if fold is not None:
            fold_dirs = [d for d in fold_dirs if d.name == fold]
        fold_dirs = [d for d in fold_dirs if (d / "model.pt").exists() and (d / "predictions.npz").exists()]
        if not fold_dirs:
            fail(f"{run}: no finished fold (folds/*/model.pt and predictions.npz) to plot")
        fd = fold_dirs[0]
        with user_errors():
            pred, true, subj = subject_trajectory(fd / "predictions.npz", subject)
            model, cfg, extra = load_model(fd / "model.pt")
            if not hasattr(model, "modality_bank"):
                fail(f"{fd}: routing heatmap needs a Hi-MoE model, this is {extra.get('model_name')}")
            rc = RunConfig.from_stored(extra.get("run_config"), fd / "model.pt", progress=False)
            data = load_data(rc, progress=False)
            splits = build_splits(rc, data)
            fold_index = extra.get("fold", 0)
            if not (isinstance(fold_index, int) and 0 <= fold_index < len(splits)):
                raise CheckpointError(fd / "model.pt", f"its fold number {fold_index!r} is not a fold of its run")
            split = splits[fold_index]
            p1 = plot_trajectories(pred, true, cfg.targets, run / "trajectories.png",
                                   title=f"Subject {subj}: predicted vs true ({fd.name})", window_s=cfg.window_s)
            names, weights, counts = routing_by_pattern(model, data, split.test, missing_rate=missing_rate,
                                                        seed=rc.train.seed)
            p2 = plot_routing_heatmap(names[:patterns], weights[:patterns], cfg.modality_names,
                                      run / "routing_heatmap.png", counts[:patterns])
        typer.echo(f"wrote {p1} and {p2}")
