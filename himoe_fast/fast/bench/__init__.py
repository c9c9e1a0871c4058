"""Reference vs fast, per component and for the whole training step (``himoe-fast bench``).

Every row times the reference and the fast version of one stage side by side in this process, on
the same inputs and the same parameters:

    encoders          HiMoE.encode (all modalities)            vs fast encoders            fwd+bwd
    modality_bank     ModalityExpertBank, N = B*T tokens       vs fused bank               fwd+bwd
    modality_bank_fwd_n8   same, N = 8 tokens (streaming inference), no grad               fwd
    fuse              AttentionFuse                            vs fuse_fast                fwd+bwd
    da_router         EmotionExpertBank                        vs da_router                fwd+bwd
    heads             TargetHeads                              vs heads_fast               fwd+bwd
    alignment         masked_ntxent backend="torch"            vs backend="ext"            fwd+bwd
    temporal          lag aligner (+ context)                  vs align_fast               fwd+bwd
    train_step        HiMoE: zero_grad + forward + loss (Eq. 8) + backward vs FastHiMoE

Modules: :mod:`.measure` (timing, peak memory, the ``torch.mm`` roofline, device names: the one
measurement layer, also used by the ``bench/`` pytest suites), :mod:`.rows` (one function per row)
and :mod:`.output` (the result, its JSON file, the roofline share).

Method:
* time: median over ``repeats`` rounds after ``warmup`` rounds; reference and fast alternate within
  each round (order reversed every other round) so that a load change on a shared machine hits both
  alike, and each timed call follows an untimed call of the same side; CUDA calls are synchronised.
* max_err: largest difference over the outputs and the gradients (parameters and inputs) of one
  fwd+bwd with dropout off (``train_step``: the eval-mode outputs and gradients), per tensor
  ``max |fast - ref| / max(1, max |ref|)`` (absolute for small tensors, relative for large gradients).
* peak memory: CUDA: ``torch.cuda.max_memory_allocated`` during one call minus the allocation before it.
  CPU: the peak of live bytes allocated during one call, replayed from the allocation and free events
  of ``torch.profiler`` (``profile_memory=True``) in time order, i.e. activations, saved tensors,
  temporaries and new gradient tensors, excluding what existed before the call (parameters, inputs).
  The fast CPU bank's step-to-step workspace is emptied before the call, so it is counted too.
* gemm_gflops: the machine's own ``torch.mm`` rate (square fp32 matrices; 1024 on CPU, 4096 on CUDA),
  measured in the same run before and after the rows (best of the repeats of both: the peak a busy,
  shared machine still reaches): the roofline the bank's GEMM rate is compared with.
"""

from __future__ import annotations

from typing import Callable

import torch

from ...config import HiMoEConfig
from .measure import device_name, gemm_gflops, peak_mb, time_pair
from .output import BenchResult, bank_gflops, bank_roofline_pct, write_json
from .rows import ROW_NAMES, ROWS, BenchSetup, Row, make_setup

__all__ = ["ROW_NAMES", "Row", "BenchResult", "BenchSetup", "bench_rows", "write_json", "bank_gflops",
           "bank_roofline_pct", "gemm_gflops", "peak_mb", "time_pair", "device_name"]


def bench_rows(cfg: HiMoEConfig, B: int = 32, T: int = 8, backend: str = "auto", device: str | None = None,
               warmup: int = 3, repeats: int = 10, seed: int = 0, rows: tuple[str, ...] = ROW_NAMES,
               progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run the benchmark rows for ``cfg`` at ``B x T`` tokens; returns a :class:`BenchResult`.

    ``rows`` (a subset of :data:`ROW_NAMES`) run in the order of :data:`ROW_NAMES`; ``progress`` is
    called with the name of each step (``"gemm"`` for the roofline) before it runs.
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unknown = set(rows) - set(ROW_NAMES)
    if unknown:
        raise ValueError(f"unknown bench rows {sorted(unknown)}; known: {', '.join(ROW_NAMES)}")

    def step(name: str) -> None:
        if progress:
            progress(name)

    s = make_setup(cfg, B, T, backend, dev, warmup, repeats, seed)
    s.notes.update(B=B, T=T, N=B * T, backend=backend, threads=torch.get_num_threads())
    step("gemm")
    gflops_before = gemm_gflops(dev)
    out: list[Row] = []
    for name, row_fn in ROWS.items():
        if name not in rows:
            continue
        step(name)
        row = row_fn(s)
        if row is not None:
            out.append(row)
    by_name = {r.name: r for r in out}
    if "temporal" in by_name and "train_step" in by_name:
        s.notes["temporal_share_of_fast_train_step"] = by_name["temporal"].fast_ms / by_name["train_step"].fast_ms
    step("gemm")
    gflops = max(gflops_before, gemm_gflops(dev))
    return BenchResult(gflops, device_name(dev), out, s.notes)
