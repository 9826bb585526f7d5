"""Every reference kernel against onnxruntime on one-node graphs (the ONNX semantics referee)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from cortexedge.errors import ContractError
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph
from tests.runtime.onnx_numpy.helpers import F, R, f32, i64


def _run_both(onnx_build, op, feeds, consts=None, out_types=(F,), **attrs):
    """Run one `op` node in onnxruntime and in ReferenceGraph; returns both output lists."""
    consts = consts or {}
    names = list(feeds) + list(consts)
    order = attrs.pop("_order", names)
    outs = [f"out{i}" for i in range(len(out_types))]
    node = helper.make_node(op, order, outs, **attrs)
    ins = [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for k, v in feeds.items()]  # fmt: skip
    outputs = [
        helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, out_types, strict=True)
    ]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    m = onnx_build.model([node], ins, outputs, inits)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    want = sess.run(None, feeds)
    env = ReferenceGraph(m).run(feeds)
    return want, [env[o] for o in outs]


CASES = {
    "Gemm": ("Gemm", {"a": f32(3, 4), "b": f32(5, 4), "c": f32(5)}, None,
             {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    "Gemm-transA": ("Gemm", {"a": f32(4, 3), "b": f32(4, 5)}, None, {"transA": 1}),
    "MatMul": ("MatMul", {"a": f32(2, 3, 4), "b": f32(4, 5)}, None, {}),
    "Add": ("Add", {"a": f32(2, 3), "b": f32(3)}, None, {}),
    "Sub": ("Sub", {"a": f32(2, 3), "b": f32(2, 1)}, None, {}),
    "Mul": ("Mul", {"a": f32(2, 3), "b": f32(1, 3)}, None, {}),
    "Div": ("Div", {"a": f32(2, 3), "b": f32(3, positive=True)}, None, {}),
    "Pow": ("Pow", {"a": f32(2, 3, positive=True), "b": f32(3)}, None, {}),
    "Max": ("Max", {"a": f32(2, 3), "b": f32(3), "c": f32(2, 1)}, None, {}),
    "Min": ("Min", {"a": f32(2, 3), "b": f32(3)}, None, {}),
    "Relu": ("Relu", {"a": f32(4, 5)}, None, {}),
    "Sigmoid": ("Sigmoid", {"a": f32(4, 5) * 30}, None, {}),
    "Tanh": ("Tanh", {"a": f32(4, 5)}, None, {}),
    "Softplus": ("Softplus", {"a": f32(4, 5) * 30}, None, {}),
    "Log": ("Log", {"a": f32(4, positive=True)}, None, {}),
    "Exp": ("Exp", {"a": f32(4)}, None, {}),
    "Sqrt": ("Sqrt", {"a": f32(4, positive=True)}, None, {}),
    "Neg": ("Neg", {"a": f32(4)}, None, {}),
    "Clip": ("Clip", {"a": f32(4, 5)}, {"lo": np.float32(-0.3), "hi": np.float32(0.4)}, {}),
    "Concat": ("Concat", {"a": f32(2, 3), "b": f32(2, 1)}, None, {"axis": 1}),
    "Slice": ("Slice", {"a": f32(4, 6)},
              {"s": i64(3, 1), "e": i64(-10, 6), "ax": i64(0, 1), "st": i64(-1, 2)}, {}),
    "Gather": ("Gather", {"a": f32(3, 4)}, {"i": i64(2, 0, -1)}, {"axis": 1}),
    "Gather-scalar": ("Gather", {"a": f32(3, 4)}, {"i": np.array(1, dtype=np.int64)},
                      {"axis": 0}),
    "Reshape": ("Reshape", {"a": f32(2, 3, 4)}, {"s": i64(0, -1)}, {}),
    "Squeeze": ("Squeeze", {"a": f32(1, 3, 1)}, {"ax": i64(-1)}, {}),
    "Unsqueeze": ("Unsqueeze", {"a": f32(3, 4)}, {"ax": i64(0, -1)}, {}),
    "Transpose": ("Transpose", {"a": f32(2, 3, 4)}, None, {"perm": [2, 0, 1]}),
    "Identity": ("Identity", {"a": f32(3)}, None, {}),
    "Expand": ("Expand", {"a": f32(3, 1)}, {"s": i64(2, 1, 4)}, {}),
    "Where": ("Where", {"c": R.random((2, 3)) > 0.5, "a": f32(2, 3), "b": f32(3)}, None, {}),
    "LayerNormalization": ("LayerNormalization", {"a": f32(2, 3, 5), "g": f32(5), "b": f32(5)},
                           None, {"axis": -1, "epsilon": 1e-5}),
    "BatchNormalization": ("BatchNormalization", {"a": f32(2, 3, 4)},
                           {"g": f32(3), "b": f32(3), "m": f32(3), "v": f32(3, positive=True)},
                           {"epsilon": 1e-3}),
    "ReduceMean": ("ReduceMean", {"a": f32(2, 3, 4)}, None, {"axes": [1, -1], "keepdims": 0}),
    "ReduceSum": ("ReduceSum", {"a": f32(2, 3, 4)}, {"ax": i64(1)}, {"keepdims": 1}),
    "Softmax": ("Softmax", {"a": f32(2, 5)}, None, {"axis": -1}),
    "Flatten": ("Flatten", {"a": f32(2, 3, 4)}, None, {"axis": 2}),
    "Conv1d": ("Conv", {"x": f32(1, 3, 11), "w": f32(4, 3, 3), "b": f32(4)}, None,
               {"pads": [2, 1], "strides": [2], "dilations": [2]}),
    "Conv2d-groups": ("Conv", {"x": f32(1, 4, 6, 5), "w": f32(6, 2, 3, 2)}, None,
                      {"group": 2, "pads": [1, 0, 1, 1], "strides": [1, 2]}),
    "Conv-same": ("Conv", {"x": f32(2, 2, 7), "w": f32(3, 2, 4)}, None,
                  {"auto_pad": "SAME_UPPER", "strides": [2]}),
    "Dequantize-axis": ("DequantizeLinear", {"q": R.integers(-128, 127, (3, 4), dtype=np.int8)},
                        {"s": f32(4, positive=True), "z": np.array([0, 1, -2, 3], np.int8)},
                        {"axis": 1}),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_float_op_matches_onnxruntime(onnx_build, case):
    op, feeds, consts, attrs = CASES[case]
    want, got = _run_both(onnx_build, op, feeds, consts, **attrs)
    assert got[0].shape == want[0].shape
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "op, feeds, consts, out_type, attrs",
    [
        ("Equal", {"a": i64(1, 2, 3), "b": i64(1, 0, 3)}, None, TensorProto.BOOL, {}),
        ("Less", {"a": f32(5), "b": f32(5)}, None, TensorProto.BOOL, {}),
        ("Shape", {"a": f32(2, 3, 4)}, None, TensorProto.INT64, {"start": 1}),
        ("Cast", {"a": f32(5) * 3}, None, TensorProto.INT32, {"to": TensorProto.INT32}),
        ("ConstantOfShape", {"s": i64(2, 3)}, None, TensorProto.INT64,
         {"value": numpy_helper.from_array(np.array([7], np.int64))}),
        ("QuantizeLinear", {"a": f32(3, 4) * 4},
         {"s": np.float32(0.02), "z": np.int8(3)}, TensorProto.INT8, {}),
        ("QuantizeLinear", {"a": f32(3, 4) * 3},
         {"s": f32(4, positive=True), "z": np.array([0, 10, 128, 255], np.uint8)},
         TensorProto.UINT8, {"axis": 1}),
    ],
)  # fmt: skip
def test_exact_ops_match_onnxruntime(onnx_build, op, feeds, consts, out_type, attrs):
    want, got = _run_both(onnx_build, op, feeds, consts, out_types=(out_type,), **attrs)
    assert got[0].dtype == want[0].dtype
    np.testing.assert_array_equal(got[0], want[0])


def test_split_into_sizes_and_equal_parts(onnx_build):
    want, got = _run_both(onnx_build, "Split", {"a": f32(2, 7)}, {"s": i64(2, 5)},
                          out_types=(F, F), axis=1)  # fmt: skip
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)
    want, got = _run_both(onnx_build, "Split", {"a": f32(6, 2)}, out_types=(F, F, F))
    for w, g in zip(want, got, strict=True):
        np.testing.assert_array_equal(g, w)


def _rnn_weights(gates, d, h, i):
    return {
        "x": f32(4, 2, i),  # T=4, batch 2
        "w": f32(d, gates * h, i) * 0.5,
        "r": f32(d, gates * h, h) * 0.5,
        "b": f32(d, 2 * gates * h) * 0.1,
    }


@pytest.mark.parametrize("lbr", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_gru_matches_onnxruntime(onnx_build, lbr, direction):
    d, h = (2 if direction == "bidirectional" else 1), 5
    feeds = _rnn_weights(3, d, h, 3)
    feeds["h0"] = f32(d, 2, h)
    want, got = _run_both(onnx_build, "GRU", feeds, out_types=(F, F), hidden_size=h,
                          linear_before_reset=lbr, direction=direction,
                          _order=["x", "w", "r", "b", "", "h0"])  # fmt: skip
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_with_peepholes_matches_onnxruntime(onnx_build, direction):
    d, h = (2 if direction == "bidirectional" else 1), 4
    feeds = _rnn_weights(4, d, h, 3)
    feeds.update(h0=f32(d, 2, h), c0=f32(d, 2, h), p=f32(d, 3 * h))
    want, got = _run_both(onnx_build, "LSTM", feeds, out_types=(F, F, F), hidden_size=h,
                          direction=direction,
                          _order=["x", "w", "r", "b", "", "h0", "c0", "p"])  # fmt: skip
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_unsupported_op_is_named(onnx_build):
    node = helper.make_node("Einsum", ["a", "a"], ["y"], equation="ij,ij->i")
    m = onnx_build.model([node], [onnx_build.tensor("a", [2, 2])], [onnx_build.tensor("y", [2])])
    with pytest.raises(ContractError, match="op 'Einsum' of node '' is not supported by the numpy"):
        ReferenceGraph(m)


def test_constants_are_folded_at_load(onnx_build):
    """A weight behind DequantizeLinear is computed once; only MatMul/Mul/Add/Identity run."""
    m, wq = onnx_build.int8_decoder()
    g = ReferenceGraph(m)
    assert [s.op_type for s in g.plan] == ["MatMul", "Mul", "Add", "Identity"]
    np.testing.assert_array_equal(g.constants["w"], wq.astype(np.float32) * np.float32(0.05))


@pytest.mark.parametrize("op, gates", [("GRU", 3), ("LSTM", 4)])
def test_rnn_without_bias_or_initial_state(onnx_build, op, gates):
    feeds = _rnn_weights(gates, 1, 3, 2)
    del feeds["b"]
    n_out = 2 if op == "GRU" else 3
    want, got = _run_both(onnx_build, op, feeds, out_types=(F,) * n_out, hidden_size=3)
    for w, g in zip(want, got, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def test_constant_nodes_feed_the_graph(onnx_build):
    nodes = [
        helper.make_node("Constant", [], ["k"], value_floats=[1.0, 2.0, 3.0]),
        helper.make_node("Constant", [], ["shape"], value_ints=[3, 1]),
        helper.make_node("Constant", [], ["t"], value=numpy_helper.from_array(f32(1, 2), "t")),
        helper.make_node("Reshape", ["k", "shape"], ["k2"]),
        helper.make_node("Add", ["a", "k2"], ["s"]),
        helper.make_node("Mul", ["s", "t"], ["out0"]),
    ]
    m = onnx_build.model(nodes, [onnx_build.tensor("a", [3, 2])], [onnx_build.tensor("out0", None)])
    feeds = {"a": f32(3, 2)}
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)[0]
    g = ReferenceGraph(m)
    assert [s.op_type for s in g.plan] == ["Add", "Mul"]
    np.testing.assert_allclose(g.run(feeds)["out0"], want, rtol=1e-6)
