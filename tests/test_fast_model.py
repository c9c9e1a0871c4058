"""The swap-in fast model against the reference: outputs and every parameter gradient, state dicts.

Both backends: ``torch`` (batched CPU path) and ``triton`` (kernels; interpreter on CPU). Every router
and routing mode, and the ``emotion_bank=False`` ablation. The config has one modality of each encoder
kind plus two signal modalities of different channel counts (grouped conv with zero-padding).
"""

import pytest
import torch

from himoe_fast import HiMoE, HiMoEConfig
from himoe_fast.fast import FastHiMoE, to_fast, to_reference
from himoe_fast.config import preset_config
from himoe_fast.testing import random_batch
from himoe_fast.fast.parity import run_parity


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


ROUTERS = ["dot", "cosine", "diff"]
ROUTINGS = ["soft", "uniform", "top1", "top1_st"]


def _assert_parity(cfg, backend, **kw):
    report = run_parity(cfg, backend=backend, **kw)
    bad = [f"{c.name} ({c.kind}): abs {c.max_abs:.2e} rel {c.max_rel:.2e} {c.note}" for c in report.failures]
    assert report.ok, "parity failures:\n" + "\n".join(bad)
    names = {c.name for c in report.checks}
    assert {"pred", "modality_gates", "alignment_loss", "loss", "modality_bank.w1"} <= names


@pytest.mark.parametrize("routing", ROUTINGS)
@pytest.mark.parametrize("router", ROUTERS)
def test_torch_backend_parity(router, routing):
    _assert_parity(preset_config("tiny", router=router, routing=routing), "torch", B=2, T=3)


TRITON_COMBOS = [(r, "soft") for r in ROUTERS] + [("dot", "uniform"), ("dot", "top1"), ("dot", "top1_st")]


@pytest.mark.parametrize("router,routing", TRITON_COMBOS)
def test_triton_backend_parity(router, routing):
    _assert_parity(preset_config("tiny", router=router, routing=routing), "triton", B=2, T=3)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_no_emotion_bank_parity(backend):
    _assert_parity(preset_config("tiny", emotion_bank=False), backend, B=2, T=2)


def test_deap_preset_parity_torch():
    """The real DEAP shapes (32-channel EEG at 128 Hz, six signal modalities in one grouped conv)."""
    _assert_parity(HiMoEConfig.deap(), "torch", B=2, T=2)


def test_dreamer_preset_parity_torch():
    """EEG at 128 Hz and ECG at 256 Hz (a signal group of its own)."""
    _assert_parity(HiMoEConfig.dreamer(router="diff", task="binary"), "torch", B=2, T=2)


def test_odd_sampling_rates_parity_torch():
    """Windows that pooling does not divide (floor-mode truncation, adaptive-pool fallback), a
    one-channel EEG, and a signal group mixing 1- and 3-channel modalities."""
    from himoe_fast import ModalitySpec

    cfg = HiMoEConfig(
        modalities=[ModalitySpec("eeg", 3, 100.0, "eeg"), ModalitySpec("eeg1", 1, 50.0, "eeg"),
                    ModalitySpec("gsr", 1, 90.0, "signal"), ModalitySpec("resp", 3, 90.0, "signal"),
                    ModalitySpec("ecg", 2, 45.0, "signal"), ModalitySpec("face", 4, 25.0, "features")],
        d_model=24, n_modality_experts=2, expert_hidden=40, n_emotion_experts=3, router_dim=8,
        targets=("valence",), window_s=1.0)
    _assert_parity(cfg, "torch", B=2, T=2)


def _storages(model):
    return {t.untyped_storage().data_ptr() for t in model.state_dict().values()}


def test_state_dicts_interchange_and_no_shared_storage():
    cfg = preset_config("tiny", router="diff")
    ref = HiMoE(cfg)
    fast = to_fast(ref, backend="torch")
    assert isinstance(fast, FastHiMoE) and isinstance(fast, HiMoE)
    sd_r, sd_f = ref.state_dict(), fast.state_dict()
    assert list(sd_r) == list(sd_f)
    for k in sd_r:
        assert sd_r[k].shape == sd_f[k].shape and torch.equal(sd_r[k], sd_f[k]), k
    assert not (_storages(ref) & _storages(fast))
    # fast -> reference state dict and back
    with torch.no_grad():
        for p in fast.parameters():
            p.add_(0.01)
    ref.load_state_dict(fast.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ref.state_dict().values(), fast.state_dict().values()))
    back = to_reference(fast)
    assert type(back) is HiMoE
    assert not (_storages(back) & _storages(fast))
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), fast.state_dict().values()))
    fast2 = FastHiMoE(cfg)
    fast2.load_state_dict(ref.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(fast2.state_dict().values(), ref.state_dict().values()))


def test_to_fast_keeps_mode_and_copies_values():
    cfg = preset_config("tiny")
    ref = HiMoE(cfg).eval()
    fast = to_fast(ref)
    assert not fast.training and fast.backend == "auto"
    ref.modality_bank.w1.data.zero_()
    assert float(fast.modality_bank.w1.detach().abs().sum()) > 0      # a copy, not a view
    with pytest.raises(ValueError):
        to_fast(ref, backend="cuda")


def test_eval_mode_with_dropout_matches_reference():
    """Dropout is the only train/eval difference: with dropout > 0, eval-mode outputs match."""
    cfg = preset_config("tiny", dropout=0.3)
    ref = HiMoE(cfg).eval()
    fast = to_fast(ref, backend="torch")
    inputs, present, _, _ = random_batch(cfg, 2, 3, seed=3)
    with torch.no_grad():
        a, b = ref(inputs, present), fast(inputs, present)
    torch.testing.assert_close(b.pred, a.pred, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.encoded, a.encoded, atol=1e-5, rtol=1e-4)
    fast.train()
    out = fast(inputs, present)          # dropout active: runs, finite
    assert torch.isfinite(out.pred).all()


def test_nan_in_absent_windows_does_not_leak():
    cfg = preset_config("tiny")
    fast = to_fast(HiMoE(cfg), backend="torch")
    inputs, present, labels, mask = random_batch(cfg, 2, 3, seed=1)
    present[:, :, 1] = False
    present[:, :, 0] = True
    inputs["gsr"][:] = float("nan")
    out = fast(inputs, present)
    loss = fast.loss(out, labels, mask)
    loss.backward()
    assert torch.isfinite(out.pred).all() and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in fast.parameters() if p.grad is not None)


def test_encode_and_output_shapes_match_reference():
    cfg = preset_config("tiny", dropout=0.0)
    ref = HiMoE(cfg)
    fast = to_fast(ref, backend="torch")
    inputs, present, _, _ = random_batch(cfg, 3, 2, seed=2)
    torch.testing.assert_close(fast.encode(inputs, present), ref.encode(inputs, present), atol=1e-5, rtol=1e-4)
    a, b = ref(inputs, present), fast(inputs, present)
    for k in ("pred", "modality_gates", "emotion_weights", "fusion_weights", "encoded", "fused"):
        assert getattr(a, k).shape == getattr(b, k).shape, k
    with pytest.raises(ValueError):
        fast({k: v for k, v in inputs.items() if k != "gsr"}, present)
