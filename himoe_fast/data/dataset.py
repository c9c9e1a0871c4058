"""PyTorch Dataset / DataLoader over sequences of windows.

A sample is one sequence (``T`` consecutive windows of a trial). ``SequenceDataset[i]`` gives

* ``inputs``: ``{name: float32 [T, C_m, S_m]}``;
* ``present``: bool ``[T, M]`` = recorded (``WindowedData.available``) and not dropped by the
  missing-modality simulation (:mod:`.missing`); the raw windows of absent modalities are zeroed;
* ``labels``: float32 ``[T, n_targets]`` (non-finite labels replaced by 0);
* ``label_mask``: bool ``[T, n_targets]``, True where the label is finite.

Batches are fetched in one go (``__getitems__``: numpy fancy indexing per modality, no per-window
Python loop) and :func:`collate_batch` turns them into ``[B, T, ...]`` tensors, so the data path
costs a few milliseconds per batch of 32 x 8 windows. :func:`make_loader` wires it together.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .missing import draw_present
from .windows import WindowedData

Item = tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]


class _Batch(tuple):
    """A batch that is already collated (returned by ``SequenceDataset.__getitems__``)."""


class SequenceDataset(Dataset):
    """Sequences ``data.sequences[indices]`` as model inputs, with simulated missing modalities.

    Args:
        data: the windowed data.
        indices: int ``[n]`` indices into ``data.sequences`` (e.g. a split's ``train``).
        missing_rate: probability that a modality is dropped per sample (see :mod:`.missing`).
        missing_per_step: drop per time step instead of per sample.
        seed: mask seed.
        train: training masks change with :meth:`set_epoch`; evaluation masks depend only on
            ``(seed, sequence index)``.
    """

    def __init__(self, data: WindowedData, indices: np.ndarray | Sequence[int], *, missing_rate: float = 0.0,
                 missing_per_step: bool = False, seed: int = 0, train: bool = True):
        if not 0.0 <= missing_rate < 1.0:
            raise ValueError(f"missing_rate must be in [0, 1), got {missing_rate}")
        self.data = data
        self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(data)):
            raise IndexError(f"sequence indices must be in [0, {len(data)})")
        self.missing_rate = float(missing_rate)
        self.missing_per_step = bool(missing_per_step)
        self.seed = int(seed)
        self.train = bool(train)
        self.epoch = 0

    def __len__(self) -> int:
        return int(self.indices.size)

    def set_epoch(self, epoch: int) -> None:
        """Select the training epoch (redraws training masks; no effect in evaluation)."""
        self.epoch = int(epoch)

    # ------------------------------------------------------------------ fetching
    def fetch(self, positions: np.ndarray | Sequence[int]) -> Item:
        """Batch of the samples at ``positions`` (into ``indices``): tensors with a leading ``B``."""
        pos = np.asarray(positions, dtype=np.int64).reshape(-1)
        seq_ids = self.indices[pos]                                       # [B]
        win = self.data.sequences[seq_ids]                                # [B, T]
        B, T = win.shape
        flat = win.reshape(-1)
        available = np.asarray(self.data.available[flat], bool).reshape(B, T, -1)
        present = draw_present(available, self.missing_rate, seed=self.seed, samples=seq_ids,
                               epoch=self.epoch if self.train else None, per_step=self.missing_per_step)
        inputs = {}
        for m, name in enumerate(self.data.modalities):
            x = np.asarray(self.data.windows[name][flat], dtype=np.float32)   # one gather per modality
            x = x.reshape(B, T, *x.shape[1:])
            absent = ~present[:, :, m]
            if absent.any():
                x[absent] = 0.0
            inputs[name] = torch.from_numpy(x)
        labels = np.asarray(self.data.labels[flat], dtype=np.float32).reshape(B, T, -1)
        mask = np.isfinite(labels)
        labels = np.where(mask, labels, 0.0).astype(np.float32)
        return inputs, torch.from_numpy(present), torch.from_numpy(labels), torch.from_numpy(mask)

    def __getitem__(self, i: int) -> Item:
        if not -len(self) <= int(i) < len(self):
            raise IndexError(i)
        inputs, present, labels, mask = self.fetch([int(i) % len(self)])
        return {k: v[0] for k, v in inputs.items()}, present[0], labels[0], mask[0]

    def __getitems__(self, positions: list[int]) -> _Batch:
        return _Batch(self.fetch(positions))


def collate_batch(items) -> Item:
    """Stack samples into ``(inputs {name: [B, T, C, S]}, present [B, T, M], labels [B, T, n_t],
    label_mask [B, T, n_t])``; a pre-collated batch from ``__getitems__`` passes through."""
    if isinstance(items, _Batch):
        return tuple(items)  # type: ignore[return-value]
    items = list(items)
    if not items:
        raise ValueError("cannot collate an empty batch")
    names = list(items[0][0])
    inputs = {n: torch.stack([it[0][n] for it in items]) for n in names}
    return (inputs, torch.stack([it[1] for it in items]), torch.stack([it[2] for it in items]),
            torch.stack([it[3] for it in items]))


def make_loader(data: WindowedData, indices, batch_size: int, *, shuffle: bool, missing_rate: float = 0.0,
                missing_per_step: bool = False, seed: int = 0, train: bool = True, sampler=None,
                num_workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader of :class:`SequenceDataset` batches (see the module docstring for the layout).

    Shuffling uses a generator seeded with ``seed`` (reproducible order, new each epoch). With a
    ``sampler`` (e.g. ``DistributedSampler``) ``shuffle`` is ignored. Call
    ``loader.dataset.set_epoch(epoch)`` each epoch to redraw training masks.
    """
    dataset = SequenceDataset(data, indices, missing_rate=missing_rate, missing_per_step=missing_per_step,
                              seed=seed, train=train)
    generator = None
    if sampler is None and shuffle:
        generator = torch.Generator()
        generator.manual_seed(int(seed))
    return DataLoader(dataset, batch_size=batch_size, shuffle=bool(shuffle) if sampler is None else False,
                      sampler=sampler, num_workers=num_workers, drop_last=drop_last, collate_fn=collate_batch,
                      generator=generator)
