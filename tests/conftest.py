"""Shared test setup.

Triton kernels run on the CPU through the interpreter, which must be switched on before triton is
imported anywhere: do it here, first, when no CUDA device is visible.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from himoe_fast import HiMoEConfig, ModalitySpec  # noqa: E402


@pytest.fixture(scope="module")
def one_cpu_thread():
    """For modules of tiny-shape tests: one intra-op thread avoids OpenMP barrier stalls on a shared,
    loaded CPU (with two threads a busy machine turns each parallel region into a scheduler wait)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def tiny_config(**overrides) -> HiMoEConfig:
    """A small 3-modality config (one of each encoder kind) that runs in milliseconds."""
    base = dict(
        modalities=[
            ModalitySpec("eeg", channels=5, sfreq=32, kind="eeg"),
            ModalitySpec("gsr", channels=1, sfreq=16, kind="signal"),
            ModalitySpec("face", channels=3, sfreq=20, kind="features"),
        ],
        window_s=1.0, d_model=16, n_modality_experts=3, expert_hidden=24, n_emotion_experts=5,
        router_dim=8, targets=("valence", "arousal"), dropout=0.0,
    )
    base.update(overrides)
    return HiMoEConfig(**base)


def random_inputs(cfg: HiMoEConfig, B: int = 2, T: int = 3, p_present: float = 0.7, generator=None):
    """Random raw windows for every modality and a random presence mask with >= 1 present per step."""
    inputs = {s.name: torch.randn(B, T, s.channels, s.samples(cfg.window_s), generator=generator)
              for s in cfg.modalities}
    present = torch.rand(B, T, cfg.n_modalities, generator=generator) < p_present
    present[..., 0] |= ~present.any(-1)
    return inputs, present
