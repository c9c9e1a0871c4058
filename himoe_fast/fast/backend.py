"""Backend resolution for the fast path: ``"auto" | "triton" | "torch"``.

``auto`` means Triton kernels for CUDA tensors and the batched-torch CPU path otherwise. ``triton`` on
CPU tensors runs the kernels under the Triton interpreter, which must be switched on before the kernel
modules are decorated: :func:`load_kernel_module` sets ``TRITON_INTERPRET=1`` when it imports a kernel
module for CPU use, and refuses (clearly) when the module was already imported for the GPU.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading

import torch

BACKENDS = ("auto", "triton", "torch")


@contextlib.contextmanager
def thread_override(local: threading.local, value):
    """Set ``local.value`` for the duration of the block (this thread only), then restore it: the one
    mechanism behind the fast path's scoped switches (``token_splits``, ``expert_group_bytes``,
    ``fixed_configs``, the fp32 dot precision). Lives here, not in the kernels, so that the torch
    backend can use it without importing Triton."""
    before = getattr(local, "value", None)
    local.value = value
    try:
        yield
    finally:
        local.value = before


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend


def resolve(backend: str, device: torch.device | str) -> str:
    """``"triton"`` or ``"torch"`` for tensors on ``device``."""
    check_backend(backend)
    if backend == "auto":
        return "triton" if torch.device(device).type == "cuda" and triton_available() else "torch"
    return backend


def autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """The autocast dtype active for ``device``'s type (e.g. bf16 under ``torch.autocast("cpu")``), else None."""
    dt = torch.device(device).type
    try:
        if torch.is_autocast_enabled(dt):
            return torch.get_autocast_dtype(dt)
    except (RuntimeError, TypeError):   # device type without autocast support
        return None
    return None


def unify_dtypes(op: str, names: tuple[str, ...], tensors: tuple, device: torch.device | str,
                 allowed: tuple[torch.dtype, ...] = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
                 ) -> tuple:
    """The fused ops take tensors of one floating dtype. Under autocast every floating input is cast to
    the autocast dtype (as autocast does for the reference's matmuls), so the op then runs with
    autocast off (see :func:`no_autocast`); otherwise mixed or unsupported dtypes are a ``TypeError``
    naming the tensors. ``None`` entries pass through."""
    amp = autocast_dtype(device)
    if amp is not None:
        return tuple(t.to(amp) if t is not None and t.is_floating_point() else t for t in tensors)
    present = [(n, t) for n, t in zip(names, tensors) if t is not None]
    dtypes = {t.dtype for _, t in present}
    if len(dtypes) > 1 or not dtypes <= set(allowed):
        listed = ", ".join(f"{n} {str(t.dtype).replace('torch.', '')}" for n, t in present)
        raise TypeError(f"{op}: expected tensors of one dtype among "
                        f"{', '.join(str(a).replace('torch.', '') for a in allowed)}; got {listed}")
    return tuple(tensors)


def no_autocast(device: torch.device | str):
    """Context that switches autocast off for ``device``'s type (the fused ops cast their inputs first)."""
    if autocast_dtype(device) is None:
        return contextlib.nullcontext()
    try:
        return torch.autocast(torch.device(device).type, enabled=False)
    except RuntimeError:                # a device type without autocast (e.g. meta tensors)
        return contextlib.nullcontext()


def triton_available() -> bool:
    try:
        importlib.import_module("triton")
    except Exception:  # pragma: no cover - triton missing on this platform
        return False
    return True


def load_kernel_module(name: str, device: torch.device | str):
    """Import ``himoe_fast.kernels.<name>`` usable for tensors on ``device`` (interpreter on CPU).

    While ``torch.compile`` traces, the import happens once at trace time and ``None`` is returned
    (the kernels run inside the opaque ops of :mod:`himoe_fast.fast.library` there)."""
    if torch.compiler.is_compiling():
        _kernel_module_ready(name, torch.device(device).type)
        return None
    return _load_kernel_module(name, device)


@torch.compiler.assume_constant_result
def _kernel_module_ready(name: str, device_type: str) -> bool:
    _load_kernel_module(name, device_type)
    return True


def _load_kernel_module(name: str, device: torch.device | str):
    full = f"himoe_fast.kernels.{name}"
    on_cpu = torch.device(device).type != "cuda"
    if on_cpu and full not in sys.modules:
        # Triton decides interpreter-or-compiler when a module's @triton.jit functions are decorated,
        # from this variable, and its own knobs write it back to os.environ anyway: the choice is
        # per process by Triton's design. Set it only here, before the first import for CPU tensors
        # (tests/conftest.py sets it first thing when no GPU is visible).
        os.environ["TRITON_INTERPRET"] = "1"
    mod = importlib.import_module(full)
    if on_cpu and not _interpreted(mod):
        raise RuntimeError(
            f"{full} was imported for the GPU (TRITON_INTERPRET unset), so its kernels cannot run on CPU "
            "tensors in this process; set TRITON_INTERPRET=1 before importing it, or use backend='torch'")
    return mod


def _interpreted(mod) -> bool:
    """Whether the module's ``@triton.jit`` functions were decorated under the interpreter."""
    flag = getattr(mod, "INTERPRET", None)
    if flag is not None:
        return bool(flag)
    try:
        from triton.runtime.interpreter import InterpretedFunction
        from triton.runtime.jit import JITFunction
    except Exception:  # pragma: no cover - unknown triton layout: trust the environment
        return os.environ.get("TRITON_INTERPRET", "0") == "1"
    kinds = {type(v) for v in vars(mod).values() if isinstance(v, (InterpretedFunction, JITFunction))}
    return not any(issubclass(k, JITFunction) and not issubclass(k, InterpretedFunction) for k in kinds)
