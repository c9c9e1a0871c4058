"""``--impl auto``: the fast path's start-up self-check, its cache and the fallback to the reference."""

from __future__ import annotations

import json
import os

import pytest
import torch

import himoe_fast.fast.model as fast_model
from himoe_fast.fast import selfcheck
from himoe_fast.config import preset_config
from himoe_fast.ops import ext

pytestmark = pytest.mark.usefixtures("one_cpu_thread")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache root; the compiled NT-Xent extension stays shared (built once)."""
    monkeypatch.setenv("HIMOE_FAST_EXT_CACHE", os.environ.get("HIMOE_FAST_EXT_CACHE", str(ext.ext_cache_dir())))
    monkeypatch.setenv("HIMOE_FAST_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture
def probes(monkeypatch):
    """Counts real probe runs."""
    calls = []
    real = selfcheck.run_probe

    def counting(cfg, device):
        calls.append(str(device))
        return real(cfg, device)

    monkeypatch.setattr(selfcheck, "run_probe", counting)
    return calls


def test_auto_picks_fast_once_and_caches_the_verdict(cache, probes):
    cfg = preset_config("tiny")
    warned = []
    assert selfcheck.resolve_impl("auto", cfg, "cpu", warn=warned.append) == "fast"
    assert selfcheck.resolve_impl("auto", cfg, "cpu", warn=warned.append) == "fast"
    assert probes == ["cpu"] and not warned
    files = list((cache / "selfcheck").glob("*.json"))
    assert len(files) == 1
    verdict = json.loads(files[0].read_text())
    assert verdict["ok"] is True and verdict["device"]["type"] == "cpu"
    assert selfcheck.self_check(cfg, "cpu")["cached"] is True
    # another model config is probed on its own
    assert selfcheck.resolve_impl("auto", preset_config("tiny", router="diff"), "cpu") == "fast"
    assert len(probes) == 2


def test_auto_falls_back_to_the_reference_with_one_warning_line(cache, probes, monkeypatch):
    """A fast path that is off by 1e-3 in the bank's output fails the probe."""
    real_bank = fast_model.modality_bank

    def wrong_bank(*args, **kwargs):
        z, alpha = real_bank(*args, **kwargs)
        return z * 1.001, alpha

    monkeypatch.setattr(fast_model, "modality_bank", wrong_bank)
    cfg = preset_config("tiny")
    warned = []
    assert selfcheck.resolve_impl("auto", cfg, "cpu", warn=warned.append) == "reference"
    assert len(warned) == 1 and "\n" not in warned[0]
    assert warned[0].startswith("himoe-fast: warning: the fast path failed its self-check")
    assert "parity checks failed" in warned[0]
    # the failure is cached too: no second probe, same answer
    assert selfcheck.resolve_impl("auto", cfg, "cpu", warn=warned.append) == "reference"
    assert probes == ["cpu"] and len(warned) == 2


def test_an_exception_in_the_fast_path_is_a_failed_probe(cache, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("kernel launch failed\nsecond line")

    monkeypatch.setattr(fast_model, "modality_bank", broken)
    verdict = selfcheck.run_probe(preset_config("tiny"), torch.device("cpu"))
    assert verdict["ok"] is False and verdict["reason"] == "RuntimeError: kernel launch failed"


def test_explicit_impls_and_baselines_skip_the_probe(cache, probes):
    cfg = preset_config("tiny")
    assert selfcheck.resolve_impl("reference", cfg, "cpu") == "reference"
    assert selfcheck.resolve_impl("fast", cfg, "cpu") == "fast"
    assert selfcheck.resolve_impl("auto", cfg, "cpu", model_name="late_fusion") == "reference"
    assert probes == []
    with pytest.raises(ValueError, match="impl must be one of"):
        selfcheck.resolve_impl("turbo", cfg, "cpu")


def test_cache_key_follows_config_and_sources(cache, monkeypatch):
    a = selfcheck.cache_file(preset_config("tiny"), torch.device("cpu"))
    assert a == selfcheck.cache_file(preset_config("tiny"), torch.device("cpu"))
    assert a != selfcheck.cache_file(preset_config("tiny", router="cosine"), torch.device("cpu"))
    monkeypatch.setattr(selfcheck, "_source_hash", lambda: "changed-kernels")
    assert a != selfcheck.cache_file(preset_config("tiny"), torch.device("cpu"))
