"""The one measurement layer of the benchmarks (``himoe-fast bench`` and the ``bench/`` suites).

* :func:`time_interleaved` / :func:`time_pair`: median wall-clock (and process CPU) ms of several
  variants timed round by round after warm-up, so that a load change on a shared machine hits all
  variants alike; CUDA work is synchronised before every clock read.
* :func:`peak_mb`: peak extra memory of one call (CUDA: ``max_memory_allocated``; CPU: live bytes
  replayed from the profiler's allocation events). :func:`rss_peak_growth_mb`: growth of the process's
  peak resident set during one call (counts allocations outside torch, e.g. a C++ extension's own
  buffers; run it in a fresh process).
* :func:`gemm_gflops`: the roofline, the machine's own ``torch.mm`` fp32 GFLOP/s, and
  :func:`roofline_pct`, a GEMM rate as a percentage of it.
* :func:`device_name`: "NVIDIA H100 ..." or "cpu: <model name> (<threads> threads)".
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

__all__ = ["Timing", "sync", "time_interleaved", "time_pair", "peak_mb", "rss_peak_growth_mb", "gemm_gflops",
           "roofline_pct", "device_name", "default_device"]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device | str) -> None:
    """Wait for queued CUDA work (no-op on CPU), so that a clock read measures finished work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------------- time
@dataclass
class Timing:
    """Per-call times of one variant: medians over the timed rounds and every sample (ms)."""

    ms: float
    cpu_ms: float
    samples_ms: list[float] = field(default_factory=list)


def time_interleaved(fns: Mapping[str, Callable[[], object]], device: torch.device | str, *, warmup: int = 2,
                     rounds: int = 7, reps: int = 1, settle: bool = True) -> dict[str, Timing]:
    """Median ms per call of each function in ``fns``, timed round by round.

    ``warmup`` untimed rounds first. Every round then times each function once (``reps`` calls per
    timing, divided by ``reps``: for calls too short for one clock read), in an order that reverses
    every other round, so neither the first nor the last slot is always the same function and a load
    change on a shared machine hits all alike. With ``settle`` each timed call follows an untimed call
    of the same function: each is timed in its own steady state (heap, page mappings and caches as it
    leaves them, as in a training loop), not as the previous function left them.
    Wall-clock and process CPU time are both kept (CPU time is less sensitive to other jobs).
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(max(1, rounds)):
        for name in (names if r % 2 == 0 else names[::-1]):
            fn = fns[name]
            if settle:
                fn()
            sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(reps):
                fn()
            sync(device)
            wall[name].append((time.perf_counter() - t0) * 1e3 / reps)
            cpu[name].append((time.process_time() - c0) * 1e3 / reps)
    return {n: Timing(statistics.median(wall[n]), statistics.median(cpu[n]), wall[n]) for n in names}


def time_pair(ref: Callable[[], object], fast: Callable[[], object], device: torch.device | str, warmup: int,
              repeats: int) -> tuple[float, float]:
    """Median ms of ``ref`` and ``fast`` (:func:`time_interleaved` with ``settle``)."""
    t = time_interleaved({"ref": ref, "fast": fast}, device, warmup=warmup, rounds=repeats)
    return t["ref"].ms, t["fast"].ms


# --------------------------------------------------------------------------------------------- memory
def peak_mb(fn: Callable[[], object], device: torch.device | str, before: Callable[[], None] | None = None) -> float:
    """Peak extra memory (MiB) of one call of ``fn``, excluding what existed before the call.

    CUDA: ``torch.cuda.max_memory_allocated`` during the call minus the allocation before it. CPU: the
    peak of live bytes allocated during the call, replayed from the allocation and free events of
    ``torch.profiler`` (``profile_memory=True``) in time order: activations, saved tensors,
    temporaries and new gradient tensors (memory a C++ extension allocates itself is not seen; see
    :func:`rss_peak_growth_mb`). ``before`` runs first, outside the window (e.g. emptying a cache so
    that what it would hold is allocated, and counted, inside the call).
    """
    device = torch.device(device)
    if before is not None:
        before()
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with _silenced_fd2(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    cur = peak = 0
    for _, nbytes in events:
        cur += nbytes
        peak = max(peak, cur)
    return peak / 2**20


@contextlib.contextmanager
def _silenced_fd2():
    """Silence the profiler's own C++ log lines (kineto start/stop, allocator notes) on fd 2."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:          # no real fd 2 (embedded interpreters): nothing to silence
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _proc_status_mb(key: str) -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_peak_growth_mb(fn: Callable[[], object]) -> tuple[float, str]:
    """Growth (MiB) of this process's peak resident set during one call of ``fn``, and how it was read.

    Linux resets the peak (``VmHWM``) through ``/proc/self/clear_refs``; elsewhere the lifetime peak
    ``ru_maxrss`` is used, which only measures the call in a fresh process whose earlier peak was lower.
    Pages the allocator keeps from earlier calls are reused without growth: call this in a fresh
    process, after a small warm-up call for lazy initialisation.
    """
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        how = "VmHWM"
    except OSError:
        how = "ru_maxrss"
    before = _proc_status_mb("VmRSS")
    if before is None:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    fn()
    peak = _proc_status_mb("VmHWM") if how == "VmHWM" else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak - before, how


# --------------------------------------------------------------------------------------------- roofline
def gemm_gflops(device: torch.device | str, n: int | None = None, repeats: int = 15) -> float:
    """The roofline: peak ``torch.mm`` GFLOP/s of this machine (fp32, square ``n x n``, 1024 on CPU and
    4096 on CUDA; best of ``repeats`` timed calls: the peak a busy, shared machine still reaches)."""
    device = torch.device(device)
    n = n or (4096 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    sync(device)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / min(ts) / 1e9


def roofline_pct(gflop: float, ms: float, gemm: float) -> float:
    """A GEMM workload of ``gflop`` GFLOP done in ``ms`` milliseconds as % of ``gemm`` GFLOP/s."""
    return 100.0 * (gflop / (ms / 1e3)) / gemm


# --------------------------------------------------------------------------------------------- device
def device_name(device: torch.device | str) -> str:
    """The GPU's name, or ``"cpu: <model name> (<threads> threads)"``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"cpu: {cpu} ({torch.get_num_threads()} threads)"
