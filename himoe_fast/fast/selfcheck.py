"""Start-up self-check of the fast path, behind ``--impl auto`` (the CLI's default).

``auto`` trains with the fast path when it computes the reference's numbers *on this device*: a
small parity probe (:func:`himoe_fast.fast.parity.run_parity` on the run's own model config, batch
2 x 2, forward outputs and every parameter gradient at DESIGN.md's fp32 tolerances) decides, once.
The verdict is cached as JSON under ``<cache root>/selfcheck/`` (``$HIMOE_FAST_CACHE``, default
``~/.cache/himoe-fast``), keyed by the device (name, compute capability, driver), the versions
(himoe-fast and a hash of the fast path's sources, torch, triton) and the model config, so later
runs pay nothing and a changed kernel, GPU or driver checks anew. When the probe fails (a mismatch,
or any exception: a kernel that does not compile, a missing driver feature) :func:`resolve_impl`
falls back to the reference with one line of warning on stderr.

On GPUs the probe launches each kernel with its fixed config (:func:`himoe_fast.kernels.common.fixed_configs`),
so the check costs a handful of compiles and no autotuning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import torch

from ..config import HiMoEConfig

IMPLS = ("auto", "fast", "reference")

#: source folders whose contents define "the fast path's version"
_SOURCES = ("fast", "kernels", "csrc", "ops", "model")


def _source_hash() -> str:
    """Hash of the fast path's (and the reference's) source files: a changed kernel checks anew."""
    import himoe_fast
    import himoe_fast.csrc
    import himoe_fast.kernels

    roots = {"fast": Path(__file__).parent, "kernels": Path(himoe_fast.kernels.__file__).parent,
             "csrc": Path(himoe_fast.csrc.__file__).parent, "ops": Path(himoe_fast.__file__).parent / "ops",
             "model": Path(himoe_fast.__file__).parent / "model"}
    h = hashlib.sha256()
    for name in _SOURCES:
        for p in sorted(roots[name].glob("*")):
            if p.suffix in (".py", ".cpp", ".cu", ".cuh", ".h"):
                h.update(f"{name}/{p.name}".encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def device_identity(device: torch.device) -> dict:
    """What the verdict depends on about the device."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return {"type": "cuda", "name": props.name, "capability": f"{props.major}.{props.minor}",
                "driver": _cuda_driver(), "torch_cuda": torch.version.cuda}
    return {"type": device.type, "machine": platform.machine(), "processor": platform.processor() or ""}


def _cuda_driver() -> str | None:
    with contextlib.suppress(Exception):
        return str(torch._C._cuda_getDriverVersion())
    return None


def _versions() -> dict:
    import himoe_fast

    try:
        import triton

        triton_version = triton.__version__
    except Exception:  # noqa: BLE001
        triton_version = None
    return {"himoe_fast": himoe_fast.__version__, "sources": _source_hash(), "torch": torch.__version__,
            "triton": triton_version, "python": sys.version.split()[0]}


def cache_file(cfg: HiMoEConfig, device: torch.device) -> Path:
    from ..io import cache_root

    key = {"device": device_identity(device), "versions": _versions(), "config": cfg.to_dict()}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return cache_root() / "selfcheck" / f"{digest}.json"


def run_probe(cfg: HiMoEConfig, device: torch.device) -> dict:
    """The parity probe itself (no cache): ``{"ok": bool, "reason": str, "seconds": float}``."""
    from .parity import run_parity

    t0 = time.perf_counter()
    try:
        fixed = contextlib.nullcontext()
        if device.type == "cuda":
            from ..kernels.common import fixed_configs

            fixed = fixed_configs()
        with fixed:
            report = run_parity(cfg, backend="auto", B=2, T=2, device=str(device))
        if report.ok:
            ok, reason = True, "parity probe passed"
        else:
            worst = max(report.failures, key=lambda c: c.max_abs)
            ok, reason = False, (f"{len(report.failures)} of {len(report.checks)} parity checks failed "
                                 f"(worst: {worst.name}, abs err {worst.max_abs:.2e}{' ' + worst.note if worst.note else ''})")
    except Exception as exc:  # noqa: BLE001 - any failure of the fast path means: use the reference
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        ok, reason = False, f"{type(exc).__name__}: {first}"
    return {"ok": ok, "reason": reason, "seconds": round(time.perf_counter() - t0, 2)}


def self_check(cfg: HiMoEConfig, device: torch.device | str, use_cache: bool = True) -> dict:
    """Cached verdict of :func:`run_probe` for ``cfg`` on ``device`` (adds ``"cached"``, ``"file"``)."""
    from ..io import atomic_write_json

    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    path = cache_file(cfg, device)
    if use_cache and path.exists():
        with contextlib.suppress(Exception):
            verdict = json.loads(path.read_text())
            if isinstance(verdict, dict) and isinstance(verdict.get("ok"), bool):
                return {**verdict, "cached": True, "file": str(path)}
    verdict = run_probe(cfg, device)
    verdict["device"] = device_identity(device)
    with contextlib.suppress(OSError):          # an unwritable cache only costs a probe per run
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, verdict)
    return {**verdict, "cached": False, "file": str(path)}


def resolve_impl(impl: str, cfg: HiMoEConfig, device: torch.device | str, model_name: str = "himoe",
                 warn=None) -> str:
    """``"fast"`` or ``"reference"`` for ``impl`` in :data:`IMPLS`.

    ``auto``: the reference for models without a fast path (baselines), else fast when the cached
    self-check passes on ``device``, else the reference with one warning line (``warn(message)``,
    default: stderr)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if model_name != "himoe":
        return "reference"
    verdict = self_check(cfg, device)
    if verdict["ok"]:
        return "fast"
    message = (f"himoe-fast: warning: the fast path failed its self-check on {torch.device(device).type} "
               f"({verdict['reason']}); training with the reference implementation")
    (warn or (lambda m: print(m, file=sys.stderr, flush=True)))(message)
    return "reference"


__all__ = ["IMPLS", "resolve_impl", "self_check", "run_probe", "cache_file", "device_identity"]
