"""Flags of a training run -> a checked :class:`~himoe_fast.train.RunConfig` (train and the sweeps).

Defaults follow the paper's recipe (10-fold subject-dependent protocol, 75 epochs, Adam + cosine
annealing + early stopping, batch 32 per GPU) and come from the library's dataclasses. The embedded
synthetic dataset is the exception: with no flags, ``himoe-fast train`` runs a quick-start (see
:data:`SYNTHETIC_QUICKSTART`) that finishes in a few minutes on a laptop CPU, and says so.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from himoe_fast.config import HiMoEConfig
from himoe_fast.errors import ModalityError, UserInputError
from himoe_fast.train import DataSettings, ProtocolSettings, RunConfig, TrainSettings

from .choices import plain
from .common import check_out, check_range, parse_lags, parse_list
from .errors import fail
from .options import DEFAULT_IMPL, DEFAULT_TEMPORAL

#: Used for --dataset synthetic when the flag is not given (the paper's recipe stays the default for
#: real data: kfold, 75 epochs).
SYNTHETIC_QUICKSTART = {"subjects": 6, "epochs": 12, "protocol": "holdout"}
PAPER_RECIPE = {"epochs": TrainSettings.epochs, "protocol": ProtocolSettings.protocol}


def default_out(prefix: str, dataset: str) -> Path:
    """``runs/<prefix>-<dataset>-<time>``: where a run or sweep goes when ``--out`` is not given."""
    return Path("runs") / f"{prefix}-{plain(dataset)}-{time.strftime('%Y%m%d-%H%M%S')}"


def build_run_config(*, out, dataset=DataSettings.dataset, data_dir=None, modalities=None, task=HiMoEConfig.task,
                     protocol=None, folds=ProtocolSettings.folds, split=ProtocolSettings.split, epochs=None,
                     batch_size=TrainSettings.batch_size, lr=TrainSettings.lr, missing_rate=TrainSettings.missing_rate,
                     missing_per_step=TrainSettings.missing_per_step, impl=DEFAULT_IMPL, backend=TrainSettings.backend,
                     gpus=RunConfig.gpus, procs=RunConfig.procs, parallel=RunConfig.parallel, subjects=None,
                     seed=TrainSettings.seed, router=HiMoEConfig.router, routing=HiMoEConfig.routing,
                     emotion_bank=HiMoEConfig.emotion_bank, align_weight=HiMoEConfig.align_weight,
                     seq_len=DataSettings.seq_len, window=HiMoEConfig.window_s, stride=None, lag=None,
                     patience=TrainSettings.patience, max_folds=None, model=TrainSettings.model_name, progress=True,
                     announce=True, temporal=DEFAULT_TEMPORAL, causal=HiMoEConfig.causal, face_dir=None,
                     expert_init=HiMoEConfig.expert_init) -> RunConfig:
    """Check the flags (one-line errors, exit 2) and build a :class:`RunConfig`. Writes nothing.

    Choice flags arrive as :mod:`.choices` members or plain strings; the config holds plain strings.
    ``None`` for ``protocol``, ``epochs``, ``subjects`` means "the dataset's default" (the synthetic
    quick-start, or the paper's recipe for real data).
    """
    from himoe_fast.train.distributed import check_gpus

    dataset, task, protocol, split, impl, backend, parallel, router, routing, model, temporal, expert_init = map(
        plain, (dataset, task, protocol, split, impl, backend, parallel, router, routing, model, temporal,
                expert_init))
    check_range("--missing-rate", missing_rate, 0.0, 1.0, hi_open=True)
    for flag, value in (("--epochs", epochs), ("--batch-size", batch_size), ("--seq-len", seq_len),
                        ("--subjects", subjects), ("--patience", patience), ("--max-folds", max_folds)):
        if value is not None and value < 1:
            fail(f"{flag} must be >= 1, got {value}")
    if folds < 2:
        fail(f"--folds must be >= 2 (the kfold protocol), got {folds}")
    if seed < 0:
        fail(f"--seed must be >= 0, got {seed}")
    check_range("--lr", lr, 0.0, lo_open=True)
    check_range("--align-weight", align_weight, 0.0)
    check_range("--window", window, 0.0, lo_open=True)
    check_range("--stride", stride, 0.0, lo_open=True)
    if protocol == "loso" and subjects is not None and subjects < 2:
        fail(f"--protocol loso needs at least 2 subjects, got --subjects {subjects}")
    check_out(out)
    if gpus < 0 or procs < 1:
        fail("--gpus must be >= 0 and --procs >= 1")
    if gpus and procs > 1:
        fail("use either --gpus or --procs, not both")
    if gpus:
        check_gpus(gpus)
    if impl == "fast" and model != "himoe":
        fail(f"--impl fast exists for --model himoe only (got --model {model})")

    used_quickstart = []
    if dataset == "synthetic":
        for key, flag_value in (("subjects", subjects), ("epochs", epochs), ("protocol", protocol)):
            if flag_value is None:
                used_quickstart.append(f"{key}={SYNTHETIC_QUICKSTART[key]}")
        subjects = subjects or SYNTHETIC_QUICKSTART["subjects"]
        epochs = epochs or SYNTHETIC_QUICKSTART["epochs"]
        protocol = protocol or SYNTHETIC_QUICKSTART["protocol"]
    else:
        if data_dir is None:
            fail(f"--data-dir is required for --dataset {dataset}")
        if not Path(data_dir).exists():
            fail(f"--data-dir {data_dir}: no such file or directory")
    if face_dir is not None:
        if dataset != "deap":
            fail(f"--face-dir applies to --dataset deap (synthetic data bring their own face features), "
                 f"not --dataset {dataset}")
        if not Path(face_dir).is_dir():
            fail(f"--face-dir {face_dir}: no such folder")
        epochs = epochs or PAPER_RECIPE["epochs"]
        protocol = protocol or PAPER_RECIPE["protocol"]

    mods = parse_list(modalities, "--modalities")
    overrides = dict(router=router, routing=routing, emotion_bank=emotion_bank, align_weight=align_weight,
                     task=task, window_s=window, temporal=temporal, causal=causal,
                     expert_init=expert_init)
    try:
        if dataset == "dreamer":
            cfg = HiMoEConfig.dreamer(**({"modalities": mods} if mods else {}), **overrides)
        elif dataset == "recordings":       # modalities, rates and targets come from the folder
            from himoe_fast.data import recordings_config

            cfg = recordings_config(data_dir, mods, **overrides)
        else:
            cfg = HiMoEConfig.deap(**({"modalities": mods} if mods else {}), **overrides)
    except ModalityError as exc:
        fail(f"--modalities: {exc}")
    except UserInputError:                  # a data file's problem: its own message names the file
        raise
    except ValueError as exc:               # the flags together make no valid model (e.g. too short a window)
        fail(exc)
    lags = parse_lags(lag)
    unknown = sorted(set(lags) - set(cfg.modality_names))
    if unknown:
        fail(f"--lag names modalities not in use: {', '.join(unknown)}")
    if face_dir is not None and "face" not in cfg.modality_names:
        fail("--face-dir is given but --modalities does not include face")

    if announce and used_quickstart:
        typer.echo(f"synthetic quick-start: {', '.join(used_quickstart)} "
                   f"(paper recipe: --protocol kfold --epochs 75 --subjects 32)")
    return RunConfig(
        model=cfg,
        train=TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, patience=patience,
                            missing_rate=missing_rate, missing_per_step=missing_per_step, seed=seed, impl=impl,
                            backend=backend, model_name=model),
        data=DataSettings(dataset=dataset, data_dir=str(data_dir) if data_dir else None, subjects=subjects,
                          seq_len=seq_len, stride_s=stride, lags=lags, face_dir=str(face_dir) if face_dir else None),
        protocol=ProtocolSettings(protocol=protocol, folds=folds, split=split, max_folds=max_folds),
        out=str(out), gpus=gpus, procs=procs, parallel=parallel, progress=progress,
    )
