"""Build, cache and load the C++/CUDA masked NT-Xent extension (``csrc/``).

The sources are compiled once with :func:`torch.utils.cpp_extension.load` (ninja) into
``$HIMOE_FAST_CACHE/ext/<name>/`` (default ``~/.cache/himoe-fast``), where ``<name>`` hashes the
sources, the torch/Python versions, the compiler and the flags, so a changed setting builds anew and
an unchanged one never rebuilds. The module holds the CPU (and CUDA) kernels of the ops
``torch.ops.himoe_fast.masked_ntxent[_forward|_backward]``, whose schemas, fake kernels and autograd
are defined at import in :mod:`himoe_fast.ops.library`; the ops' kernels call :func:`load_extension`
on their first execution.

Concurrency: one process builds while the others wait on an ``fcntl.flock`` of ``build.lock`` in the
cache directory. The kernel drops a flock when its holder dies, so a build killed half-way leaves at
most a lock *file*, which blocks nobody; a finished build is marked by ``BUILD_OK`` and later processes
import the library directly (no compiler needed). Call :func:`prebuild` once in the parent before
starting DDP workers.

Without a working compiler (or on any build failure) :func:`load_extension` returns ``None`` and
callers fall back to the torch backend; one ``warnings.warn`` per process says so.

Environment: ``HIMOE_FAST_CACHE`` (cache root), ``HIMOE_FAST_EXT_CACHE`` (the extension's own cache
folder, overrides ``$HIMOE_FAST_CACHE/ext``; lets tests that point the data cache at a temporary
folder share one build), ``HIMOE_FAST_NO_EXT=1`` (never build or load),
``HIMOE_FAST_EXT_CUDA=0|1`` (leave out / force the CUDA kernels; default: when torch has CUDA and
nvcc is found), ``HIMOE_FAST_EXT_LOCK_TIMEOUT`` (seconds to wait for another build, default 3600),
``HIMOE_FAST_EXT_FAILED`` (set by :func:`prebuild` after a failed build so that workers do not retry).
Read by the compiled CPU kernels, once per process (tests): ``HIMOE_FAST_NTXENT_TILE`` (default Gram
tile edge, 256; the module's ``forward_cpu`` / ``backward_cpu`` also take ``tile=``) and
``HIMOE_FAST_NTXENT_ATEN_GEMM=1`` (the portable GEMM instead of MKL's). csrc/README.md maps the sources.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import json
import os
import platform
import sys
import threading
import time
import warnings
from pathlib import Path
from types import ModuleType

import torch

# Longest compile first: ninja builds the translation units in parallel, so the short layers (tiles,
# GEMM shim, vector math) finish next to the binding and the algorithm.
CPU_SOURCES = ("ntxent_op.cpp", "ntxent_cpu.cpp", "ntxent_cpu_gemm.cpp", "ntxent_cpu_tiles.cpp", "ntxent_cpu_vec.cpp")
CPU_HEADERS = ("ntxent_common.h", "ntxent_cpu.h", "ntxent_cpu_gemm.h", "ntxent_cpu_tiles.h", "ntxent_cpu_vec.h")
CUDA_SOURCES = ("ntxent_cuda.cpp", "ntxent_kernels.cu")
CUDA_HEADERS = ("ntxent_kernels.cuh",)
CFLAGS = ("-O3", "-fno-trapping-math", "-fopenmp")  # no -march=native (caches may be shared across
# machines; the hot loops carry their own AVX2/AVX-512 clones) and no -ffast-math (inf/NaN semantics);
# -fno-trapping-math only lets GCC vectorise the branch-free clamps of the exp loops.
LDFLAGS = ("-fopenmp",)       # resolves to the libgomp torch already loaded (same soname)
CUDA_CFLAGS = ("-O3",)
OPS = ("masked_ntxent", "masked_ntxent_forward", "masked_ntxent_backward")

_lock = threading.Lock()
_state: dict = {"tried": False, "module": None, "error": None, "warned": False}


# ------------------------------------------------------------------------------------------ paths
def csrc_dir() -> Path:
    """Folder of the shipped C++/CUDA sources (package ``himoe_fast.csrc``)."""
    import himoe_fast.csrc as csrc

    return Path(csrc.__file__).resolve().parent


def ext_cache_dir() -> Path:
    """``$HIMOE_FAST_EXT_CACHE`` if set, else ``$HIMOE_FAST_CACHE/ext``, else ``~/.cache/himoe-fast/ext``."""
    own = os.environ.get("HIMOE_FAST_EXT_CACHE")
    if own:
        return Path(own).expanduser()
    from ..io import cache_root as project_cache_root

    return project_cache_root() / "ext"


def with_cuda() -> bool:
    """Whether the CUDA kernels are compiled in (torch built with CUDA and nvcc found)."""
    env = os.environ.get("HIMOE_FAST_EXT_CUDA")
    if env is not None and env.strip() != "":
        return env.strip().lower() not in ("0", "false", "no", "off")
    if torch.version.cuda is None:
        return False
    from torch.utils.cpp_extension import CUDA_HOME

    return CUDA_HOME is not None


def _config(cuda: bool) -> dict:
    src = csrc_dir()
    files = CPU_SOURCES + CPU_HEADERS + (CUDA_SOURCES + CUDA_HEADERS if cuda else ())
    h = hashlib.sha256()
    for f in sorted(files):
        p = src / f
        h.update(f.encode() + b"\0" + (p.read_bytes() if p.exists() else b"<missing>") + b"\0")
    cflags = list(CFLAGS) + (["-DHIMOE_WITH_CUDA"] if cuda else [])
    env = {
        "torch": torch.__version__, "torch_cuda": torch.version.cuda, "python": sys.version.split()[0],
        "machine": platform.machine(), "system": platform.system(), "cxx": os.environ.get("CXX", "c++"),
        "abi": int(torch._C._GLIBCXX_USE_CXX11_ABI), "cflags": cflags, "ldflags": list(LDFLAGS),
        "cuda": cuda, "cuda_cflags": list(CUDA_CFLAGS) if cuda else [],
        "arch": os.environ.get("TORCH_CUDA_ARCH_LIST", "") if cuda else "",
    }
    h.update(json.dumps(env, sort_keys=True).encode())
    name = f"himoe_fast_ntxent_{h.hexdigest()[:16]}"
    return {"name": name, "dir": ext_cache_dir() / name, "cflags": cflags, "cuda": cuda, "env": env,
            "sources": [str(src / f) for f in CPU_SOURCES + (CUDA_SOURCES if cuda else ())]}


def _library_path(cfg: dict) -> Path:
    return cfg["dir"] / (cfg["name"] + (".pyd" if sys.platform == "win32" else ".so"))


# ------------------------------------------------------------------------------------------ build
@contextlib.contextmanager
def _flock(path: Path, timeout: float):
    """Exclusive ``fcntl.flock`` on ``path`` (created if needed); released by the kernel if we die."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {timeout:.0f} s for another process building in {path.parent}")
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor drops the lock


def _import_library(name: str, path: Path) -> ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, str(path))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def _build_or_import(cfg: dict, verbose: bool) -> ModuleType:
    d: Path = cfg["dir"]
    lib, marker = _library_path(cfg), d / "BUILD_OK"
    if marker.exists() and lib.exists():
        return _import_library(cfg["name"], lib)
    d.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("HIMOE_FAST_EXT_LOCK_TIMEOUT", "3600"))
    with _flock(d / "build.lock", timeout):
        if marker.exists() and lib.exists():  # another process built it while we waited
            return _import_library(cfg["name"], lib)
        # torch's own build baton ("lock", an O_EXCL file) survives a killed build and would make
        # cpp_extension.load wait forever; we hold the flock, so nobody else is building here.
        with contextlib.suppress(FileNotFoundError):
            (d / "lock").unlink()
        marker.unlink(missing_ok=True)
        from torch.utils import cpp_extension

        t0 = time.perf_counter()
        module = cpp_extension.load(
            name=cfg["name"], sources=cfg["sources"], extra_cflags=cfg["cflags"],
            extra_cuda_cflags=list(CUDA_CFLAGS) if cfg["cuda"] else None, extra_ldflags=list(LDFLAGS),
            build_directory=str(d), with_cuda=cfg["cuda"], verbose=verbose, is_python_module=True,
        )
        tmp = d / "BUILD_OK.tmp"
        tmp.write_text(json.dumps({**cfg["env"], "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
        os.replace(tmp, marker)
        sys.modules.setdefault(cfg["name"], module)
        return module


# ------------------------------------------------------------------------------------------ public
def load_extension(verbose: bool = False, warn: bool = True) -> ModuleType | None:
    """Build (once, cached on disk) and load the extension; ``None`` when it cannot be had.

    The first failure in a process is remembered (no retry) and, with ``warn``, announced once.
    After the first call this is a plain lookup (also inside ``torch.compile``d code).
    """
    if _state["tried"] and (_state["module"] is not None or _state["warned"] or not warn or _disabled()):
        return _state["module"]
    return _load_slow(verbose, warn)


@torch.compiler.disable
def _load_slow(verbose: bool, warn: bool) -> ModuleType | None:
    with _lock:
        if not _state["tried"]:
            _state["tried"] = True
            try:
                if os.environ.get("HIMOE_FAST_NO_EXT", "").strip() not in ("", "0"):
                    raise RuntimeError("disabled by HIMOE_FAST_NO_EXT")
                failed = os.environ.get("HIMOE_FAST_EXT_FAILED")
                if failed:
                    raise RuntimeError(f"the build failed in the parent process: {failed}")
                cuda = with_cuda()
                cfg = _config(cuda)
                _state["cfg"] = cfg
                try:
                    module = _build_or_import(cfg, verbose)
                except Exception as e:  # noqa: BLE001
                    if not cuda:
                        raise
                    # keep the CPU kernels when only the CUDA part fails to build
                    _state["cuda_error"] = f"{type(e).__name__}: {e}".strip()
                    if warn:
                        warnings.warn("himoe_fast: the CUDA kernels of the masked NT-Xent extension failed to build "
                                      f"({_state['cuda_error'][-400:]}); building the CPU kernels only.",
                                      RuntimeWarning, stacklevel=3)
                    cfg = _config(False)
                    _state["cfg"] = cfg
                    module = _build_or_import(cfg, verbose)
                _state["cuda_kernels"] = bool(module.cuda_kernels())
                _state["module"] = module
            except Exception as e:  # noqa: BLE001 - any build failure means: use the torch backend
                _state["error"] = f"{type(e).__name__}: {e}".strip()
        module, error = _state["module"], _state["error"]
        if module is None and warn and not _state["warned"] and not _disabled():
            _state["warned"] = True
            short = error if len(error) < 600 else error[:300] + " ... " + error[-300:]
            warnings.warn(f"himoe_fast: the C++ masked NT-Xent extension is unavailable ({short}); falling back "
                          "to the torch backend. `himoe-fast doctor` shows the build status.",
                          RuntimeWarning, stacklevel=3)
        return module


def _disabled() -> bool:
    return os.environ.get("HIMOE_FAST_NO_EXT", "").strip() not in ("", "0")


@torch.compiler.assume_constant_result
def ext_available() -> bool:
    """True when the extension is (or can be) built and loaded in this process (under ``torch.compile``
    evaluated once while tracing, which builds or loads it then)."""
    return load_extension() is not None


def supports(z: torch.Tensor) -> str | None:
    """``None`` if the loaded extension has a kernel for ``z`` (dtype and device), else why not."""
    if z.dtype not in (torch.float32, torch.float64):
        return f"dtype {z.dtype} (the extension takes float32 and float64)"
    if z.device.type == "cpu":
        return None
    if z.device.type == "cuda":
        if _state["module"] is not None and _state.get("cuda_kernels"):
            return None
        return "no CUDA kernels in this build (torch without CUDA, or nvcc not found)"
    return f"device {z.device.type}"


def build_status(build: bool = True) -> dict:
    """For ``himoe-fast doctor``: is the extension built and loaded, where, with CUDA, and any error.

    ``build=False`` only inspects the cache and never compiles.
    """
    if build:
        load_extension(warn=False)
    cuda = with_cuda()
    try:
        cfg = _state.get("cfg") or _config(cuda)
        path, built = str(_library_path(cfg)), (cfg["dir"] / "BUILD_OK").exists()
    except Exception as e:  # noqa: BLE001
        path, built = None, False
        _state.setdefault("error", f"{type(e).__name__}: {e}")
    module = _state["module"]
    return {
        "loaded": module is not None,
        "built": built,
        "path": path,
        "cache_dir": str(ext_cache_dir()),
        "cuda_kernels": bool(module.cuda_kernels()) if module is not None else False,
        "cuda_requested": cuda,
        "disabled": _disabled(),
        "error": _state["error"],
        "cuda_error": _state.get("cuda_error"),
        "ops": [f"torch.ops.himoe_fast.{op}" for op in OPS] if module is not None else [],
    }


def prebuild(verbose: bool = False) -> bool:
    """Build/load once in the parent process before DDP workers start; returns availability.

    On failure it sets ``HIMOE_FAST_EXT_FAILED`` in ``os.environ`` so that child processes fall back
    to the torch backend without retrying the build.
    """
    module = load_extension(verbose=verbose)
    if module is None and _state["error"] and not _disabled():
        os.environ["HIMOE_FAST_EXT_FAILED"] = _state["error"][:500]
    return module is not None


__all__ = ["load_extension", "ext_available", "build_status", "prebuild", "supports", "csrc_dir", "ext_cache_dir",
           "with_cuda"]
