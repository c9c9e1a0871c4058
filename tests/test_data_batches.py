"""SequenceDataset / make_loader: batch layout, missing-modality masks, seeding (speed: bench/test_bench_loader.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from himoe_fast import HiMoE, HiMoEConfig
from himoe_fast.data import SequenceDataset, WindowedData, collate_batch, draw_present, make_loader, make_sequences


def deap_like(n_trials=40, windows_per_trial=16, seq_len=8, modalities=("eeg", "eog", "emg", "gsr", "resp", "ppg", "temp"),
              seed=0) -> WindowedData:
    """Random windows with DEAP's 7 default modalities (no files)."""
    cfg = HiMoEConfig.deap(modalities=modalities)
    rng = np.random.default_rng(seed)
    trial = np.repeat(np.arange(n_trials), windows_per_trial)
    n = trial.size
    windows = {m.name: rng.standard_normal((n, m.channels, m.samples(1.0)), dtype=np.float32) for m in cfg.modalities}
    labels = np.repeat(rng.uniform(1, 9, (n_trials, 4)), windows_per_trial, 0).astype(np.float32)
    return WindowedData(modalities=cfg.modality_names, windows=windows, labels=labels,
                        subject=(trial // 10).astype(np.int64), trial=trial.astype(np.int64),
                        available=np.ones((n, len(modalities)), bool),
                        sequences=make_sequences(trial, seq_len), targets=tuple(cfg.targets))


def all_present(ds, epoch=None):
    if epoch is not None:
        ds.set_epoch(epoch)
    return ds.fetch(np.arange(len(ds)))[1].numpy()


# ------------------------------------------------------------------------------------ layout
def test_item_and_batch_layout():
    data = deap_like()
    ds = SequenceDataset(data, np.arange(len(data)))
    inputs, present, labels, mask = ds[3]
    assert set(inputs) == set(data.modalities)
    assert inputs["eeg"].shape == (8, 32, 128) and inputs["gsr"].shape == (8, 1, 128)
    assert inputs["eeg"].dtype == torch.float32
    assert present.shape == (8, 7) and present.dtype == torch.bool and present.all()
    assert labels.shape == (8, 4) and mask.shape == (8, 4) and mask.all()
    rows = data.sequences[3]
    np.testing.assert_array_equal(inputs["eog"].numpy(), data.windows["eog"][rows])
    np.testing.assert_array_equal(labels.numpy(), data.labels[rows])
    # a batch through the loader equals stacked items
    loader = make_loader(data, np.arange(len(data)), batch_size=5, shuffle=False)
    x, p, y, m = next(iter(loader))
    assert x["eeg"].shape == (5, 8, 32, 128) and p.shape == (5, 8, 7) and y.shape == (5, 8, 4) and m.shape == (5, 8, 4)
    ref = collate_batch([ds[i] for i in range(5)])
    for name in data.modalities:
        assert torch.equal(x[name], ref[0][name])
    assert torch.equal(y, ref[2]) and torch.equal(p, ref[1])


def test_loader_feeds_the_model():
    data = deap_like(n_trials=4, windows_per_trial=4, seq_len=2)
    cfg = HiMoEConfig.deap(d_model=16, expert_hidden=16, n_modality_experts=2, n_emotion_experts=2, router_dim=4)
    x, p, y, m = next(iter(make_loader(data, np.arange(len(data)), 3, shuffle=True, missing_rate=0.3)))
    out = HiMoE(cfg)(x, p)
    assert out.pred.shape == (3, 2, 4)
    assert torch.isfinite(HiMoE(cfg).loss(out, y, m))


def test_shuffled_epoch_covers_every_index_once_and_is_seeded():
    data = deap_like(n_trials=10)
    idx = np.arange(0, len(data), 2)

    def order(seed):
        loader = make_loader(data, idx, batch_size=4, shuffle=True, seed=seed)
        firsts = []
        for x, *_ in loader:
            firsts.append(x["gsr"][:, 0, 0, 0])
        return torch.cat(firsts)

    a, b, c = order(0), order(0), order(1)
    assert len(a) == len(idx) and torch.equal(a, b) and not torch.equal(a, c)
    expected = torch.from_numpy(data.windows["gsr"][data.sequences[idx, 0], 0, 0])
    assert torch.equal(torch.sort(a).values, torch.sort(expected).values)


def test_non_finite_labels_are_masked():
    data = deap_like(n_trials=2, windows_per_trial=8)
    data.labels[:8, 1] = np.nan
    x, p, y, m = SequenceDataset(data, [0, 1]).fetch([0, 1])
    assert not m[0, :, 1].any() and m[0, :, [0, 2, 3]].all() and m[1].all()
    assert torch.isfinite(y).all() and (y[0, :, 1] == 0).all()


def test_worker_processes():
    data = deap_like(n_trials=6)
    loader = make_loader(data, np.arange(len(data)), batch_size=4, shuffle=False, num_workers=2, missing_rate=0.5,
                         train=False)
    got = torch.cat([p for _, p, _, _ in loader])
    ref = torch.cat([p for _, p, _, _ in make_loader(data, np.arange(len(data)), 4, shuffle=False, missing_rate=0.5,
                                                        train=False)])
    assert torch.equal(got, ref)                       # masks do not depend on the worker layout


# ------------------------------------------------------------------------------------ missing modalities
def test_missing_rate_is_respected_and_at_least_one_present():
    data = deap_like(n_trials=200, windows_per_trial=8)
    for rate in (0.1, 0.3, 0.6):
        p = all_present(SequenceDataset(data, np.arange(len(data)), missing_rate=rate, seed=1))
        assert abs((1 - p.mean()) - rate) < 0.03, rate
        assert p.any(-1).all()
        # per sample: the same modalities for all time steps
        assert (p == p[:, :1]).all()


def test_rate_zero_means_available():
    data = deap_like(n_trials=4)
    data.available[::3, 2] = False
    p = all_present(SequenceDataset(data, np.arange(len(data))))
    np.testing.assert_array_equal(p, data.available[data.sequences])


def test_absent_inputs_are_zeroed():
    data = deap_like(n_trials=20)
    x, p, _, _ = SequenceDataset(data, np.arange(len(data)), missing_rate=0.5).fetch(np.arange(len(data)))
    for m, name in enumerate(data.modalities):
        absent = ~p[:, :, m]
        assert absent.any()
        assert (x[name][absent] == 0).all() and (x[name][~absent] != 0).any()


def test_eval_masks_are_reproducible_per_seed():
    data = deap_like(n_trials=40)
    idx = np.arange(len(data))
    a = all_present(SequenceDataset(data, idx, missing_rate=0.3, seed=5, train=False))
    ds = SequenceDataset(data, idx, missing_rate=0.3, seed=5, train=False)
    b = all_present(ds, epoch=7)                                 # epochs do not matter in evaluation
    c = all_present(SequenceDataset(data, idx, missing_rate=0.3, seed=6, train=False))
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.1
    # a sample's mask does not depend on which other samples share its batch or on its position
    sub = SequenceDataset(data, idx[::-1][:7], missing_rate=0.3, seed=5, train=False).fetch(np.arange(7))[1].numpy()
    np.testing.assert_array_equal(sub, a[::-1][:7])


def test_training_masks_change_per_epoch():
    data = deap_like(n_trials=40)
    ds = SequenceDataset(data, np.arange(len(data)), missing_rate=0.3, seed=5, train=True)
    e0, e1, e0_again = all_present(ds, 0), all_present(ds, 1), all_present(ds, 0)
    assert (e0 != e1).mean() > 0.1
    np.testing.assert_array_equal(e0, e0_again)


def test_per_step_masks():
    data = deap_like(n_trials=100)
    p = all_present(SequenceDataset(data, np.arange(len(data)), missing_rate=0.4, missing_per_step=True, seed=2))
    assert (p != p[:, :1]).any(axis=(1, 2)).mean() > 0.9          # masks vary over time steps
    assert p.any(-1).all()                                        # every step keeps a modality
    assert abs((1 - p.mean()) - 0.4) < 0.03


def test_unavailable_never_present_and_fallback_picks_available():
    data = deap_like(n_trials=30, modalities=("eeg", "gsr", "ppg"))
    data.available[:, 0] = False                                  # eeg never recorded
    data.available[::2, 1] = False
    p = all_present(SequenceDataset(data, np.arange(len(data)), missing_rate=0.9, seed=0))
    avail = data.available[data.sequences]
    assert not (p & ~avail).any()
    assert (p.any(-1) == avail.any(-1)).all()


def test_draw_present_validates_rate():
    with pytest.raises(ValueError):
        draw_present(np.ones((1, 1, 2), bool), 1.0, seed=0, samples=np.zeros(1))
    with pytest.raises(ValueError):
        SequenceDataset(deap_like(n_trials=2), [0], missing_rate=-0.1)


# ------------------------------------------------------------------------------------ speed
