"""A sweep killed with SIGKILL takes its grid workers with it (no orphan keeps training)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")


def children(pid: int) -> list[int]:
    out = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            out.append(int(status.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in state


def test_killed_sweep_leaves_no_worker(tmp_path):
    env = {**os.environ, "HIMOE_FAST_CACHE": str(tmp_path / "cache")}
    args = ["robustness", "--models", "himoe_paper,late_fusion", "--rates", "0", "--seeds", "0", "--subjects", "2",
            "--modalities", "eeg,gsr", "--seq-len", "4", "--stride", "4", "--epochs", "50", "--protocol", "holdout",
            "--impl", "reference", "--jobs", "2", "--out", tmp_path / "sweep"]
    proc = subprocess.Popen([sys.executable, "-m", "himoe_fast.cli.app", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        workers: list[int] = []
        while time.monotonic() < deadline and proc.poll() is None:
            workers = [c for c in children(proc.pid) if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]
            if len(workers) >= 2:
                break
            time.sleep(0.5)
        assert len(workers) >= 2, "the sweep never started its workers"
        while time.monotonic() < deadline and len(list((tmp_path / "sweep").glob("runs/*/config.json"))) < 2:
            time.sleep(0.5)                               # both workers are training
        assert len(list((tmp_path / "sweep").glob("runs/*/config.json"))) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(alive(w) for w in workers):
            time.sleep(0.5)
        assert not any(alive(w) for w in workers), "a grid worker outlived its killed sweep"
    finally:
        if proc.poll() is None:
            proc.kill()
