"""MACs, sparsity and footprint read from ONNX graphs, against analytic NeuroBench counts."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from cortexedge.errors import ContractError
from cortexedge.runtime import count_graph

C, E, H, D, K = 12, 8, 16, 2, 3  # the sizes of the conftest models


def gru_count(i: int, h: int) -> int:
    return 3 * h * (i + h) + 3 * h


def test_dense_gru_op_equals_the_analytic_count(gru_op):
    counts = count_graph(onnx.load(gru_op.path))
    dense = C * E + gru_count(E, H) + H * D
    assert (counts.dense, counts.effective) == (dense, dense)
    assert [(o.op_type, o.rule, o.dense) for o in counts.ops] == [
        ("Gemm", "linear", C * E),
        ("GRU", "gru", gru_count(E, H)),
        ("Gemm", "linear", H * D),
    ]
    assert counts.sparsity == 0.0
    assert counts.state_bytes == H * 4


def test_effective_count_drops_zero_weights(sparse_gru):
    m = sparse_gru.module
    mats = [m.enc.weight, m.gru.weight_ih_l0, m.gru.weight_hh_l0, m.out.weight]
    nnz = [int((w != 0).sum()) for w in mats]
    counts = count_graph(onnx.load(sparse_gru.path))
    assert counts.dense == C * E + gru_count(E, H) + H * D
    assert counts.effective == sum(nnz) + 3 * H
    total = sum(w.numel() for w in mats)
    assert abs(counts.sparsity - (total - sum(nnz)) / total) < 1e-12
    assert 0.4 < counts.sparsity < 0.6


def test_unrolled_gru_cell_counts_its_two_gate_muls(gru_cell):
    """torch's GRUCell export computes h' = n + z(h - n): 3H(I+H) + 2H, not NeuroBench's + 3H."""
    counts = count_graph(onnx.load(gru_cell.path))
    assert counts.dense == C * E + 3 * H * (E + H) + 2 * H + H * D
    assert [o.rule for o in counts.ops].count("elementwise") == 2


def test_lstm_and_conv_counts(lstm, conv):
    counts = count_graph(onnx.load(lstm.path))
    assert counts.dense == C * E + 4 * H * (E + H) + 3 * H + H * D
    assert counts.state_bytes == 2 * H * 4
    counts = count_graph(onnx.load(conv.path))
    assert counts.dense == E * C * K + E * D  # one output position over the K-bin window
    assert counts.state_bytes == C * (K - 1) * 4


def test_int8_weights_footprint_and_peak_memory(onnx_build):
    counts = count_graph(onnx_build.int8_decoder()[0])
    assert (counts.dense, counts.effective) == (18, 17)  # Mul by the constant decay: no MACs
    assert counts.weight_bytes == 18 * 1 + 4 + 1 + 4  # int8 weight, f32 scale, i8 zp, f32 decay
    assert counts.state_bytes == 12
    # x (24) + state (12) live, MatMul adds h (12) -> 48 at the peak
    assert counts.peak_activation_bytes == 48
    assert counts.footprint_bytes == 27 + 12
    assert counts.to_dict()["footprint_bytes"] == 39


def test_windowed_gru_counts_every_step_of_the_window(onnx_build):
    """A GRU over a 5-bin window recomputed each bin costs 5 GRU steps per bin."""
    rng = np.random.default_rng(0)
    i, h, t = 3, 4, 5
    inits = [numpy_helper.from_array(rng.normal(size=s).astype(np.float32), n)
             for n, s in (("w", (1, 3 * h, i)), ("r", (1, 3 * h, h)))]  # fmt: skip
    node = helper.make_node("GRU", ["x", "w", "r"], ["y_all", "y"], hidden_size=h)
    m = onnx_build.model([node], [onnx_build.tensor("x", [t, 1, i])],
                         [onnx_build.tensor("y", [1, 1, h])], inits)  # fmt: skip
    assert count_graph(m).dense == t * gru_count(i, h)


def test_op_the_numpy_engine_lacks_is_uncounted_and_the_count_goes_on(onnx_build):
    """MaxPool runs alone in onnxruntime: the Gemm behind it sees the pooled width (4, not 8)."""
    w = np.arange(12, dtype=np.float32).reshape(3, 4)  # one zero weight
    nodes = [
        helper.make_node("Unsqueeze", ["x", "one"], ["x3"]),
        helper.make_node("MaxPool", ["x3"], ["p3"], kernel_shape=[2], strides=[2], name="pool"),
        helper.make_node("Squeeze", ["p3", "one"], ["p"]),
        helper.make_node("Gemm", ["p", "w"], ["y"], transB=1),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1]), "one")]
    m = onnx_build.model(nodes, [onnx_build.tensor("x", ["B", 8])],
                         [onnx_build.tensor("y", ["B", 3])], inits)  # fmt: skip
    counts = count_graph(m)
    assert [(u.node, u.op_type) for u in counts.uncounted] == [("pool", "MaxPool")]
    assert [(o.op_type, o.dense, o.effective) for o in counts.ops] == [("Gemm", 12, 11)]
    assert counts.to_dict()["uncounted"] == [{"node": "pool", "op_type": "MaxPool"}]


def test_op_onnxruntime_cannot_run_either_is_a_named_error(onnx_build):
    node = helper.make_node("Frobnicate", ["x"], ["y"], name="f", domain="com.example")
    m = onnx_build.model([node], [onnx_build.tensor("x", [1, 2])], [onnx_build.tensor("y", None)])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(ContractError, match=r"MAC count: onnxruntime cannot run node 'f' "
                       r"\(Frobnicate\) alone"):  # fmt: skip
        count_graph(m)
