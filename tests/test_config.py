import pytest
import torch

from himoe_fast import HiMoE, HiMoEConfig, ModalitySpec
from himoe_fast.config import DEAP_MODALITIES


def test_deap_preset_channels_and_overrides():
    cfg = HiMoEConfig.deap(modalities=("eeg", "eog", "emg", "gsr"))
    assert cfg.modality_names == ("eeg", "eog", "emg", "gsr")
    assert [m.channels for m in cfg.modalities] == [32, 2, 2, 1]
    assert all(m.sfreq == 128 for m in cfg.modalities)
    assert cfg.targets == ("valence", "arousal", "dominance", "liking")
    assert cfg.threshold == 5.0
    cfg2 = HiMoEConfig.deap(modalities=("eeg", "eda"), router="diff", task="binary")
    assert cfg2.modality_names == ("eeg", "gsr")
    assert (cfg2.router, cfg2.task) == ("diff", "binary")
    assert HiMoEConfig.deap(modalities=("pps",)).modalities[0].channels == len(DEAP_MODALITIES["pps"][0]) == 8


def test_dreamer_preset():
    cfg = HiMoEConfig.dreamer()
    assert [(m.name, m.channels, m.sfreq) for m in cfg.modalities] == [("eeg", 14, 128), ("ecg", 2, 256)]
    assert cfg.targets == ("valence", "arousal", "dominance")
    assert cfg.threshold == 3.0 and cfg.label_range == (1.0, 5.0)


@pytest.mark.parametrize("bad", [dict(router="nope"), dict(routing="top2"), dict(task="ordinal"),
                                 dict(temperature=0.0), dict(d_model=0), dict(window_s=0.05)])
def test_invalid_values_raise(bad):
    with pytest.raises(ValueError):
        HiMoEConfig.deap(**bad)


def test_unknown_modality_names_the_modality():
    with pytest.raises(ValueError, match="ecg"):
        HiMoEConfig.deap(modalities=("eeg", "ecg"))


def test_roundtrip_dict():
    cfg = HiMoEConfig.deap(modalities=("eeg", "gsr"), router="cosine", d_model=32)
    assert HiMoEConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("spec", [
    ModalitySpec("x", channels=1, sfreq=16, kind="eeg"),          # 16-sample window, one channel
    ModalitySpec("x", channels=3, sfreq=1000, kind="eeg"),
    ModalitySpec("x", channels=1, sfreq=16, kind="signal"),
    ModalitySpec("x", channels=7, sfreq=517, kind="signal"),
    ModalitySpec("x", channels=1, sfreq=16, kind="features"),
])
def test_encoders_build_for_any_rate_and_channel_count(spec):
    cfg = HiMoEConfig(modalities=[spec], d_model=8, expert_hidden=8, router_dim=4, targets=("v",))
    model = HiMoE(cfg)
    S = spec.samples(cfg.window_s)
    out = model({"x": torch.randn(2, 2, spec.channels, S)}, torch.ones(2, 2, 1, dtype=torch.bool))
    assert out.pred.shape == (2, 2, 1)
    assert torch.isfinite(out.pred).all()
