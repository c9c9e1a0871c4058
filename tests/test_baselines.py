"""Baselines: shapes, absent-modality invariance, loss/backward, registry."""

import pytest
import torch

from himoe_fast.testing import micro_config, random_inputs
from himoe_fast.baselines import BASELINES, build_baseline


@pytest.mark.parametrize("name", BASELINES)
def test_forward_backward_and_shapes(name):
    cfg = micro_config()
    model = build_baseline(name, cfg)
    inputs, present = random_inputs(cfg, B=2, T=3)
    present[0, 1] = False                       # a step with nothing present stays finite
    out = model(inputs, present)
    assert out.pred.shape == (2, 3, 2) and torch.isfinite(out.pred).all()
    assert float(out.alignment_loss) == 0.0
    loss = model.loss(out, torch.rand(2, 3, 2) * 8 + 1, torch.ones(2, 3, 2, dtype=torch.bool))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("name", BASELINES)
def test_absent_modality_input_changes_nothing(name):
    cfg = micro_config()
    model = build_baseline(name, cfg).eval()
    inputs, present = random_inputs(cfg, B=2, T=4)
    present[:, :, 1] = False
    a = model(inputs, present).pred
    inputs["gsr"] = torch.randn_like(inputs["gsr"]) * 100
    assert torch.allclose(a, model(inputs, present).pred, atol=1e-6)


def test_late_fusion_is_mean_of_present_modality_predictions():
    cfg = micro_config()
    model = build_baseline("late_fusion", cfg).eval()
    inputs, present = random_inputs(cfg, B=1, T=2)
    present[:] = torch.tensor([True, False, True])
    Z = model.encode(inputs, present)
    per = model.per_modality(Z)
    want = (per[..., 0, :] + per[..., 2, :]) / 2
    assert torch.allclose(model(inputs, present).pred, want, atol=1e-6)


def test_unknown_baseline():
    with pytest.raises(ValueError, match="unknown model"):
        build_baseline("gpt", micro_config())
