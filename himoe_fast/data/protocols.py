"""Evaluation protocols: holdout, subject-dependent k-fold, leave-one-subject-out.

All splits are index arrays into ``WindowedData.sequences``. The *unit* that is assigned to a side
is a whole trial (``split="trial"``, the default) or a single sequence (``split="window"``).

* ``holdout``: within every subject, ``test_fraction`` of its units go to test.
* ``kfold`` (subject-dependent, the paper's 10-fold protocol): within every subject, its units are
  shuffled and dealt round-robin to ``folds`` folds, so each subject's trials are spread evenly;
  fold ``k`` tests on its units of all subjects and trains one model on the rest of all subjects.
  Every sequence is a test sequence in exactly one fold.
* ``loso``: one fold per subject; test = all of that subject's sequences.

The validation set (early stopping) is taken from the training side: ``val_fraction`` of each
training subject's training units (at least one unit when a subject has two or more), so with
``split="trial"`` train, validation and test never share a trial, and with ``loso`` validation
comes from the training subjects only.

``split="window"`` is a variant common in the DEAP literature, not the paper's stated protocol (the
paper deals each subject's *trials* evenly over the folds, i.e. ``split="trial"``): sequences of one
trial then land on both sides; neighbouring windows of a trial are strongly correlated, so the
scores are optimistic. It warns. Shuffling is seeded (``seed``) and deterministic.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .windows import WindowedData

PROTOCOLS = ("holdout", "kfold", "loso")
SPLITS = ("trial", "window")

WINDOW_SPLIT_WARNING = (
    "split='window' assigns individual sequences, so windows of one trial end up in both training and "
    "test (and validation) data; neighbouring windows are strongly correlated, so scores are optimistic "
    "(a common variant in the DEAP literature; the paper's stated protocol splits trials). Use split='trial' "
    "for leak-free estimates."
)


@dataclass
class Split:
    """One train / validation / test partition (sorted int64 indices into ``data.sequences``)."""

    name: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def _units(data: WindowedData, split: str) -> np.ndarray:
    return data.seq_trial if split == "trial" else np.arange(len(data), dtype=np.int64)


def _take_val(unit_ids: np.ndarray, unit_subject: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Per subject, ``fraction`` of its units (>= 1 if it has >= 2, never all of them)."""
    chosen = []
    for s in np.unique(unit_subject):
        u = unit_ids[unit_subject == s]
        if fraction <= 0 or u.size < 2:
            continue
        k = min(max(1, int(round(fraction * u.size))), u.size - 1)
        chosen.append(rng.permutation(u)[:k])
    return np.concatenate(chosen) if chosen else np.zeros(0, np.int64)


def make_splits(data: WindowedData, protocol: str = "kfold", *, folds: int = 10, split: str = "trial",
                seed: int = 0, test_fraction: float = 0.2, val_fraction: float = 0.1) -> list[Split]:
    """Partitions of ``data``'s sequences under ``protocol`` (see the module docstring).

    Returns:
        ``[Split]``: one for holdout, ``folds`` for kfold, one per subject for loso.

    Raises:
        ValueError: unknown protocol/split, bad fractions, too few subjects or units for the
            protocol, or a fold that would have no test sequence.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if len(data) == 0:
        raise ValueError("no sequences to split (trials shorter than seq_len windows?)")
    if split == "window":
        warnings.warn(WINDOW_SPLIT_WARNING, UserWarning, stacklevel=2)

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B1]))
    seq_unit = _units(data, split)
    seq_subject = data.seq_subject
    unit_ids, first = np.unique(seq_unit, return_index=True)
    unit_subject = seq_subject[first]
    subjects = np.unique(unit_subject)

    def to_sequences(units: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(seq_unit, units)).astype(np.int64)

    def build(name: str, test_units: np.ndarray, train_pool: np.ndarray) -> Split:
        val_units = _take_val(train_pool, unit_subject[np.isin(unit_ids, train_pool)], val_fraction, rng)
        train_units = np.setdiff1d(train_pool, val_units)
        return Split(name, to_sequences(train_units), to_sequences(val_units), to_sequences(test_units))

    splits: list[Split] = []
    if protocol == "holdout":
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        test = []
        for s in subjects:
            u = rng.permutation(unit_ids[unit_subject == s])
            k = min(max(1, int(round(test_fraction * u.size))), u.size - 1) if u.size > 1 else 0
            test.append(u[:k])
        test_units = np.concatenate(test)
        if test_units.size == 0:
            raise ValueError("holdout needs at least two units per subject")
        splits.append(build("holdout", test_units, np.setdiff1d(unit_ids, test_units)))
    elif protocol == "kfold":
        if int(folds) < 2:
            raise ValueError(f"folds must be >= 2, got {folds}")
        fold_of = np.empty(unit_ids.size, np.int64)
        for s in subjects:
            where = np.flatnonzero(unit_subject == s)
            perm = rng.permutation(where)
            offset = rng.integers(folds)            # so small subjects do not all fill fold 0 first
            fold_of[perm] = (np.arange(perm.size) + offset) % folds
        for k in range(int(folds)):
            test_units = unit_ids[fold_of == k]
            if test_units.size == 0:
                most = int(np.bincount(np.searchsorted(subjects, unit_subject)).max())
                raise ValueError(f"fold {k + 1} of {folds} has no test {split}: no subject has more than {most} "
                                 f"{split}s; use at most {most} folds")
            splits.append(build(f"fold{k + 1:02d}", test_units, unit_ids[fold_of != k]))
    else:  # loso
        if subjects.size < 2:
            raise ValueError(f"loso needs at least two subjects, the data have {subjects.size}")
        for s in subjects:
            splits.append(build(f"subject{int(s) + 1:02d}", unit_ids[unit_subject == s], unit_ids[unit_subject != s]))
    return splits
