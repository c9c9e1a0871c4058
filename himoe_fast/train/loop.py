"""Training and evaluation of one fold (the paper's recipe: Adam, cosine annealing, early stopping).

:func:`train_fold` trains one model on ``split.train``, early-stops on ``split.val`` and evaluates the
best weights on ``split.test``. It works in one process or as one rank of a DDP group (the
:class:`~himoe_fast.train.distributed.DistContext` says which): every rank trains on its
``DistributedSampler`` shard, validation/test predictions are computed on shards and gathered, and
rank 0 alone writes checkpoints and shows progress.

Reproducibility: before every epoch the torch RNG is reseeded from ``(seed, fold, epoch)`` and the
data pipeline derives its shuffling and missing-modality masks from ``(seed, epoch, sample)``; an
epoch's randomness therefore does not depend on the epochs before it, and ``--resume`` from the
checkpoint written after epoch ``k`` reproduces the uninterrupted run exactly (on CPU).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..config import HiMoEConfig
from ..metrics import evaluate
from ..io import atomic_write, atomic_write_json
from ..errors import CheckpointError
from ..progress import Reporter
from .callbacks import TrainCallback
from .checkpoint import (TRAIN_STATE_FORMAT, build_model, load_train_state, rng_state, save_checkpoint,
                         save_model, set_rng_state)
from .distributed import DistContext



@dataclass
class TrainSettings:
    """Optimisation settings of one run (paper: Adam, cosine annealing, 75 epochs, batch 32/GPU)."""

    epochs: int = 75
    batch_size: int = 32              # per process / GPU
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10                # early stopping: epochs without validation improvement
    grad_clip: float = 1.0
    missing_rate: float = 0.0         # simulated missing modalities, train and eval alike
    missing_per_step: bool = False
    seed: int = 0
    impl: str = "reference"           # reference | fast | auto (fast after a self-check on the device)
    backend: str = "auto"             # fast path backend
    amp: bool = True                  # bf16 autocast on CUDA
    num_workers: int = 0
    model_name: str = "himoe"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class FoldResult:
    name: str
    metrics: dict[str, dict[str, float]]
    best_epoch: int
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def monitor_score(metrics: dict[str, dict[str, float]], task: str) -> float:
    """Early-stopping score (higher is better): mean CCC for regression, mean accuracy for binary."""
    value = metrics["ccc"]["mean"] if task == "regression" else metrics["acc"]["mean"]
    return value if math.isfinite(value) else -math.inf


def to_device(batch, device: torch.device):
    inputs, present, labels, mask = batch
    nb = device.type == "cuda"
    return ({k: v.to(device, non_blocking=nb) for k, v in inputs.items()}, present.to(device, non_blocking=nb),
            labels.to(device, non_blocking=nb), mask.to(device, non_blocking=nb))


def make_model(cfg: HiMoEConfig, settings: TrainSettings) -> nn.Module:
    model = build_model(cfg, settings.model_name)
    if settings.impl == "fast":
        if settings.model_name != "himoe":
            raise ValueError(f"--impl fast exists for himoe only, not {settings.model_name!r}")
        from ..fast import to_fast

        model = to_fast(model, backend=settings.backend)
    return model


@torch.no_grad()
def predict_split(model: nn.Module, data, indices: np.ndarray, ctx: DistContext, settings: TrainSettings,
                  batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores for the sequences ``indices`` (sharded over ranks, gathered in order).

    Returns ``(pred, labels, label_mask)``, each ``[len(indices), T, n_targets]``; ``pred`` holds
    ratings (regression) or probabilities of "high" (binary). Missing-modality masks are the
    deterministic evaluation masks of ``settings.seed``.
    """
    from ..data import make_loader

    base = model.module if hasattr(model, "module") else model
    was_training = base.training
    base.eval()
    order = np.arange(len(indices))
    mine = order[ctx.rank :: ctx.world_size]
    loader = make_loader(data, np.asarray(indices)[mine], batch_size or settings.batch_size * 2, shuffle=False,
                         missing_rate=settings.missing_rate, missing_per_step=settings.missing_per_step,
                         seed=settings.seed, train=False)
    preds, labels, masks = [], [], []
    for batch in loader:
        inputs, present, y, m = to_device(batch, ctx.device)
        with autocast(ctx, settings):
            out = base(inputs, present, compute_alignment=False)
        preds.append(base.predict_scores(out).float().cpu())
        labels.append(y.float().cpu())
        masks.append(m.cpu())
    base.train(was_training)
    T, n_t = data.sequences.shape[1], len(data.targets)
    empty = (torch.zeros(0, T, n_t), torch.zeros(0, T, n_t), torch.zeros(0, T, n_t, dtype=torch.bool))
    local = [torch.cat(x) if x else e for x, e in zip((preds, labels, masks), empty)]
    gathered = ctx.all_gather_object((mine, [t.numpy() for t in local]))
    out = [np.zeros((len(indices), T, n_t), dtype=np.float32) for _ in range(2)] + [
        np.zeros((len(indices), T, n_t), dtype=bool)]
    for idx, arrays in gathered:
        for dst, src in zip(out, arrays):
            dst[idx] = src
    return out[0], out[1], out[2]


def fold_metrics(pred: np.ndarray, labels: np.ndarray, mask: np.ndarray, cfg: HiMoEConfig) -> dict[str, dict[str, float]]:
    """Metrics per target over all labelled test windows of a fold."""
    n_t = pred.shape[-1]
    P, Y, Mk = pred.reshape(-1, n_t), labels.reshape(-1, n_t), mask.reshape(-1, n_t)
    keep = Mk.all(axis=1)
    return evaluate(P[keep], Y[keep], cfg.targets, task=cfg.task, threshold=cfg.threshold)


def autocast(ctx: DistContext, settings: TrainSettings):
    if ctx.device.type == "cuda" and settings.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam (the paper's optimiser), the fused implementation where torch has one for the device:
    one kernel for all parameters instead of a loop of small ops (on 2 CPU cores the Adam step of
    the DEAP model takes 7 ms fused, 26 ms as a loop). Older torch without it: the plain loop."""
    params = list(model.parameters())
    try:
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)


def train_fold(cfg: HiMoEConfig, settings: TrainSettings, data, split, fold_dir: str | Path,
               ctx: DistContext, *, fold_index: int = 0, resume: bool = False, progress: bool = True,
               extra: dict[str, Any] | None = None, callbacks: Sequence[TrainCallback] = ()) -> FoldResult:
    """Train on ``split.train``, early-stop on ``split.val``, evaluate the best weights on ``split.test``.

    Writes (rank 0) ``fold_dir/checkpoint.pt`` after every epoch, then ``model.pt``,
    ``predictions.npz`` and ``result.json``. ``callbacks`` run at the fold's start, after every
    epoch's checkpoint and at its end (:class:`~himoe_fast.train.callbacks.TrainCallback`).
    """
    from torch.utils.data.distributed import DistributedSampler

    from ..data import make_loader

    fold_dir = Path(fold_dir)
    t0 = time.perf_counter()
    for cb in callbacks:
        cb.on_fold_start(ctx, fold_index, fold_dir)

    torch.manual_seed(settings.seed * 7919 + fold_index)
    model = make_model(cfg, settings).to(ctx.device)
    optimizer = make_optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, settings.epochs))
    start_epoch, best_score, best_epoch, bad_epochs = 0, -math.inf, -1, 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = []
    finished = False

    ckpt_path = fold_dir / "checkpoint.pt"
    if resume and ckpt_path.exists():
        state = load_train_state(ckpt_path)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError):
            raise CheckpointError(ckpt_path, "its training state does not fit this run's model") from None
        start_epoch, best_score, best_epoch = state["epoch"] + 1, state["best_score"], state["best_epoch"]
        bad_epochs, best_state, history = state["bad_epochs"], state["best_state"], state["history"]
        finished = state["finished"]

    ddp_model: nn.Module = model
    if ctx.distributed:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
            find_unused_parameters=(cfg.routing != "soft" or settings.model_name != "himoe"))

    train_idx = np.asarray(split.train)
    # A DistributedSampler also in one process: its order is a function of (seed, epoch) alone,
    # which is what makes --resume exact.
    sampler = DistributedSampler(range(len(train_idx)), num_replicas=ctx.world_size, rank=ctx.rank,
                                 shuffle=True, seed=settings.seed)
    loader = make_loader(data, train_idx, settings.batch_size, shuffle=False,
                         missing_rate=settings.missing_rate, missing_per_step=settings.missing_per_step,
                         seed=settings.seed, train=True, sampler=sampler, num_workers=settings.num_workers)
    n_batches = len(loader)
    epochs_total = settings.epochs
    total_steps = max(1, (epochs_total - start_epoch) * n_batches)
    # off a terminal the bar's own lines are off (every_s=inf): one plain line per epoch instead
    with Reporter(split.name, total=total_steps, enabled=progress and ctx.is_main, every_s=math.inf) as bar:
        for epoch in range(start_epoch, epochs_total):
            if finished:
                break
            torch.manual_seed(settings.seed * 7919 + fold_index * 104729 + epoch)
            sampler.set_epoch(epoch)
            if hasattr(loader.dataset, "set_epoch"):
                loader.dataset.set_epoch(epoch)
            ddp_model.train()
            running, seen, t_epoch = 0.0, 0, time.perf_counter()
            for step, batch in enumerate(loader):
                inputs, present, labels, mask = to_device(batch, ctx.device)
                with autocast(ctx, settings):
                    out = ddp_model(inputs, present)
                loss = model.loss(out, labels, mask)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                running += float(loss.detach()) * labels.shape[0]
                seen += labels.shape[0]
                rate = seen * ctx.world_size / max(1e-9, time.perf_counter() - t_epoch)
                last_val = history[-1]["val_score"] if history else float("nan")
                bar.advance(description=f"{split.name} epoch {epoch + 1}/{epochs_total}",
                            label=f"loss {running / seen:.3f}  val {last_val:.3f}  {rate:.0f} samples/s")
            scheduler.step()
            train_loss = float(np.sum(ctx.all_gather_object(running))) / max(1, float(np.sum(ctx.all_gather_object(seen))))

            val_pred, val_y, val_m = predict_split(model, data, np.asarray(split.val), ctx, settings)
            val_score = (monitor_score(fold_metrics(val_pred, val_y, val_m, cfg), cfg.task)
                         if len(split.val) else -float(train_loss))
            history.append({"epoch": epoch, "train_loss": train_loss, "val_score": val_score,
                            "seconds": time.perf_counter() - t_epoch})
            if val_score > best_score:
                best_score, best_epoch, bad_epochs = val_score, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            finished = bad_epochs >= settings.patience or epoch + 1 == epochs_total
            if bar.plain:
                bar.print(f"{split.name} epoch {epoch + 1}/{epochs_total}: loss {train_loss:.4f}  "
                          f"val {val_score:.4f}  {history[-1]['seconds']:.1f} s")
            if ctx.is_main:
                save_checkpoint(ckpt_path, {
                    "format": TRAIN_STATE_FORMAT, "epoch": epoch, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "best_score": best_score, "best_epoch": best_epoch, "bad_epochs": bad_epochs,
                    "best_state": best_state, "history": history, "finished": finished, "rng": rng_state(),
                })
            ctx.barrier()
            for cb in callbacks:
                cb.on_epoch_end(ctx, epoch, fold_dir, ckpt_path)
            if finished and epoch + 1 < epochs_total:
                bar.update(total_steps)
                break

    if best_state is not None:
        model.load_state_dict(best_state)
    test_pred, test_y, test_m = predict_split(model, data, np.asarray(split.test), ctx, settings)
    metrics = fold_metrics(test_pred, test_y, test_m, cfg) if len(split.test) else {}
    result = FoldResult(name=split.name, metrics=metrics, best_epoch=best_epoch, epochs_run=len(history),
                        seconds=time.perf_counter() - t0, history=history)
    if ctx.is_main:
        save_model(fold_dir / "model.pt", model, cfg, {**(extra or {}), "fold": fold_index, "split": split.name,
                         "model_name": settings.model_name, "best_epoch": best_epoch})
        seq = np.asarray(split.test)
        arrays = dict(pred=test_pred, labels=test_y, label_mask=test_m, sequences=seq,
                      subject=data.seq_subject[seq], trial=data.seq_trial[seq], targets=np.array(cfg.targets))
        atomic_write(fold_dir / "predictions.npz", lambda fh: np.savez_compressed(fh, **arrays))
        atomic_write_json(fold_dir / "result.json", {
            "name": result.name, "metrics": result.metrics, "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run, "seconds": result.seconds, "history": result.history})
    for cb in callbacks:
        cb.on_fold_end(ctx, fold_index, fold_dir, metrics)
    return result

