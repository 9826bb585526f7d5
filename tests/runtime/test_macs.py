"""The MAC, byte and sparsity rules of cortexedge.macs against hand counts and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cortexedge.macs import RULES, count_bytes, n_params, sparsity


def test_linear_dense_effective_and_activity():
    w = np.array([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]])  # [out=2, in=3], 3 non-zero
    assert RULES["linear"](w) == (6, 3)
    assert RULES["linear"](w, positions=5) == (30, 15)
    # input 0 active half the time, input 1 never, input 2 always: 0.5 + 1 + 1 = 2.5 -> 2
    assert RULES["linear"](w, activity=np.array([0.5, 0.0, 1.0])) == (6, 2)


def _brute_conv(w, in_spatial, strides, pads, dil):
    """NeuroBench by hand: for every output position and tap, is the input real (not padding)?"""
    nd = w.ndim - 2
    k = w.shape[2:]
    outs = [(in_spatial[a] + pads[a] + pads[nd + a] - dil[a] * (k[a] - 1) - 1) // strides[a] + 1
            for a in range(nd)]  # fmt: skip
    dense = eff = 0
    for pos in itertools.product(*[range(o) for o in outs]):
        for tap in itertools.product(*[range(kk) for kk in k]):
            idx = [pos[a] * strides[a] - pads[a] + tap[a] * dil[a] for a in range(nd)]
            if all(0 <= idx[a] < in_spatial[a] for a in range(nd)):
                block = w[(slice(None), slice(None), *tap)]
                dense += block.size
                eff += np.count_nonzero(block)
    return dense, eff


@pytest.mark.parametrize(
    "shape, in_spatial, strides, pads, dil",
    [
        ((4, 3, 5), (11,), [1], [0, 0], [1]),
        ((4, 3, 5), (11,), [2], [2, 1], [1]),
        ((4, 3, 3), (9,), [1], [2, 2], [2]),
        ((2, 3, 3, 2), (6, 5), [2, 1], [1, 0, 1, 1], [1, 2]),
        ((4, 2, 3), (8,), [1], [1, 1], [1]),  # grouped: 4 input channels, 2 groups
    ],
)
def test_conv_matches_brute_force_with_padding_stride_dilation(shape, in_spatial, strides, pads,
                                                               dil):  # fmt: skip
    w = np.random.default_rng(0).normal(size=shape)
    w[np.random.default_rng(1).random(shape) < 0.4] = 0
    assert RULES["conv"](w, in_spatial, strides, pads, dil) == _brute_conv(
        w, in_spatial, strides, pads, dil
    )


def test_conv_activity_per_input_channel():
    w = np.ones((2, 2, 1))  # 1x1 conv, 2 -> 2 channels, length 3
    assert RULES["conv"](w, (3,)) == (12, 12)
    assert RULES["conv"](w, (3,), activity=np.array([1.0, 0.0])) == (12, 6)


def test_gru_is_neurobench_gru_cell_count():
    i, h = 5, 4
    w_ih, w_hh = np.ones((3 * h, i)), np.ones((3 * h, h))
    assert RULES["gru"](w_ih, w_hh) == (3 * h * (i + h) + 3 * h,) * 2
    w_ih[:, 0] = 0  # one dead input: 3h weights
    w_hh[0] = 0  # one dead gate row: h weights
    assert RULES["gru"](w_ih, w_hh) == (3 * h * (i + h) + 3 * h, 3 * h * (i + h) + 3 * h - 4 * h)
    # activity scales the input weights only
    act = np.r_[0.0, np.ones(i - 1)]
    assert RULES["gru"](np.ones((3 * h, i)), np.ones((3 * h, h)), activity=act)[1] == (
        3 * h * (i - 1) + 3 * h * h + 3 * h
    )


def test_lstm_is_neurobench_lstm_cell_count_with_peepholes():
    i, h = 3, 2
    w_ih, w_hh = np.ones((4 * h, i)), np.ones((4 * h, h))
    assert RULES["lstm"](w_ih, w_hh) == (4 * h * (i + h) + 3 * h,) * 2
    peep = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    dense, eff = RULES["lstm"](w_ih, w_hh, peepholes=peep)
    assert (dense, eff) == (4 * h * (i + h) + 3 * h + 6, 4 * h * (i + h) + 3 * h + 3)


def test_elementwise_counts_each_product():
    assert RULES["elementwise"](7) == (7, 7)


def test_bytes_at_stored_precision_sparsity_and_params():
    arrays = [np.zeros((3, 4), np.int8), np.ones(5, np.float32), np.ones(2, np.float16)]
    assert count_bytes(arrays) == 12 + 20 + 4
    assert n_params(arrays) == 19
    assert sparsity(arrays) == pytest.approx(12 / 19)
    assert sparsity([]) == 0.0
