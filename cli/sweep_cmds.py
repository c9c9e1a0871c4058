"""The sweeps behind the paper's tables and ours: ``himoe-fast robustness`` (Table 3, Fig. 3),
``ablate`` (Table 6, Fig. 4b), ``asynchrony`` (every model under injected lags) and ``compare``
(every model on every modality set: Tables 2, 4, 5).

Each trains many runs through :mod:`himoe_fast.train.sweeps` / :mod:`himoe_fast.train.asynchrony`,
shows one progress step per finished run and prints the summary table; the library writes the CSVs
and plots.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from himoe_fast.config import HiMoEConfig
from himoe_fast.train import DataSettings, ProtocolSettings, RunConfig, TrainSettings
from himoe_fast.train.asynchrony import DEFAULT_LAGGED, DEFAULT_LAGS, RANDOM
from himoe_fast.train.sweeps import DEFAULT_EXPERT_COUNTS, SWEEP_MODELS

from . import choices as ch
from . import options as opt
from .common import check_min, check_range, parse_choices, parse_list, parse_seeds
from .errors import fail
from .run_config import build_run_config, default_out

app = typer.Typer()


def _progress(description: str, total: int):
    """One step per finished run; on a terminal a live bar, in logs one line ``[i/total] <run>`` each."""
    from himoe_fast.progress import Reporter

    return Reporter(description, total, every_s=0)


@app.command()
def robustness(
    models: opt.SweepModels = "himoe",
    rates: Annotated[Optional[str], typer.Option(help="comma-separated missing rates (default 0.00..0.40 step 0.05)")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="comma-separated seeds (default 0,1,2,3,4)")] = None,
    dataset: opt.Dataset = ch.Dataset(DataSettings.dataset), data_dir: opt.DataDir = None,
    modalities: opt.Modalities = None, protocol: opt.Protocol = None, folds: opt.Folds = ProtocolSettings.folds,
    split: opt.Split = ch.Split(ProtocolSettings.split), epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = TrainSettings.batch_size, lr: opt.Lr = TrainSettings.lr,
    missing_per_step: opt.MissingPerStep = TrainSettings.missing_per_step, impl: opt.SweepImpl = opt.DEFAULT_IMPL,
    gpus: opt.Gpus = RunConfig.gpus, procs: opt.Procs = RunConfig.procs, subjects: opt.Subjects = None,
    seq_len: opt.SeqLen = DataSettings.seq_len, stride: opt.Stride = None,
    patience: opt.Patience = TrainSettings.patience, max_folds: opt.MaxFolds = None,
    temporal: opt.Temporal = opt.DEFAULT_TEMPORAL, causal: opt.Causal = HiMoEConfig.causal, jobs: opt.Jobs = 1,
    expert_init: opt.ExpertInit = ch.ExpertInit(HiMoEConfig.expert_init),
    face_dir: opt.FaceDir = None,
    out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/robustness-<dataset>-<time>)")] = None,
    resume: opt.SweepResume = False,
) -> None:
    """Missing-rate sweep (paper Table 3 / Fig. 3): robustness.csv, a table and robustness.png."""
    from rich.console import Console
    from rich.table import Table

    from himoe_fast.plots import robustness_summary
    from himoe_fast.train.sweeps import DEFAULT_RATES, DEFAULT_SEEDS, robustness_sweep

    model_list = parse_choices(models, "--models", SWEEP_MODELS)
    rate_list = parse_list(rates, "--rates", float) or list(DEFAULT_RATES)
    seed_list = parse_seeds(seeds) or list(DEFAULT_SEEDS)
    check_min("--jobs", jobs)
    for r in rate_list:
        if not 0.0 <= r < 1.0:
            fail(f"--rates: every rate must be in [0, 1), got {r}")
    out = out or default_out("robustness", dataset)
    base = build_run_config(          # the sweep sets the model and missing rate of each run
        dataset=dataset, data_dir=data_dir, modalities=modalities, protocol=protocol, folds=folds, split=split,
        epochs=epochs, batch_size=batch_size, lr=lr, missing_per_step=missing_per_step, impl=impl, gpus=gpus,
        procs=procs, subjects=subjects, seq_len=seq_len, stride=stride, patience=patience, max_folds=max_folds,
        out=out, temporal=temporal, causal=causal, face_dir=face_dir, expert_init=expert_init)
    total = len(model_list) * len(rate_list) * len(seed_list)
    with _progress("robustness sweep", total) as rep:
        rows = robustness_sweep(base, model_list, rate_list, seed_list, out, resume=resume, jobs=jobs,
                                on_result=lambda row: rep.advance(description=f"{row['model']} r={row['rate']:.2f} "
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
def ablate(
    seeds: opt.SweepSeeds = "0",
    expert_counts: Annotated[Optional[str], typer.Option(help="emotion-expert counts for Fig. 4b ('' to skip)")] = ",".join(
        map(str, DEFAULT_EXPERT_COUNTS)),
    dataset: opt.Dataset = ch.Dataset(DataSettings.dataset), data_dir: opt.DataDir = None,
    modalities: opt.Modalities = None, protocol: opt.Protocol = None, folds: opt.Folds = ProtocolSettings.folds,
    split: opt.Split = ch.Split(ProtocolSettings.split), epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = TrainSettings.batch_size, lr: opt.Lr = TrainSettings.lr,
    missing_rate: opt.MissingRate = TrainSettings.missing_rate, impl: opt.Impl = opt.DEFAULT_IMPL,
    procs: opt.Procs = RunConfig.procs, subjects: opt.Subjects = None, seq_len: opt.SeqLen = DataSettings.seq_len,
    stride: opt.Stride = None, patience: opt.Patience = TrainSettings.patience, max_folds: opt.MaxFolds = None,
    temporal: opt.Temporal = opt.DEFAULT_TEMPORAL, causal: opt.Causal = HiMoEConfig.causal, jobs: opt.Jobs = 1,
    expert_init: opt.ExpertInit = ch.ExpertInit(HiMoEConfig.expert_init),
    face_dir: opt.FaceDir = None,
    out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/ablate-<dataset>-<time>)")] = None,
    resume: opt.SweepResume = False,
) -> None:
    """Ablations (Table 6: full vs w/o emotion bank, alignment, soft routing) and the expert-count sweep."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from himoe_fast.train.sweeps import ABLATIONS, ablation_sweep

    seed_list = parse_seeds(seeds)
    counts = parse_list(expert_counts, "--expert-counts", int) if expert_counts else []
    if any(c < 1 for c in counts):
        fail("--expert-counts must be >= 1")
    out = out or default_out("ablate", dataset)
    base = build_run_config(
        dataset=dataset, data_dir=data_dir, modalities=modalities, protocol=protocol, folds=folds, split=split,
        epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate, impl=impl, procs=procs,
        subjects=subjects, seq_len=seq_len, stride=stride, patience=patience, max_folds=max_folds, out=out,
        temporal=temporal, causal=causal, face_dir=face_dir, expert_init=expert_init)
    check_min("--jobs", jobs)
    total = (len(ABLATIONS) + len(counts)) * len(seed_list)
    with _progress("ablations", total) as rep:
        rows, count_rows = ablation_sweep(base, seed_list, out, expert_counts=counts, resume=resume, jobs=jobs,
                                          on_result=lambda message: rep.advance(description=message))
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
def asynchrony(
    models: opt.SweepModels = ",".join(SWEEP_MODELS),
    lags: Annotated[str, typer.Option(help="comma-separated lag settings: seconds, or 'random' (per subject, "
                                           "uniform in [0, --random-max])")] = ",".join(DEFAULT_LAGS),
    lagged: Annotated[str, typer.Option(help="modalities the lag is applied to")] = ",".join(DEFAULT_LAGGED),
    random_max: Annotated[float, typer.Option(help="largest per-subject random lag, seconds")] = 6.0,
    seeds: opt.SweepSeeds = "0,1,2",
    dataset: opt.Dataset = ch.Dataset(DataSettings.dataset), data_dir: opt.DataDir = None,
    modalities: opt.Modalities = None, protocol: opt.Protocol = None, folds: opt.Folds = ProtocolSettings.folds,
    split: opt.Split = ch.Split(ProtocolSettings.split), epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = TrainSettings.batch_size, lr: opt.Lr = TrainSettings.lr,
    missing_rate: opt.MissingRate = TrainSettings.missing_rate, impl: opt.SweepImpl = opt.DEFAULT_IMPL,
    subjects: opt.Subjects = None, seq_len: opt.SeqLen = DataSettings.seq_len, stride: opt.Stride = None,
    patience: opt.Patience = TrainSettings.patience, max_folds: opt.MaxFolds = None,
    temporal: opt.Temporal = opt.DEFAULT_TEMPORAL, causal: opt.Causal = HiMoEConfig.causal, jobs: opt.Jobs = 1,
    expert_init: opt.ExpertInit = ch.ExpertInit(HiMoEConfig.expert_init),
    face_dir: opt.FaceDir = None,
    out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/asynchrony-<dataset>-<time>)")] = None,
    resume: opt.SweepResume = False,
) -> None:
    """Asynchrony benchmark: CCC of every model against injected lags, and the delay Hi-MoE learned."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from himoe_fast.train.asynchrony import asynchrony_summary, asynchrony_sweep, lag_label

    model_list = parse_choices(models, "--models", SWEEP_MODELS)
    lag_list = parse_list(lags, "--lags")
    for lag in lag_list:
        if lag != RANDOM:
            try:
                value = float(lag)
            except ValueError:
                fail(f"--lags: {lag!r} is neither a number of seconds nor 'random'")
            check_range("--lags", value, 0.0)
    check_range("--random-max", random_max, 0.0)
    seed_list = parse_seeds(seeds)
    check_min("--jobs", jobs)
    lagged_list = parse_list(lagged, "--lagged")
    out = out or default_out("asynchrony", dataset)
    base = build_run_config(
        dataset=dataset, data_dir=data_dir, modalities=modalities, protocol=protocol, folds=folds, split=split,
        epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate, impl=impl, subjects=subjects,
        seq_len=seq_len, stride=stride, patience=patience, max_folds=max_folds, out=out, temporal=temporal,
        causal=causal, face_dir=face_dir, expert_init=expert_init)
    unknown = sorted(set(lagged_list) - set(base.model.modality_names))
    if unknown:
        fail(f"--lagged names modalities not in use: {', '.join(unknown)}")
    if len(lagged_list) == base.model.n_modalities:
        fail("--lagged: leave at least one modality unlagged (the reference the lags are measured against)")
    total = len(model_list) * len(lag_list) * len(seed_list)
    with _progress("asynchrony sweep", total) as rep:
        rows, delay_rows = asynchrony_sweep(
            base, model_list, lag_list, seed_list, out, lagged=lagged_list, random_max=random_max,
            resume=resume, jobs=jobs,
            on_result=lambda r: rep.advance(description=f"{r['model']} lag={r['lag']} seed={r['seed']}: "
                                                        f"CCC {r['ccc_mean']:.3f}"))
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


ALL_MODELS = ",".join(SWEEP_MODELS)


@app.command()
def compare(
    modality_sets: Annotated[str, typer.Option(
        help="';'-separated modality sets, each comma-separated; one table row group each "
             "(paper Table 2: 'eeg,pps;eeg,pps,face;eeg,eog,emg,gsr')")] = "eeg,pps",
    models: Annotated[str, typer.Option(help=f"comma-separated, from {ALL_MODELS}")] = ALL_MODELS,
    seeds: opt.SweepSeeds = "0",
    dataset: opt.Dataset = ch.Dataset(DataSettings.dataset), data_dir: opt.DataDir = None,
    face_dir: opt.FaceDir = None, task: opt.Task = ch.Task(HiMoEConfig.task),
    protocol: opt.Protocol = None, folds: opt.Folds = ProtocolSettings.folds,
    split: opt.Split = ch.Split(ProtocolSettings.split), epochs: opt.Epochs = None,
    batch_size: opt.BatchSize = TrainSettings.batch_size, lr: opt.Lr = TrainSettings.lr,
    missing_rate: opt.MissingRate = TrainSettings.missing_rate, impl: opt.SweepImpl = opt.DEFAULT_IMPL,
    subjects: opt.Subjects = None, seq_len: opt.SeqLen = DataSettings.seq_len, stride: opt.Stride = None,
    patience: opt.Patience = TrainSettings.patience, max_folds: opt.MaxFolds = None,
    temporal: opt.Temporal = opt.DEFAULT_TEMPORAL, causal: opt.Causal = HiMoEConfig.causal, jobs: opt.Jobs = 1,
    expert_init: opt.ExpertInit = ch.ExpertInit(HiMoEConfig.expert_init),
    out: Annotated[Optional[Path], typer.Option(help="sweep directory (default runs/compare-<dataset>-<time>)")] = None,
    resume: opt.SweepResume = False,
) -> None:
    """Every model on every modality set (paper Tables 2, 4, 5; Fig. 2): compare.csv, compare.md, trajectories.png."""
    from rich.console import Console
    from rich.markdown import Markdown

    from himoe_fast.train.compare import compare_sweep

    model_list = parse_choices(models, "--models", SWEEP_MODELS)
    seed_list = parse_seeds(seeds)
    check_min("--jobs", jobs)
    sets = [s.strip() for s in modality_sets.split(";") if s.strip()]
    if not sets:
        fail("--modality-sets: give at least one modality set, e.g. eeg,pps")
    if face_dir is not None and not any("face" in parse_list(mods, "--modality-sets") for mods in sets):
        fail("--face-dir is given but --modalities does not include face (in no --modality-sets)")
    out = out or default_out("compare", dataset)
    settings = {}
    for mods in sets:
        name = "+".join(m.strip().upper() if len(m.strip()) <= 3 else m.strip().capitalize()
                        for m in mods.split(",") if m.strip())
        if name in settings:
            fail(f"--modality-sets: {mods!r} appears twice")
        settings[name] = build_run_config(
            dataset=dataset, data_dir=data_dir, modalities=mods, task=task, protocol=protocol, folds=folds,
            split=split, epochs=epochs, batch_size=batch_size, lr=lr, missing_rate=missing_rate, impl=impl,
            subjects=subjects, seq_len=seq_len, stride=stride, patience=patience, max_folds=max_folds, out=out,
            temporal=temporal, causal=causal, face_dir=face_dir if "face" in mods else None, expert_init=expert_init,
            announce=len(settings) == 0)
    total = len(settings) * len(model_list) * len(seed_list)
    metric = "acc" if ch.plain(task) == "binary" else "ccc"
    with _progress("model comparison", total) as rep:
        compare_sweep(settings, model_list, seed_list, out, resume=resume, jobs=jobs,
                      on_result=lambda row: rep.advance(description=f"{row['setting']} {row['model']} seed={row['seed']}: "
                                                                    f"{metric.upper()} {row[metric]:.3f}"))
    Console().print(Markdown((out / "compare.md").read_text()))
    typer.echo(f"wrote {out}/compare.csv, {out}/compare.md and {out}/trajectories.png")
