"""Checkpoints and small atomic-write helpers.

Every checkpoint holds only tensors, dicts, lists, strings and numbers, so it loads with
``torch.load(path, weights_only=True)`` (no pickled classes). Writes go to a temporary file in the
same directory and are renamed into place, so a killed process never leaves a half-written file.

Two kinds per fold directory:

* ``checkpoint.pt`` -- the training state for ``--resume``: model, optimizer, scheduler, epoch,
  early-stopping state (best weights, best score, epochs without improvement), RNG states.
* ``model.pt`` -- the final (best-on-validation) weights with the model config and run settings,
  what ``himoe-fast eval`` and :func:`load_model` read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import HiMoEConfig
from ..io import atomic_write, atomic_write_json, atomic_write_text  # noqa: F401  (re-exported)


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a plain-data state dict."""
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` onto the CPU."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> dict[str, Any]:
    """Torch RNG states as plain tensors (CPU and, when present, every CUDA device)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_model(path: str | Path, model: torch.nn.Module, cfg: HiMoEConfig, extra: dict[str, Any] | None = None) -> Path:
    """Final weights + config (+ run settings in ``extra``), loadable with ``weights_only=True``."""
    state = {
        "format": "himoe-fast/model/v1",
        "model_config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    return save_checkpoint(path, state)


def load_model(path: str | Path, impl: str = "reference", backend: str = "auto"):
    """Rebuild the model saved by :func:`save_model`. Returns ``(model, cfg, extra)``."""
    from ..model import HiMoE

    state = load_checkpoint(path)
    if state.get("format") != "himoe-fast/model/v1":
        raise ValueError(f"{path}: not a himoe-fast model checkpoint")
    cfg = HiMoEConfig.from_dict(state["model_config"])
    extra = state.get("extra", {})
    model = build_model(cfg, extra.get("model_name", "himoe"))
    model.load_state_dict(state["state_dict"])
    if impl == "fast":
        from ..fast import to_fast

        model = to_fast(model, backend=backend)
    return model, cfg, extra


def build_model(cfg: HiMoEConfig, name: str = "himoe") -> torch.nn.Module:
    """Construct a model by name (``himoe``; baselines register in :mod:`himoe_fast.baselines`)."""
    if name == "himoe":
        from ..model import HiMoE

        return HiMoE(cfg)
    try:
        from ..baselines import build_baseline
    except ImportError as exc:  # pragma: no cover - baselines module optional
        raise ValueError(f"unknown model {name!r}") from exc
    return build_baseline(name, cfg)
