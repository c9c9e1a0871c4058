"""Reference model: shapes, distributions, masking semantics, every mode, the loss (Eq. 8)."""

import itertools
import math

import pytest
import torch

from himoe_fast.testing import micro_config, random_inputs
from himoe_fast import HiMoE, HiMoEConfig, HiMoEOutput
from himoe_fast.model.experts import expert_ffn


def test_output_shapes_and_types():
    cfg = micro_config()
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg, B=2, T=3)
    out = model(inputs, present)
    assert isinstance(out, HiMoEOutput)
    assert out.pred.shape == (2, 3, 2)
    assert out.modality_gates.shape == (2, 3, 3, cfg.n_modality_experts)
    assert out.emotion_weights.shape == (2, 3, cfg.n_emotion_experts)
    assert out.fusion_weights.shape == (2, 3, 3)
    assert out.alignment_loss.dim() == 0


def test_deap_preset_forward_backward_runs():
    cfg = HiMoEConfig.deap(modalities=("eeg", "eog", "emg", "gsr"))
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg, B=2, T=2)
    out = model(inputs, present)
    loss = model.loss(out, torch.rand(2, 2, 4) * 8 + 1, torch.ones(2, 2, 4, dtype=torch.bool))
    loss.backward()
    assert out.pred.shape == (2, 2, 4)
    assert all(p.grad is not None for n, p in model.named_parameters() if "emotion_bank" in n)


@pytest.mark.parametrize("router", ["dot", "cosine"])
def test_gates_and_router_weights_are_distributions(router):
    cfg = micro_config(router=router)
    out = HiMoE(cfg)(*random_inputs(cfg))
    a, b = out.modality_gates, out.emotion_weights
    assert (a >= 0).all() and torch.allclose(a.sum(-1), torch.ones_like(a.sum(-1)), atol=1e-6)
    assert (b >= 0).all() and torch.allclose(b.sum(-1), torch.ones_like(b.sum(-1)), atol=1e-6)
    w = out.fusion_weights
    assert torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)), atol=1e-6)


def test_diff_router_rows_sum_to_one_minus_lambda():
    cfg = micro_config(router="diff")
    model = HiMoE(cfg)
    bank = model.emotion_bank
    out = model(*random_inputs(cfg))
    lq, lk = bank.lambda_q.detach(), bank.lambda_k.detach()
    lam = math.exp(float(lq[0] @ lk[0])) - math.exp(float(lq[1] @ lk[1])) + cfg.lam_init
    rows = out.emotion_weights.sum(-1)
    assert torch.allclose(rows, torch.full_like(rows, 1.0 - lam), atol=1e-5)


def test_routing_modes():
    cfg = micro_config(routing="uniform")
    out = HiMoE(cfg)(*random_inputs(cfg))
    assert torch.allclose(out.modality_gates, torch.full_like(out.modality_gates, 1 / cfg.n_modality_experts))
    cfg = micro_config(routing="top1")
    out = HiMoE(cfg)(*random_inputs(cfg))
    g = out.modality_gates
    assert ((g == 0) | (g == 1)).all() and (g.sum(-1) == 1).all()


def test_learned_top1_router_is_hard_forward_and_softmax_gradient_backward():
    """``top1_st``: one-hot gates (as ``top1``), but the gate learns: its gradient equals that of the
    surrogate sum_k softmax_k * <dL/dz, E_k(x)> with the expert outputs held fixed."""
    from himoe_fast.model.experts import ModalityExpertBank, expert_ffn

    torch.manual_seed(3)
    bank = ModalityExpertBank(2, 6, 3, 5, routing="top1_st")
    x = torch.randn(2, 4, 2, 6)
    gz = torch.randn(2, 4, 2, 6)
    z, alpha = bank(x)
    assert ((alpha == 0) | (alpha == 1)).all() and (alpha.sum(-1) == 1).all()
    hard = ModalityExpertBank(2, 6, 3, 5, routing="top1")
    hard.load_state_dict(bank.state_dict())
    assert torch.equal(z, hard(x)[0])                                   # the same forward as top1
    (gw,) = torch.autograd.grad((z * gz).sum(), [bank.gate_weight])
    surrogate = 0.0
    for m in range(2):
        xm = x[..., m, :]
        p = torch.softmax(xm @ bank.gate_weight[m] + bank.gate_bias[m], -1)
        for k in range(3):
            e = expert_ffn(xm, bank.w1[m, k], bank.b1[m, k], bank.w2[m, k], bank.b2[m, k])
            surrogate = surrogate + (p[..., k] * (e * gz[..., m, :]).sum(-1).detach()).sum()
    (want,) = torch.autograd.grad(surrogate, [bank.gate_weight])
    torch.testing.assert_close(gw, want, atol=1e-6, rtol=1e-5)
    assert gw.abs().sum() > 0
    assert torch.autograd.grad((hard(x)[0] * gz).sum(), [hard.gate_weight], allow_unused=True)[0] is None


def test_absent_modality_gate_is_softmax_of_bias():
    """Eq. 2 discussion: an absent modality's bank input is the zero vector, so alpha = softmax(b_g)."""
    cfg = micro_config()
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg)
    present[0, 1, 2] = False
    present[0, 1, 0] = True
    out = model(inputs, present)
    expected = torch.softmax(model.modality_bank.gate_bias[2], -1)
    assert torch.allclose(out.modality_gates[0, 1, 2], expected, atol=1e-6)


def test_modality_bank_matches_eq3_by_hand():
    cfg = micro_config()
    bank = HiMoE(cfg).modality_bank
    x = torch.randn(4, 1, cfg.n_modalities, cfg.d_model)
    z, alpha = bank(x)
    m = 1
    xm = x[:, 0, m]
    logits = xm @ bank.gate_weight[m] + bank.gate_bias[m]
    a = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    want = torch.zeros_like(xm)
    for k in range(cfg.n_modality_experts):
        h = xm @ bank.w1[m, k] + bank.b1[m, k]
        h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        want += a[:, k : k + 1] * (h @ bank.w2[m, k] + bank.b2[m, k])
    assert torch.allclose(z[:, 0, m], want, atol=1e-5)
    assert torch.allclose(alpha[:, 0, m], a, atol=1e-6)


def test_dot_router_matches_eq5_6_by_hand():
    cfg = micro_config()
    bank = HiMoE(cfg).emotion_bank
    z = torch.randn(3, 2, cfg.d_model)
    e, beta = bank(z)
    q = z @ bank.wq[0]
    outs = [expert_ffn(z, bank.w1[l], bank.b1[l], bank.w2[l], bank.b2[l]) for l in range(cfg.n_emotion_experts)]
    phi = torch.stack([(q * (f @ bank.wk[0])).sum(-1) / math.sqrt(cfg.router_dim) for f in outs], -1)
    want_beta = torch.softmax(phi, -1)
    want_e = sum(want_beta[..., l, None] * outs[l] for l in range(len(outs)))
    assert torch.allclose(beta, want_beta, atol=1e-6) and torch.allclose(e, want_e, atol=1e-5)


def test_cosine_router_scale_initialised_and_bounded():
    cfg = micro_config(router="cosine")
    model = HiMoE(cfg)
    assert float(model.emotion_bank.scale.detach()) == pytest.approx(10.0)
    z = torch.randn(5, 1, cfg.d_model) * 100  # huge inputs: cosine logits stay within +-scale
    _, beta = model.emotion_bank(z)
    assert beta.min() >= math.exp(-20) / cfg.n_emotion_experts * 0.99


@pytest.mark.parametrize("train", [False, True])
def test_absent_modality_raw_input_changes_nothing(train):
    cfg = micro_config(dropout=0.0)
    model = HiMoE(cfg).train(train)
    inputs, present = random_inputs(cfg, B=3, T=4)
    present[:, :, 1] = False
    present[1, 2, 0] = False
    out1 = model(inputs, present)
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["gsr"] = torch.randn_like(changed["gsr"]) * 50
    changed["eeg"][1, 2] = float("nan")   # an absent window may even hold NaN
    out2 = model(changed, present)
    for a, b in [(out1.pred, out2.pred), (out1.alignment_loss, out2.alignment_loss),
                 (out1.modality_gates, out2.modality_gates), (out1.emotion_weights, out2.emotion_weights)]:
        assert torch.equal(a, b)
    loss = model.loss(out2, torch.ones(3, 4, 2) * 5, torch.ones(3, 4, 2, dtype=torch.bool))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_presence_matters_for_present_modalities():
    """Sanity counterpart of the test above: a present modality's input does change the output."""
    cfg = micro_config()
    model = HiMoE(cfg).eval()
    inputs, present = random_inputs(cfg)
    present[:] = True
    out1 = model(inputs, present)
    inputs["gsr"] = inputs["gsr"] + 3.0
    assert not torch.allclose(out1.pred, model(inputs, present).pred)


def test_no_modality_present_gives_finite_outputs_and_zero_fusion():
    cfg = micro_config()
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg, B=2, T=3)
    present[0, 1] = False
    out = model(inputs, present)
    assert torch.isfinite(out.pred).all()
    assert torch.equal(out.fused[0, 1], torch.zeros(cfg.d_model))
    assert torch.equal(out.fusion_weights[0, 1], torch.zeros(cfg.n_modalities))
    loss = model.loss(out, torch.full((2, 3, 2), 5.0), torch.ones(2, 3, 2, dtype=torch.bool))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_fusion_ignores_absent_modalities():
    cfg = micro_config()
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg)
    present[:] = True
    present[:, :, 2] = False
    out = model(inputs, present)
    assert (out.fusion_weights[..., 2] == 0).all()


def test_masked_labels_do_not_affect_loss():
    cfg = micro_config(align_weight=0.0)
    model = HiMoE(cfg)
    out = model(*random_inputs(cfg))
    labels = torch.rand(2, 3, 2) * 8 + 1
    mask = torch.rand(2, 3, 2) > 0.5
    mask[0, 0, 0] = True
    l1 = model.loss(out, labels, mask)
    labels2 = torch.where(mask, labels, torch.full_like(labels, float("nan")))
    l2 = model.loss(out, labels2, mask)
    assert torch.equal(l1, l2)
    want = ((out.pred - labels) ** 2)[mask].mean()
    assert torch.allclose(l1, want)


def test_loss_is_eq8_and_binary_uses_bce_with_threshold():
    cfg = micro_config(task="binary", align_weight=0.3, threshold=5.0)
    model = HiMoE(cfg)
    out = model(*random_inputs(cfg))
    labels = torch.tensor([2.0, 5.0, 7.0]).view(1, 3, 1).expand(2, 3, 2)
    mask = torch.ones(2, 3, 2, dtype=torch.bool)
    target = (labels >= 5).float()
    p = torch.sigmoid(out.pred)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    assert torch.allclose(model.loss(out, labels, mask), bce + 0.3 * out.alignment_loss, atol=1e-5)
    none = torch.zeros_like(mask)
    assert torch.allclose(model.loss(out, labels, none), 0.3 * out.alignment_loss)


def test_align_weight_zero_skips_alignment():
    cfg = micro_config(align_weight=0.0)
    out = HiMoE(cfg)(*random_inputs(cfg))
    assert float(out.alignment_loss) == 0.0
    out = HiMoE(cfg)(*random_inputs(cfg), compute_alignment=True)
    assert float(out.alignment_loss.detach()) > 0.0


@pytest.mark.parametrize("router,routing,emotion_bank,task,align",
                         [(r, g, eb, t, a) for r, g, eb, t, a in itertools.product(
                             ["dot", "cosine", "diff"], ["soft", "uniform", "top1"], [True, False],
                             ["regression", "binary"], [0.0, 0.1])
                          if not (not eb and r != "dot")])
def test_every_mode_runs_forward_and_backward(router, routing, emotion_bank, task, align):
    cfg = micro_config(router=router, routing=routing, emotion_bank=emotion_bank, task=task, align_weight=align)
    model = HiMoE(cfg)
    out = model(*random_inputs(cfg))
    assert (out.emotion_weights is None) == (not emotion_bank)
    loss = model.loss(out, torch.rand(2, 3, 2) * 8 + 1, torch.ones(2, 3, 2, dtype=torch.bool))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if routing == "soft":
        assert model.modality_bank.gate_weight.grad.abs().sum() > 0


def test_stacked_weight_shapes():
    cfg = micro_config()
    sd = HiMoE(cfg).state_dict()
    M, K, d, h, L, r = 3, cfg.n_modality_experts, cfg.d_model, cfg.expert_hidden, cfg.n_emotion_experts, cfg.router_dim
    assert sd["modality_bank.w1"].shape == (M, K, d, h)
    assert sd["modality_bank.w2"].shape == (M, K, h, d)
    assert sd["modality_bank.gate_weight"].shape == (M, d, K)
    assert sd["emotion_bank.w1"].shape == (L, d, h)
    assert sd["emotion_bank.wq"].shape == (1, d, r)


def test_bad_inputs_raise_clear_errors():
    cfg = micro_config()
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg)
    with pytest.raises(ValueError, match="gsr"):
        model({k: v for k, v in inputs.items() if k != "gsr"}, present)
    with pytest.raises(ValueError, match="eeg"):
        model({**inputs, "eeg": inputs["eeg"][..., :-1]}, present)
    with pytest.raises(ValueError, match="present"):
        model(inputs, present[..., :2])


def test_fuse_starts_as_mean_over_present_modalities():
    """Fuse's score vector starts at zero: at initialisation the fused token is the plain mean of the
    present modalities' bank outputs (guards against the attention collapse described in fuse.py)."""
    cfg = micro_config()
    model = HiMoE(cfg)
    inputs, present = random_inputs(cfg, B=2, T=3)
    out = model(inputs, present)
    k = present.sum(-1, keepdim=True).float()
    assert torch.allclose(out.fusion_weights, present.float() / k, atol=1e-7)


def test_parity_helper_randomises_zero_initialised_parameters():
    from himoe_fast.testing import randomize_zero_parameters

    model = randomize_zero_parameters(HiMoE(micro_config()))
    assert model.fuse.score.weight.abs().sum() > 0


@pytest.mark.parametrize("bank_name", ["modality_bank", "emotion_bank"])
def test_scaled_expert_init_keeps_the_token_spread_and_torch_init_shrinks_it(bank_name):
    """One FFN expert ``W2 gelu(W1 x + b1) + b2`` on unit-variance tokens: with the scaled init
    (He for W1, 1/h for W2, zero biases) the output's std stays near the input's; with nn.Linear's
    init it shrinks several-fold and the biases add an offset (the cause of Hi-MoE's stalled binary
    training, model/experts.py)."""
    torch.manual_seed(0)
    x = torch.randn(4096, 128)
    spreads = {}
    for scheme in ("scaled", "torch"):
        cfg = HiMoEConfig.deap(modalities=("eeg", "gsr"), expert_init=scheme)
        bank = getattr(HiMoE(cfg), bank_name)
        w1, w2 = (w.reshape(-1, *w.shape[-2:]) for w in (bank.w1, bank.w2))     # [experts, in, out]
        b1, b2 = (b.reshape(-1, b.shape[-1]) for b in (bank.b1, bank.b2))        # [experts, out]
        outs = [expert_ffn(x, w1[i], b1[i], w2[i], b2[i]) for i in range(w1.shape[0])]
        spreads[scheme] = float(torch.stack([o.std(0).mean() for o in outs]).mean())
        if scheme == "scaled":
            assert float(b1.abs().max()) == 0.0 and float(b2.abs().max()) == 0.0
    assert 0.8 < spreads["scaled"] < 1.2, spreads
    assert spreads["torch"] < 0.35, spreads


def test_expert_init_defaults_to_scaled_and_old_configs_keep_torch_init():
    cfg = HiMoEConfig.deap(modalities=("eeg",))
    assert cfg.expert_init == "scaled"
    old = cfg.to_dict()
    del old["expert_init"]                       # a config.json written before the field existed
    assert HiMoEConfig.from_dict(old).expert_init == "torch"
    assert HiMoEConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="expert_init"):
        HiMoEConfig.deap(modalities=("eeg",), expert_init="xavier")
