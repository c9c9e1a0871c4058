"""``torch.compile(fast_model, fullgraph=True)``: the whole fast model traces without a graph break.

The fused stages appear to the compiler as ``torch.ops.himoe_fast.*`` custom ops (fake kernels for
shapes, registered autograd); ``aot_eager`` runs the traced forward *and* the traced backward, so the
fake kernels and the autograd formulas are exercised, not only the eager Functions. Loss and every
parameter gradient must equal the eager fast model's (and the reference's).
"""

import pytest
import torch

from himoe_fast import HiMoE
from himoe_fast.fast import to_fast
from himoe_fast.config import preset_config
from himoe_fast.testing import random_batch, randomize_zero_parameters

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

CASES = [("torch", "dot", "soft"), ("torch", "cosine", "top1"), ("torch", "diff", "uniform"),
         ("triton", "dot", "soft")]


def _loss_and_grads(model, step, batch):
    model.zero_grad(set_to_none=True)
    loss = step(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _step(model, batch):
    inputs, present, labels, mask = batch
    out = model(inputs, present)
    return model.loss(out, labels, mask) + 0.1 * (out.modality_gates ** 2).sum()


@pytest.mark.parametrize("backend,router,routing", CASES)
def test_compiled_fast_model_matches_eager(backend, router, routing):
    torch._dynamo.reset()
    cfg = preset_config("tiny", router=router, routing=routing).replace(dropout=0.0)
    ref = randomize_zero_parameters(HiMoE(cfg))
    fast = to_fast(ref, backend=backend)
    batch = random_batch(cfg, B=2, T=3)
    compiled = torch.compile(_step, fullgraph=True, backend="aot_eager")
    loss_c, grads_c = _loss_and_grads(fast, compiled, batch)
    loss_e, grads_e = _loss_and_grads(fast, _step, batch)
    loss_r, grads_r = _loss_and_grads(ref, _step, batch)
    torch.testing.assert_close(loss_c, loss_e, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_c, loss_r, rtol=1e-4, atol=1e-5)
    assert set(grads_c) == set(grads_e) == set(grads_r)
    for name in grads_e:
        torch.testing.assert_close(grads_c[name], grads_e[name], rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(grads_c[name], grads_r[name], rtol=1e-3, atol=1e-4, msg=name)


def test_fast_ops_are_registered_with_fake_kernels():
    """The custom ops resolve and run on fake tensors (shapes only)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from himoe_fast.fast import library

    assert library.modality_bank_op is not None
    M, N, d, K, h, L = 2, 5, 8, 3, 12, 4
    with FakeTensorMode():
        z, alpha = torch.ops.himoe_fast.modality_bank(
            torch.randn(M, N, d), torch.randn(M, d, K), torch.randn(M, K), torch.randn(M, K, d, h),
            torch.randn(M, K, h), torch.randn(M, K, h, d), torch.randn(M, K, d), "soft", "torch")
        A, S = torch.ops.himoe_fast.da_router_core(
            torch.randn(N, d), torch.randn(L, d, h), torch.randn(L, h), torch.randn(L, h, d), torch.randn(L, d),
            torch.randn(2, N, d), None, None, None, 0.5, "diff", "torch")
    assert z.shape == (M, N, d) and alpha.shape == (M, N, K)
    assert A.shape == (2, N, d) and S.shape == (2, N, L)
