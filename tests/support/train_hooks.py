"""Fault injection for the training tests, as TrainCallbacks the tests name with ``--callback``."""

import os

from himoe_fast.train.callbacks import TrainCallback


class KillAfterFirstEpoch(TrainCallback):
    """Die like ``kill -9`` right after epoch 0's checkpoint (rank 0; exit code 17)."""

    def on_epoch_end(self, ctx, epoch, fold_dir, checkpoint):
        if epoch == 0 and ctx.is_main:
            os._exit(17)


class CrashRankOne(TrainCallback):
    """Raise in rank 1 before its fold starts (a crashed worker)."""

    def on_fold_start(self, ctx, fold_index, fold_dir):
        if ctx.rank == 1:
            raise RuntimeError("simulated crash of rank 1")
