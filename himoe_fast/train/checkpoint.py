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

import pickle
import warnings
from pathlib import Path
from typing import Any

import torch

from ..config import HiMoEConfig
from ..errors import CheckpointError, UserInputError
from ..io import atomic_write

MODEL_FORMAT = "himoe-fast/model/v1"
TRAIN_STATE_FORMAT = "himoe-fast/train-state/v1"
_KIND = {MODEL_FORMAT: "a model file (model.pt)", TRAIN_STATE_FORMAT: "a training state (checkpoint.pt)"}
_TRAIN_STATE_FIELDS = {
    "epoch": int, "model": dict, "optimizer": dict, "scheduler": dict, "best_score": (int, float),
    "best_epoch": int, "bad_epochs": int, "best_state": (dict, type(None)), "history": list,
    "finished": bool, "rng": dict,
}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically ``torch.save`` a plain-data state dict."""
    return atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, expect: str | None = None) -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` onto the CPU, for files written by this package.

    ``expect`` (:data:`MODEL_FORMAT` or :data:`TRAIN_STATE_FORMAT`) also checks the ``"format"``
    tag. Every way a file can fail to be one -- missing, unreadable, empty, truncated, not a torch
    file, a pickle that a weights-only load refuses (it would run code), another kind of file --
    raises :class:`~himoe_fast.errors.CheckpointError` (or :class:`~himoe_fast.errors.UserInputError`
    for missing/unreadable files) with one line naming the file. torch's own message is never passed
    on: for refused pickles it advises ``weights_only=False``, which would run the payload.
    """
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"{p}: no such checkpoint file")
    try:
        with open(p, "rb"):
            pass
    except OSError as exc:                # a folder, no permission: the file itself is not the problem
        raise UserInputError(f"{p}: cannot read ({exc.strerror or type(exc).__name__})") from None
    try:
        with warnings.catch_warnings():   # e.g. "Detected pickle protocol 4": noise for a file we refuse
            warnings.simplefilter("ignore")
            state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(p, "it holds objects other than tensors and plain data, or a corrupt "
                                 "pickle; refused without running any of it") from None
    except MemoryError:
        raise CheckpointError(p, "its content claims more memory than there is") from None
    except Exception as exc:  # noqa: BLE001 - any other failure to parse the file means it is damaged
        raise CheckpointError(p, f"empty, truncated or corrupt: {type(exc).__name__}") from None
    if not isinstance(state, dict):
        raise CheckpointError(p, f"holds a {type(state).__name__}, expected a dict")
    if expect is not None and state.get("format") != expect:
        found = state.get("format")
        hint = {MODEL_FORMAT: "a fold's model.pt", TRAIN_STATE_FORMAT: "a fold's checkpoint.pt"}.get(found)
        raise CheckpointError(p, f"expected {_KIND[expect]}, found "
                                 f"{hint + ' content' if hint else 'format tag ' + repr(found)}")
    return state


def load_train_state(path: str | Path) -> dict[str, Any]:
    """A fold's ``checkpoint.pt`` (the ``--resume`` state), with every field checked."""
    state = load_checkpoint(path, expect=TRAIN_STATE_FORMAT)
    for key, types in _TRAIN_STATE_FIELDS.items():
        if key not in state:
            raise CheckpointError(path, f"missing {key!r}")
        if not isinstance(state[key], types):
            raise CheckpointError(path, f"{key!r} is a {type(state[key]).__name__}")
    if not isinstance(state["rng"].get("torch"), torch.Tensor):
        raise CheckpointError(path, "'rng' lacks the torch RNG state")
    return state


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
        "format": MODEL_FORMAT,
        "model_config": cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "extra": extra or {},
    }
    return save_checkpoint(path, state)


def load_model(path: str | Path, impl: str = "reference", backend: str = "auto"):
    """Rebuild the model saved by :func:`save_model`. Returns ``(model, cfg, extra)``."""
    state = load_checkpoint(path, expect=MODEL_FORMAT)
    extra = state.get("extra", {})
    if not isinstance(extra, dict) or not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(path, "missing its weights or run settings")
    try:
        cfg = HiMoEConfig.from_dict(state["model_config"])
        model = build_model(cfg, extra.get("model_name", "himoe"))
    except Exception as exc:  # noqa: BLE001 - anything wrong in the stored config is a bad file
        raise CheckpointError(path, f"its model config is invalid: {type(exc).__name__}") from None
    try:
        model.load_state_dict(state["state_dict"])
    except (RuntimeError, TypeError, KeyError):
        raise CheckpointError(path, "its weights do not match its model config") from None
    if impl == "auto":                 # fast if it passes its (cached) self-check on this machine's device
        from ..fast.selfcheck import resolve_impl

        impl = resolve_impl("auto", cfg, "cuda" if torch.cuda.is_available() else "cpu",
                            extra.get("model_name", "himoe"))
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
