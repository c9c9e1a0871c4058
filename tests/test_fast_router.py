"""Parity of the fused DA-router (``himoe_fast.fast.router.da_router``) with the reference
``EmotionExpertBank``: forward and every gradient, both backends, all three router modes.

The Triton backend runs under ``TRITON_INTERPRET=1`` on CPU (set by conftest.py); shapes are tiny
and odd (no multiple of any block size), incl. a single token and a single expert.
"""

from __future__ import annotations

import pytest
import torch

from himoe_fast.fast.router import da_router
from himoe_fast.model.router import EmotionExpertBank

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FWD_TOL = dict(atol=1e-5, rtol=1e-4)            # DESIGN.md section 7, fp32
GRAD_TOL = dict(atol=1e-4, rtol=1e-3)
MODES = ("dot", "cosine", "diff")
BACKENDS = ("torch", "triton")
#        N,  d,  h, L,  r
SHAPES = [(7, 40, 72, 5, 24), (1, 40, 72, 5, 24), (37, 40, 72, 1, 24), (37, 24, 40, 3, 8)]


def _bank(d, h, L, r, mode, dtype=torch.float32):
    bank = EmotionExpertBank(d, L, h, r, router=mode).to(DEVICE, dtype)
    if mode == "cosine":                       # a scale != init so d/dscale is exercised at a generic point
        with torch.no_grad():
            bank.scale.fill_(3.7)
    return bank


def _fast(bank: EmotionExpertBank, z: torch.Tensor, backend: str, params=None, **kw):
    """Call da_router with ``params`` (name -> tensor; defaults to the bank's own)."""
    p = dict(bank.named_parameters()) if params is None else params
    lam = None
    if bank.router == "diff":
        dots = (p["lambda_q"] * p["lambda_k"]).sum(-1)
        lam = torch.exp(dots[0]) - torch.exp(dots[1]) + bank.lam_init
    return da_router(z, p["w1"], p["b1"], p["w2"], p["b2"], p["wq"], p["wk"], bank.router,
                     scale=p.get("scale"), lam=lam, backend=backend, **kw)


def _compare(bank, z, backend, use_beta_grad=True, **kw):
    """Forward outputs and gradients of z, every parameter (incl. scale / lambda_q, lambda_k)."""
    e_ref, beta_ref = bank(z)
    g_e, g_beta = torch.randn_like(e_ref), torch.randn_like(beta_ref)
    loss = (e_ref * g_e).sum() + ((beta_ref * g_beta).sum() if use_beta_grad else 0)
    names = [n for n, _ in bank.named_parameters()]
    ref_grads = torch.autograd.grad(loss, [z] + [p for _, p in bank.named_parameters()])

    z2 = z.detach().clone().requires_grad_()
    params = {n: p.detach().clone().requires_grad_() for n, p in bank.named_parameters()}
    e, beta = _fast(bank, z2, backend, params, **kw)
    torch.testing.assert_close(e, e_ref, **FWD_TOL)
    torch.testing.assert_close(beta, beta_ref, **FWD_TOL)
    loss2 = (e * g_e).sum() + ((beta * g_beta).sum() if use_beta_grad else 0)
    grads = torch.autograd.grad(loss2, [z2] + [params[n] for n in names])
    for name, g, g_ref in zip(["z"] + names, grads, ref_grads):
        torch.testing.assert_close(g, g_ref, **GRAD_TOL, msg=lambda m, name=name: f"grad of {name}: {m}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "N{}-d{}-h{}-L{}-r{}".format(*s))
def test_parity_fp32(backend, mode, shape):
    N, d, h, L, r = shape
    bank = _bank(d, h, L, r, mode)
    z = torch.randn(N, d, device=DEVICE, requires_grad=True)
    _compare(bank, z, backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_parity_batched_input_and_e_only_loss(backend, mode):
    """z as [B, T, d] like the model passes it; loss on e only (gS = 0 inside)."""
    bank = _bank(40, 72, 5, 24, mode)
    z = torch.randn(2, 5, 40, device=DEVICE, requires_grad=True)
    _compare(bank, z, backend, use_beta_grad=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_cosine_clamped_key_norm(backend):
    """W_k = 0 makes every |k| < eps: the clamp branch of the cosine Jacobian."""
    bank = _bank(24, 40, 3, 8, "cosine")
    with torch.no_grad():
        bank.wk.zero_()
    z = torch.randn(5, 24, device=DEVICE, requires_grad=True)
    _compare(bank, z, backend)


@pytest.mark.parametrize("save_hidden", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_torch_backend_save_hidden_parity(mode, save_hidden):
    bank = _bank(40, 72, 5, 24, mode)
    z = torch.randn(11, 40, device=DEVICE, requires_grad=True)
    _compare(bank, z, "torch", save_hidden=save_hidden)


@pytest.mark.parametrize("save_hidden", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_torch_backend_expert_groups(mode, save_hidden):
    """A tiny working-set budget splits the experts into groups (online softmax across groups)."""
    import himoe_fast.fast.router as fr

    N, d, h, L, r = 13, 40, 72, 5, 24
    assert [g.stop - g.start for g in fr._chunks(L, N, h, 4)] == [5]                 # default: one group
    bank = _bank(d, h, L, r, mode)
    z = torch.randn(N, d, device=DEVICE, requires_grad=True)
    with fr.expert_group_bytes(2 * N * h * 4):                                     # groups of 2, 2, 1 experts
        assert [g.stop - g.start for g in fr._chunks(L, N, h, 4)] == [2, 2, 1]
        _compare(bank, z, "torch", save_hidden=save_hidden)


@pytest.mark.parametrize("mode", MODES)
def test_torch_backend_gradcheck_float64(mode):
    torch.manual_seed(1)
    N, d, h, L, r = 3, 6, 5, 3, 4
    bank = _bank(d, h, L, r, mode, dtype=torch.float64)
    names = [n for n, _ in bank.named_parameters()]
    z = torch.randn(N, d, device=DEVICE, dtype=torch.float64, requires_grad=True)
    leaves = [z] + [p.detach().clone().requires_grad_() for _, p in bank.named_parameters()]

    def fn(z, *ps):
        e, beta = _fast(bank, z, "torch", dict(zip(names, ps)))
        return e, beta

    assert torch.autograd.gradcheck(fn, tuple(leaves), eps=1e-6, atol=1e-6, rtol=1e-5)


def _core_nodes(t):
    """The autograd nodes of the fused core reachable from ``t``."""
    seen, todo, out = set(), [t.grad_fn], []
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "hidden"):
            out.append(node)
        todo.extend(nxt for nxt, _ in node.next_functions)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_torch_backend_keeps_no_expert_tensors_for_backward(mode):
    """Nothing of size [L, N, d] or [L, N, h] is saved for backward (recomputed there) ..."""
    N, d, h, L, r = 64, 16, 48, 4, 8
    bank = _bank(d, h, L, r, mode)
    z = torch.randn(N, d, device=DEVICE, requires_grad=True)
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        e, _ = _fast(bank, z, "torch", save_hidden=False)
    assert max(sizes) < L * N * d, sizes
    assert [(n.hidden, n.keys) for n in _core_nodes(e)] == [(None, None)]
    e, _ = _fast(bank, z, "torch", save_hidden=True)    # ... unless asked to keep the pre-activation
    (node,) = _core_nodes(e)
    assert node.hidden.shape == (L, N, h)
    assert (node.keys is None) == (mode != "cosine")
    e, _ = _fast(bank, z, "torch")                      # default: kept for CPU tensors only
    assert (_core_nodes(e)[0].hidden is not None) == (z.device.type == "cpu")
    with torch.no_grad():                               # nothing to keep when no gradient is wanted
        z0 = z.detach()
        params = {n: p.detach() for n, p in bank.named_parameters()}
        e, _ = _fast(bank, z0, "torch", params, save_hidden=True)
    assert e.grad_fn is None


@pytest.mark.parametrize("mode", MODES)
def test_torch_backend_save_hidden_retain_graph(mode):
    """The first backward consumes the kept hidden in place; a second backward recomputes it."""
    bank = _bank(40, 72, 5, 24, mode)
    z = torch.randn(9, 40, device=DEVICE, requires_grad=True)
    e, beta = _fast(bank, z, "torch", save_hidden=True)
    loss = e.square().sum() + beta.square().sum()
    leaves = [z, *bank.parameters()]
    first = torch.autograd.grad(loss, leaves, retain_graph=True)
    assert [(n.hidden, n.keys) for n in _core_nodes(e)] == [(None, None)]
    second = torch.autograd.grad(loss, leaves)
    for g1, g2 in zip(first, second):
        torch.testing.assert_close(g1, g2, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", MODES)
def test_no_tokens(backend, mode):
    bank = _bank(16, 24, 3, 8, mode)
    z = torch.randn(0, 16, device=DEVICE, requires_grad=True)
    e, beta = _fast(bank, z, backend)
    assert e.shape == (0, 16) and beta.shape == (0, 3)
    (e.sum() + beta.sum()).backward()
    assert z.grad.shape == (0, 16) and float(bank.w1.grad.abs().max()) == 0.0


def test_bad_arguments():
    bank = _bank(8, 16, 2, 4, "dot")
    z = torch.randn(3, 8, device=DEVICE)
    p = dict(bank.named_parameters())
    with pytest.raises(ValueError, match="mode"):
        da_router(z, p["w1"], p["b1"], p["w2"], p["b2"], p["wq"], p["wk"], "nope")
    with pytest.raises(ValueError, match="backend"):
        da_router(z, p["w1"], p["b1"], p["w2"], p["b2"], p["wq"], p["wk"], "dot", backend="nope")
    with pytest.raises(ValueError, match="diff"):
        da_router(z, p["w1"], p["b1"], p["w2"], p["b2"], p["wq"], p["wk"], "diff", lam=torch.tensor(0.2))
    with pytest.raises(ValueError, match="scale"):
        da_router(z, p["w1"], p["b1"], p["w2"], p["b2"], p["wq"], p["wk"], "cosine")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 kernels are GPU-only")
@pytest.mark.parametrize("mode", MODES)
def test_triton_bf16_close_to_fp32_reference(mode):
    bank = _bank(128, 256, 8, 64, mode)
    z = torch.randn(300, 128, device=DEVICE, requires_grad=True)
    e_ref, beta_ref = bank(z)
    (e_ref.square().sum() + beta_ref.square().sum()).backward()
    bank16 = _bank(128, 256, 8, 64, mode, dtype=torch.bfloat16)
    bank16.load_state_dict(bank.state_dict())
    z16 = z.detach().bfloat16().requires_grad_()
    e, beta = _fast(bank16, z16, "triton")
    assert e.dtype == torch.bfloat16 and beta.dtype == torch.bfloat16
    torch.testing.assert_close(e.float(), e_ref, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(beta.float(), beta_ref, atol=5e-2, rtol=5e-2)
    (e.float().square().sum() + beta.float().square().sum()).backward()
    for (name, p), (_, p16) in zip(bank.named_parameters(), bank16.named_parameters()):
        rel = (p16.grad.float() - p.grad).norm() / p.grad.norm().clamp_min(1e-6)
        assert rel < 5e-2, (name, rel.item())
    rel = (z16.grad.float() - z.grad).norm() / z.grad.norm()
    assert rel < 5e-2, rel.item()
