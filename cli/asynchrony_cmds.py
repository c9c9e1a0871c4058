"""``himoe-fast asynchrony``: every model under injected lags (CSV, table, two plots)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from himoe_fast.train.asynchrony import DEFAULT_LAGGED, DEFAULT_LAGS

from .common import check_range, choice, fail, parse_list, sweep_progress, user_errors
from .train_cmds import (DEFAULT_TEMPORAL, BatchSize, Causal, DataDir, Dataset, Epochs, Folds, Jobs, Lr,
                         MaxFolds, MissingRate, Modalities, Patience, Protocol, SeqLen, Split, Stride, Subjects,
                         Temporal, build_run_config, default_out)


def register(app: typer.Typer) -> None:
    @app.command()
    def asynchrony(
        models: Annotated[str, typer.Option(help="comma-separated: himoe, himoe_paper (temporal none), late_fusion, "
                                                  "bilstm, tacoformer, ianet")] = "himoe,himoe_paper,late_fusion,bilstm,tacoformer,ianet",
        lags: Annotated[str, typer.Option(help="comma-separated lag settings: seconds, or 'random' (per subject, "
                                                "uniform in [0, --random-max])")] = ",".join(DEFAULT_LAGS),
        lagged: Annotated[str, typer.Option(help="modalities the lag is applied to")] = ",".join(DEFAULT_LAGGED),
        random_max: Annotated[float, typer.Option(help="largest per-subject random lag, seconds")] = 6.0,
        seeds: Annotated[str, typer.Option(help="comma-separated seeds")] = "0,1,2",
        dataset: Dataset = "synthetic", data_dir: DataDir = None, modalities: Modalities = None,
        protocol: Protocol = None, folds: Folds = 10, split: Split = "trial", epochs: Epochs = None,
        batch_size: BatchSize = 32, lr: Lr = 1e-3, missing_rate: MissingRate = 0.0,
        impl: Annotated[str, typer.Option(help="auto | reference | fast (applies to himoe; baselines run "
                                                "reference)")] = "auto",
        subjects: Subjects = None, seq_len: SeqLen = 8, stride: Stride = None, patience: Patience = 10,
        max_folds: MaxFolds = None, temporal: Temporal = DEFAULT_TEMPORAL, causal: Causal = False, jobs: Jobs = 1,
        out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/asynchrony-<dataset>-<time>)")] = None,
        resume: Annotated[bool, typer.Option(help="skip runs already finished in --out")] = False,
    ) -> None:
        """Asynchrony benchmark: CCC of every model against injected lags, and the delay Hi-MoE learned."""
        import numpy as np
        from rich.console import Console
        from rich.table import Table

        from himoe_fast.train.asynchrony import RANDOM, asynchrony_summary, asynchrony_sweep, lag_label
        from himoe_fast.train.sweeps import SWEEP_MODELS

        model_list = parse_list(models, "--models")
        for m in model_list:
            choice(m, "--models", SWEEP_MODELS)
        lag_list = parse_list(lags, "--lags")
        for lag in lag_list:
            if lag != RANDOM:
                try:
                    value = float(lag)
                except ValueError:
                    fail(f"--lags: {lag!r} is neither a number of seconds nor 'random'")
                check_range("--lags", value, 0.0)
        check_range("--random-max", random_max, 0.0)
        seed_list = parse_list(seeds, "--seeds", int)
        if min(seed_list) < 0:
            fail(f"--seeds must be >= 0, got {min(seed_list)}")
        if jobs < 1:
            fail(f"--jobs must be >= 1, got {jobs}")
        lagged_list = parse_list(lagged, "--lagged")
        out = out or default_out("asynchrony", dataset)
        base = build_run_config(
            dataset=dataset, data_dir=data_dir, modalities=modalities, task="regression", protocol=protocol,
            folds=folds, split=split, epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate,
            missing_per_step=False, impl=impl, backend="auto", gpus=0, procs=1, parallel="ddp",
            subjects=subjects, seed=0, router="dot", routing="soft", emotion_bank=True, align_weight=0.1,
            seq_len=seq_len, window=1.0, stride=stride, lag=None, patience=patience, max_folds=max_folds,
            model="himoe", out=out, temporal=temporal, causal=causal)
        unknown = sorted(set(lagged_list) - set(base.model.modality_names))
        if unknown:
            fail(f"--lagged names modalities not in use: {', '.join(unknown)}")
        if len(lagged_list) == base.model.n_modalities:
            fail("--lagged: leave at least one modality unlagged (the reference the lags are measured against)")
        total = len(model_list) * len(lag_list) * len(seed_list)
        with user_errors(), sweep_progress("asynchrony sweep", total) as advance:
            rows, delay_rows = asynchrony_sweep(
                base, model_list, lag_list, seed_list, out, lagged=lagged_list, random_max=random_max,
                resume=resume, jobs=jobs,
                on_result=lambda r: advance(f"{r['model']} lag={r['lag']} seed={r['seed']}: CCC {r['ccc_mean']:.3f}"))
        settings = [lag_label(x) for x in lag_list]
        fixed = [s for s in settings if s != RANDOM]
        first, last = (fixed[0], fixed[-1]) if len(fixed) >= 2 else (None, None)
        title = f"CCC vs injected lag of {', '.join(lagged_list)} (mean over {len(seed_list)} seeds)"
        table = Table(title=title, min_width=len(title))
        table.add_column("model", no_wrap=True)
        for s in settings:
            table.add_column(f"{s} s" if s != RANDOM else s, justify="right")
        if first is not None:
            table.add_column(f"loss {first}->{last} s", justify="right", no_wrap=True)
        for m, per in asynchrony_summary(rows).items():
            cells = [f"{per[s][0]:.4f}" if s in per else "-" for s in settings]
            if first is not None:
                cells.append(f"{per[first][0] - per[last][0]:+.4f}" if first in per and last in per else "-")
            table.add_row(m, *cells)
        console = Console()
        console.print(table)
        if delay_rows:
            t2 = Table(title="Learned delay relative to the reference modality (s, mean over seeds)")
            t2.add_column("model", no_wrap=True)
            t2.add_column("modality")
            for s in settings:
                t2.add_column(s, justify="right")
            for m in dict.fromkeys(r["model"] for r in delay_rows):
                for mod in lagged_list:
                    cells = []
                    for s in settings:
                        v = [r["learned_rel_s"] for r in delay_rows if r["model"] == m and r["modality"] == mod
                             and r["lag"] == s]
                        cells.append(f"{np.mean(v):.2f}" if v else "-")
                    t2.add_row(m, mod, *cells)
            console.print(t2)
        typer.echo(f"wrote {out}/asynchrony.csv, {out}/asynchrony.png"
                   + (f", {out}/learned_delays.csv, {out}/learned_delay.png" if delay_rows else ""))
