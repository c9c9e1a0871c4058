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
    train_step        HiMoE: zero_grad + forward + loss (Eq. 8) + backward vs FastHiMoE

Method:
* time: median over ``repeats`` after ``warmup`` calls; reference and fast calls alternate so that a
  load change on a shared machine hits both sides alike; CUDA calls are synchronised.
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

import contextlib
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from ..config import HiMoEConfig
from ..model.himoe import HiMoE
from ..ops import masked_ntxent
from .encoders import encode_fast
from .experts import clear_workspace, modality_bank
from .model import to_fast
from ..io import atomic_write_json
from .parity import random_batch, randomize_zero_parameters
from .stages import fuse_fast, heads_fast

ROW_NAMES = ("encoders", "modality_bank", "modality_bank_fwd_n8", "fuse", "da_router", "heads", "alignment",
             "temporal", "train_step")


@dataclass
class Row:
    name: str
    ref_ms: float
    fast_ms: float
    speedup: float
    max_err: float
    ref_peak_mb: float
    fast_peak_mb: float


@dataclass
class BenchResult:
    gemm_gflops: float
    device: str
    rows: list[Row]
    notes: dict

    def to_json(self) -> dict:
        """Exactly the documented schema."""
        return {"gemm_gflops": float(self.gemm_gflops), "device": self.device,
                "rows": [asdict(r) for r in self.rows]}

    def row(self, name: str) -> Row | None:
        return next((r for r in self.rows if r.name == name), None)


# --------------------------------------------------------------------------------------- measuring
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pair(ref: Callable[[], object], fast: Callable[[], object], device: torch.device, warmup: int,
              repeats: int) -> tuple[float, float]:
    """Median ms of ``ref`` and ``fast`` over ``repeats`` rounds after ``warmup`` rounds.

    Each round runs ref then fast, and each timed call follows an untimed call of the same side: the
    sides alternate (a load change on a shared machine hits both alike), yet each is timed in its own
    steady state, as it would run in a training loop (heap, page mappings and caches as that side
    leaves them, not as the other side does).
    """
    for _ in range(warmup):
        ref()
        fast()
    _sync(device)
    tr, tf = [], []
    for _ in range(max(1, repeats)):
        for fn, acc in ((ref, tr), (fast, tf)):
            fn()
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            acc.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(tr), statistics.median(tf)


def peak_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak extra memory (MiB) of one call of ``fn`` (see module docstring for the method).

    The CPU bank's workspace (buffers it keeps from step to step) is emptied first, so its buffers are
    allocated, and counted, inside the measured call.
    """
    clear_workspace()
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
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


def gemm_gflops(device: torch.device, n: int | None = None, repeats: int = 15) -> float:
    """Peak ``torch.mm`` GFLOP/s of this machine (fp32, square n x n; best of ``repeats``)."""
    n = n or (4096 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return 2 * n**3 / min(ts) / 1e9


def _maxdiff(a, b) -> float:
    """``max |a - b| / max(1, max |b|)``: absolute error, relative for tensors of magnitude > 1."""
    if a is None or b is None:
        return 0.0 if a is None and b is None else math.inf
    if not a.numel():
        return 0.0
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def _grads(tensors) -> list:
    return [None if t.grad is None else t.grad.detach().clone() for t in tensors]


def _zero(tensors) -> None:
    for t in tensors:
        t.grad = None


# --------------------------------------------------------------------------------------- rows
def _pair_row(name, ref_fn, fast_fn, leaves_ref, leaves_fast, out_pairs, device, warmup, repeats,
              no_grad: bool = False, first_grad=None) -> Row:
    """Generic fwd(+bwd) row. ``ref_fn``/``fast_fn`` return a scalar loss (backward is run here)
    and a tuple of outputs (with ``no_grad``: just the outputs); ``out_pairs`` maps the fast outputs
    into the reference layout, ``first_grad`` the gradient of the first fast leaf (the input)."""

    def run(fn, leaves):
        def call():
            if no_grad:
                with torch.no_grad():
                    return fn()
            _zero(leaves)
            loss, outs = fn()
            loss.backward()
            return loss, outs
        return call

    r_call, f_call = run(ref_fn, leaves_ref), run(fast_fn, leaves_fast)
    # error check (one call each)
    r_out = r_call()
    r_grads = [] if no_grad else _grads(leaves_ref)
    f_out = f_call()
    f_grads = [] if no_grad else _grads(leaves_fast)
    if first_grad is not None and f_grads and f_grads[0] is not None:
        f_grads[0] = first_grad(f_grads[0])
    r_vals = r_out if no_grad else r_out[1]
    f_vals = f_out if no_grad else f_out[1]
    err = max([_maxdiff(fa, ra) for ra, fa in zip(r_vals, out_pairs(f_vals))] +
              [_maxdiff(fg, rg) for rg, fg in zip(r_grads, f_grads)] + [0.0])
    ref_ms, fast_ms = time_pair(r_call, f_call, device, warmup, repeats)
    return Row(name, ref_ms, fast_ms, ref_ms / fast_ms if fast_ms > 0 else math.inf, err,
               peak_mb(r_call, device), peak_mb(f_call, device))


def bench_rows(cfg: HiMoEConfig, B: int = 32, T: int = 8, backend: str = "auto", device: str | None = None,
               warmup: int = 3, repeats: int = 10, seed: int = 0, rows: tuple[str, ...] = ROW_NAMES,
               progress: Callable[[str], None] | None = None) -> BenchResult:
    """Run the benchmark rows for ``cfg`` at ``B x T`` tokens; returns a :class:`BenchResult`."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    unknown = set(rows) - set(ROW_NAMES)
    if unknown:
        raise ValueError(f"unknown bench rows {sorted(unknown)}; known: {', '.join(ROW_NAMES)}")
    torch.manual_seed(seed)
    ref = randomize_zero_parameters(HiMoE(cfg), seed).to(dev)
    fast = to_fast(ref, backend=backend)
    inputs, present, labels, label_mask = random_batch(cfg, B, T, seed=seed, device=dev)
    M, N, d = cfg.n_modalities, B * T, cfg.d_model
    present_mn = present.reshape(N, M).t()
    g = torch.Generator().manual_seed(seed + 7)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(dev)

    out: list[Row] = []
    notes: dict = {"B": B, "T": T, "N": N, "backend": backend, "threads": torch.get_num_threads()}
    def step(name):
        if progress:
            progress(name)

    step("gemm")
    gflops_before = gemm_gflops(dev)

    def eval_mode(*models):
        for m in models:
            m.eval()

    def train_mode(*models):
        for m in models:
            m.train()

    if "encoders" in rows:
        step("encoders")
        eval_mode(ref, fast)      # dropout off for the error check and timing of the encoders alone
        gz = rnd(B, T, M, d)
        gz_mn = gz.reshape(N, M, d).transpose(0, 1)
        enc_r = list(ref.encoders.parameters())
        enc_f = list(fast.encoders.parameters())
        out.append(_pair_row(
            "encoders",
            lambda: (lambda Z: ((Z * gz).sum(), (Z,)))(ref.encode(inputs, present)),
            lambda: (lambda Z: ((Z * gz_mn).sum(), (Z,)))(encode_fast(fast, fast._plan, inputs, present_mn)),
            enc_r, enc_f, lambda o: (o[0].transpose(0, 1).reshape(B, T, M, d),), dev, warmup, repeats))
        train_mode(ref, fast)

    bank_r, bank_f = ref.modality_bank, fast.modality_bank
    bank_pr = [bank_r.gate_weight, bank_r.gate_bias, bank_r.w1, bank_r.b1, bank_r.w2, bank_r.b2]
    bank_pf = [bank_f.gate_weight, bank_f.gate_bias, bank_f.w1, bank_f.b1, bank_f.w2, bank_f.b2]
    K = cfg.n_modality_experts
    if "modality_bank" in rows:
        step("modality_bank")
        x_mn = rnd(M, N, d)
        x_ref = x_mn.transpose(0, 1).reshape(B, T, M, d).contiguous().requires_grad_(True)
        x_fast = x_mn.clone().requires_grad_(True)
        gz, ga = rnd(M, N, d), rnd(M, N, K)
        gz_r = gz.transpose(0, 1).reshape(B, T, M, d)
        ga_r = ga.transpose(0, 1).reshape(B, T, M, K)

        def bank_ref():
            z, a = bank_r(x_ref)
            return (z * gz_r).sum() + (a * ga_r).sum(), (z, a)

        def bank_fast():
            z, a = modality_bank(x_fast, *bank_pf, routing=bank_f.routing, backend=fast.backend)
            return (z * gz).sum() + (a * ga).sum(), (z, a)

        out.append(_pair_row("modality_bank", bank_ref, bank_fast, [x_ref, *bank_pr], [x_fast, *bank_pf],
                             lambda o: (o[0].transpose(0, 1).reshape(B, T, M, d),
                                        o[1].transpose(0, 1).reshape(B, T, M, K)), dev, warmup, repeats,
                             first_grad=lambda gx: gx.transpose(0, 1).reshape(B, T, M, d)))
        notes["modality_bank_gflop"] = 6 * 2 * M * N * d * K * cfg.expert_hidden / 1e9
    if "modality_bank_fwd_n8" in rows:
        step("modality_bank_fwd_n8")
        x8 = rnd(M, 8, d)
        x8_r = x8.transpose(0, 1).reshape(1, 8, M, d).contiguous()
        out.append(_pair_row(
            "modality_bank_fwd_n8", lambda: bank_r(x8_r),
            lambda: modality_bank(x8, *bank_pf, routing=bank_f.routing, backend=fast.backend),
            [], [], lambda o: (o[0].transpose(0, 1).reshape(1, 8, M, d), o[1].transpose(0, 1).reshape(1, 8, M, K)),
            dev, warmup * 3, repeats * 5, no_grad=True))
    if "fuse" in rows:
        step("fuse")
        zm = rnd(M, N, d)
        z_r = zm.transpose(0, 1).reshape(B, T, M, d).contiguous().requires_grad_(True)
        z_f = zm.clone().requires_grad_(True)
        gf = rnd(N, d)
        fr, ff = list(ref.fuse.parameters()), list(fast.fuse.parameters())
        out.append(_pair_row(
            "fuse",
            lambda: (lambda o: ((o[0].reshape(N, d) * gf).sum(), o))(ref.fuse(z_r, present)),
            lambda: (lambda o: ((o[0] * gf).sum(), o))(fuse_fast(fast.fuse, z_f, present_mn)),
            [z_r, *fr], [z_f, *ff], lambda o: (o[0].reshape(B, T, d), o[1].t().reshape(B, T, M)),
            dev, warmup, repeats, first_grad=lambda gz: gz.transpose(0, 1).reshape(B, T, M, d)))
    if "da_router" in rows and cfg.emotion_bank:
        step("da_router")
        z0 = rnd(N, d)
        z_r = z0.reshape(B, T, d).clone().requires_grad_(True)
        z_f = z0.clone().requires_grad_(True)
        ge = rnd(N, d)
        gb = rnd(N, cfg.n_emotion_experts)
        er, ef = list(ref.emotion_bank.parameters()), list(fast.emotion_bank.parameters())
        out.append(_pair_row(
            "da_router",
            lambda: (lambda o: ((o[0].reshape(N, d) * ge).sum() + (o[1].reshape(N, -1) * gb).sum(), o))(
                ref.emotion_bank(z_r)),
            lambda: (lambda o: ((o[0] * ge).sum() + (o[1] * gb).sum(), o))(fast.emotion_tokens(z_f)),
            [z_r, *er], [z_f, *ef], lambda o: (o[0].reshape(B, T, d), o[1].reshape(B, T, -1)),
            dev, warmup, repeats, first_grad=lambda gz: gz.reshape(B, T, d)))
    if "heads" in rows:
        step("heads")
        e0 = rnd(N, d)
        e_r = e0.reshape(B, T, d).clone().requires_grad_(True)
        e_f = e0.clone().requires_grad_(True)
        gp = rnd(N, cfg.n_targets)
        hr, hf = list(ref.heads.parameters()), list(fast.heads.parameters())
        out.append(_pair_row(
            "heads",
            lambda: (lambda p: ((p.reshape(N, -1) * gp).sum(), (p,)))(ref.heads(e_r)),
            lambda: (lambda p: ((p * gp).sum(), (p,)))(heads_fast(fast.heads, e_f)),
            [e_r, *hr], [e_f, *hf], lambda o: (o[0].reshape(B, T, -1),), dev, warmup, repeats,
            first_grad=lambda ge: ge.reshape(B, T, d)))
    if "alignment" in rows:
        step("alignment")
        za = rnd(M, N, d)
        z_r = za.clone().requires_grad_(True)
        z_f = za.clone().requires_grad_(True)
        ext_ok = _ext_available(z_f, present_mn)
        notes["alignment_fast_backend"] = "ext" if ext_ok else "torch (extension unavailable)"
        fb = "ext" if ext_ok else "torch"
        out.append(_pair_row(
            "alignment",
            lambda: (lambda l: (l, (l,)))(masked_ntxent(z_r, present_mn, cfg.temperature, backend="torch")),
            lambda: (lambda l: (l, (l,)))(masked_ntxent(z_f, present_mn, cfg.temperature, backend=fb)),
            [z_r], [z_f], lambda o: o, dev, warmup, repeats))
    if "temporal" in rows and ref.aligner is not None:
        step("temporal")
        out.append(_temporal_row(ref, fast, present, rnd, dev, warmup, repeats))
    if "train_step" in rows:
        step("train_step")
        out.append(_train_step_row(ref, fast, inputs, present, labels, label_mask, dev, warmup, repeats))
    rows_by_name = {r.name: r for r in out}
    if "temporal" in rows_by_name and "train_step" in rows_by_name:
        notes["temporal_share_of_fast_train_step"] = rows_by_name["temporal"].fast_ms / rows_by_name["train_step"].fast_ms
    step("gemm")
    gflops = max(gflops_before, gemm_gflops(dev))
    return BenchResult(gflops, _device_name(dev), out, notes)


def _temporal_row(ref, fast, present, rnd, dev, warmup, repeats) -> Row:
    """Lag aligner (+ temporal context) fwd+bwd: the reference modules vs the fast path's."""
    from .temporal import align_fast

    B, T, M = present.shape
    d = ref.cfg.d_model
    z0, c0 = rnd(B, T, M, d), rnd(B, T, d)
    gz, gc = rnd(B, T, M, d), rnd(B, T, d)
    valid = present.any(-1)
    leaves = {}
    for side, model in (("ref", ref), ("fast", fast)):
        params = list(model.aligner.parameters()) + (list(model.context.parameters()) if model.context else [])
        leaves[side] = [z0.clone().requires_grad_(True), c0.clone().requires_grad_(True), *params]

    def run(model, align, side):
        def fn():
            z, c = leaves[side][:2]
            za = align(z)
            loss = (za * gz).sum()
            outs = (za,)
            if model.context is not None:
                zc = model.context(c, valid)
                loss = loss + (zc * gc).sum()
                outs = (za, zc)
            return loss, outs
        return fn

    return _pair_row("temporal", run(ref, lambda z: ref.aligner(z, present), "ref"),
                     run(fast, lambda z: align_fast(fast.aligner, z, present), "fast"),
                     leaves["ref"], leaves["fast"], lambda o: o, dev, warmup, repeats)


def _train_step_row(ref, fast, inputs, present, labels, label_mask, dev, warmup, repeats) -> Row:
    def stepper(model):
        params = list(model.parameters())

        def call():
            _zero(params)
            o = model(inputs, present)
            loss = model.loss(o, labels, label_mask)
            loss.backward()
            return loss, o
        return call

    r_call, f_call = stepper(ref), stepper(fast)
    ref.eval()
    fast.eval()
    r_loss, r_out = r_call()
    r_grads = _grads(list(ref.parameters()))
    f_loss, f_out = f_call()
    f_grads = _grads(list(fast.parameters()))
    err = max([_maxdiff(f_loss, r_loss)] +
              [_maxdiff(getattr(f_out, k), getattr(r_out, k)) for k in ("pred", "modality_gates", "emotion_weights")] +
              [_maxdiff(a, b) for a, b in zip(f_grads, r_grads)])
    ref.train()
    fast.train()
    ref_ms, fast_ms = time_pair(r_call, f_call, dev, warmup, repeats)
    return Row("train_step", ref_ms, fast_ms, ref_ms / fast_ms, err, peak_mb(r_call, dev), peak_mb(f_call, dev))


def _ext_available(z, present) -> bool:
    try:
        from ..ops import ext

        return ext.load_extension() is not None and ext.supports(z) is None
    except Exception:
        return False


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
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


def write_json(result: BenchResult, path: str | os.PathLike) -> None:
    """Write the documented JSON schema through the package's atomic writer (temporary file in the
    same folder + rename, permissions from the umask)."""
    atomic_write_json(path, result.to_json())


def bank_roofline_pct(result: BenchResult) -> float | None:
    """Fast modality-bank fwd+bwd GEMM rate as % of the machine's ``torch.mm`` GFLOP/s."""
    row = result.row("modality_bank")
    gflop = result.notes.get("modality_bank_gflop")
    if row is None or not gflop or not result.gemm_gflops:
        return None
    return 100.0 * (gflop / (row.fast_ms / 1e3)) / result.gemm_gflops
