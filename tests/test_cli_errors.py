"""Bad input through the command line: every bad invocation and every bad file ends with exit code 2,
exactly one line on stderr starting with ``himoe-fast: error:``, no traceback, and nothing written.

The commands run in this process (``cli.app.main`` with a patched ``sys.argv``) on a tiny synthetic
DEAP set, so the whole list takes seconds. (A rank failure under ``--procs 2``:
``test_train_cli.py::test_crashed_rank_stops_the_others_quickly``.)
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sys
from pathlib import Path

import pytest
import torch

from himoe_fast.data import write_synthetic_deap

SMALL = ["--modalities", "eeg,gsr", "--seq-len", "2", "--epochs", "1", "--protocol", "holdout", "--no-progress"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny DEAP set, a DEAP set whose trials are too short, a file, and one trained run."""
    root = tmp_path_factory.mktemp("cli-errors")
    write_synthetic_deap(root / "deap", 2, 0, n_trials=4, trial_s=9.0)          # 6 one-second windows per trial
    write_synthetic_deap(root / "short", 1, 0, n_trials=2, trial_s=4.5)         # 1 window per trial
    (root / "a_file").write_text("not a folder\n")
    return root


def cache_env(world) -> dict[str, str]:
    """A private data cache, but the compiled NT-Xent extension is shared (built once per machine)."""
    return {"HIMOE_FAST_CACHE": str(world / "cache"),
            "HIMOE_FAST_EXT_CACHE": os.environ.get("HIMOE_FAST_EXT_CACHE",
                                                   str(Path.home() / ".cache" / "himoe-fast" / "ext"))}


def run(args, world, monkeypatch, capsys):
    """``himoe-fast ARGS`` in this process: (exit code, stdout, stderr)."""
    from himoe_fast.cli.app import main

    for key, value in cache_env(world).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["himoe-fast", *map(str, args)])
    with pytest.raises(SystemExit) as exit_:
        main()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(world):
    """One finished run."""
    from himoe_fast.cli.app import main

    out = world / "trained"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in cache_env(world).items():
            mp.setenv(key, value)
        mp.setattr(sys, "argv", ["himoe-fast", "train", "--dataset", "deap", "--data-dir", str(world / "deap"),
                                 *SMALL, "--out", str(out)])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 0
    return out


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden and temporary ones included) with a hash of its content."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "cache" not in p.relative_to(folder).parts}


def assert_one_line_error(code, out, err, needle):
    lines = err.strip().splitlines()
    assert code == 2, (code, out, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("himoe-fast: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in err and "weights_only" not in err + out


DEAP = ["train", "--dataset", "deap", "--data-dir", "{deap}", *SMALL]
BAD_INVOCATIONS = [
    (DEAP + ["--model", "foo"], "--model"),
    (DEAP + ["--lr", "nan"], "--lr"),
    (DEAP + ["--lr", "0"], "--lr"),
    (DEAP + ["--align-weight", "nan"], "--align-weight"),
    (DEAP + ["--align-weight", "-1"], "--align-weight"),
    (DEAP + ["--missing-rate", "nan"], "--missing-rate"),
    (DEAP + ["--window", "nan"], "--window"),
    (DEAP + ["--folds", "1"], "--folds"),
    (DEAP + ["--protocol", "kfold", "--folds", "1000"], "at most 4 folds"),      # known only once data are read
    (DEAP + ["--seq-len", "1000"], "--seq-len"),
    (DEAP + ["--protocol", "loso", "--subjects", "1"], "loso"),
    (DEAP + ["--stride", "0"], "--stride"),
    (DEAP + ["--stride", "-1"], "--stride"),
    (DEAP + ["--lag", "gsr=nan"], "--lag"),
    (DEAP + ["--lag", "gsr=100"], "shorter than the shortest trial"),
    (DEAP + ["--seed", "-1"], "--seed"),
    (DEAP + ["--face-dir", "{deap}"], "--face-dir"),                             # no face modality in use
    (["train", "--dataset", "deap", "--data-dir", "{deap}", "--modalities", "gsr,face", "--face-dir", "{root}/nope"],
     "--face-dir"),
    (["train", "--dataset", "deap", "--data-dir", "{short}", "--modalities", "gsr", "--seq-len", "4"], "short"),
    (DEAP + ["--out", "{root}/a_file"], "a_file"),
    (DEAP + ["--out", "{root}/a_file/run"], "a_file"),
    (["synth", "--out", "{root}/a_file"], "a_file"),
    (["synth", "--kind", "dreamer", "--out", "{root}/a_file"], "a_file"),
    (["synth", "--seed", "-1", "--out", "{root}/new_synth"], "--seed"),
    (["robustness", "--seeds", "-1", "--dataset", "deap", "--data-dir", "{deap}"], "--seeds"),
    (["robustness", "--rates", "nan", "--dataset", "deap", "--data-dir", "{deap}"], "--rates"),
    (["ablate", "--seeds", "-1", "--dataset", "deap", "--data-dir", "{deap}"], "--seeds"),
    (["eval", "{root}/a_file"], "a_file"),
]


@pytest.mark.parametrize("args,needle", BAD_INVOCATIONS, ids=[" ".join(a[3:] if a[0] == "train" else a)[:60]
                                                                for a, _ in BAD_INVOCATIONS])
def test_bad_invocation(args, needle, world, monkeypatch, capsys, tmp_path):
    args = [a.format(deap=world / "deap", short=world / "short", root=world) for a in args]
    if args[0] in ("train", "robustness", "ablate") and "--out" not in args:
        args += ["--out", tmp_path / "out"]
    before = snapshot(world)
    code, out, err = run(args, world, monkeypatch, capsys)
    assert_one_line_error(code, out, err, needle)
    assert snapshot(world) == before and not (tmp_path / "out").exists()


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a folder nobody can write into (/proc)")
@pytest.mark.parametrize("args", [["train", "--out", "/proc/himoe-run"], ["synth", "--out", "/proc/himoe-synth"]])
def test_unwritable_out_is_refused_before_any_work(args, world, monkeypatch, capsys):
    code, out, err = run(args, world, monkeypatch, capsys)
    assert_one_line_error(code, out, err, "/proc")


def test_eval_json_to_unwritable_or_folder_path_fails_before_printing(trained, world, monkeypatch, capsys):
    for target in ([Path("/proc/himoe.json")] if Path("/proc/self").is_dir() else []) + [trained]:
        before = snapshot(trained)
        code, out, err = run(["eval", trained, "--json", target], world, monkeypatch, capsys)
        assert_one_line_error(code, out, err, "--json")
        assert out == "" and snapshot(trained) == before


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _damage(path: Path, how: str, marker: Path) -> None:
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 3])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "text":
        path.write_text("this is text\n")
    elif how == "payload":
        torch.save({"format": "himoe-fast/model/v1", "x": _Payload(str(marker))}, path)
    elif how == "pickle":
        path.write_bytes(pickle.dumps({"x": _Payload(str(marker))}))


DAMAGE = ["truncated", "empty", "text", "payload", "pickle"]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("command", ["eval", "plots", "eval-file", "resume"])
def test_damaged_or_hostile_files(command, how, trained, world, monkeypatch, capsys, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    fold = run_dir / "folds" / "holdout"
    (fold / "result.json").unlink()                 # so that --resume goes back to the checkpoint
    (run_dir / "metrics.json").unlink()
    target = fold / ("checkpoint.pt" if command == "resume" else "model.pt")
    marker = tmp_path / "PAYLOAD_RAN"
    _damage(target, how, marker)
    before = snapshot(run_dir)
    args = {"eval": ["eval", run_dir], "plots": ["plots", run_dir], "eval-file": ["eval", target],
            "resume": ["train", "--resume", "--out", run_dir, "--no-progress"]}[command]
    code, out, err = run(args, world, monkeypatch, capsys)
    assert_one_line_error(code, out, err, f"{target}: not a valid himoe-fast checkpoint")
    assert not marker.exists()
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("content", ['{"model": 3', "[]", '{"model": {}, "train": {}}', "\x00\x01"])
def test_resume_with_a_damaged_config_json(content, trained, world, monkeypatch, capsys, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    (run_dir / "metrics.json").unlink()
    (run_dir / "config.json").write_text(content)
    before = snapshot(run_dir)
    code, out, err = run(["train", "--resume", "--out", run_dir], world, monkeypatch, capsys)
    assert_one_line_error(code, out, err, f"{run_dir / 'config.json'}: not a valid himoe-fast run config")
    assert snapshot(run_dir) == before


def test_run_folder_of_a_run_that_died_before_its_first_checkpoint(world, monkeypatch, capsys, tmp_path):
    """Killed after config.json, before a checkpoint: --resume says what to do, a plain rerun works."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    code, _, err = run(["train", "--resume", "--out", out], world, monkeypatch, capsys)
    assert_one_line_error(code, "", err, "without --resume")
    code, _, err = run(["train", "--dataset", "deap", "--data-dir", world / "deap", *SMALL, "--out", out],
                       world, monkeypatch, capsys)
    assert code == 0, err
    assert (out / "metrics.json").exists() and (out / "folds" / "holdout" / "model.pt").exists()
    code, _, err = run(["train", "--dataset", "deap", "--data-dir", world / "deap", *SMALL, "--out", out],
                       world, monkeypatch, capsys)
    assert_one_line_error(code, "", err, "already holds a finished run")


@pytest.mark.parametrize("command", ["robustness", "ablate", "asynchrony", "compare"])
def test_sweeps_take_face_dir_and_check_it_like_train(command, world, monkeypatch, capsys):
    """--face-dir reaches every sweep's run settings: without face among the modalities it is refused."""
    mods = ["--modality-sets", "eeg,gsr"] if command == "compare" else ["--modalities", "eeg,gsr"]
    extra = ["--lagged", "gsr"] if command == "asynchrony" else []
    code, out, err = run([command, "--dataset", "deap", "--data-dir", world / "deap", *mods, *extra,
                          "--face-dir", world / "deap", "--out", world / f"sweep_{command}"], world, monkeypatch, capsys)
    assert_one_line_error(code, out, err, "--face-dir is given but --modalities does not include face")
    assert not (world / f"sweep_{command}").exists()
