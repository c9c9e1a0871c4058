"""Missing-modality simulation (the paper's robustness protocol).

Each modality of each sample is absent with probability ``rate`` (``per_step=True``: drawn anew
for every time step), on top of what was never recorded (``available``). Where this would leave a
time step with no modality although some are available, one available modality is restored: the
one with the highest random priority of that sample, so the same modality tends to come back over
the sample's steps. Hence ``present = available & ~dropped`` with >= 1 modality per step whenever
one is available.

Randomness is counter-based (a splitmix64 hash of ``(seed, epoch, sample, step, modality,
stream)``), so masks are vectorised over a batch, independent of batch composition, order and
worker processes, and reproducible: evaluation masks depend only on ``(seed, sample)``; training
masks also on the epoch, so they change every epoch.
"""

from __future__ import annotations

import numpy as np

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
EVAL_EPOCH = 0xE7A1_0000_0000      # the "epoch" used for evaluation masks (no real epoch reaches it)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 arrays (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(*keys) -> np.ndarray:
    """Uniform floats in [0, 1) from integer keys (broadcast together), deterministic."""
    with np.errstate(over="ignore"):
        h = np.zeros((), np.uint64)
        for k in keys:
            k = np.asarray(k).astype(np.int64).astype(np.uint64)
            h = _mix(h ^ _mix(k))
        return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def draw_present(available: np.ndarray, rate: float, *, seed: int, samples: np.ndarray,
                 epoch: int | None = None, per_step: bool = False) -> np.ndarray:
    """Presence mask for a batch.

    Args:
        available: bool ``[B, T, M]``, truly recorded.
        rate: probability in [0, 1) that a modality is dropped (per sample, or per step).
        seed: base seed.
        samples: int ``[B]`` stable sample ids (e.g. sequence indices).
        epoch: training epoch; ``None`` for evaluation (masks depend only on seed and sample).
        per_step: draw independently for each time step.

    Returns:
        bool ``[B, T, M]``.
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"missing rate must be in [0, 1), got {rate}")
    available = np.asarray(available, bool)
    if rate == 0.0:
        return available.copy()
    B, T, M = available.shape
    e = EVAL_EPOCH if epoch is None else int(epoch)
    s = np.asarray(samples, np.int64).reshape(B, 1, 1)
    steps = (np.arange(T) if per_step else np.zeros(T, np.int64)).reshape(1, T, 1)
    mods = np.arange(M).reshape(1, 1, M)
    dropped = hash_uniform(seed, e, s, steps, mods, 0) < rate
    present = available & ~dropped
    need = ~present.any(-1) & available.any(-1)                       # [B, T]
    if need.any():
        priority = hash_uniform(seed, e, s, np.zeros((1, 1, 1), np.int64), mods, 1)
        priority = np.broadcast_to(priority, (B, T, M))
        best = np.where(available, priority, -1.0).argmax(-1)         # [B, T]
        b, t = np.nonzero(need)
        present[b, t, best[b, t]] = True
    return present
