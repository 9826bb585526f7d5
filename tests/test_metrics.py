"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge import metrics


def test_r2_neurobench_per_axis_mean():
    t = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 2.0]])
    p = np.array([[1.0, 1.0], [2.0, 0.0], [2.0, 2.0]])
    # axis 0: SSE=1, N*var = 3*(2/3) = 2 -> 0.5 ; axis 1: SSE=1, var=8/9, N*var=8/3 -> 1-3/8
    assert metrics.r2_score(t, p) == pytest.approx((0.5 + (1 - 3 / 8)) / 2)


def test_r2_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.r2_score(np.zeros((3, 2)), np.zeros((3, 1)))


def test_correlation_perfect_and_anti():
    t = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    p = np.array([[2.0, -1.0], [4.0, -2.0], [6.0, -3.0]])
    assert metrics.correlation(t, p) == pytest.approx(0.0)


def test_auc_hand_value_with_ties():
    labels = np.array([0, 0, 1, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert metrics.roc_auc(labels, scores) == pytest.approx(0.75)
    assert metrics.roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_classification_report_binary_and_multilabel():
    labels = np.array([0, 0, 0, 1])
    scores = np.array([0.2, 0.6, 0.1, 0.9])
    rep = metrics.classification_report(labels, scores)
    assert rep["accuracy"] == pytest.approx(0.75)
    assert rep["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    # class 0: tp=2 fp=0 fn=1 -> F1 = 4/5 ; class 1: tp=1 fp=1 fn=0 -> 2/3
    assert rep["f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert rep["auc"] == pytest.approx(1.0)
    multi = metrics.classification_report(np.stack([labels, labels], 1), np.stack([scores] * 2, 1))
    assert multi == pytest.approx(rep)


def test_multiclass_argmax_and_majority():
    labels = np.array([0, 1, 2, 2])
    scores = np.eye(3)[[0, 1, 2, 0]]
    assert metrics.classification_report(labels, scores)["accuracy"] == pytest.approx(0.75)
    assert metrics.majority_rate(labels) == pytest.approx(0.5)
