"""``himoe-fast parity`` exit codes and ``himoe-fast bench --json`` schema (tiny sizes)."""

import json

import pytest
from typer.testing import CliRunner

from himoe_fast.cli.app import app


pytestmark = pytest.mark.usefixtures("one_cpu_thread")


runner = CliRunner()
TINY = ["--preset", "tiny", "-B", "1", "-T", "2"]


def test_parity_passes_exit_0():
    res = runner.invoke(app, ["parity", *TINY, "--backend", "torch", "--router", "diff", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "parity PASS" in res.output


def test_parity_table_and_json(tmp_path):
    out = tmp_path / "parity.json"
    res = runner.invoke(app, ["parity", *TINY, "--backend", "torch", "--routing", "top1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert "modality_bank.w1" in res.output and "alignment_loss" in res.output
    data = json.loads(out.read_text())
    assert data["ok"] is True and any(c["name"] == "loss" for c in data["checks"])


def test_parity_failure_exit_1(monkeypatch):
    """Zero tolerance: fp reassociation differences must be reported as failures (exit 1)."""
    import torch

    from himoe_fast.fast import parity

    monkeypatch.setitem(parity.TOLERANCES, torch.float32, (0.0, 0.0, 0.0, 0.0))
    res = runner.invoke(app, ["parity", *TINY, "--backend", "torch", "--quiet"])
    assert res.exit_code == 1, res.output
    assert "parity FAIL" in res.output


@pytest.mark.parametrize("args", [
    ["--router", "bogus"], ["--routing", "hard"], ["--backend", "cuda"], ["--preset", "mahnob"],
    ["--dtype", "fp16"], ["--modalities", "eeg,xyz"], ["-B", "0"],
])
def test_parity_bad_flags_exit_2(args):
    res = runner.invoke(app, ["parity", "--preset", "tiny", *args] if "--preset" not in args else ["parity", *args])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("himoe-fast: error:"), res.output


def test_bench_json_schema(tmp_path):
    from himoe_fast.io import current_umask

    out = tmp_path / "sub" / "bench.json"
    res = runner.invoke(app, ["bench", *TINY, "--warmup", "0", "--repeats", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(data) == {"gemm_gflops", "device", "rows"}
    assert isinstance(data["gemm_gflops"], float) and data["gemm_gflops"] > 0
    assert isinstance(data["device"], str) and data["device"]
    names = [r["name"] for r in data["rows"]]
    for required in ("encoders", "modality_bank", "fuse", "da_router", "heads", "alignment", "temporal",
                     "train_step"):                   # temporal: the default --temporal align+context
        assert required in names
    keys = {"name", "ref_ms", "fast_ms", "speedup", "max_err", "ref_peak_mb", "fast_peak_mb"}
    for r in data["rows"]:
        assert set(r) == keys
        for k in keys - {"name"}:
            assert isinstance(r[k], float), (r["name"], k)
        assert r["ref_ms"] > 0 and r["fast_ms"] > 0 and r["ref_peak_mb"] >= 0 and r["fast_peak_mb"] >= 0
        assert r["max_err"] < 1e-3, r
    assert not list(out.parent.glob(".*"))                # atomic write left no temporary file
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()   # the umask decides, as for open()
    assert "torch.mm" in res.output and "GFLOP/s" in res.output


def test_bench_paper_literal_model_has_no_temporal_row(tmp_path):
    out = tmp_path / "bench.json"
    res = runner.invoke(app, ["bench", *TINY, "--temporal", "none", "--rows", "temporal,heads", "--warmup", "0",
                              "--repeats", "1", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert [r["name"] for r in json.loads(out.read_text())["rows"]] == ["heads"]


def test_bench_bad_rows_exit_2():
    res = runner.invoke(app, ["bench", "--rows", "encoders,nope"])
    assert res.exit_code == 2 and "himoe-fast: error:" in res.output
