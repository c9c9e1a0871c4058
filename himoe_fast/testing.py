"""Test-support factories shared by the tests, the parity check, the self-check and the benchmarks.

Small configs (:func:`micro_config`; the ``tiny`` preset is :meth:`HiMoEConfig.tiny`), seeded random
inputs and batches, and :func:`randomize_zero_parameters` for parity checks that must also exercise
gradients through zero-initialised parameters. Shapes: ``B`` samples, ``T`` windows, ``M`` modalities.
"""

from __future__ import annotations

import torch

from .config import HiMoEConfig, ModalitySpec


def micro_config(**overrides) -> HiMoEConfig:
    """The smallest useful config: three modalities (one per encoder kind: eeg 5 ch at 32 Hz, gsr 1 ch
    at 16 Hz, face 3 features at 20 fps), d=16, h=24, 3 modality and 5 emotion experts, no dropout.
    A forward and backward pass takes milliseconds."""
    base = dict(
        modalities=[ModalitySpec("eeg", channels=5, sfreq=32, kind="eeg"),
                    ModalitySpec("gsr", channels=1, sfreq=16, kind="signal"),
                    ModalitySpec("face", channels=3, sfreq=20, kind="features")],
        window_s=1.0, d_model=16, n_modality_experts=3, expert_hidden=24, n_emotion_experts=5,
        router_dim=8, targets=("valence", "arousal"), dropout=0.0,
    )
    base.update(overrides)
    return HiMoEConfig(**base)


def random_inputs(cfg: HiMoEConfig, B: int = 2, T: int = 3, p_present: float = 0.7,
                  generator: torch.Generator | None = None):
    """Random raw windows ``{name: [B, T, C_m, S_m]}`` and a presence mask ``[B, T, M]`` with at least
    one modality present per step (drawn from ``generator``, else the global torch RNG)."""
    inputs = {s.name: torch.randn(B, T, s.channels, s.samples(cfg.window_s), generator=generator)
              for s in cfg.modalities}
    present = torch.rand(B, T, cfg.n_modalities, generator=generator) < p_present
    present[..., 0] |= ~present.any(-1)
    return inputs, present


def random_batch(cfg: HiMoEConfig, B: int, T: int, *, seed: int = 0, p_present: float = 0.7,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A seeded training batch: raw windows ``{name: [B, T, C_m, S_m]}``, presence ``[B, T, M]``
    (>= 1 modality per step), labels ``[B, T, n_targets]`` in the label range, label mask (90% kept)."""
    g = torch.Generator().manual_seed(seed)
    inputs = {s.name: torch.randn(B, T, s.channels, s.samples(cfg.window_s), generator=g).to(device, dtype)
              for s in cfg.modalities}
    present = torch.rand(B, T, cfg.n_modalities, generator=g) < p_present
    present[..., 0] |= ~present.any(-1)
    lo, hi = cfg.label_range
    labels = (torch.rand(B, T, cfg.n_targets, generator=g) * (hi - lo) + lo).to(device)
    label_mask = torch.rand(B, T, cfg.n_targets, generator=g) < 0.9
    return inputs, present.to(device), labels, label_mask.to(device)


def randomize_zero_parameters(model: torch.nn.Module, seed: int = 0, scale: float = 0.1) -> torch.nn.Module:
    """Give parameters that are initialised to exactly zero (Fuse's score vector ``v``, the temporal
    gains) random values, so that a parity check also covers the gradients that flow through them
    (with ``v = 0`` the gradient of Fuse's projection is identically zero on both sides)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not p.any():
                p.copy_((torch.randn(p.shape, generator=g) * scale).to(p))
    return model


__all__ = ["micro_config", "random_inputs", "random_batch", "randomize_zero_parameters"]
