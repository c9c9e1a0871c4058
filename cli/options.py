"""Options shared by several commands, as typer ``Annotated`` aliases, and the CLI's own defaults.

A command declares ``lr: opt.Lr = TrainSettings.lr``: the alias carries the flag and its help, the
default comes from the library's config dataclass (``HiMoEConfig``, ``TrainSettings``,
``DataSettings``, ``ProtocolSettings``, ``RunConfig``), so a default lives in one place. Where the
CLI deliberately differs from the library, the constant below says so and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from . import choices as ch

#: The CLI's temporal variant: the one that won the asynchrony benchmark (docs/EXPERIMENTS.md).
#: The library's HiMoEConfig keeps "none", the paper-literal model.
DEFAULT_TEMPORAL = ch.Temporal("align+context")
#: The CLI trains with the fast path after a one-time self-check on the device; the library's
#: TrainSettings keeps "reference" (what a script gets unless it asks).
DEFAULT_IMPL = ch.Impl("auto")

# ------------------------------------------------------------------------------------ data
Dataset = Annotated[ch.Dataset, typer.Option(help="synthetic, deap, dreamer or recordings (your own files)")]
DataDir = Annotated[Optional[Path], typer.Option(
    help="DEAP: folder with sNN.dat; DREAMER: DREAMER.mat or its folder; recordings: "
         "DIR/<subject>/<recording>/<files> (README)")]
FaceDir = Annotated[Optional[Path], typer.Option(
    help="DEAP face features: folder with sNN_face.npz (for --modalities ...,face)")]
Modalities = Annotated[Optional[str], typer.Option(help="comma-separated, e.g. eeg,gsr (default: all of the dataset)")]
Subjects = Annotated[Optional[int], typer.Option(help="use the first N subjects (synthetic: how many to write)")]
SeqLen = Annotated[int, typer.Option(help="windows per sample (T)")]
Window = Annotated[float, typer.Option(help="window length in seconds")]
Stride = Annotated[Optional[float], typer.Option(help="window stride in seconds (default: window)")]
Lag = Annotated[Optional[list[str]], typer.Option(help="asynchrony: MODALITY=SECONDS, repeatable")]

# ------------------------------------------------------------------------------------ protocol
Task = Annotated[ch.Task, typer.Option(help="rating regression or high/low classification")]
Protocol = Annotated[Optional[ch.Protocol], typer.Option(help="default: kfold; synthetic: holdout")]
Folds = Annotated[int, typer.Option(help="folds of the kfold protocol")]
Split = Annotated[ch.Split, typer.Option(help="trial: no trial on both sides (the paper's stated protocol); "
                                              "window: common leaky variant")]
MaxFolds = Annotated[Optional[int], typer.Option(help="run only the first N folds")]

# ------------------------------------------------------------------------------------ training
Epochs = Annotated[Optional[int], typer.Option(help="max epochs (paper: 75; synthetic quick-start: 12)")]
BatchSize = Annotated[int, typer.Option(help="per GPU / process (paper: 32)")]
Lr = Annotated[float, typer.Option(help="Adam learning rate")]
MissingRate = Annotated[float, typer.Option(help="simulated missing-modality rate in [0, 1), train and eval")]
MissingPerStep = Annotated[bool, typer.Option(help="draw missing modalities per time step, not per sample")]
Patience = Annotated[int, typer.Option(help="early stopping patience in epochs")]
Seed = Annotated[int, typer.Option(help="seed of initialisation, shuffling, splits and missing masks")]
Impl = Annotated[ch.Impl, typer.Option(help="auto: fast after a one-time self-check on the device, else reference")]
SweepImpl = Annotated[ch.Impl, typer.Option(help="fast applies to himoe; baselines run reference")]
Backend = Annotated[ch.Backend, typer.Option(help="fast-path backend")]
Gpus = Annotated[int, typer.Option(help="train on N GPUs (one process each, NCCL, DDP)")]
Procs = Annotated[int, typer.Option(help="train with N CPU processes (gloo, DDP)")]
Parallel = Annotated[ch.Parallel, typer.Option(help="ddp: all ranks train each fold; folds: one fold per rank")]
Jobs = Annotated[int, typer.Option(help="runs of a sweep trained at once, in worker processes")]

# ------------------------------------------------------------------------------------ model
Model = Annotated[ch.Model, typer.Option(help="himoe, or a baseline")]
Router = Annotated[ch.Router, typer.Option(help="DA-router similarity")]
Routing = Annotated[ch.Routing, typer.Option(help="modality-bank routing")]
EmotionBank = Annotated[bool, typer.Option(help="use the Emotion Expert Bank (--no-emotion-bank: ablation)")]
AlignWeight = Annotated[float, typer.Option(help="lambda of Eq. 8 (0 = no alignment)")]
ExpertInit = Annotated[ch.ExpertInit, typer.Option(
    help="FFN experts' init (ours; the paper states none): scaled keeps the token spread, torch is nn.Linear's")]
Temporal = Annotated[ch.Temporal, typer.Option(help="Hi-MoE temporal stages (ours): none is the paper-literal model")]
Causal = Annotated[bool, typer.Option(help="temporal stages see only past windows (streaming)")]

# ------------------------------------------------------------------------------------ sweeps
SweepModels = Annotated[str, typer.Option(
    help="comma-separated: himoe, himoe_paper (temporal none), late_fusion, bilstm, tacoformer, ianet")]
SweepSeeds = Annotated[Optional[str], typer.Option(help="comma-separated seeds")]
SweepResume = Annotated[bool, typer.Option(help="skip runs already finished in --out")]


# ------------------------------------------------------------------------------------ parity / bench
Preset = Annotated[ch.Preset, typer.Option(help="a model preset (tiny: 3-4 small modalities)")]
PresetModalities = Annotated[Optional[str], typer.Option(
    help="comma-separated modalities of the preset (default: all)")]
Batch = Annotated[int, typer.Option("--batch", "-B", help="batch size B")]
Steps = Annotated[int, typer.Option("--seq-len", "-T", help="windows per sample T")]
Dtype = Annotated[ch.Dtype, typer.Option(help="bf16: CUDA only")]
InputSeed = Annotated[int, typer.Option(help="seed of parameters and inputs")]
Device = Annotated[ch.Device, typer.Option(help="auto: cuda when visible")]
JsonOut = Annotated[Optional[Path], typer.Option("--json", help="also write the results as JSON to this file")]

# ------------------------------------------------------------------------------------ trained models
ModelArg = Annotated[Path, typer.Argument(help="a run folder (folds/*/model.pt) or one model.pt")]
Fold = Annotated[Optional[str], typer.Option(help="use one fold (e.g. fold03) instead of the ensemble of all folds")]
LoadedImpl = Annotated[ch.LoadedImpl, typer.Option(help="fast path (default) or reference")]
LoadDevice = Annotated[str, typer.Option(help="auto (GPU when there is one) | cpu | cuda | cuda:N")]
