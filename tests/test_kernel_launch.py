"""The kernels' shared launch machinery (``himoe_fast.kernels.common``) and the wrappers' argument checks.

The kernels run under ``TRITON_INTERPRET=1`` (tests/conftest.py); the autotune-or-fixed policy is checked
as a function (the autotuned branch needs a GPU) and by recording that every launch of both kernel
modules goes through it, so ``HIMOE_FAST_AUTOTUNE`` reaches all of them.
"""

import pytest
import torch
import triton

from himoe_fast.fast.backend import load_kernel_module
from himoe_fast.fast.experts import modality_bank
from himoe_fast.fast.router import da_router

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture
def kernels():
    """(common, modality_experts, da_router) imported for CPU tensors (interpreter)."""
    me = load_kernel_module("modality_experts", "cpu")
    dr = load_kernel_module("da_router", "cpu")
    from himoe_fast.kernels import common
    return common, me, dr


def _name(kernel) -> str:
    """The Python function under autotune / heuristics / jit wrappers."""
    while hasattr(kernel, "fn"):
        kernel = kernel.fn
    return kernel.__name__


def test_select_kernel_policy(kernels, monkeypatch):
    common = kernels[0]
    gpu, interp = {"BLOCK_N": 64}, {"BLOCK_N": 16}
    assert common.select_kernel("tuned", "plain", gpu, interp) == ("plain", interp)     # interpreter
    monkeypatch.setattr(common, "INTERPRET", False)
    monkeypatch.setattr(common, "AUTOTUNE", True)
    assert common.select_kernel("tuned", "plain", gpu, interp) == ("tuned", {})         # GPU, autotune on
    with common.fixed_configs():
        assert common.select_kernel("tuned", "plain", gpu, interp) == ("plain", gpu)    # self-check, warm-up
    monkeypatch.setattr(common, "AUTOTUNE", False)                                      # HIMOE_FAST_AUTOTUNE=0
    assert common.select_kernel("tuned", "plain", gpu, interp) == ("plain", gpu)
    meta = common.select_kernel("tuned", "plain", gpu, interp)[1]
    meta["BLOCK_N"] = 1
    assert gpu == {"BLOCK_N": 64}                                                       # callers get a copy


def test_every_launch_goes_through_the_policy(kernels, monkeypatch):
    """Both modules pick each kernel with ``select_kernel`` (the switch the router once bypassed)."""
    _, me, dr = kernels
    seen = []
    for mod in (me, dr):
        real = mod.select_kernel

        def spy(tuned, plain, gpu, interp, _real=real):
            seen.append((_name(tuned), _name(plain)))
            return _real(tuned, plain, gpu, interp)
        monkeypatch.setattr(mod, "select_kernel", spy)

    torch.manual_seed(0)
    M, N, d, K, h, L, r = 2, 5, 24, 3, 20, 3, 8

    def p(*shape):
        return torch.randn(*shape, requires_grad=True)

    z, alpha = modality_bank(p(M, N, d), p(M, d, K), p(M, K), p(M, K, d, h), p(M, K, h), p(M, K, h, d), p(M, K, d),
                             "soft", backend="triton")
    (z.sum() + alpha.sum()).backward()
    for mode, P in (("dot", 1), ("cosine", 1), ("diff", 2)):
        e, beta = da_router(p(N, d), p(L, d, h), p(L, h), p(L, h, d), p(L, d), p(P, d, r), p(P, d, r), mode,
                            scale=torch.tensor(2.0, requires_grad=True) if mode == "cosine" else None,
                            lam=torch.tensor(0.3) if mode == "diff" else None, backend="triton")
        (e.sum() + beta.sum()).backward()
    kinds = {plain for _, plain in seen}
    assert {"_bank_fwd_kernel", "_bank_bwd_token_kernel", "_tn_reduce_kernel", "_fwd_kernel", "_bwd_kernel"} <= kinds
    assert all(tuned == plain for tuned, plain in seen)          # each plain kernel with its own autotuned twin


def test_config_pruner(kernels):
    common = kernels[0]
    configs = [triton.Config({"BLOCK_N": bn}, num_warps=w) for bn, w in [(16, 4), (32, 4), (64, 8)]]

    def ok(cfg, fp32, d):
        return cfg.kwargs["BLOCK_N"] * d <= (2048 if fp32 else 4096)

    prune = common.config_pruner(ok, "X", "D")
    x32, x16 = torch.empty(1, dtype=torch.float32), torch.empty(1, dtype=torch.bfloat16)
    assert [c.kwargs["BLOCK_N"] for c in prune(configs, {"X": x32, "D": 128})] == [16]
    assert [c.kwargs["BLOCK_N"] for c in prune(configs, {"X": x16, "D": 128})] == [16, 32]
    assert [c.kwargs["BLOCK_N"] for c in prune(configs, {"X": x32, "D": 4096})] == [16]   # none fits: the first


def test_pow2_and_contiguous(kernels):
    common = kernels[0]
    assert [common.pow2(n) for n in (1, 16, 17, 40, 128, 129)] == [16, 16, 32, 64, 128, 256]
    assert common.pow2(3, lo=1) == 4
    t = torch.randn(4, 6).t()
    none, c = common.contiguous(None, t)
    assert none is None and c.is_contiguous() and torch.equal(c, t)


def test_router_core_mode_is_explicit_and_checked(kernels):
    dr = kernels[2]
    N, d, h, L, r = 4, 16, 16, 2, 8
    z, w1, b1, w2, b2 = torch.randn(N, d), torch.randn(L, d, h), torch.randn(L, h), torch.randn(L, h, d), torch.randn(L, d)
    v1, v2 = torch.randn(1, N, d), torch.randn(2, N, d)
    qh, wk, scale = torch.randn(1, N, r), torch.randn(1, d, r), torch.tensor(1.0)
    A, S = dr.da_router_core(z, w1, b1, w2, b2, "diff", v=v2, sc=0.5)
    assert A.shape == (2, N, d) and S.shape == (2, N, L)
    with pytest.raises(ValueError, match="mode must be one of"):
        dr.da_router_core(z, w1, b1, w2, b2, "cos", v=v1, sc=0.5)
    with pytest.raises(ValueError, match=r"needs v of shape \[2, N, d\]"):
        dr.da_router_core(z, w1, b1, w2, b2, "diff", v=v1, sc=0.5)
    with pytest.raises(ValueError, match="takes qh, wk, scale"):
        dr.da_router_core(z, w1, b1, w2, b2, "cosine", v=v1, qh=qh, wk=wk, scale=scale)
    with pytest.raises(ValueError, match="takes v"):
        dr.da_router_core(z, w1, b1, w2, b2, "dot", qh=qh, wk=wk, scale=scale)
