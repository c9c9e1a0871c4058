"""The states of a run folder (``--out``) and what ``train`` may do with each.

A run folder moves through these states; every state has one answer for a plain run and one for
``--resume``, so no failure can leave a folder that both refuse:

==========  =====================================================  ==================  ==================
state       on disk                                                plain ``train``     ``train --resume``
==========  =====================================================  ==================  ==================
``new``     nothing yet (absent, empty, or no ``config.json``)     starts the run      error: no run
``started`` ``config.json`` but no checkpoint: the run stopped     cleans it, starts   error: rerun
            before its first epoch ended (a kill; a failure is     the run again       without --resume
            cleaned up at once, see :func:`clean_failed_start`)
``partial`` at least one ``folds/*/checkpoint.pt``, no metrics     error: use          continues
                                                                   --resume
``done``    ``metrics.json``                                       error: finished     re-evaluates (no
                                                                                       training left)
==========  =====================================================  ==================  ==================

The folder itself must be a directory (or not exist yet) under a writable parent: that is checked
by :func:`check_out_dir` before any data are read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..errors import RunDirError

NEW, STARTED, PARTIAL, DONE = "new", "started", "partial", "done"


def run_state(out: str | os.PathLike) -> str:
    """One of ``"new"``, ``"started"``, ``"partial"``, ``"done"`` (see the module docstring)."""
    out = Path(out)
    if not (out / "config.json").is_file():
        return NEW
    if (out / "metrics.json").is_file():
        return DONE
    if any(out.glob("folds/*/checkpoint.pt")):
        return PARTIAL
    return STARTED


def check_out_dir(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Raise :class:`RunDirError` unless ``out`` is, or can be created as, a writable folder."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{flag} {out}: exists and is not a folder")
    parent = out
    while not parent.exists():        # the nearest existing ancestor decides where mkdir will fail
        if parent.parent == parent:
            break
        parent = parent.parent
    if not parent.is_dir():
        raise RunDirError(f"{flag} {out}: {parent} is a file, not a folder")
    try:       # a real probe: permission bits do not tell (root, read-only mounts, /proc)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise RunDirError(f"{flag} {out}: cannot write in {parent} ({exc.strerror or type(exc).__name__})") from None
    return out


def check_fresh_run(out: str | os.PathLike) -> str:
    """For a plain (not ``--resume``) run into ``out``: its state, or :class:`RunDirError` saying
    what to do. A ``"started"`` folder is fine: :func:`clean_failed_start` empties it first."""
    check_out_dir(out)
    state = run_state(out)
    if state == PARTIAL:
        raise RunDirError(f"--out {out} holds an unfinished run with checkpoints; pass --resume to continue it "
                          "or choose another --out")
    if state == DONE:
        raise RunDirError(f"--out {out} already holds a finished run; choose another --out "
                          "(or pass --resume to re-evaluate it)")
    return state


def check_resumable(out: str | os.PathLike) -> str:
    """For ``--resume``: the state of ``out`` if it can be continued, else :class:`RunDirError`."""
    state = run_state(out)
    if state == NEW:
        raise RunDirError(f"--resume: {out} holds no run to resume (no config.json)")
    if state == STARTED:
        raise RunDirError(f"--resume: {out} holds no checkpoint to resume from (the run stopped before its "
                          "first epoch ended); rerun the same command without --resume")
    return state


def clean_failed_start(out: str | os.PathLike, created: bool) -> None:
    """Remove what a run wrote into ``out`` if it stopped before its first checkpoint.

    Only the run's own files go (``config.json``, fold folders without a checkpoint), and ``out``
    itself when this run ``created`` it and it is empty then. A folder that holds a checkpoint is
    left alone: ``--resume`` continues it.
    """
    out = Path(out)
    if run_state(out) != STARTED:
        return
    (out / "config.json").unlink(missing_ok=True)
    folds = out / "folds"
    if folds.is_dir():
        for fold in folds.iterdir():
            if fold.is_dir() and not (fold / "checkpoint.pt").exists():
                shutil.rmtree(fold, ignore_errors=True)
        _rmdir_if_empty(folds)
    if created:
        _rmdir_if_empty(out)


def _rmdir_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


__all__ = ["NEW", "STARTED", "PARTIAL", "DONE", "run_state", "check_out_dir", "check_fresh_run",
           "check_resumable", "clean_failed_start"]
