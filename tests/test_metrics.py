"""Metrics against hand-worked values and their textbook formulas."""

import math

import numpy as np
import pytest
import torch

from himoe_fast.metrics import accuracy, aggregate_folds, ccc, evaluate, f1, mae, pcc


def test_ccc_hand_worked():
    x = [1.0, 2.0, 3.0]
    assert ccc(x, x) == pytest.approx(1.0)
    # y = x + 1: var 2/3 each, cov 2/3, mean gap 1 -> (4/3) / (4/3 + 1) = 4/7
    assert ccc(x, [2.0, 3.0, 4.0]) == pytest.approx(4 / 7)
    # y = -x: cov -2/3, mean gap 4 -> (-4/3) / (4/3 + 16) = -1/13
    assert ccc(x, [-1.0, -2.0, -3.0]) == pytest.approx(-1 / 13)
    assert ccc([2.0, 2.0], [2.0, 2.0]) == 1.0


def test_ccc_uses_population_moments():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=50), rng.normal(size=50) + 0.3
    cov = np.cov(a, b, bias=True)[0, 1]
    want = 2 * cov / (a.var() + b.var() + (a.mean() - b.mean()) ** 2)
    assert ccc(a, b) == pytest.approx(want, rel=1e-12)
    assert ccc(torch.tensor(a), torch.tensor(b)) == pytest.approx(want, rel=1e-6)


def test_pcc_hand_worked_and_constant():
    # dx = [-1,0,1], dy = [-7/3,-1/3,8/3]: sum dxdy = 5, sum dx^2 = 2, sum dy^2 = 114/9
    assert pcc([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 114 / 9))
    assert math.isnan(pcc([1, 1, 1], [1, 2, 3]))


def test_mae_accuracy_f1():
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert accuracy([1, 0, 1, 1], [1, 1, 0, 1]) == pytest.approx(0.5)
    assert f1([1, 0, 1, 1], [1, 1, 0, 1]) == pytest.approx(4 / 6)   # tp=2, fp=1, fn=1
    assert f1([0, 0], [0, 0]) == 0.0
    assert accuracy(torch.tensor([True, False]), np.array([1, 0])) == 1.0
    with pytest.raises(ValueError):
        accuracy([0.5, 1], [1, 1])
    with pytest.raises(ValueError):
        mae([1, 2], [1, 2, 3])


def test_evaluate_and_aggregate():
    targets = ("valence", "arousal")
    y = np.array([[1.0, 2.0], [2.0, 4.0], [3.0, 7.0]])
    fold1 = evaluate(y, y, targets)
    assert fold1["ccc"]["valence"] == pytest.approx(1.0) and fold1["mae"]["mean"] == 0.0
    fold2 = evaluate(y + 1.0, y, targets)
    assert fold2["mae"]["arousal"] == pytest.approx(1.0)
    agg = aggregate_folds([fold1, fold2])
    assert agg["mae"]["valence"] == pytest.approx(0.5)
    assert agg["std"]["mae"]["valence"] == pytest.approx(0.5)
    assert agg["ccc"]["mean"] == pytest.approx((1.0 + np.mean([4 / 7, fold2["ccc"]["arousal"]])) / 2)
    assert len(agg["per_fold"]) == 2

    binary = evaluate(np.array([[0.9], [0.2], [0.6]]), np.array([[7.0], [6.0], [2.0]]), ("valence",),
                      task="binary", threshold=5.0)
    assert binary["acc"]["valence"] == pytest.approx(1 / 3)
    assert binary["f1"]["valence"] == pytest.approx(2 / 4)   # tp=1, fp=1, fn=1
