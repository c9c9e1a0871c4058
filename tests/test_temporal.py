"""Temporal stages for asynchronous inputs: the lag aligner, the temporal context, their variants.

Checked against definitions written out here (a shift is a shift, identity at init, absent windows
contribute nothing, causal means the past only), the fast path against the reference for every
variant, and ``temporal="none"`` against a run stored before the stages existed.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from himoe_fast import HiMoE
from himoe_fast.config import preset_config
from himoe_fast.fast.parity import run_parity
from himoe_fast.model.temporal import LagAligner, TemporalContext

from himoe_fast.testing import micro_config, random_inputs

pytestmark = pytest.mark.usefixtures("one_cpu_thread")

VARIANTS = [("align", False), ("align", True), ("align+context", False), ("align+context", True)]


def _paper_model_weights(model: HiMoE) -> dict:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(("aligner.", "context."))}


@pytest.mark.parametrize("temporal", ["align", "align+context"])
def test_fresh_temporal_model_equals_paper_literal_model(temporal):
    """Identity at initialisation: the same shared weights give the same outputs as temporal='none'."""
    cfg = micro_config()
    plain = HiMoE(cfg).eval()
    model = HiMoE(cfg.replace(temporal=temporal)).eval()
    missing, unexpected = model.load_state_dict(_paper_model_weights(plain), strict=False)
    assert not unexpected and all(k.startswith(("aligner.", "context.")) for k in missing)
    inputs, present = random_inputs(cfg, B=3, T=5)
    a, b = plain(inputs, present), model(inputs, present)
    torch.testing.assert_close(b.pred, a.pred, rtol=0, atol=1e-6)
    torch.testing.assert_close(b.alignment_loss, a.alignment_loss, rtol=0, atol=1e-6)


def test_paper_literal_model_has_no_temporal_parameters():
    names = HiMoE(micro_config()).state_dict().keys()
    assert not [k for k in names if k.startswith(("aligner.", "context."))]


def _one_hot_aligner(M: int, D: int, shift_per_modality: list[int], causal: bool = False) -> LagAligner:
    al = LagAligner(M, D, causal)
    with torch.no_grad():
        al.gain.fill_(1.0 / al.RATE)
        al.shift_logits.fill_(-200.0)         # softmax underflows to an exact one-hot
        for m, k in enumerate(shift_per_modality):
            al.shift_logits[m, al.offsets.index(k)] = 0.0
    return al


def test_aligner_with_a_one_hot_kernel_shifts_each_modality():
    B, T, M, d = 2, 7, 3, 4
    Z = torch.randn(B, T, M, d)
    present = torch.ones(B, T, M, dtype=torch.bool)
    shifts = [0, 2, -1]
    out = _one_hot_aligner(M, 3, shifts)(Z, present)
    for m, k in enumerate(shifts):
        for t in range(T):
            if 0 <= t + k < T:       # the source window exists: read it
                torch.testing.assert_close(out[:, t, m], Z[:, t + k, m])
            else:                    # no source in the sample: the window keeps its own features
                torch.testing.assert_close(out[:, t, m], Z[:, t, m])


def test_aligner_ignores_absent_windows_and_keeps_them_absent():
    B, T, M, d = 2, 6, 2, 3
    al = LagAligner(M, 2)
    with torch.no_grad():
        al.gain.fill_(0.7)
        al.shift_logits.normal_()
    Z = torch.randn(B, T, M, d)
    present = torch.rand(B, T, M) < 0.6
    present[:, 0, 0] = True
    present[:, 3, 1] = False
    out = al(Z, present)
    assert torch.all(out[~present] == 0)                       # absent stays absent (no invented window)
    Z2 = Z.clone()
    Z2[~present] = torch.randn_like(Z2[~present]) * 100        # garbage where absent
    torch.testing.assert_close(al(Z2, present), out)
    # where present, a weighted mean over the present windows of the support, per the definition
    pi = torch.softmax(al.RATE * al.shift_logits.detach(), -1)
    g = al.RATE * al.gain.detach()
    b, t, m = 0, 0, 0
    num, den = torch.zeros(d), 0.0
    for s, k in enumerate(al.offsets):
        if 0 <= t + k < T and present[b, t + k, m]:
            num += pi[m, s] * Z[b, t + k, m]
            den += pi[m, s]
    want = Z[b, t, m] + g[m] * (num / den - Z[b, t, m])
    torch.testing.assert_close(out[b, t, m], want.detach())


def test_learned_delays_are_the_kernels_centre_of_mass_in_seconds():
    cfg = micro_config(temporal="align", max_shift=2)
    model = HiMoE(cfg)
    assert model.learned_delays() == {"eeg": 0.0, "gsr": 0.0, "face": 0.0}
    one_hot = _one_hot_aligner(3, 2, [0, 2, -1])
    model.aligner.load_state_dict(one_hot.state_dict())
    assert model.learned_delays(step_s=0.5) == pytest.approx({"eeg": 0.0, "gsr": 1.0, "face": -0.5})
    with torch.no_grad():
        model.aligner.gain.fill_(0.5 / model.aligner.RATE)
        model.aligner.shift_logits.zero_()             # uniform over -2..2: centre 0, half identity
        model.aligner.shift_logits[1] = torch.tensor([0.0, 0.0, 0.0, 0.0, math.log(3.0)]) / model.aligner.RATE
    # modality 1: pi = [1,1,1,1,3]/7, kernel = 0.5 delta_0 + 0.5 pi -> centre 0.5 * (-2-1+0+1+6)/7
    assert model.learned_delays()["gsr"] == pytest.approx(0.5 * 4 / 7)


@pytest.mark.parametrize("temporal", ["align", "align+context"])
def test_causal_variants_never_read_the_future(temporal):
    cfg = micro_config(temporal=temporal, causal=True)
    model = HiMoE(cfg).eval()
    with torch.no_grad():                       # leave the identity so that the stages do something
        for name, p in model.named_parameters():
            if name.startswith(("aligner.", "context.out")):
                p.normal_()
    inputs, present = random_inputs(cfg, B=2, T=6, p_present=1.0)
    base = model(inputs, present, compute_alignment=False).pred
    t0 = 3
    later = {k: v.clone() for k, v in inputs.items()}
    for v in later.values():
        v[:, t0 + 1:] = torch.randn_like(v[:, t0 + 1:]) * 5
    moved = model(later, present, compute_alignment=False).pred
    torch.testing.assert_close(moved[:, : t0 + 1], base[:, : t0 + 1])
    assert not torch.allclose(moved[:, t0 + 1:], base[:, t0 + 1:])


def test_bidirectional_context_reads_the_future():
    """The control for the causal test: without ``causal`` a later window changes earlier outputs."""
    ctx = TemporalContext(8, heads=2)
    with torch.no_grad():
        ctx.out.weight.normal_()
    z = torch.randn(2, 5, 8)
    valid = torch.ones(2, 5, dtype=torch.bool)
    z2 = z.clone()
    z2[:, 4] = torch.randn(2, 8) * 3
    assert not torch.allclose(ctx(z2, valid)[:, 0], ctx(z, valid)[:, 0])


def test_context_ignores_steps_with_no_modality():
    ctx = TemporalContext(8, heads=2)
    with torch.no_grad():
        ctx.out.weight.normal_()
        ctx.out.bias.normal_()
    z = torch.randn(2, 5, 8)
    valid = torch.ones(2, 5, dtype=torch.bool)
    valid[:, 2] = False
    z[:, 2] = 0.0
    out = ctx(z, valid)
    assert torch.all(out[:, 2] == 0)                            # an empty step stays empty
    z2 = z.clone()
    z2[:, 2] = torch.randn(2, 8) * 10                           # whatever sits there is never read
    torch.testing.assert_close(ctx(z2, valid)[:, [0, 1, 3, 4]], out[:, [0, 1, 3, 4]])


@pytest.mark.parametrize("temporal,causal", VARIANTS)
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_fast_path_parity_for_every_temporal_variant(temporal, causal, backend):
    cfg = preset_config("tiny", temporal=temporal, causal=causal, max_shift=2)
    report = run_parity(cfg, backend=backend, B=2, T=4)
    bad = [f"{c.name} ({c.kind}): abs {c.max_abs:.2e} rel {c.max_rel:.2e} {c.note}" for c in report.failures]
    assert report.ok, "parity failures:\n" + "\n".join(bad)
    names = {c.name for c in report.checks}
    assert {"aligner.shift_logits", "aligner.gain"} <= names
    if temporal == "align+context":
        assert {"context.qkv.weight", "context.out.weight"} <= names


def test_temporal_none_reproduces_the_stored_paper_literal_run(tmp_path):
    """A small run made before the temporal stages and the scaled expert init existed; ``--temporal none
    --expert-init torch`` gives its numbers."""
    from test_train_cli import run_cli

    stored = json.loads((Path(__file__).parent / "data" / "paper_literal_small_run.json").read_text())
    out = tmp_path / "run"
    res = run_cli(["train", *stored["args"], "--temporal", "none", "--expert-init", "torch", "--no-progress",
                   "--out", out],
                  tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    got = json.loads((out / "metrics.json").read_text())
    for metric, per_target in stored["metrics"].items():
        for target, value in per_target.items():
            assert got[metric][target] == pytest.approx(value, abs=1e-4), (metric, target)
    # and the run's outputs say which model it was
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["temporal"] == "none"
    assert config["model"]["expert_init"] == "torch"
    assert np.isfinite(got["ccc"]["mean"])


@pytest.mark.parametrize("causal", [False, True])
def test_fast_aligner_matches_reference_at_preset_shapes(causal):
    """The banded-matrix aligner of the fast path against the reference loop at the DEAP preset's
    shapes (D = 6 > T/2, so the band is clipped at both ends), forward and every gradient."""
    from himoe_fast.fast.temporal import align_fast

    B, T, M, d = 4, 8, 7, 32
    al = LagAligner(M, 6, causal)
    with torch.no_grad():
        al.gain.normal_(0, 0.1)
        al.shift_logits.normal_(0, 0.3)
    Z = torch.randn(B, T, M, d, requires_grad=True)
    present = torch.rand(B, T, M) < 0.7
    g = torch.randn(B, T, M, d)
    want = al(Z, present)
    got = align_fast(al, Z, present)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    leaves = [Z, al.shift_logits, al.gain]
    for a, b in zip(torch.autograd.grad((got * g).sum(), leaves), torch.autograd.grad((want * g).sum(), leaves)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_train_records_the_variant_and_the_learned_delays(tmp_path):
    """``--temporal align``: config.json names it, metrics.json carries the learned delay per modality
    (seconds, mean over folds and per fold), equal to what the saved model reports."""
    from himoe_fast.train.checkpoint import load_model
    from test_train_cli import SMALL, run_cli

    out = tmp_path / "run"
    res = run_cli(["train", *SMALL, "--epochs", "1", "--protocol", "holdout", "--temporal", "align", "--causal",
                   "--no-progress", "--out", out], tmp_path / "cache")
    assert res.returncode == 0, res.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["temporal"] == "align" and config["model"]["causal"] is True
    delays = json.loads((out / "metrics.json").read_text())["learned_delay_s"]
    model = load_model(out / "folds" / "holdout" / "model.pt")[0]
    want = model.learned_delays(step_s=4.0)                    # SMALL: one window every 4 s
    assert delays["per_fold"] == [pytest.approx(want)]
    assert {k: v for k, v in delays.items() if k != "per_fold"} == pytest.approx(want)
    assert all(v <= 1e-9 for v in want.values())               # causal: only past windows, delay <= 0
