"""The fast path under CPU bf16 autocast, against the reference under the same autocast.

Both models run forward, loss and backward inside ``torch.autocast("cpu", dtype=torch.bfloat16)``
(what training does with ``amp``); outputs and every parameter gradient are compared, norm-relative,
with the fp32 reference: fast may be no further from it than three times the reference's own autocast
error (or 5 %), which a wrong cast, a stage left in the wrong dtype or a dropped term exceeds.
Also: the fused ops refuse mixed dtypes outside autocast with a clear message.
"""

import pytest
import torch

from himoe_fast import HiMoE
from himoe_fast.fast import to_fast
from himoe_fast.fast.experts import modality_bank
from himoe_fast.config import preset_config
from himoe_fast.testing import random_batch, randomize_zero_parameters
from himoe_fast.fast.router import da_router

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

FLOOR = 0.05        # norm-relative error always allowed (bf16 rounding through a few layers)
FACTOR = 3.0        # fast may be at most this much further from fp32 than the reference under autocast


def _step(model, batch, amp: bool):
    inputs, present, labels, mask = batch
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(inputs, present)
        loss = model.loss(out, labels, mask)
    (loss.float() + 0.1 * (out.modality_gates.float() ** 2).sum()).backward()
    grads = {n: p.grad.detach().float().clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, loss, grads


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("router", ["dot", "cosine", "diff"])
@pytest.mark.parametrize("backend", ["auto", "torch"])
def test_fast_matches_reference_under_cpu_bf16_autocast(router, backend):
    """Fast under autocast is as close to the fp32 reference as the reference under autocast is.

    (bf16 rounding alone moves some gradients of the reference by ~10 % and a cancelling bias gradient
    by more, so the yardstick is the reference's own autocast error, not a fixed tolerance.)"""
    cfg = preset_config("tiny", router=router).replace(dropout=0.0)
    ref = randomize_zero_parameters(HiMoE(cfg))
    fast = to_fast(ref, backend=backend)
    batch = random_batch(cfg, B=2, T=3)
    out_32, loss_32, g_32 = _step(ref, batch, amp=False)
    out_r, loss_r, g_r = _step(ref, batch, amp=True)
    out_f, loss_f, g_f = _step(fast, batch, amp=True)
    # the reference really ran in bf16 (otherwise this compares fp32 with fp32)
    assert out_r.encoded.dtype == torch.bfloat16
    bad = {}
    pairs = [(name, getattr(out_f, name), getattr(out_r, name), getattr(out_32, name))
             for name in ("pred", "modality_gates", "emotion_weights", "fused", "encoded")]
    pairs.append(("loss", loss_f, loss_r, loss_32))
    assert set(g_f) == set(g_r) == set(g_32)
    pairs += [(f"grad {n}", g_f[n], g_r[n], g_32[n]) for n in g_32]
    for name, f, r, exact in pairs:
        err_f, err_r = _rel(f.float(), exact.float()), _rel(r.float(), exact.float())
        if err_f > max(FACTOR * err_r, FLOOR):
            bad[name] = (round(err_f, 4), round(err_r, 4))
    assert not bad, f"fast under autocast off (fast error, reference error vs fp32): {bad}"


def test_fused_ops_reject_mixed_dtypes_outside_autocast():
    M, N, d, K, h, L, r = 2, 5, 8, 3, 12, 4, 4
    x = torch.randn(M, N, d, dtype=torch.bfloat16)
    wg, bg = torch.randn(M, d, K), torch.randn(M, K)
    w1, b1, w2, b2 = torch.randn(M, K, d, h), torch.randn(M, K, h), torch.randn(M, K, h, d), torch.randn(M, K, d)
    with pytest.raises(TypeError, match=r"modality_bank: .*x bfloat16.*gate_weight float32"):
        modality_bank(x, wg, bg, w1, b1, w2, b2, backend="torch")
    # under autocast the same call runs, in bf16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        z, alpha = modality_bank(x, wg, bg, w1, b1, w2, b2, backend="torch")
    assert z.dtype == torch.bfloat16 and z.shape == (M, N, d)
    zr = torch.randn(N, d, dtype=torch.float64)
    rw = [torch.randn(L, d, h), torch.randn(L, h), torch.randn(L, h, d), torch.randn(L, d),
          torch.randn(1, d, r), torch.randn(1, d, r)]
    with pytest.raises(TypeError, match=r"da_router: .*z float64"):
        da_router(zr, *rw, mode="dot", backend="torch")
