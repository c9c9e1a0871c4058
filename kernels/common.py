"""What the Triton kernel modules share: launch settings, launch guards, device helpers.

* :data:`INTERPRET` -- the kernels were decorated under ``TRITON_INTERPRET=1`` (CPU tensors).
* :data:`AUTOTUNE` -- one switch for every kernel module: ``HIMOE_FAST_AUTOTUNE=0`` launches each
  kernel with its fixed GPU config instead of autotuning (always off under the interpreter);
  :func:`fixed_configs` does the same for one block of code (:func:`autotune_enabled`).
* :func:`check_dtypes`, :func:`device_guard` -- what every wrapper does before a launch.
* ``gelu`` / ``gelu_grad`` -- ``@triton.jit`` device functions, fp32 in and out.
"""

from __future__ import annotations

import contextlib
import os
import threading

import torch
import triton
import triton.language as tl

INTERPRET = bool(triton.knobs.runtime.interpret) if hasattr(triton, "knobs") else \
    os.environ.get("TRITON_INTERPRET", "0") == "1"
AUTOTUNE = not INTERPRET and os.environ.get("HIMOE_FAST_AUTOTUNE", "1").strip() != "0"

_FIXED = threading.local()


def autotune_enabled() -> bool:
    """Whether launches autotune now: :data:`AUTOTUNE`, unless inside :func:`fixed_configs`."""
    return AUTOTUNE and not getattr(_FIXED, "value", None)


@contextlib.contextmanager
def _thread_override(local: threading.local, value):
    """Set ``local.value`` for the duration of the block (this thread only), then restore it."""
    before = getattr(local, "value", None)
    local.value = value
    try:
        yield
    finally:
        local.value = before


def fixed_configs():
    """Launch every kernel with its fixed GPU config inside this block (self-check, cache warm-up)."""
    return _thread_override(_FIXED, True)

#: ``tl.dot`` precision of fp32 operands on the GPU. ``tf32x3`` (three TF32 tensor-core products per
#: dot, errors ~1e-6 relative: far inside the fp32 parity tolerances) is the default because the
#: FMA-path ``ieee`` dots hold whole operand tiles per thread and spill 5-25 KB of stack per thread in
#: the router backward (``bench/aot_check.py``); ``HIMOE_FAST_FP32_DOT=ieee`` restores exact fp32 dots.
FP32_DOTS = ("ieee", "tf32x3", "tf32")
FP32_DOT = os.environ.get("HIMOE_FAST_FP32_DOT", "tf32x3").strip() or "tf32x3"
if FP32_DOT not in FP32_DOTS:
    raise ValueError(f"HIMOE_FAST_FP32_DOT must be ieee, tf32x3 or tf32, got {FP32_DOT!r}")


_DOT_OVERRIDE = threading.local()


def fp32_dot(precision: str):
    """Within the block (this thread), fp32 ``tl.dot`` runs at ``precision``: parity checks use
    ``"ieee"``, as DESIGN.md's fp32 parity mode asks, whatever ``HIMOE_FAST_FP32_DOT`` says."""
    if precision not in FP32_DOTS:
        raise ValueError(f"fp32 dot precision must be one of {FP32_DOTS}, got {precision!r}")
    return _thread_override(_DOT_OVERRIDE, precision)


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` of ``tl.dot`` for operands of ``dtype`` (ignored for 16-bit operands)."""
    if dtype != torch.float32:
        return "tf32"
    return getattr(_DOT_OVERRIDE, "value", None) or FP32_DOT


def is_fp32(nargs: dict, name: str) -> bool:
    """For ``early_config_prune``: whether the kernel argument ``name`` is an fp32 tensor."""
    return getattr(nargs.get(name), "dtype", None) == torch.float32


#: dtypes the kernels take (all operands of one launch share one); the interpreter runs fp32 only
KERNEL_DTYPES = (torch.float32,) if INTERPRET else (torch.float32, torch.bfloat16, torch.float16)


def check_dtypes(op: str, **tensors: torch.Tensor | None) -> torch.dtype:
    """All given tensors share one dtype the kernels take; else a ``TypeError`` naming them."""
    given = {k: t for k, t in tensors.items() if t is not None}
    dtypes = {t.dtype for t in given.values()}
    if len(dtypes) != 1 or not dtypes <= set(KERNEL_DTYPES):
        ok = "/".join(str(d).replace("torch.", "") for d in KERNEL_DTYPES)
        got = ", ".join(f"{k} {str(t.dtype).replace('torch.', '')}" for k, t in given.items())
        raise TypeError(f"{op} (triton): expected tensors of one dtype among {ok}"
                        f"{' (interpreter)' if INTERPRET else ''}; got {got}")
    devices = {t.device for t in given.values()}
    if len(devices) != 1:
        raise ValueError(f"{op} (triton): tensors on several devices: {sorted(map(str, devices))}")
    return dtypes.pop()


def device_guard(t: torch.Tensor):
    """Launch on ``t``'s GPU whatever the current device is (a no-op for CPU tensors)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else contextlib.nullcontext()


@triton.jit
def gelu(x):
    """Exact (erf) GELU, as ``F.gelu``: ``0.5 x (1 + erf(x / sqrt 2))``."""
    return 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))


@triton.jit
def gelu_grad(x):
    """``d gelu / dx = Phi(x) + x phi(x)``."""
    cdf = 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))
    pdf = tl.exp(-0.5 * x * x) * 0.3989422804014327
    return cdf + x * pdf
