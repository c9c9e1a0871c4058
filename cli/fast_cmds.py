"""``himoe-fast bench`` and ``himoe-fast parity`` (fast path vs reference).

The logic lives in :mod:`himoe_fast.fast.parity` and :mod:`himoe_fast.fast.bench`; this module only
parses flags (bad values: one line, exit 2), shows progress and prints rich tables.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import choice, fail, parse_list
from .train_cmds import DEFAULT_TEMPORAL, TEMPORAL_MODES, Causal, Temporal

PRESETS = ("deap", "dreamer", "tiny")
ROUTERS = ("dot", "cosine", "diff")
ROUTINGS = ("soft", "uniform", "top1")
BACKENDS = ("auto", "triton", "torch")
DTYPES = ("fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")

Preset = Annotated[str, typer.Option(help="deap | dreamer | tiny (3-4 small modalities)")]
Modalities = Annotated[Optional[str], typer.Option(help="comma-separated modalities of the preset (default: all)")]
Router = Annotated[str, typer.Option(help="DA-router: dot | cosine | diff")]
Routing = Annotated[str, typer.Option(help="modality-bank routing: soft | uniform | top1")]
Backend = Annotated[str, typer.Option(help="fast-path backend: auto | triton | torch")]
Batch = Annotated[int, typer.Option("--batch", "-B", help="batch size B")]
Steps = Annotated[int, typer.Option("--seq-len", "-T", help="windows per sample T")]
Dtype = Annotated[str, typer.Option(help="fp32 | bf16 (bf16: CUDA only)")]
Seed = Annotated[int, typer.Option(help="seed of parameters and inputs")]
Device = Annotated[str, typer.Option(help="auto | cpu | cuda")]
EmotionBank = Annotated[bool, typer.Option(help="use the Emotion Expert Bank (--no-emotion-bank: ablation)")]


def _config(preset, modalities, **overrides):
    from himoe_fast.config import preset_config

    choice(preset, "--preset", PRESETS)
    mods = parse_list(modalities, "--modalities")
    try:
        return preset_config(preset, mods, **overrides)
    except (ValueError, KeyError) as exc:
        fail(str(exc).splitlines()[0])


def _device(device: str) -> str:
    import torch

    choice(device, "--device", DEVICES)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible")
    return device


def _fmt(x: float) -> str:
    return f"{x:.2e}" if x == x else "nan"


def register(app: typer.Typer) -> None:
    @app.command()
    def parity(
        preset: Preset = "deap",
        modalities: Modalities = None,
        router: Router = "dot",
        routing: Routing = "soft",
        backend: Backend = "auto",
        batch: Batch = 2,
        seq_len: Steps = 3,
        dtype: Dtype = "fp32",
        seed: Seed = 0,
        device: Device = "auto",
        emotion_bank: EmotionBank = True, temporal: Temporal = DEFAULT_TEMPORAL, causal: Causal = False,
        json_out: Annotated[Optional[Path], typer.Option("--json", help="also write the report as JSON")] = None,
        quiet: Annotated[bool, typer.Option(help="print only the verdict line")] = False,
    ) -> None:
        """Fast path vs reference on random inputs: every output and parameter gradient, at DESIGN.md's
        tolerances (fp32: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3).
        Exit 0 when all pass, 1 on any failure, 2 on bad flags."""
        choice(router, "--router", ROUTERS)
        choice(routing, "--routing", ROUTINGS)
        choice(backend, "--backend", BACKENDS)
        choice(dtype, "--dtype", DTYPES)
        if batch < 1 or seq_len < 1:
            fail("--batch and --seq-len must be >= 1")
        dev = _device(device)
        if dtype == "bf16" and dev != "cuda":
            fail("--dtype bf16 needs a CUDA device (the bf16 kernels are GPU-only)")
        if backend == "triton" and dev == "cpu":
            import os

            os.environ.setdefault("TRITON_INTERPRET", "1")
        choice(temporal, "--temporal", TEMPORAL_MODES)
        cfg = _config(preset, modalities, router=router, routing=routing, emotion_bank=emotion_bank,
                      temporal=temporal, causal=causal)
        from himoe_fast.fast.parity import run_parity

        report = run_parity(cfg, backend=backend, B=batch, T=seq_len, dtype=dtype, seed=seed, device=dev)
        if not quiet:
            _print_parity(report)
        n_fail = len(report.failures)
        verdict = (f"parity {'PASS' if report.ok else 'FAIL'}: {len(report.checks) - n_fail}/{len(report.checks)} "
                   f"checks within tolerance (preset={preset}, router={router}, routing={routing}, "
                   f"backend={backend}, dtype={dtype}, device={dev}, B={batch}, T={seq_len}, seed={seed})")
        typer.echo(verdict)
        if json_out is not None:
            from dataclasses import asdict

            json_out.write_text(json.dumps({"ok": report.ok, "backend": backend, "dtype": dtype, "device": dev,
                                            "config": report.config,
                                            "checks": [asdict(c) for c in report.checks]}, indent=2))
        if not report.ok:
            raise typer.Exit(1)

    @app.command()
    def bench(
        preset: Preset = "deap",
        modalities: Modalities = None,
        router: Router = "dot",
        routing: Routing = "soft",
        backend: Backend = "auto",
        batch: Batch = 32,
        seq_len: Steps = 8,
        warmup: Annotated[int, typer.Option(help="untimed calls before timing")] = 3,
        repeats: Annotated[int, typer.Option(help="timed calls per side (median reported)")] = 10,
        rows: Annotated[Optional[str], typer.Option(help="comma-separated subset of rows (default: all)")] = None,
        seed: Seed = 0,
        device: Device = "auto",
        threads: Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's)")] = None,
        temporal: Temporal = DEFAULT_TEMPORAL,
        json_out: Annotated[Optional[Path], typer.Option("--json", help="write results to this JSON file")] = None,
    ) -> None:
        """Reference vs fast per component and for the whole training step: median ms, speedup, max
        error, peak memory, and this machine's torch.mm GFLOP/s (the roofline)."""
        import torch

        from himoe_fast.fast.bench import ROW_NAMES

        choice(router, "--router", ROUTERS)
        choice(routing, "--routing", ROUTINGS)
        choice(backend, "--backend", BACKENDS)
        if batch < 1 or seq_len < 1 or repeats < 1 or warmup < 0:
            fail("--batch, --seq-len and --repeats must be >= 1, --warmup >= 0")
        selected = tuple(parse_list(rows, "--rows") or ROW_NAMES)
        for r in selected:
            choice(r, "--rows", ROW_NAMES)
        dev = _device(device)
        if threads is not None:
            if threads < 1:
                fail("--threads must be >= 1")
            torch.set_num_threads(threads)
        if backend == "triton" and dev == "cpu":
            import os

            os.environ.setdefault("TRITON_INTERPRET", "1")
        choice(temporal, "--temporal", TEMPORAL_MODES)
        cfg = _config(preset, modalities, router=router, routing=routing, temporal=temporal)
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from himoe_fast.fast.bench import bench_rows, write_json

        console = Console(stderr=True)
        with Progress(SpinnerColumn(), TextColumn("[bold]bench[/] {task.description}"), BarColumn(),
                      TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(), console=console,
                      transient=True) as prog:
            task = prog.add_task("starting", total=len(selected) + 2)     # + the GEMM roofline, twice
            seen: list[str] = []

            def progress(name: str) -> None:
                if seen:
                    prog.advance(task)
                seen.append(name)
                prog.update(task, description=name)

            result = bench_rows(cfg, B=batch, T=seq_len, backend=backend, device=dev, warmup=warmup,
                                repeats=repeats, seed=seed, rows=selected, progress=progress)
            prog.advance(task)
        _print_bench(result)
        if json_out is not None:
            write_json(result, json_out)
            typer.echo(f"wrote {json_out}")


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

    from himoe_fast.fast.bench import bank_roofline_pct

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
        row = result.row("modality_bank")
        rate = n["modality_bank_gflop"] / (row.fast_ms / 1e3)
        line += f"; modality_bank fast fwd+bwd: {rate:.1f} GFLOP/s = {pct:.0f}% of torch.mm"
    if "alignment_fast_backend" in n:
        line += f"; alignment fast = {n['alignment_fast_backend']}"
    console.print(line)
