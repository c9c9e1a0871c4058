"""``himoe-fast predict`` (new recordings, offline) and ``himoe-fast stream`` (live, LSL or replay)."""

from __future__ import annotations

import importlib
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer

from . import choices as ch
from . import options as opt
from .common import check_min
from .errors import fail

app = typer.Typer()


def _load(model: Path, fold: Optional[str], impl: ch.LoadedImpl, device: str, seq_len: Optional[int] = None):
    """The models under ``model`` (a run folder's folds or one model.pt) on ``device``."""
    from himoe_fast.predict import load_models

    if not model.exists():
        fail(f"{model}: no such run folder or model file")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail(f"--device {device}: no CUDA GPU is visible")
    try:
        return load_models(model, fold, impl=impl.value, device=device, seq_len=seq_len)
    except ValueError as exc:       # documented: an unknown fold, or folds that cannot be ensembled
        fail(exc)


@app.command()
def predict(
    model: opt.ModelArg,
    data: Annotated[Path, typer.Argument(help="DEAP folder, DREAMER.mat or a recordings folder (labels not needed)")],
    out: Annotated[Path, typer.Option(help="output folder (must not exist or be empty)")],
    fold: opt.Fold = None,
    dataset: Annotated[ch.PredictDataset, typer.Option(help="the data's file format (auto: tell from the files)")] = (
        ch.PredictDataset.auto),
    mode: Annotated[ch.PredictMode, typer.Option(help="causal: window t sees windows t-T+1..t (equals streaming); "
                                                      "blocks: sequences of T as in evaluation")] = ch.PredictMode.causal,
    preprocessing: Annotated[ch.Preprocessing, typer.Option(
        help="offline: the training pipeline (zero-phase filters, per-subject z-score); online: the stream's causal "
             "filters and running z-score, equal to `stream --replay` (recordings folders)")] = ch.Preprocessing.offline,
    face_dir: Annotated[Optional[Path], typer.Option(
        help="DEAP face features (sNN_face.npz), for a model trained with the face modality")] = None,
    impl: opt.LoadedImpl = ch.LoadedImpl.fast, device: opt.LoadDevice = "auto",
    batch_size: Annotated[int, typer.Option(help="windows per forward pass")] = 1024,
    stride: Annotated[Optional[float], typer.Option(help="seconds between window starts (default: window)")] = None,
    subjects: Annotated[Optional[int], typer.Option(help="only the first N subjects")] = None,
    resample: Annotated[bool, typer.Option(help="resample modalities recorded at other rates than the model's")] = False,
    seq_len: Annotated[Optional[int], typer.Option(help="windows per sequence T (default: the training run's)")] = None,
    plots: Annotated[bool, typer.Option(help="one trajectory plot per recording")] = True,
    progress: Annotated[bool, typer.Option(help="progress display")] = True,
) -> None:
    """Predict per-window ratings for new data: predictions.csv, summary.csv, plots/, info.json."""
    from rich.console import Console
    from rich.table import Table

    from himoe_fast.predict import run_predict

    for flag, value in (("--batch-size", batch_size), ("--subjects", subjects), ("--seq-len", seq_len)):
        check_min(flag, value)
    if stride is not None and not (math.isfinite(stride) and stride > 0):
        fail(f"--stride must be > 0, got {stride}")
    if not data.exists():
        fail(f"{data}: no such data folder or file")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        fail(f"--out {out}: already exists and is not empty; choose another folder")
    loaded = _load(model, fold, impl, device, seq_len)
    typer.echo(f"model: {loaded.description} ({loaded.impl} path on {loaded.device}; "
               f"modalities {', '.join(loaded.cfg.modality_names)})")
    info = run_predict(model, data, out, fold=fold, dataset=dataset.value, impl=impl.value, device=device,
                       batch_size=batch_size, stride_s=stride, subjects=subjects, resample=resample,
                       plots=plots, progress=progress, seq_len=seq_len, mode=mode.value,
                       preprocessing=preprocessing.value, face_dir=face_dir)
    if info["missing_modalities"]:
        typer.echo(f"absent (not in the data): {', '.join(info['missing_modalities'])}")
    rows = info["summary"]
    targets = list(loaded.cfg.targets)
    table = Table(title=f"mean prediction per recording ({info['windows']} windows, {info['mode']})")
    table.add_column("recording")
    table.add_column("windows", justify="right")
    for t in targets:
        table.add_column(t, justify="right")
    for r in rows[:20]:
        cells = []
        for t in targets:
            label = r.get(f"label_{t}_mean")
            cells.append(f"{r[t + '_mean']:.2f}" + (f" ({label:.2f})" if label is not None else ""))
        table.add_row(r["recording"], str(r["windows"]), *cells)
    if len(rows) > 20:
        table.add_row(f"+{len(rows) - 20} more", "", *[""] * len(targets))
    console = Console()
    console.print(table)
    if info["metrics"]:
        console.print("over all labelled windows (rating in brackets above): " + "; ".join(
            f"{t} CCC {m['ccc']:.3f} MAE {m['mae']:.3f}" for t, m in info["metrics"].items()), highlight=False)
    typer.echo(f"{info['windows']} windows in {info['seconds']:.2f} s ({info['windows_per_s']:.0f} windows/s); "
               f"wrote {out}/predictions.csv, summary.csv, info.json" + (", plots/" if plots else ""))


@app.command()
def stream(
    model: opt.ModelArg,
    fold: opt.Fold = None,
    lsl: Annotated[bool, typer.Option(help="read Lab Streaming Layer streams (pip install 'himoe-fast[lsl]')")] = False,
    replay: Annotated[Optional[Path], typer.Option(help="play one recording folder (DIR/<subject>/<recording>) "
                                                        "through the streaming predictor instead")] = None,
    match: Annotated[Optional[list[str]], typer.Option(help="LSL: MODALITY=STREAM (name or type), repeatable; "
                                                            "default: streams whose type or name is the modality")] = None,
    seconds: Annotated[float, typer.Option(help="LSL: stop after this many seconds (0: until Ctrl-C)")] = 0.0,
    wait: Annotated[float, typer.Option(help="LSL: seconds to look for streams")] = 2.0,
    max_delay: Annotated[float, typer.Option(help="longest wait for a late modality past a window's end (s)")] = 0.5,
    chunk: Annotated[float, typer.Option(help="replay: seconds per pushed chunk")] = 0.1,
    realtime: Annotated[bool, typer.Option(help="replay: at the recording's own pace")] = False,
    preprocess: Annotated[bool, typer.Option(help="causal filters and running z-score (off: inputs are preprocessed)")] = True,
    out: Annotated[Optional[Path], typer.Option(help="also write predictions as CSV here (line by line)")] = None,
    impl: opt.LoadedImpl = ch.LoadedImpl.fast, device: opt.LoadDevice = "auto",
) -> None:
    """Live predictions, one line per completed window (CSV), from LSL or a replayed recording."""
    from himoe_fast.stream import StreamPredictor

    if lsl == (replay is not None):
        fail("choose one source: --lsl or --replay DIR")
    if not (math.isfinite(max_delay) and max_delay >= 0):
        fail(f"--max-delay must be >= 0, got {max_delay}")
    if not (math.isfinite(chunk) and chunk > 0):
        fail(f"--chunk must be > 0, got {chunk}")
    if replay is not None and not replay.is_dir():
        fail(f"--replay {replay}: no such recording folder")
    loaded = _load(model, fold, impl, device)
    cfg = loaded.cfg
    header = ["window", "start_s", *cfg.targets, *[f"present_{m}" for m in cfg.modality_names], "latency_ms"]
    sink = open(out, "w") if out is not None else None

    def emit(preds) -> None:
        for p in preds:
            line = ",".join([str(p.window), f"{p.start_s:.3f}", *(f"{v:.5f}" for v in p.values),
                             *("1" if x else "0" for x in p.present), f"{p.latency_s * 1e3:.2f}"])
            typer.echo(line)
            if sink is not None:
                sink.write(line + "\n")
                sink.flush()

    try:
        typer.echo(",".join(header))
        if sink is not None:
            sink.write(",".join(header) + "\n")
        if replay is not None:
            from himoe_fast.data.recordings import read_signals, scan_recordings

            layout = scan_recordings(replay.parent.parent)
            signals = read_signals(layout, replay, cfg.modality_names)
            if not signals:
                fail(f"--replay {replay}: has none of the model's modalities ({', '.join(cfg.modality_names)})")
            for name, (_, _, sf) in signals.items():
                if abs(sf - cfg.modality(name).sfreq) > 1e-6:
                    fail(f"--replay {replay}: modality {name!r} is sampled at {sf:g} Hz, the model expects "
                         f"{cfg.modality(name).sfreq:g} Hz")
            sp = StreamPredictor(loaded, t0=0.0, max_delay_s=max_delay, preprocess=preprocess, expect=tuple(signals))
            replay_signals(sp, {k: (x, t) for k, (x, t, _) in signals.items()}, chunk, realtime, emit)
        else:
            run_lsl(loaded, match or [], seconds, wait, max_delay, preprocess, emit)
    except KeyboardInterrupt:
        pass
    finally:
        if sink is not None:
            sink.close()


def replay_signals(sp, signals: dict, chunk_s: float, realtime: bool, emit) -> None:
    """Push ``{name: (x [n, C], times [n])}`` in time order, ``chunk_s`` seconds at a time."""
    end = max(float(t[-1]) for _, t in signals.values() if len(t))
    pos = {k: 0 for k in signals}
    t, wall0 = 0.0, time.perf_counter()
    while t <= end + chunk_s:
        t += chunk_s
        if realtime:
            time.sleep(max(0.0, t - (time.perf_counter() - wall0)))
        for name, (x, ts) in signals.items():
            j = int(np.searchsorted(ts, t))
            if j > pos[name]:
                emit(sp.push(name, x[pos[name]:j], ts[pos[name]:j]))
                pos[name] = j
    emit(sp.flush())


def run_lsl(loaded, match: list[str], seconds: float, wait: float, max_delay: float, preprocess: bool, emit) -> None:
    """Resolve LSL streams for the model's modalities and stream predictions until ``seconds`` pass."""
    from himoe_fast.stream import StreamPredictor, lsl_inlets

    try:
        importlib.import_module("pylsl")
    except Exception:  # noqa: BLE001 - missing package or missing liblsl binary
        fail("--lsl needs pylsl and its liblsl library: pip install 'himoe-fast[lsl]'")
    wanted = {}
    for item in match:
        name, sep, stream_name = item.partition("=")
        if not sep or name not in loaded.cfg.modality_names:
            fail(f"--match expects MODALITY=STREAM with a modality of the model "
                 f"({', '.join(loaded.cfg.modality_names)}), got {item!r}")
        wanted[name] = stream_name
    try:
        inlets = lsl_inlets(loaded.cfg, wanted, wait)
    except ValueError as exc:       # documented: no stream, or one that does not fit the model
        fail(exc)
    typer.echo(f"# streaming {', '.join(f'{m}<-{i.info().name()}' for m, i in inlets.items())}; "
               f"absent: {', '.join(m for m in loaded.cfg.modality_names if m not in inlets) or 'none'}",
               err=True)
    sp = StreamPredictor(loaded, max_delay_s=max_delay, preprocess=preprocess, expect=tuple(inlets))
    t_end = time.perf_counter() + seconds if seconds > 0 else math.inf
    while time.perf_counter() < t_end:
        got = False
        for name, inlet in inlets.items():
            samples, stamps = inlet.pull_chunk(timeout=0.0)
            if stamps:
                got = True
                emit(sp.push(name, np.asarray(samples, np.float64), np.asarray(stamps, np.float64)))
        if not got:
            time.sleep(0.005)
    emit(sp.flush())
    sys.stdout.flush()
