"""``himoe-fast parity``, ``bench`` (fast path vs reference) and ``doctor`` (what this machine has).

The logic lives in :mod:`himoe_fast.fast.parity` and :mod:`himoe_fast.fast.bench`; this module only
parses flags (bad values: one line, exit 2), shows progress and prints rich tables.
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from himoe_fast.config import HiMoEConfig
from himoe_fast.fast.bench import ROW_NAMES
from himoe_fast.train import DataSettings, TrainSettings

from . import choices as ch
from . import options as opt
from .common import check_min, parse_choices, parse_list
from .errors import fail

app = typer.Typer()


def _config(preset, modalities, **overrides) -> HiMoEConfig:
    """The preset's config; an unknown modality is a ModalityError (one line, exit 2)."""
    from himoe_fast.config import preset_config

    return preset_config(ch.plain(preset), parse_list(modalities, "--modalities"),
                         **{k: ch.plain(v) for k, v in overrides.items()})


def _device(device: ch.Device) -> str:
    import torch

    if device == ch.Device.auto:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == ch.Device.cuda and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible")
    return device.value


def _interpret_on_cpu(backend: ch.Backend, device: str) -> None:
    """Triton kernels asked for on a CPU: run them under the interpreter (set before triton compiles)."""
    if backend == ch.Backend.triton and device == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")


def _fmt(x: float) -> str:
    return f"{x:.2e}" if x == x else "nan"


@app.command()
def parity(
    preset: opt.Preset = ch.Preset.deap,
    modalities: opt.PresetModalities = None,
    router: opt.Router = ch.Router(HiMoEConfig.router),
    routing: opt.Routing = ch.Routing(HiMoEConfig.routing),
    backend: opt.Backend = ch.Backend.auto,
    batch: opt.Batch = 2,
    seq_len: opt.Steps = 3,
    dtype: opt.Dtype = ch.Dtype.fp32,
    seed: opt.InputSeed = 0,
    device: opt.Device = ch.Device.auto,
    emotion_bank: opt.EmotionBank = HiMoEConfig.emotion_bank, temporal: opt.Temporal = opt.DEFAULT_TEMPORAL,
    causal: opt.Causal = HiMoEConfig.causal,
    json_out: opt.JsonOut = None,
    quiet: Annotated[bool, typer.Option(help="print only the verdict line")] = False,
) -> None:
    """Fast path vs reference on random inputs: every output and parameter gradient, at DESIGN.md's
    tolerances (fp32: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3).
    Exit 0 when all pass, 1 on any failure, 2 on bad flags."""
    if batch < 1 or seq_len < 1:
        fail("--batch and --seq-len must be >= 1")
    dev = _device(device)
    if dtype == ch.Dtype.bf16 and dev != "cuda":
        fail("--dtype bf16 needs a CUDA device (the bf16 kernels are GPU-only)")
    _interpret_on_cpu(backend, dev)
    cfg = _config(preset, modalities, router=router, routing=routing, emotion_bank=emotion_bank,
                  temporal=temporal, causal=causal)
    from himoe_fast.fast.parity import run_parity

    report = run_parity(cfg, backend=backend.value, B=batch, T=seq_len, dtype=dtype.value, seed=seed, device=dev)
    if not quiet:
        _print_parity(report)
    n_fail = len(report.failures)
    typer.echo(f"parity {'PASS' if report.ok else 'FAIL'}: {len(report.checks) - n_fail}/{len(report.checks)} "
               f"checks within tolerance (preset={preset}, router={router}, routing={routing}, "
               f"backend={backend}, dtype={dtype}, device={dev}, B={batch}, T={seq_len}, seed={seed})")
    if json_out is not None:
        from dataclasses import asdict

        from himoe_fast.io import atomic_write_json

        atomic_write_json(json_out, {"ok": report.ok, "backend": backend.value, "dtype": dtype.value, "device": dev,
                                     "config": report.config, "checks": [asdict(c) for c in report.checks]})
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def bench(
    preset: opt.Preset = ch.Preset.deap,
    modalities: opt.PresetModalities = None,
    router: opt.Router = ch.Router(HiMoEConfig.router),
    routing: opt.Routing = ch.Routing(HiMoEConfig.routing),
    backend: opt.Backend = ch.Backend.auto,
    batch: opt.Batch = TrainSettings.batch_size,          # the training step's shape
    seq_len: opt.Steps = DataSettings.seq_len,
    warmup: Annotated[int, typer.Option(help="untimed calls before timing")] = 3,
    repeats: Annotated[int, typer.Option(help="timed calls per side (median reported)")] = 10,
    rows: Annotated[Optional[str], typer.Option(help="comma-separated subset of rows (default: all)")] = None,
    seed: opt.InputSeed = 0,
    device: opt.Device = ch.Device.auto,
    threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's)")] = None,
    temporal: opt.Temporal = opt.DEFAULT_TEMPORAL,
    json_out: opt.JsonOut = None,
) -> None:
    """Reference vs fast per component and for the whole training step: median ms, speedup, max
    error, peak memory, and this machine's torch.mm GFLOP/s (the roofline)."""
    import torch

    from himoe_fast.fast.bench import bench_rows, write_json
    from himoe_fast.progress import Reporter

    if batch < 1 or seq_len < 1 or repeats < 1 or warmup < 0:
        fail("--batch, --seq-len and --repeats must be >= 1, --warmup >= 0")
    selected = tuple(parse_choices(rows, "--rows", ROW_NAMES) or ROW_NAMES)
    dev = _device(device)
    if threads is not None:
        check_min("--threads", threads)
        torch.set_num_threads(threads)
    _interpret_on_cpu(backend, dev)
    cfg = _config(preset, modalities, router=router, routing=routing, temporal=temporal)
    with Reporter("bench", total=len(selected) + 2, transient=True) as rep:   # + the GEMM roofline, twice
        started: list[str] = []

        def starting(name: str) -> None:         # bench_rows names each row as it starts it
            rep.update(len(started), label=name)
            started.append(name)

        result = bench_rows(cfg, B=batch, T=seq_len, backend=backend.value, device=dev, warmup=warmup,
                            repeats=repeats, seed=seed, rows=selected, progress=starting)
        rep.update(rep.total)
    _print_bench(result)
    if json_out is not None:
        write_json(result, json_out)
        typer.echo(f"wrote {json_out}")


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


def _print_parity(report) -> None:
    from rich.table import Table

    table = Table(title=f"parity: fast ({report.backend}, {report.dtype}, {report.device}) vs reference")
    for col in ("check", "kind", "max abs err", "max rel err", "atol", "rtol", "ok"):
        table.add_column(col, justify="left" if col in ("check", "kind") else "right",
                         no_wrap=col == "check")
    for c in report.checks:
        ok = "[green]pass[/]" if c.ok else f"[red]FAIL[/] {c.note}"
        table.add_row(c.name, c.kind, _fmt(c.max_abs), _fmt(c.max_rel), f"{c.atol:g}", f"{c.rtol:g}", ok)
    _console().print(table)


def _console():
    """stdout console at least 120 columns wide (full parameter names even when piped)."""
    from rich.console import Console

    return Console(width=max(Console().width, 120))


def _print_bench(result) -> None:
    from rich.table import Table

    from himoe_fast.fast.bench import bank_gflops, bank_roofline_pct

    n = result.notes
    table = Table(title=f"himoe-fast bench: {result.device}, B={n.get('B')} T={n.get('T')} "
                        f"(N={n.get('N')} tokens), backend={n.get('backend')}")
    for col in ("row", "ref ms", "fast ms", "speedup", "max err", "ref peak MB", "fast peak MB"):
        table.add_column(col, justify="left" if col == "row" else "right", no_wrap=col == "row")
    for r in result.rows:
        sp = f"{r.speedup:.2f}x"
        table.add_row(r.name, f"{r.ref_ms:.3f}", f"{r.fast_ms:.3f}", sp, _fmt(r.max_err),
                      f"{r.ref_peak_mb:.2f}", f"{r.fast_peak_mb:.2f}")
    console = _console()
    console.print(table)
    line = f"torch.mm: {result.gemm_gflops:.1f} GFLOP/s"
    pct = bank_roofline_pct(result)
    if pct is not None:
        line += f"; modality_bank fast fwd+bwd: {bank_gflops(result):.1f} GFLOP/s = {pct:.0f}% of torch.mm"
    if "alignment_fast_backend" in n:
        line += f"; alignment fast = {n['alignment_fast_backend']}"
    console.print(line)
