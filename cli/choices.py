"""The values a choice flag accepts, as ``str`` Enums built once from the library's own constants.

typer turns an Enum-typed option into a click choice: ``--help`` lists the values, and a wrong
value is a usage error (one line, exit 2) before any work starts. The library keeps plain strings:
a member *is* its string (``Router.dot == "dot"``, ``str(Router.dot) == "dot"``) and
:func:`plain` turns members back into ``str`` where a value is stored (``config.json``).
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable

from himoe_fast.baselines import BASELINES
from himoe_fast.config import EXPERT_INITS, PRESETS, ROUTERS, ROUTINGS, TASKS, TEMPORAL_MODES
from himoe_fast.data.prepare import DATASETS as FILE_FORMATS
from himoe_fast.data.protocols import PROTOCOLS, SPLITS
from himoe_fast.fast.backend import BACKENDS
from himoe_fast.fast.selfcheck import IMPLS
from himoe_fast.predict import MODES as PREDICT_MODES
from himoe_fast.predict import PREPROCESSING
from himoe_fast.train.experiment import DATASETS


class StrChoice(str, Enum):
    """A choice whose members print as their value (f-strings, ``str()``, JSON)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


def _choice(name: str, values: Iterable[str], doc: str) -> type[StrChoice]:
    """``name`` with one member per value (member name = value, so ``align+context`` works too)."""
    cls = StrChoice(name, [(v, v) for v in values], module=__name__, qualname=name)
    cls.__doc__ = doc
    return cls


def plain(value):
    """A member as its ``str`` value; anything else (``None``, a ``str``) unchanged."""
    return value.value if isinstance(value, Enum) else value


Dataset = _choice("Dataset", DATASETS, "--dataset of train and the sweeps (synthetic is written on first use)")
FileFormat = _choice("FileFormat", FILE_FORMATS, "data files on disk: synth --kind")
PredictDataset = _choice("PredictDataset", ("auto", *FILE_FORMATS), "predict --dataset (auto: tell from the files)")
Task = _choice("Task", TASKS, "--task")
Protocol = _choice("Protocol", PROTOCOLS, "--protocol")
Split = _choice("Split", SPLITS, "--split of the protocol (how windows are assigned)")
EvalSplit = _choice("EvalSplit", ("test", "val", "train"), "eval --split (which part of each fold)")
Impl = _choice("Impl", IMPLS, "--impl (auto: fast after the self-check on the device)")
LoadedImpl = _choice("LoadedImpl", [i for i in IMPLS if i != "auto"], "--impl of predict / stream")
Backend = _choice("Backend", BACKENDS, "--backend of the fast path")
Parallel = _choice("Parallel", ("ddp", "folds"), "--parallel (RunConfig.parallel)")
Model = _choice("Model", ("himoe", *BASELINES), "--model")
Router = _choice("Router", ROUTERS, "--router (DA-router similarity)")
Routing = _choice("Routing", ROUTINGS, "--routing (modality-bank gate)")
ExpertInit = _choice("ExpertInit", EXPERT_INITS, "--expert-init (FFN experts' initialisation)")
Temporal = _choice("Temporal", TEMPORAL_MODES, "--temporal (Hi-MoE temporal stages)")
Preset = _choice("Preset", PRESETS, "--preset of parity / bench")
Dtype = _choice("Dtype", ("fp32", "bf16"), "--dtype of parity (bf16: CUDA only)")
Device = _choice("Device", ("auto", "cpu", "cuda"), "--device of parity / bench")
PredictMode = _choice("PredictMode", PREDICT_MODES, "predict --mode")
Preprocessing = _choice("Preprocessing", PREPROCESSING, "predict --preprocessing (online: as a stream)")

__all__ = ["StrChoice", "plain", "Dataset", "FileFormat", "PredictDataset", "Task", "Protocol", "Split",
           "EvalSplit", "Impl", "LoadedImpl", "Backend", "Parallel", "Model", "Router", "Routing", "ExpertInit", "Temporal",
           "Preset", "Dtype", "Device", "PredictMode", "Preprocessing"]
