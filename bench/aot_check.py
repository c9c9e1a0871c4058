#!/usr/bin/env python
"""Ahead-of-time resource check of the Triton kernels, without a GPU.

Runs the fast path's own wrappers (``himoe_fast.kernels.modality_experts`` forward + backward and
``himoe_fast.kernels.da_router`` forward + backward, every routing and router mode) on ``meta``
tensors at the preset and test shapes, records every kernel launch they make (the launches are
intercepted, nothing runs), and compiles each one with ``triton.compile`` for ``sm_80`` (A100) and
``sm_90`` (H100/H200) in fp32, bf16 and the autocast mix (fp32 parameters and activations cast by
the fused ops under autocast, as training sends them). ``ptxas -v`` (the one Triton uses) reports
registers, stack spills and shared memory per build. Prints a table and exits 1 when

* a build fails to compile,
* shared memory exceeds the smaller GPU's limit (sm_80: 163 KiB per block) -- for any config,
* spill stores exceed the budget (default: 0 bytes/thread in bf16, 1024 in fp32), or
* registers exceed 255 per thread,

except the builds listed in :data:`KNOWN_OVER_BUDGET` (open work, shown as "known").

Default: the fixed configs the kernels launch with when autotuning is off (and under the
self-check). ``--full``: every config of the autotune grids, after the kernels' own config pruning,
i.e. every config the autotuner can pick. Compiles are cached (Triton's cache for the binaries, and
``--cache`` (default ``$HIMOE_FAST_CACHE/aot``) for the ptxas reports), and run in ``--jobs``
processes.

    python bench/aot_check.py                  # CI: fixed configs
    python bench/aot_check.py --full --markdown docs/aot_full.md
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)            # compile for the GPU, whatever the caller's shell says
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")   # Triton 3.9's default, stated (silences its warning)

SMEM_LIMIT = {80: 163 * 1024, 90: 227 * 1024}       # max dynamic shared memory per block (bytes)
MAX_REGS = 255
SPILL_BUDGET = {"fp32": 1024, "bf16": 0, "amp": 0}  # spill-store bytes per thread
ARCHS = (80, 90)

#: Builds known to be over budget with the fixed configs (kernel, variant prefix, dtypes, arch): shown
#: as "known" and not failing the check, so CI guards against new regressions while these are open
#: (docs/GPU.md). Remove an entry when its kernel is fixed; a listed build that fits shows "ok".
KNOWN_OVER_BUDGET: list[tuple[str, str, tuple[str, ...], int]] = []


def known(kernel: str, variant: str, dtype: str, arch: int) -> bool:
    return any(kernel == k and variant.startswith(v) and dtype in ds and arch == a
               for k, v, ds, a in KNOWN_OVER_BUDGET)
DTYPES = ("fp32", "bf16", "amp")


# ------------------------------------------------------------------------------------------ shapes
@dataclass(frozen=True)
class Shape:
    name: str
    M: int          # modalities
    N: int          # tokens (B * T)
    d: int
    K: int
    h: int
    L: int
    r: int


SHAPES = (
    Shape("deap", M=7, N=256, d=128, K=4, h=256, L=8, r=64),        # preset, batch 32 x seq-len 8
    Shape("dreamer", M=2, N=256, d=128, K=4, h=256, L=8, r=64),
    Shape("tests", M=4, N=6, d=40, K=3, h=72, L=5, r=8),            # parity tests' tiny config
)


# ------------------------------------------------------------------------------------------ recording
@dataclass
class Launch:
    kernel: str
    fn: object = field(repr=False)
    args: tuple = field(repr=False)
    kwargs: dict = field(repr=False)
    configs: list = field(default_factory=list, repr=False)   # autotune: every candidate (after pruning)
    dtype: str = ""
    shape: str = ""
    what: str = ""


def _record(dtype: str, full: bool, shapes) -> list[Launch]:
    """Run the wrappers on meta tensors and return the launches they make."""
    import torch
    from triton.runtime.autotuner import Autotuner
    from triton.runtime.jit import JITFunction

    import himoe_fast.kernels.common as common
    import himoe_fast.kernels.da_router as dr
    import himoe_fast.kernels.modality_experts as me
    from himoe_fast.fast import backend as fb

    # both kernel modules are imported here, for the GPU: the wrappers' loader would otherwise switch
    # on the interpreter for these (meta, i.e. non-CUDA) tensors
    assert not common.INTERPRET and not me.INTERPRET

    launches: list[Launch] = []

    def jit_run(self, *args, grid, warmup, **kwargs):
        launches.append(Launch(self.fn.__name__, self, args, dict(kwargs)))

    def tuner_run(self, *args, **kwargs):
        kwargs = {k: v for k, v in kwargs.items() if k not in ("grid", "warmup")}
        self.nargs = dict(zip(self.arg_names, args))
        configs = self.prune_configs(kwargs)
        self.nargs = None
        fn = self.fn
        while not isinstance(fn, JITFunction):      # triton.heuristics: its values become meta-parameters
            kwargs.update({k: h({**dict(zip(fn.arg_names, args)), **kwargs}) for k, h in fn.values.items()})
            fn = fn.fn
        launches.append(Launch(self.base_fn.__name__, fn, args, dict(kwargs), list(configs)))

    patches = [(JITFunction, "run", jit_run), (Autotuner, "run", tuner_run),
               (fb, "_interpreted", lambda module: True),       # meta tensors count as "CPU" there
               (dr, "_num_partials", lambda N, device, nbytes: max(1, min(triton_cdiv(N, 16), 132)))]
    if dtype == "amp":   # the fused ops see autocast on: they cast fp32 inputs to bf16 themselves
        patches.append((fb, "autocast_dtype", lambda device: torch.bfloat16))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    for obj, name, new in patches:
        setattr(obj, name, new)
    tdt = {"fp32": torch.float32, "bf16": torch.bfloat16, "amp": torch.float32}[dtype]
    ctx = contextlib.nullcontext() if full else common.fixed_configs()
    try:
        with ctx:
            for shape in shapes:
                n0 = len(launches)
                _drive(shape, tdt, torch)
                for launch in launches[n0:]:
                    launch.dtype, launch.shape = dtype, shape.name
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)
    if not full:
        assert all(not launch.configs for launch in launches)
    return launches


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _drive(s: Shape, dt, torch) -> None:
    """Forward + backward of the bank (3 routings) and the router core (3 modes) at shape ``s``."""
    from himoe_fast.fast.experts import modality_bank
    from himoe_fast.fast.router import da_router

    dev = "meta"

    def p(*shape):
        return torch.empty(shape, device=dev, dtype=dt, requires_grad=True)

    for routing in ("soft", "uniform", "top1"):
        x = p(s.M, s.N, s.d)
        z, alpha = modality_bank(x, p(s.M, s.d, s.K), p(s.M, s.K), p(s.M, s.K, s.d, s.h), p(s.M, s.K, s.h),
                                 p(s.M, s.K, s.h, s.d), p(s.M, s.K, s.d), routing, backend="triton")
        outs = [z] + ([alpha] if alpha.requires_grad else [])
        torch.autograd.backward(outs, [torch.empty_like(o) for o in outs])
    for mode in ("dot", "cosine", "diff"):
        P = 2 if mode == "diff" else 1
        zz = p(s.N, s.d)
        e, beta = da_router(zz, p(s.L, s.d, s.h), p(s.L, s.h), p(s.L, s.h, s.d), p(s.L, s.d), p(P, s.d, s.r),
                            p(P, s.d, s.r), mode, scale=p() if mode == "cosine" else None,
                            lam=p() if mode == "diff" else None, backend="triton")
        torch.autograd.backward([e, beta], [torch.empty_like(e), torch.empty_like(beta)])


# ------------------------------------------------------------------------------------------ compiling
@dataclass
class Build:
    kernel: str
    variant: str
    config: str
    dtype: str
    arch: int
    shapes: str
    what: str = ""
    shared: int = 0
    regs: int = 0
    spill_stores: int = 0
    spill_loads: int = 0
    stack: int = 0
    seconds: float = 0.0
    error: str = ""
    cached: bool = False

    def is_known(self) -> bool:
        return not self.error and known(self.kernel, self.variant, self.dtype, self.arch)

    def problems(self, budget: dict) -> list[str]:
        out = []
        if self.error:
            out.append(f"compile error: {self.error}")
            return out
        if self.shared > SMEM_LIMIT[80]:
            out.append(f"shared memory {self.shared / 1024:.1f} KiB > sm_80's {SMEM_LIMIT[80] // 1024} KiB")
        if self.regs > MAX_REGS:
            out.append(f"{self.regs} registers > {MAX_REGS}")
        if self.spill_stores > budget[self.dtype]:
            out.append(f"spills {self.spill_stores} B/thread > budget {budget[self.dtype]} B")
        return out


def _config_kwargs(launch: Launch) -> list[dict]:
    """The launch's keyword arguments per config (one entry for a fixed-config launch)."""
    if not launch.configs:
        return [dict(launch.kwargs)]
    return [{**launch.kwargs, **c.all_kwargs()} for c in launch.configs]


_VARIANT_KEYS = ("ROUTING", "HAS_DALPHA", "HAS_COLSUM", "MODE")
_VARIANT_NAMES = {"ROUTING": ("soft", "uniform", "top1"), "MODE": ("dot", "cosine", "diff")}


def _variant(kwargs: dict) -> str:
    parts = []
    for k in _VARIANT_KEYS:
        if k in kwargs:
            v = kwargs[k]
            parts.append(_VARIANT_NAMES[k][v] if k in _VARIANT_NAMES else f"{k.lower()}={int(bool(v))}")
    return " ".join(parts)


def _cfg_label(fn, kwargs: dict) -> str:
    names = [p.name for p in fn.params if p.is_constexpr and p.name.startswith("BLOCK_")]
    parts = [f"{n.removeprefix('BLOCK_')}{kwargs[n]}" for n in names if n in kwargs]
    parts.append(f"w{kwargs.get('num_warps', 4)}s{kwargs.get('num_stages', 3)}")
    return " ".join(parts)


def _spec(launch: Launch, kwargs: dict, arch: int):
    """(ASTSource, target, options) exactly as ``JITFunction.run`` would build them for ``arch``."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature

    fn = launch.fn
    target = GPUTarget("cuda", arch, 32)
    backend = make_backend(target)
    kw = dict(kwargs)
    kw.setdefault("debug", False)
    binder = create_function_from_signature(fn.signature, fn.params, backend)
    bound, specialization, options = binder(*launch.args, **kw)
    options, signature, constexprs, attrs = fn._pack_args(backend, kw, bound, specialization, options)
    return ASTSource(fn, signature, constexprs, attrs), target, options


_PTXAS_LINE = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def _ptxas_cmd(arch: int, gpu: str, ptx_file: str) -> list[str]:
    """The ptxas Triton itself uses for ``arch``, with Triton's flags (plus ``-v``)."""
    from triton.backends.nvidia.compiler import get_ptxas

    return [get_ptxas(arch).path, "-lineinfo", "-v", "--regAllocOptLevel=2", f"--gpu-name={gpu}", ptx_file,
            "-o", os.devnull]


_JOBS: dict[str, dict] = {}          # filled before the worker processes fork (ASTSources do not pickle)


def _compile_key(key: str) -> dict:
    return _compile_one(_JOBS[key])


def _compile_one(job: dict) -> dict:
    """Worker: compile one (launch, config, arch); returns the Build fields.

    The ptxas report is the one Triton's own ptxas run prints (``dump_ptxas_log``); when Triton's
    cache already holds the binary (no ptxas run), ptxas is run once more on the PTX with its flags."""
    import io

    import triton
    from triton import knobs

    t0 = time.perf_counter()
    out = {"error": ""}
    try:
        src, target, options = job["spec"]
        knobs.nvidia.dump_ptxas_log = True
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            kernel = triton.compile(src, target=target, options=options.__dict__)
        out["shared"] = int(kernel.metadata.shared)
        log = buf.getvalue()
        if not _REGS.search(log):
            ptx = kernel.asm["ptx"]
            gpu = re.search(r"^\.target\s+(\S+)", ptx, re.M).group(1).split(",")[0]
            with open(job["ptx_file"], "w") as f:
                f.write(ptx)
            res = subprocess.run(_ptxas_cmd(target.arch, gpu, job["ptx_file"]), capture_output=True, text=True)
            log = res.stdout + res.stderr
            if res.returncode != 0:
                raise RuntimeError(f"ptxas: {log.strip()[-300:]}")
        m, r = _PTXAS_LINE.search(log), _REGS.search(log)
        if not m or not r:
            raise RuntimeError(f"no ptxas report: {log.strip()[-300:]}")
        out.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)),
                   regs=int(r.group(1)))
    except Exception as exc:  # noqa: BLE001 - every failure is a reported build error
        msg = " ".join(str(exc).split())
        out["error"] = f"{type(exc).__name__}: {msg[:300]}"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(job["ptx_file"])
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def run(full: bool, dtypes, archs, shapes, jobs: int, cache_dir: Path, budget: dict, progress=True,
        kernels=None) -> list[Build]:
    import triton

    todo: dict[str, dict] = {}                 # build key -> job
    builds: dict[str, Build] = {}
    for dtype in dtypes:
        for launch in _record(dtype, full, shapes):
            if kernels and launch.kernel not in kernels:
                continue
            for kw in _config_kwargs(launch):
                for arch in archs:
                    src, target, options = _spec(launch, kw, arch)
                    key = hashlib.sha256(f"{src.hash()}|{target}|{sorted(options.__dict__.items())}|"
                                         f"{triton.__version__}".encode()).hexdigest()[:24]
                    label = _cfg_label(launch.fn, kw)
                    bkey = f"{key}|{dtype}"
                    if bkey in builds:
                        b = builds[bkey]
                        if launch.shape not in b.shapes.split(","):
                            b.shapes += f",{launch.shape}"
                        continue
                    builds[bkey] = Build(launch.kernel, _variant(kw), label, dtype, arch, launch.shape)
                    todo.setdefault(key, {"spec": (src, target, options), "keys": []})["keys"].append(bkey)
    cache_dir.mkdir(parents=True, exist_ok=True)
    pending = {}
    for key, job in todo.items():
        f = cache_dir / f"{key}.json"
        if f.exists():
            with contextlib.suppress(Exception):
                res = json.loads(f.read_text())
                for bkey in job["keys"]:
                    b = builds[bkey]
                    for k, v in res.items():
                        setattr(b, k, v)
                    b.cached = True
                continue
        job["ptx_file"] = str(cache_dir / f"{key}.{os.getpid()}.ptx")
        pending[key] = job
    if progress:
        print(f"aot_check: {len(builds)} builds, {len(todo)} distinct compiles, {len(pending)} not cached "
              f"({jobs} jobs)", flush=True)
    done = 0
    _JOBS.clear()
    _JOBS.update(pending)
    pool_cm = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("fork")) \
        if jobs > 1 and len(pending) > 1 else contextlib.nullcontext()
    with pool_cm as pool:
        futs = {}
        for key in pending:
            futs[key] = pool.submit(_compile_key, key) if pool else None
        for key, job in pending.items():
            res = futs[key].result() if pool else _compile_one(job)
            if not res["error"]:
                tmp = cache_dir / f"{key}.json.tmp{os.getpid()}"
                tmp.write_text(json.dumps(res))
                os.replace(tmp, cache_dir / f"{key}.json")
            for bkey in job["keys"]:
                for k, v in res.items():
                    setattr(builds[bkey], k, v)
            done += 1
            if progress and (done % 10 == 0 or done == len(pending)):
                print(f"aot_check: compiled {done}/{len(pending)}", flush=True)
    return sorted(builds.values(), key=lambda b: (b.kernel, b.variant, b.config, b.dtype, b.arch))


# ------------------------------------------------------------------------------------------ report
def table(builds: list[Build], budget: dict, markdown: bool = False) -> str:
    head = ["kernel", "variant", "config", "dtype", "arch", "shapes", "smem KiB", "regs", "spill B", "stack B",
            "status"]
    rows = []
    for b in builds:
        probs = b.problems(budget)
        rows.append([b.kernel, b.variant, b.config, b.dtype, f"sm_{b.arch}", b.shapes,
                     "" if b.error else f"{b.shared / 1024:.1f}", "" if b.error else str(b.regs),
                     "" if b.error else str(b.spill_stores), "" if b.error else str(b.stack),
                     "ok" if not probs else ("known: " if b.is_known() else "") + "; ".join(probs)])
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head)] + [fmt.format(*r) for r in rows])


def summary(builds: list[Build], budget: dict) -> dict:
    out = {"builds": len(builds), "failures": sum(bool(b.problems(budget)) and not b.is_known() for b in builds),
           "known_over_budget": sum(bool(b.problems(budget)) and b.is_known() for b in builds),
           "compile_errors": sum(bool(b.error) for b in builds)}
    for dtype in sorted({b.dtype for b in builds}):
        ok = [b for b in builds if b.dtype == dtype and not b.error]
        out[f"max_spill_{dtype}"] = max((b.spill_stores for b in ok), default=0)
        out[f"max_smem_kib_{dtype}"] = round(max((b.shared for b in ok), default=0) / 1024, 1)
        out[f"max_regs_{dtype}"] = max((b.regs for b in ok), default=0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full", action="store_true", help="every autotune config (after pruning), not only the fixed ones")
    ap.add_argument("--arch", default="80,90", help="compute capabilities, e.g. 80,90")
    ap.add_argument("--dtype", default=",".join(DTYPES), help="fp32,bf16,amp")
    ap.add_argument("--shapes", default=",".join(s.name for s in SHAPES), help="deap,dreamer,tests")
    ap.add_argument("--kernels", default="", help="only these kernels (comma-separated function names)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--cache", type=Path, default=None, help="ptxas report cache (default $HIMOE_FAST_CACHE/aot)")
    ap.add_argument("--spill-budget-fp32", type=int, default=SPILL_BUDGET["fp32"])
    ap.add_argument("--spill-budget-bf16", type=int, default=SPILL_BUDGET["bf16"])
    ap.add_argument("--json", type=Path, default=None, help="write the builds and the summary here")
    ap.add_argument("--markdown", type=Path, default=None, help="write the table as markdown here")
    ap.add_argument("--quiet", action="store_true", help="print failures and the summary only")
    a = ap.parse_args(argv)

    from himoe_fast.io import cache_root

    budget = {"fp32": a.spill_budget_fp32, "bf16": a.spill_budget_bf16, "amp": a.spill_budget_bf16}
    shapes = [s for s in SHAPES if s.name in a.shapes.split(",")]
    archs = [int(x) for x in a.arch.split(",")]
    dtypes = [d for d in a.dtype.split(",") if d]
    t0 = time.perf_counter()
    builds = run(a.full, dtypes, archs, shapes, max(1, a.jobs), a.cache or cache_root() / "aot", budget,
                 progress=not a.quiet, kernels=[k for k in a.kernels.split(",") if k])
    over = [b for b in builds if b.problems(budget)]
    bad = [b for b in over if not b.is_known()]
    print(table(over if a.quiet else builds, budget))
    s = summary(builds, budget)
    s["seconds"] = round(time.perf_counter() - t0, 1)
    s["mode"] = "full autotune grid" if a.full else "fixed configs"
    print("aot_check:", json.dumps(s))
    if a.json:
        a.json.write_text(json.dumps({"summary": s, "builds": [asdict(b) for b in builds]}, indent=1))
    if a.markdown:
        a.markdown.write_text(table(builds, budget, markdown=True) + "\n")
    if bad:
        print(f"aot_check: FAILED: {len(bad)} of {len(builds)} builds over budget or not compiling", file=sys.stderr)
        return 1
    print(f"aot_check: OK ({len(builds)} builds; {len(over)} known over budget, see KNOWN_OVER_BUDGET)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
