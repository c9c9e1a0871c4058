"""TrainCallback hooks run in order around one fold's training (Python API, one process)."""

import json

import pytest

from himoe_fast import HiMoEConfig
from himoe_fast.errors import UserInputError
from himoe_fast.train import DataSettings, ProtocolSettings, RunConfig, TrainSettings, run_experiment
from himoe_fast.train.callbacks import TrainCallback, load_callbacks

EVENTS: list[tuple] = []


class Recorder(TrainCallback):
    def on_fold_start(self, ctx, fold_index, fold_dir):
        EVENTS.append(("start", fold_index, fold_dir.name, fold_dir.exists()))

    def on_epoch_end(self, ctx, epoch, fold_dir, checkpoint):
        saved = __import__("torch").load(checkpoint, weights_only=True)["epoch"]
        EVENTS.append(("epoch", epoch, saved))

    def on_fold_end(self, ctx, fold_index, fold_dir, metrics):
        written = json.loads((fold_dir / "result.json").read_text())["metrics"]
        EVENTS.append(("end", fold_index, written == metrics))


def make_recorder() -> Recorder:
    return Recorder()


def test_hooks_run_at_fold_start_each_epoch_and_fold_end(tmp_path, capsys):
    EVENTS.clear()
    rc = RunConfig(model=HiMoEConfig.deap(["eeg", "gsr"], d_model=16, expert_hidden=16, dropout=0.0),
                   train=TrainSettings(epochs=2, batch_size=32, patience=10, impl="reference"),
                   data=DataSettings(subjects=2, seq_len=4, stride_s=4.0, cache_dir=str(tmp_path / "cache")),
                   protocol=ProtocolSettings(protocol="holdout"), out=str(tmp_path / "run"),
                   callbacks=(f"{__name__}:make_recorder",))
    run_experiment(rc)
    assert EVENTS == [("start", 0, "holdout", False), ("epoch", 0, 0), ("epoch", 1, 1), ("end", 0, True)]
    out = capsys.readouterr().out
    assert [ln.split(":")[0] for ln in out.splitlines() if ln.startswith("holdout epoch")] == \
        ["holdout epoch 1/2", "holdout epoch 2/2"]


@pytest.mark.parametrize("spec, says", [("no_colon", "expected an import path"),
                                        ("himoe_fast:NoSuchThing", "cannot import it"),
                                        ("no_such_module_here:Hook", "cannot import it"),
                                        ("json:dumps", "cannot build it without arguments")])
def test_bad_callback_paths_are_user_errors(spec, says):
    with pytest.raises(UserInputError, match=says):
        load_callbacks([spec])


def test_factory_that_returns_something_else_is_refused():
    with pytest.raises(UserInputError, match="not a himoe_fast.train.callbacks.TrainCallback"):
        load_callbacks(["builtins:dict"])
