"""Modality Expert Bank fast paths vs the reference module (Eq. 2-3), forward and backward.

The Triton kernels run under ``TRITON_INTERPRET=1`` on CPU (tests/conftest.py), natively on CUDA.
Odd sizes on purpose: d=40, h=72, K=3 (no block multiple), token counts 37 and 1, one expert, all
modalities absent (x = 0 rows). fp32 tolerances of DESIGN.md: forward atol 1e-5 / rtol 1e-4,
gradients atol 1e-4 / rtol 1e-3.
"""

import pytest
import torch

from himoe_fast.fast.experts import modality_bank
from himoe_fast.model.experts import ModalityExpertBank


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
FWD = dict(atol=1e-5, rtol=1e-4)
GRAD = dict(atol=1e-4, rtol=1e-3)

CASES = {  # id -> (M, N, d, h, K, absent) ; absent: "none" | "some" | "all"
    "odd-N37": (3, 37, 40, 72, 3, "some"),
    "single-token": (2, 1, 40, 72, 3, "none"),
    "one-expert": (2, 19, 40, 72, 1, "some"),
    "all-absent": (2, 21, 40, 72, 3, "all"),
}
ROUTINGS = ["soft", "uniform", "top1", "top1_st"]
LEARNED = ("soft", "top1_st")          # gates that carry gradient


def _setup(M, N, d, h, K, absent, routing, seed=0):
    torch.manual_seed(seed)
    bank = ModalityExpertBank(M, d, K, h, routing).to(DEVICE)
    x = torch.randn(M, N, d, device=DEVICE)
    if absent == "some":
        x[0, ::3] = 0
        x[-1, 1::4] = 0
    elif absent == "all":
        x.zero_()
    gz = torch.randn(M, N, d, device=DEVICE)
    ga = torch.randn(M, N, K, device=DEVICE)
    return bank, x, gz, ga


def _params(bank):
    return [bank.gate_weight, bank.gate_bias, bank.w1, bank.b1, bank.w2, bank.b2]


def _reference(bank, x, gz, ga, routing):
    xr = x.detach().clone().requires_grad_(True)
    z, a = bank(xr.transpose(0, 1).unsqueeze(0))                    # [1, N, M, .]
    z, a = z[0].transpose(0, 1), a[0].transpose(0, 1)               # -> [M, N, .]
    loss = (z * gz).sum() + ((a * ga).sum() if routing in LEARNED else 0.0)
    grads = torch.autograd.grad(loss, [xr, *_params(bank)], allow_unused=True)
    return z.detach(), a.detach(), grads


def _fast(bank, x, gz, ga, routing, backend):
    xf = x.detach().clone().requires_grad_(True)
    z, a = modality_bank(xf, *_params(bank), routing=routing, backend=backend)
    loss = (z * gz).sum() + ((a * ga).sum() if routing in LEARNED else 0.0)
    grads = torch.autograd.grad(loss, [xf, *_params(bank)], allow_unused=True)
    return z.detach(), a.detach(), grads


def _check(bank, x, gz, ga, routing, backend):
    z_r, a_r, g_r = _reference(bank, x, gz, ga, routing)
    z_f, a_f, g_f = _fast(bank, x, gz, ga, routing, backend)
    torch.testing.assert_close(z_f, z_r, **FWD)
    torch.testing.assert_close(a_f, a_r, **FWD)
    for name, gr, gf in zip(["x", "gate_weight", "gate_bias", "w1", "b1", "w2", "b2"], g_r, g_f):
        if gr is None:       # uniform / top1: the gate gets no gradient in the reference either
            assert gf is None, f"{name}: reference has no gradient, fast has one"
            continue
        assert gf is not None, f"{name}: fast gradient missing"
        torch.testing.assert_close(gf, gr, **GRAD, msg=lambda m: f"{name}: {m}")


@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_torch_path_matches_reference(case, routing):
    bank, x, gz, ga = _setup(*case, routing)
    _check(bank, x, gz, ga, routing, "torch")


TRITON_CASES = [pytest.param(CASES[c], r, id=f"{c}-{r}") for c in CASES for r in ROUTINGS
                if r == "soft" or c in ("odd-N37", "single-token")]     # top1_st: no kernel, the torch bank


@pytest.mark.parametrize("case,routing", TRITON_CASES)
def test_triton_kernels_match_reference(case, routing):
    bank, x, gz, ga = _setup(*case, routing)
    _check(bank, x, gz, ga, routing, "triton")


def test_triton_split_token_reduction_partials():
    """Weight gradients reduced over tokens in several splits (fp32 partials + torch sum)."""
    from himoe_fast.fast.backend import load_kernel_module

    kern = load_kernel_module("modality_experts", DEVICE)
    bank, x, gz, ga = _setup(2, 37, 40, 72, 3, "some", "soft", seed=1)
    assert kern._num_splits(37, 1, torch.device("cpu")) == 1            # the heuristic on CPU
    with kern.token_splits(3):
        assert kern._num_splits(37, 1, torch.device("cpu")) == 3
        _check(bank, x, gz, ga, "soft", "triton")
    assert kern._num_splits(37, 1, torch.device("cpu")) == 1


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_gates_only_loss_and_no_grad(backend):
    """Gradient from the gates alone (z unused), and the no-grad forward path."""
    bank, x, _, ga = _setup(2, 9, 40, 72, 3, "none", "soft")
    xf = x.clone().requires_grad_(True)
    _, a = modality_bank(xf, *_params(bank), routing="soft", backend=backend)
    g_fast = torch.autograd.grad((a * ga).sum(), [xf, bank.gate_weight, bank.w1], allow_unused=True)
    xr = x.clone().requires_grad_(True)
    _, a_r = bank(xr.transpose(0, 1).unsqueeze(0))
    g_ref = torch.autograd.grad((a_r[0].transpose(0, 1) * ga).sum(), [xr, bank.gate_weight, bank.w1],
                                allow_unused=True)
    torch.testing.assert_close(g_fast[0], g_ref[0], **GRAD)
    torch.testing.assert_close(g_fast[1], g_ref[1], **GRAD)
    assert g_ref[2] is None or float(g_ref[2].abs().max()) == 0.0
    assert g_fast[2] is None or float(g_fast[2].abs().max()) == 0.0
    with torch.no_grad():
        z, a = modality_bank(x, *_params(bank), routing="soft", backend=backend)
        z_r, a_r = bank(x.transpose(0, 1).unsqueeze(0))
    torch.testing.assert_close(z, z_r[0].transpose(0, 1), **FWD)


def test_absent_tokens_gate_is_softmax_of_bias():
    bank, x, _, _ = _setup(2, 5, 40, 72, 3, "all", "soft")
    for backend in ("torch", "triton"):
        _, a = modality_bank(x, *_params(bank), routing="soft", backend=backend)
        expected = torch.softmax(bank.gate_bias.detach(), -1)[:, None, :].expand_as(a)
        torch.testing.assert_close(a.detach(), expected, **FWD)


def test_bad_routing_and_backend():
    bank, x, _, _ = _setup(1, 3, 40, 72, 3, "none", "soft")
    with pytest.raises(ValueError):
        modality_bank(x, *_params(bank), routing="hard", backend="torch")
    with pytest.raises(ValueError):
        modality_bank(x, *_params(bank), routing="soft", backend="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 kernels are GPU-only")
def test_triton_bf16_close_to_fp32_reference():
    bank, x, gz, ga = _setup(3, 257, 128, 256, 4, "some", "soft")
    z_r, a_r, g_r = _reference(bank, x, gz, ga, "soft")
    bf = [p.detach().to(torch.bfloat16).requires_grad_(True) for p in _params(bank)]
    xb = x.to(torch.bfloat16).requires_grad_(True)
    z, a = modality_bank(xb, *bf, routing="soft", backend="triton")
    assert z.dtype == torch.bfloat16
    torch.testing.assert_close(z.float(), z_r, atol=5e-2, rtol=5e-2)
    torch.testing.assert_close(a.float(), a_r, atol=2e-2, rtol=2e-2)
    ((z.float() * gz).sum() + (a.float() * ga).sum()).backward()
    torch.testing.assert_close(xb.grad.float(), g_r[0], atol=1e-1, rtol=1e-1)
    torch.testing.assert_close(bf[2].grad.float(), g_r[3], atol=1e-1, rtol=1e-1)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_backward_twice_with_retain_graph(backend):
    bank, x, gz, ga = _setup(2, 7, 40, 72, 3, "some", "soft")
    xf = x.clone().requires_grad_(True)
    z, a = modality_bank(xf, *_params(bank), routing="soft", backend=backend)
    loss = (z * gz).sum() + (a * ga).sum()
    g1 = torch.autograd.grad(loss, [xf, bank.w1, bank.gate_weight], retain_graph=True)
    g2 = torch.autograd.grad(loss, [xf, bank.w1, bank.gate_weight])
    for u, v in zip(g1, g2):
        torch.testing.assert_close(u, v, atol=0, rtol=0)


def test_workspace_reuse_and_gradient_accumulation():
    """Two forwards before two backwards (gradient accumulation), then a reused workspace."""
    from himoe_fast.fast import experts

    experts.clear_workspace()
    bank, x, gz, ga = _setup(2, 11, 40, 72, 3, "some", "soft")
    x2 = torch.randn_like(x)
    ref = []
    for xi in (x, x2):
        ref.append(_reference(bank, xi, gz, ga, "soft"))
    outs = [modality_bank(xi.clone().requires_grad_(True), *_params(bank), routing="soft", backend="torch")
            for xi in (x, x2)]
    losses = [(z * gz).sum() + (a * ga).sum() for z, a in outs]
    g2 = torch.autograd.grad(losses[1], _params(bank))
    g1 = torch.autograd.grad(losses[0], _params(bank))
    for got, want in ((g1, ref[0][2][1:]), (g2, ref[1][2][1:])):
        for u, v in zip(got, want):
            torch.testing.assert_close(u, v, **GRAD)
    assert experts.workspace_bytes() > 0 or DEVICE != "cpu"     # the workspace serves CPU tensors only
    for _ in range(2):                    # steps reusing the workspace give the same numbers
        _check(bank, x2, gz, ga, "soft", "torch")
    held = experts.workspace_bytes()
    _check(bank, x, gz, ga, "soft", "torch")
    assert experts.workspace_bytes() == held
    experts.clear_workspace()
    assert experts.workspace_bytes() == 0


def test_parity_mode_uses_ieee_fp32_dots():
    """DESIGN.md: fp32 parity runs the kernels with exact (ieee) dots, whatever the default is."""
    from himoe_fast.kernels.common import FP32_DOT, dot_precision, fp32_dot

    assert dot_precision(torch.float32) == FP32_DOT
    with fp32_dot("ieee"):
        assert dot_precision(torch.float32) == "ieee"
        assert dot_precision(torch.bfloat16) == "tf32"
    assert dot_precision(torch.float32) == FP32_DOT
    with pytest.raises(ValueError):
        with fp32_dot("fast"):
            pass
