"""C++/CUDA masked NT-Xent extension (``backend="ext"``) against the torch reference.

The extension is built once and cached on disk (``$HIMOE_FAST_EXT_CACHE``, else
``$HIMOE_FAST_CACHE/ext``, default ``~/.cache/himoe-fast/ext``); tests that need it are skipped when
it cannot be built here. Small tiles (the CPU kernels' ``tile`` argument) make tiny inputs exercise
the multi-tile paths. The CUDA kernels are compile-checked with nvcc and, on CPU threads, run through
csrc/cuda_emulation.h; on a machine with a GPU they also run for real.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from himoe_fast.ops import ext, masked_ntxent

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built():
    module = ext.load_extension(warn=False)
    if module is None:
        pytest.skip(f"extension unavailable: {ext.build_status(build=False)['error']}")
    return module


class _TiledExt(torch.autograd.Function):
    """The extension's CPU kernels called directly with a Gram tile edge of ``tile`` (the ops use the
    default of 256, which tiny test inputs never exceed)."""

    @staticmethod
    def forward(ctx, z, present, tau, tile):
        module = ext.load_extension(warn=False)
        loss, lse = module.forward_cpu(z, present, tau, tile=tile)
        ctx.save_for_backward(z, present, lse)
        ctx.tau, ctx.tile = tau, tile
        return loss

    @staticmethod
    def backward(ctx, grad):
        z, present, lse = ctx.saved_tensors
        module = ext.load_extension(warn=False)
        return module.backward_cpu(grad, z, present, lse, ctx.tau, tile=ctx.tile), None, None, None


def _ext_loss(z, present, tau, tile=None):
    """``masked_ntxent(backend="ext")``, or the CPU kernels with a small ``tile``."""
    if tile is None:
        return masked_ntxent(z, present, tau, backend="ext")
    return _TiledExt.apply(z, present, tau, tile)


def _compare(z, present, tau, *, tile=None, rtol=1e-4, grad_atol=1e-5, grad_rtol=1e-4):
    z_ref = z.detach().clone().requires_grad_(True)
    z_ext = z.detach().clone().requires_grad_(True)
    ref = masked_ntxent(z_ref, present, tau, backend="torch")
    got = _ext_loss(z_ext, present, tau, tile)
    assert got.shape == () and got.dtype == z.dtype
    torch.testing.assert_close(got, ref.detach(), rtol=rtol, atol=1e-6)
    ref.backward()
    got.backward()
    torch.testing.assert_close(z_ext.grad, z_ref.grad, atol=grad_atol, rtol=grad_rtol)
    return got


CASES = [  # M, N, d, p(present), tau, tile
    (2, 5, 4, 1.0, 0.1, None),
    (3, 7, 5, 0.7, 0.3, None),
    (4, 97, 47, 0.6, 0.1, 16),
    (5, 33, 9, 0.5, 0.05, 7),
    (6, 31, 13, 0.9, 0.07, 8),
    (2, 64, 3, 1.0, 1.0, 10),
    (3, 40, 7, 0.8, 0.02, 9),   # fp32 below the shared-shift range: online log-sum-exp
    (3, 40, 7, 0.8, 0.01, None),
    (1, 6, 4, 1.0, 0.1, None),  # M = 1: no pair at all
    (3, 1, 4, 1.0, 0.1, None),  # N = 1: every pair has < 2 tokens
]


@pytest.mark.parametrize("M,N,d,p,tau,tile", CASES)
def test_matches_torch(built, M, N, d, p, tau, tile):
    g = torch.Generator().manual_seed(1000 * M + N)
    z = torch.randn(M, N, d, generator=g)
    present = torch.rand(M, N, generator=g) < p
    _compare(z, present, tau, tile=tile)


def test_pairs_with_fewer_than_two_shared_tokens_are_skipped(built):
    z = torch.randn(3, 6, 4)
    present = torch.ones(3, 6, dtype=torch.bool)
    present[2] = False
    present[2, 0] = True  # modality 2 shares 1 token with each other modality
    _compare(z, present, 0.5)


def test_modality_absent_everywhere(built):
    z = torch.randn(4, 19, 6)
    present = torch.rand(4, 19) < 0.8
    present[1] = False
    _compare(z, present, 0.2, tile=4)


def test_nothing_qualifies_gives_differentiable_zero(built):
    z = torch.randn(3, 4, 5, requires_grad=True)
    present = torch.zeros(3, 4, dtype=torch.bool)
    present[0] = True
    loss = masked_ntxent(z, present, 0.1, backend="ext")
    assert loss.requires_grad and float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros_like(z))


def test_absent_tokens_may_hold_garbage(built):
    z = torch.randn(3, 12, 5)
    present = torch.rand(3, 12) < 0.7
    present[:, :3] = True
    clean = z.clone()
    z[~present] = float("nan")
    z[0, ~present[0]] = float("inf")
    zg = z.clone().requires_grad_(True)
    got = masked_ntxent(zg, present, 0.2, backend="ext")
    torch.testing.assert_close(got, masked_ntxent(clean, present, 0.2, backend="torch"), rtol=1e-4, atol=1e-6)
    got.backward()
    assert torch.isfinite(zg.grad).all() and torch.equal(zg.grad[~present], torch.zeros_like(zg.grad[~present]))


def test_zero_vectors_and_non_contiguous_input(built):
    z = torch.randn(7, 3, 20).transpose(0, 1)  # [3, 7, 20], non-contiguous
    z[1, 2] = 0.0  # a zero embedding: normalize's eps branch
    present = torch.ones(3, 7, dtype=torch.bool)
    _compare(z, present, 0.25)


@pytest.mark.parametrize("tau", [0.4, 0.002])  # shared-shift and online modes in float64
def test_gradcheck_float64(built, tau):
    g = torch.Generator().manual_seed(7)
    z = torch.randn(3, 7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    present = torch.rand(3, 7, generator=g) < 0.8
    present[:, :2] = True
    if tau < 0.01:  # keep the softmax from saturating so finite differences mean something
        z = (z.detach() * 0.02 + torch.randn(1, 7, 4, dtype=torch.float64, generator=g)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _ext_loss(t, present, tau, tile=3), (z,))


def test_float64_matches_torch_tightly(built):
    z = torch.randn(4, 23, 6, dtype=torch.float64)
    present = torch.rand(4, 23) < 0.75
    _compare(z, present, 0.15, tile=5, rtol=1e-10, grad_atol=1e-12, grad_rtol=1e-9)


def test_opcheck(built):
    z = torch.randn(3, 9, 5, requires_grad=True)
    present = torch.rand(3, 9) < 0.8
    present[:, :2] = True
    torch.library.opcheck(torch.ops.himoe_fast.masked_ntxent_forward.default, (z, present, 0.3))
    torch.library.opcheck(torch.ops.himoe_fast.masked_ntxent.default, (z, present, 0.3))
    _, lse = torch.ops.himoe_fast.masked_ntxent_forward(z.detach(), present, 0.3)
    torch.library.opcheck(torch.ops.himoe_fast.masked_ntxent_backward.default,
                          (torch.tensor(1.0), z.detach(), present, lse, 0.3))


def test_op_api_and_dispatch(built):
    z = torch.randn(3, 8, 4)
    present = torch.ones(3, 8, dtype=torch.bool)
    loss = torch.ops.himoe_fast.masked_ntxent(z, present, 0.1)
    assert loss.shape == ()
    loss2, lse = torch.ops.himoe_fast.masked_ntxent_forward(z, present, 0.1)
    assert lse.shape == (3, 8, 3) and torch.equal(loss, loss2)
    assert torch.equal(masked_ntxent(z, present, 0.1, backend="auto"), loss)  # auto prefers the extension
    assert torch.equal(masked_ntxent(z, present.float(), 0.1, backend="ext"), loss)  # any 0/1 mask dtype
    with pytest.raises(ValueError):
        masked_ntxent(z.half(), present, 0.1, backend="ext")
    ref = masked_ntxent(z.double(), present, 0.1, backend="torch")  # auto: other dtypes use torch
    assert masked_ntxent(z.bfloat16(), present, 0.1, backend="auto").dtype == torch.bfloat16
    assert abs(float(masked_ntxent(z.double(), present, 0.1)) - float(ref)) < 1e-9
    with pytest.raises(ValueError):
        masked_ntxent(z, present[:, :3], 0.1, backend="ext")


def test_torch_compile_fullgraph(built):
    """Once loaded (prebuild), the dispatcher traces without graph breaks; fake kernels + autograd."""
    z = torch.randn(3, 12, 5, requires_grad=True)
    present = torch.rand(3, 12) < 0.8
    present[:, :2] = True
    f = torch.compile(lambda t: masked_ntxent(t, present, 0.2, backend="ext") * 2, fullgraph=True, backend="eager")
    (g_comp,) = torch.autograd.grad(f(z), z)
    (g_eager,) = torch.autograd.grad(masked_ntxent(z, present, 0.2, backend="ext") * 2, z)
    torch.testing.assert_close(g_comp, g_eager)


def test_ops_resolve_and_trace_right_after_import(tmp_path):
    """The schemas, fake kernels and autograd exist after ``import himoe_fast``, before any build: the
    ops resolve and trace with fake tensors while the extension cache stays empty (builds disabled)."""
    r = _run("""
        import torch
        import himoe_fast
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.proxy_tensor import make_fx
        for name in ("masked_ntxent", "masked_ntxent_forward", "masked_ntxent_backward"):
            getattr(torch.ops.himoe_fast, name).default
        with FakeTensorMode():
            z = torch.randn(3, 7, 5, requires_grad=True); p = torch.ones(3, 7, dtype=torch.bool)
            loss, lse = torch.ops.himoe_fast.masked_ntxent_forward(z, p, 0.1)
            (g,) = torch.autograd.grad(torch.ops.himoe_fast.masked_ntxent(z, p, 0.1), z)
            assert loss.shape == () and lse.shape == (3, 7, 3) and g.shape == (3, 7, 5)
        gm = make_fx(lambda z, p: torch.ops.himoe_fast.masked_ntxent(z, p, 0.1), tracing_mode="fake")(
            torch.randn(3, 7, 5), torch.ones(3, 7, dtype=torch.bool))
        assert "masked_ntxent_forward" in gm.code
        print("ok")
    """, _env(tmp_path, HIMOE_FAST_NO_EXT="1"), timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").iterdir())


def test_first_execution_of_the_op_loads_the_kernels(built):
    """Calling ``torch.ops.himoe_fast.*`` first thing (no load_extension) builds/loads the kernels and
    gives the torch reference's value and gradient."""
    r = _run("""
        import torch
        import himoe_fast
        from himoe_fast.ops import ext
        from himoe_fast.ops.ntxent import masked_ntxent_torch
        assert ext._state["module"] is None
        g = torch.Generator().manual_seed(5)
        z = torch.randn(3, 11, 6, generator=g, requires_grad=True); p = torch.rand(3, 11, generator=g) < 0.8
        a = torch.ops.himoe_fast.masked_ntxent(z, p, 0.2); (ga,) = torch.autograd.grad(a, z)
        b = masked_ntxent_torch(z, p, 0.2); (gb,) = torch.autograd.grad(b, z)
        assert ext._state["module"] is not None
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6); torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
        print("ok")
    """, os.environ, timeout=240)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_deterministic(built):
    z = torch.randn(4, 100, 16)
    present = torch.rand(4, 100) < 0.8
    grads = []
    for _ in range(2):
        zz = z.clone().requires_grad_(True)
        _ext_loss(zz, present, 0.1, tile=16).backward()
        grads.append(zz.grad)
    assert torch.equal(grads[0], grads[1])


def test_build_status(built):
    st = ext.build_status()
    assert st["loaded"] and st["built"] and st["error"] is None and Path(st["path"]).exists()
    assert "torch.ops.himoe_fast.masked_ntxent" in st["ops"]
    assert st["cuda_kernels"] is False or torch.version.cuda is not None


def test_portable_gemm_path(built):
    """Without MKL's sgemm_ (non-MKL torch builds) the tiles go through at::addmm_out: same numbers."""
    r = _run("""
        import torch
        from himoe_fast.ops import masked_ntxent
        g = torch.Generator().manual_seed(3)
        z = torch.randn(3, 21, 6, generator=g, requires_grad=True); p = torch.rand(3, 21, generator=g) < 0.8
        a = masked_ntxent(z, p, 0.1, backend="ext"); (ga,) = torch.autograd.grad(a, z)
        b = masked_ntxent(z, p, 0.1, backend="torch"); (gb,) = torch.autograd.grad(b, z)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6); torch.testing.assert_close(ga, gb, atol=1e-5, rtol=1e-4)
        print("ok")
    """, {**os.environ, "HIMOE_FAST_NTXENT_ATEN_GEMM": "1", "HIMOE_FAST_NTXENT_TILE": "8"}, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


# ------------------------------------------------------------------------------------------ build
def _env(cache: Path, **extra) -> dict:
    """A child environment whose extension cache is ``cache/ext`` and no inherited HIMOE_FAST_* switch."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIMOE_FAST_")}
    return {**env, "HIMOE_FAST_CACHE": str(cache), "HIMOE_FAST_EXT_CACHE": str(cache / "ext"), **extra}


def _run(code: str, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    full_env = env
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=full_env, capture_output=True,
                          text=True, timeout=timeout, cwd=str(ROOT))


_FALLBACK = """
    import json, warnings
    import torch
    from himoe_fast.ops import ext, masked_ntxent
    z = torch.randn(3, 6, 4)
    p = torch.ones(3, 6, dtype=torch.bool)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = masked_ntxent(z, p, 0.1, backend="ext")
        b = masked_ntxent(z, p, 0.1, backend="auto")
        c = masked_ntxent(z, p, 0.1, backend="ext")
    ok = ext.prebuild()
    msgs = [str(w.message) for w in caught if "falling back" in str(w.message)]
    ref = float(masked_ntxent(z, p, 0.1, backend="torch"))
    print(json.dumps({"n_warn": len(msgs), "msg": msgs[:1], "same": [float(x) == ref for x in (a, b, c)],
                      "prebuild": ok, "status": ext.build_status(build=False),
                      "env_failed": __import__("os").environ.get("HIMOE_FAST_EXT_FAILED")}))
"""


def test_no_compiler_falls_back_with_one_warning(tmp_path):
    r = _run(_FALLBACK, _env(tmp_path, CXX=str(tmp_path / "no-such-compiler"), HIMOE_FAST_EXT_CUDA="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_warn"] == 1, out
    assert out["same"] == [True, True, True]
    assert out["prebuild"] is False and out["env_failed"]
    assert out["status"]["loaded"] is False and out["status"]["error"]


def test_disabled_by_env_is_silent(tmp_path):
    r = _run(_FALLBACK, _env(tmp_path, HIMOE_FAST_NO_EXT="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_warn"] == 0 and out["same"] == [True, True, True] and out["status"]["disabled"]
    assert not list(tmp_path.iterdir())  # nothing was built


_LOAD = """
    import json, torch
    from himoe_fast.ops import ext, masked_ntxent
    z = torch.randn(2, 5, 3); p = torch.ones(2, 5, dtype=torch.bool)
    v = float(masked_ntxent(z, p, 0.1, backend="ext"))
    print(json.dumps({"status": ext.build_status(build=False),
                      "same": abs(v - float(masked_ntxent(z, p, 0.1, backend="torch"))) < 1e-4}))
"""


def _copy_build(built_dir: Path, cache: Path) -> Path:
    dst = cache / "ext" / built_dir.name
    shutil.copytree(built_dir, dst)
    return dst


def test_leftover_lock_files_do_not_block(built, tmp_path):
    src = Path(ext.build_status(build=False)["path"]).parent
    dst = _copy_build(src, tmp_path)
    (dst / "BUILD_OK").unlink()           # a build killed before it finished ...
    (dst / "build.lock").write_text("")   # ... leaves our flock file (unlocked: its holder is gone)
    (dst / "lock").write_text("")         # ... and torch's O_EXCL baton
    r = _run(_LOAD, _env(tmp_path), timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["status"]["loaded"] and out["same"]
    assert (dst / "BUILD_OK").exists() and not (dst / "lock").exists()


def test_waits_for_builder_and_survives_its_death(built, tmp_path):
    """A process holding the build lock makes others wait; when it is killed, they proceed."""
    src = Path(ext.build_status(build=False)["path"]).parent
    dst = _copy_build(src, tmp_path)
    (dst / "BUILD_OK").unlink()  # unfinished build: the loader must take the lock
    (dst / "lock").write_text("")  # the killed builder's torch baton
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(dst / 'build.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        loader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_LOAD)], cwd=str(ROOT),
                                  env=_env(tmp_path),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3.0)
        assert loader.poll() is None  # still waiting for the lock
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        out, err = loader.communicate(timeout=600)
        assert loader.returncode == 0, err[-3000:]
        assert json.loads(out.strip().splitlines()[-1])["status"]["loaded"]
        assert (dst / "BUILD_OK").exists()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
def test_cuda_sources_compile_with_nvcc():
    """The CUDA kernels compile with plain nvcc (no torch headers); the binding passes a syntax check."""
    r = subprocess.run([str(ROOT / ".ci" / "nvcc-check")], capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HIMOE_NVCC_ARCHS": "sm_90", "PYTHON": sys.executable})
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "nvcc-check: OK" in r.stdout


# The CUDA kernels' logic, run on CPU threads: csrc/ntxent_kernels.cu compiled by the host compiler
# with csrc/cuda_emulation.h (one std::thread per CUDA thread, barriers, emulated shuffles).
@pytest.fixture(scope="module")
def cuda_emulation(tmp_path_factory):
    import ctypes

    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        pytest.skip("no host C++ compiler")
    out = tmp_path_factory.mktemp("emu") / "ntxent_kernels_emu.so"
    csrc = ext.csrc_dir()
    r = subprocess.run([cxx, "-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", f"-I{csrc}",
                        str(csrc / "ntxent_kernels_emu.cpp"), "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return ctypes.CDLL(str(out))


def _kernel_inputs(z, present):
    """u, mk, w exactly as csrc/ntxent_common.h prepares them."""
    M = z.shape[0]
    u = torch.nn.functional.normalize(torch.where(present[..., None], z, torch.zeros((), dtype=z.dtype)), dim=-1)
    pf = present.to(z.dtype)
    cnt = pf @ pf.T
    qual = (cnt >= 2) & ~torch.eye(M, dtype=torch.bool)
    w = torch.where(qual, 1 / ((qual.sum() / 2).clamp_min(1) * 2 * cnt), torch.zeros_like(cnt))
    mk = pf[:, :, None] * pf.T[None] * qual.to(z.dtype)[:, None, :]
    return u.contiguous(), mk.contiguous(), w.contiguous()


def _dense_lse(u, mk, w, tau):
    """lse[i, a, j] by materialising every pair's logits (tiny sizes only)."""
    M, N, _ = u.shape
    rows = []
    for i in range(M):
        cols = []
        for j in range(M):
            if i == j or w[i, j] <= 0:
                cols.append(torch.zeros(N, dtype=u.dtype))
                continue
            shared = mk[i, :, j] > 0
            same = ((u[i] @ u[i].T) / tau).masked_fill(~shared[None, :] | torch.eye(N, dtype=torch.bool), -torch.inf)
            other = ((u[i] @ u[j].T) / tau).masked_fill(~shared[None, :], -torch.inf)
            v = torch.logsumexp(torch.cat([same, other], 1), 1)
            cols.append(torch.where(shared, v, torch.zeros_like(v)))
        rows.append(torch.stack(cols, 1))
    return torch.stack(rows, 0)


@pytest.mark.parametrize("M,N,d,p,tau,dtype,absent", [
    (3, 41, 33, 0.8, 0.1, torch.float32, None),  # 2 row and column tiles, 2 d chunks, partial tiles
    (4, 45, 7, 0.6, 0.02, torch.float64, None),
    (3, 37, 5, 0.7, 0.01, torch.float32, None),  # small tau
    (3, 20, 6, 0.9, 0.3, torch.float64, 2),      # a modality absent everywhere
    (2, 5, 4, 1.0, 0.5, torch.float32, None),
])
def test_cuda_kernels_under_cpu_emulation(cuda_emulation, M, N, d, p, tau, dtype, absent):
    import ctypes

    g = torch.Generator().manual_seed(N)
    z = torch.randn(M, N, d, generator=g, dtype=dtype)
    present = torch.rand(M, N, generator=g) < p
    present[1, :] = present[1, :] & (torch.arange(N) % 5 != 0)
    if absent is not None:
        present[absent] = False
    u, mk, w = _kernel_inputs(z, present)
    sfx = "f32" if dtype == torch.float32 else "f64"

    def call(name, *tensors):
        args = [ctypes.c_void_p(t.data_ptr()) for t in tensors] + [ctypes.c_int64(x) for x in (M, N, d)]
        assert getattr(cuda_emulation, name)(*args, ctypes.c_double(1.0 / tau)) == 0

    lse = torch.full((M, N, M), float("nan"), dtype=dtype)
    call(f"himoe_emu_lse_{sfx}", u, mk, w, lse)
    uu = u.clone().requires_grad_(True)
    ref = _dense_lse(uu, mk, w, tau)
    ref_gu, = torch.autograd.grad((w[:, None, :] * mk * ref).sum(), uu)
    gu = torch.zeros_like(u)
    call(f"himoe_emu_grad_{sfx}", u, mk, w, ref.detach().contiguous(), gu)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(lse, ref.detach(), **tol)
    torch.testing.assert_close(gu, ref_gu, **tol)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("M,N,d,p,tau", [(3, 70, 33, 0.8, 0.1), (4, 45, 7, 0.6, 0.02), (2, 5, 4, 1.0, 0.5)])
def test_cuda_matches_torch(built, M, N, d, p, tau):
    if not built.cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    g = torch.Generator().manual_seed(M + N)
    z = torch.randn(M, N, d, generator=g).cuda()
    present = (torch.rand(M, N, generator=g) < p).cuda()
    _compare(z, present, tau)
    zd = z.double().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: masked_ntxent(t, present, tau, backend="ext"), (zd[:, :9, :5],))


def test_build_hash_covers_every_included_source():
    """Every file the CPU sources include with quotes is in ext's source/header lists (so editing
    it rebuilds), and every listed file is shipped in csrc/."""
    import re

    csrc = ext.csrc_dir()
    listed = set(ext.CPU_SOURCES + ext.CPU_HEADERS)
    todo, seen = list(ext.CPU_SOURCES), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += re.findall(r'^#include "([^"]+)"', (csrc / name).read_text(), flags=re.M)
    assert seen <= listed, sorted(seen - listed)
    assert all((csrc / f).is_file() for f in listed | set(ext.CUDA_SOURCES + ext.CUDA_HEADERS))
