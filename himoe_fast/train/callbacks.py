"""Callbacks into the training loop: user code that runs at fixed points of :func:`train_fold`.

A callback subclasses :class:`TrainCallback` and overrides the hooks it needs (loggers, custom
stopping, fault-injection in tests). A run names its callbacks by import path
(``"package.module:attr"``, ``RunConfig.callbacks`` / ``himoe-fast train --callback``): a path is a
string, so it travels to every spawned rank, and each rank builds its own instances with
:func:`load_callbacks` (``attr`` is a class or any factory called without arguments).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Sequence

from ..errors import UserInputError


class TrainCallback:
    """Hooks of one fold's training; every method is a no-op unless overridden.

    ``ctx`` is the rank's :class:`~himoe_fast.train.distributed.DistContext`; hooks run on every rank.
    """

    def on_fold_start(self, ctx, fold_index: int, fold_dir: Path) -> None:
        """Before the model is built (nothing of the fold is written yet)."""

    def on_epoch_end(self, ctx, epoch: int, fold_dir: Path, checkpoint: Path) -> None:
        """After epoch ``epoch`` (0-based) is validated and its checkpoint is written and all ranks met."""

    def on_fold_end(self, ctx, fold_index: int, fold_dir: Path, metrics: dict) -> None:
        """After the best weights were evaluated on the test split and the fold's files written."""


def load_callbacks(specs: Sequence[str]) -> list[TrainCallback]:
    """Instances for import paths ``"module:attr"``; a bad path is a one-line :class:`UserInputError`."""
    out = []
    for spec in specs:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise UserInputError(f"--callback {spec!r}: expected an import path 'module:attr'")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UserInputError(f"--callback {spec!r}: cannot import it ({type(exc).__name__}: {exc})") from None
        try:
            callback = factory()
        except TypeError as exc:            # not callable, or it needs arguments
            raise UserInputError(f"--callback {spec!r}: cannot build it without arguments ({exc})") from None
        if not isinstance(callback, TrainCallback):
            raise UserInputError(f"--callback {spec!r}: {attr}() gave a {type(callback).__name__}, "
                                 "not a himoe_fast.train.callbacks.TrainCallback")
        out.append(callback)
    return out


__all__ = ["TrainCallback", "load_callbacks"]
