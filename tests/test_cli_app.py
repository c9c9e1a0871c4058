"""The ``himoe-fast`` app itself: every command's ``--help``, the flags DESIGN.md promises, choice
flags offering exactly the library's values, and the one error handler's exit codes.

All in this process with typer's CliRunner; nothing is trained.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from himoe_fast.cli.app import app

runner = CliRunner()
WIDE = {"COLUMNS": "240", "TERMINAL_WIDTH": "240"}      # rich help must not shorten long flag names

COMMANDS = ["train", "eval", "plots", "robustness", "ablate", "asynchrony", "compare", "synth", "parity", "bench",
            "doctor", "predict", "stream"]
#: DESIGN.md section 6, word for word: the flags of `train` the contract names
DESIGN_TRAIN_FLAGS = ["--dataset", "--data-dir", "--modalities", "--task", "--protocol", "--folds", "--split",
                      "--epochs", "--batch-size", "--lr", "--missing-rate", "--impl", "--gpus", "--procs",
                      "--subjects", "--seed", "--out", "--resume"]


def invoke(*args: str):
    return runner.invoke(app, list(args), env=WIDE, prog_name="himoe-fast")


def error_lines(res) -> list[str]:
    return [ln for ln in res.output.strip().splitlines() if ln.strip()]


def test_root_help_lists_every_command():
    res = invoke("--help")
    assert res.exit_code == 0, res.output
    listed = re.findall(r"^\W*([a-z]+)\s{2,}", res.output, flags=re.MULTILINE)
    assert set(COMMANDS) <= set(listed), listed


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    res = invoke(command, "--help")
    assert res.exit_code == 0, res.output
    assert f"himoe-fast {command}" in res.output and "--help" in res.output


def test_train_help_keeps_the_flags_of_the_contract():
    res = invoke("train", "--help")
    assert res.exit_code == 0, res.output
    shown = set(re.findall(r"--[a-z][a-z-]*", res.output))
    missing = [flag for flag in DESIGN_TRAIN_FLAGS if flag not in shown]
    assert not missing, missing


@pytest.mark.parametrize("args,flag,library_values", [
    (["train", "--router"], "--router", "himoe_fast.config:ROUTERS"),
    (["train", "--routing"], "--routing", "himoe_fast.config:ROUTINGS"),
    (["train", "--task"], "--task", "himoe_fast.config:TASKS"),
    (["train", "--temporal"], "--temporal", "himoe_fast.config:TEMPORAL_MODES"),
    (["train", "--dataset"], "--dataset", "himoe_fast.train.experiment:DATASETS"),
    (["train", "--protocol"], "--protocol", "himoe_fast.data.protocols:PROTOCOLS"),
    (["train", "--split"], "--split", "himoe_fast.data.protocols:SPLITS"),
    (["train", "--backend"], "--backend", "himoe_fast.fast.backend:BACKENDS"),
    (["train", "--impl"], "--impl", "himoe_fast.fast.selfcheck:IMPLS"),
    (["train", "--model"], "--model", "himoe_fast.baselines:BASELINES"),
    (["train", "--expert-init"], "--expert-init", "himoe_fast.config:EXPERT_INITS"),
    (["compare", "--expert-init"], "--expert-init", "himoe_fast.config:EXPERT_INITS"),
    (["parity", "--preset"], "--preset", "himoe_fast.config:PRESETS"),
    (["synth", "--kind"], "--kind", "himoe_fast.data.prepare:DATASETS"),
    (["predict", "m.pt", "data", "--out", "o", "--mode"], "--mode", "himoe_fast.predict:MODES"),
    (["predict", "m.pt", "data", "--out", "o", "--preprocessing"], "--preprocessing", "himoe_fast.predict:PREPROCESSING"),
])
def test_a_bad_choice_is_one_line_offering_the_library_values(args, flag, library_values):
    import importlib

    module, name = library_values.split(":")
    values = getattr(importlib.import_module(module), name)
    res = invoke(*args, "no-such-value")
    assert res.exit_code == 2, res.output
    lines = error_lines(res)
    assert len(lines) == 1 and lines[0].startswith("himoe-fast: error:") and flag in lines[0], res.output
    for value in values:
        assert f"'{value}'" in lines[0], (value, lines[0])


def test_a_choice_reaches_the_library_as_a_plain_string(tmp_path):
    """The run config stores plain strings, not Enum members (config.json is read back by other tools)."""
    from himoe_fast.cli import choices as ch
    from himoe_fast.cli.run_config import build_run_config

    rc = build_run_config(out=tmp_path / "run", dataset=ch.Dataset.synthetic, router=ch.Router.cosine,
                          split=ch.Split.window, temporal=ch.Temporal("align"), announce=False,
                          expert_init=ch.ExpertInit.torch)
    for value in (rc.model.router, rc.protocol.split, rc.model.temporal, rc.data.dataset, rc.train.impl,
                  rc.model.expert_init):
        assert type(value) is str
    assert (rc.model.router, rc.protocol.split, rc.model.temporal, rc.model.expert_init) == (
        "cosine", "window", "align", "torch")


class _Raise:
    def __init__(self, exc: BaseException):
        self.exc = exc

    def __call__(self, *args, **kwargs):
        raise self.exc


@pytest.mark.parametrize("exc,code,line", [
    ("settings", 2, "himoe-fast: error: the message"),
    ("gpus", 2, "himoe-fast: error: 9 GPUs asked"),
    ("rank", 1, "himoe-fast: error: rank 1 failed"),
    ("missing file", 2, "himoe-fast: error: [Errno 2] No such file or directory: 'x.npz'"),
    ("ctrl-c", 130, "himoe-fast: interrupted"),
])
def test_the_error_handler_maps_error_types_to_exit_codes(exc, code, line, monkeypatch, tmp_path):
    from himoe_fast.cli import train_cmds
    from himoe_fast.errors import SettingsError
    from himoe_fast.train.distributed import DistributedError, GpuCountError

    error = {"settings": SettingsError("the\nmessage"), "gpus": GpuCountError("9 GPUs asked"),
             "rank": DistributedError("rank 1 failed"),
             "missing file": FileNotFoundError(2, "No such file or directory", "x.npz"),
             "ctrl-c": KeyboardInterrupt()}[exc]
    monkeypatch.setattr(train_cmds, "plot_run", _Raise(error))
    res = invoke("plots", str(tmp_path))
    assert res.exit_code == code, res.output
    assert error_lines(res) == [line]


def test_a_bug_is_not_disguised_as_bad_input(monkeypatch, tmp_path):
    from himoe_fast.cli import train_cmds

    monkeypatch.setattr(train_cmds, "plot_run", _Raise(RuntimeError("a bug")))
    res = invoke("plots", str(tmp_path))
    assert isinstance(res.exception, RuntimeError) and "himoe-fast: error" not in res.output


def test_plots_of_a_folder_without_a_finished_fold(tmp_path):
    from himoe_fast.analysis import plot_run
    from himoe_fast.errors import RunDirError

    (tmp_path / "folds" / "fold01").mkdir(parents=True)
    (tmp_path / "folds" / "fold01" / "model.pt").write_bytes(b"")     # no predictions.npz: not finished
    with pytest.raises(RunDirError, match="no finished fold"):
        plot_run(tmp_path)
    res = invoke("plots", str(tmp_path))
    assert res.exit_code == 2 and error_lines(res) == [
        f"himoe-fast: error: {tmp_path}: no finished fold (folds/*/model.pt and predictions.npz) to plot"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folds"]          # nothing written
