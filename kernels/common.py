"""What the Triton kernel modules share: one place for each launch decision and device helper.

* :data:`INTERPRET` -- the kernels were decorated under ``TRITON_INTERPRET=1`` (CPU tensors);
  :func:`check_launchable` refuses CPU tensors otherwise, with the fix in the message.
* The autotune-or-fixed policy: :data:`AUTOTUNE` is one switch for every kernel module
  (``HIMOE_FAST_AUTOTUNE=0`` launches each kernel with its fixed GPU config instead of autotuning;
  always off under the interpreter); :func:`fixed_configs` does the same for one block of code;
  :func:`select_kernel` applies the policy at a launch; :func:`config_pruner` builds the
  ``early_config_prune`` hooks that keep the autotune grids to configs that fit.
* fp32 ``tl.dot`` precision: :data:`FP32_DOT`, :func:`fp32_dot`, :func:`dot_precision`.
* Launch helpers: :func:`pow2` (block sizes), :func:`contiguous`, :func:`check_dtypes`,
  :func:`device_guard`, :func:`sm_count`.
* ``gelu`` / ``gelu_grad`` -- ``@triton.jit`` device functions, fp32 in and out.
"""

from __future__ import annotations

import contextlib
import os
import threading

import torch
import triton
import triton.language as tl

from himoe_fast.fast.backend import thread_override

INTERPRET = bool(triton.knobs.runtime.interpret) if hasattr(triton, "knobs") else \
    os.environ.get("TRITON_INTERPRET", "0") == "1"
AUTOTUNE = not INTERPRET and os.environ.get("HIMOE_FAST_AUTOTUNE", "1").strip() != "0"

_FIXED = threading.local()


def autotune_enabled() -> bool:
    """Whether launches autotune now: :data:`AUTOTUNE`, unless inside :func:`fixed_configs`."""
    return AUTOTUNE and not getattr(_FIXED, "value", None)


def fixed_configs():
    """Launch every kernel with its fixed GPU config inside this block (self-check, cache warm-up)."""
    return thread_override(_FIXED, True)


def select_kernel(tuned, plain, gpu_config: dict, interp_config: dict):
    """The autotune-or-fixed policy at one launch: ``(kernel, meta)`` to call as
    ``kernel[grid](*args, **meta)`` -- the autotuned kernel with no extra meta-parameters, or the plain
    one with its fixed config (``interp_config`` under the interpreter, ``gpu_config`` on a GPU)."""
    if autotune_enabled():  # pragma: no cover - GPU only
        return tuned, {}
    return plain, dict(interp_config if INTERPRET else gpu_config)


def config_pruner(ok, tensor_arg: str, *int_args: str):
    """An ``early_config_prune`` hook keeping the configs with ``ok(config, fp32, *ints)``, where
    ``fp32`` says whether the kernel argument ``tensor_arg`` is an fp32 tensor and ``ints`` are the
    named integer arguments or constexprs (e.g. a mode); the first config if none is left (a launch
    must have one)."""
    def prune(configs, nargs, **kwargs):
        args = {**nargs, **kwargs}
        fp32 = getattr(args.get(tensor_arg), "dtype", None) == torch.float32
        ints = [int(args[name]) for name in int_args]
        return [c for c in configs if ok(c, fp32, *ints)] or configs[:1]
    return prune

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
    return thread_override(_DOT_OVERRIDE, precision)


def dot_precision(dtype: torch.dtype) -> str:
    """``input_precision`` of ``tl.dot`` for operands of ``dtype`` (ignored for 16-bit operands)."""
    if dtype != torch.float32:
        return "tf32"
    return getattr(_DOT_OVERRIDE, "value", None) or FP32_DOT


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


def pow2(n: int, lo: int = 16) -> int:
    """Block size for a dimension held whole by a program: the next power of two, at least ``lo``
    (``tl.dot`` needs 16); masks cover the padding."""
    return max(lo, triton.next_power_of_2(int(n)))


def contiguous(*tensors: torch.Tensor | None) -> tuple:
    """The tensors made contiguous (``None`` passes through): the kernels index rows with unit strides."""
    return tuple(None if t is None else t.contiguous() for t in tensors)


def check_launchable(op: str, device: torch.device) -> None:
    """Kernels decorated for the GPU cannot take CPU tensors (meta tensors pass: bench/aot_check.py
    records launches on them without running anything)."""
    if not INTERPRET and device.type == "cpu":
        raise RuntimeError(f"{op} (triton): the kernels were imported without TRITON_INTERPRET=1, so they need "
                           "CUDA tensors; set TRITON_INTERPRET=1 before importing himoe_fast.kernels to run them "
                           "on CPU, or use backend='torch'")


def sm_count(device: torch.device) -> int:
    """Streaming multiprocessors of ``device`` (1 for anything but a CUDA device): sizes split grids."""
    if INTERPRET or device.type != "cuda":
        return 1
    return torch.cuda.get_device_properties(device).multi_processor_count


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
