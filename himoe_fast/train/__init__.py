"""Training: one fold (loop.py), whole experiments (experiment.py), evaluation of saved models
(evaluate.py), sweeps (sweeps.py), checkpoints (checkpoint.py), multi-process (distributed.py)."""

from .checkpoint import load_model, save_model
from .experiment import DataSettings, ProtocolSettings, RunConfig, run_experiment
from .loop import TrainSettings, train_fold

__all__ = ["DataSettings", "ProtocolSettings", "RunConfig", "TrainSettings", "load_model", "run_experiment",
           "save_model", "train_fold"]
