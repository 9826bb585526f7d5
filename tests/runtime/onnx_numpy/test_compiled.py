"""The fast tier (onnx_numpy/compiled.py, the ops' `OpDef.fast` builders) against the reference.

Every case binds the inputs once, then refills them with new values for several runs: the
compiled outputs must follow (buffers and views track their inputs) and equal what the
interpreter (`ReferenceGraph.run`, itself checked against onnxruntime in test_reference_ops.py)
computes from the same values.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cortexedge.contract import attach
from cortexedge.errors import ContractError
from cortexedge.runtime import StreamingDecoder
from cortexedge.runtime.backends.numpy import NumpyBackend
from cortexedge.runtime.model import load_decoder
from cortexedge.runtime.onnx_numpy.compiled import CompiledGraph, compile_static
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph
from cortexedge.runtime.onnx_numpy.registry import OPS
from tests.runtime.onnx_numpy.helpers import F, R, agree, f32, i64


def one_node(onnx_build, op, feeds, consts=None, n_out=1, out_type=F, order=None, **attrs):
    """A graph of one `op` node: `feeds` are graph inputs, `consts` initializers."""
    consts = consts or {}
    outs = [f"out{i}" for i in range(n_out)]
    node = helper.make_node(op, order or [*feeds, *consts], outs, name="n", **attrs)
    ins = [onnx_build.tensor(k, v.shape, helper.np_dtype_to_tensor_dtype(v.dtype))
           for k, v in feeds.items()]  # fmt: skip
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    return onnx_build.model([node], ins, [onnx_build.tensor(o, None, out_type) for o in outs],
                            inits)  # fmt: skip


# (op, feeds, consts, attrs, fast: an in-place kernel takes it, exact: bit-equal results)
CASES = {
    "Add-const-broadcast": ("Add", {"a": f32(3, 4)}, {"b": f32(4)}, {}, True, True),
    "Sub-one-element": ("Sub", {"a": f32(2, 5), "b": f32(1, 1)}, None, {}, True, True),
    "Mul-batch-1": ("Mul", {"a": f32(1, 32), "b": f32(32)}, None, {}, True, True),
    "Div": ("Div", {"a": f32(2, 3), "b": f32(3, positive=True)}, None, {}, True, True),
    "Div-int": ("Div", {"a": i64(7, -7, 9)}, {"b": i64(2, 3, -4)}, {}, False, True),
    "Pow": ("Pow", {"e": f32(2, 3)}, {"a": f32(3, positive=True)},
            {"order": ["a", "e"]}, False, True),
    "Relu": ("Relu", {"a": f32(4, 5)}, None, {}, True, True),
    "Sigmoid": ("Sigmoid", {"a": f32(4, 5) * 30}, None, {}, True, True),
    "Softplus": ("Softplus", {"a": f32(4, 5) * 30}, None, {}, True, True),
    "Tanh": ("Tanh", {"a": f32(4, 5)}, None, {}, True, True),
    "Abs": ("Abs", {"a": f32(4)}, None, {}, True, True),
    "Max-three": ("Max", {"a": f32(2, 3), "c": f32(2, 1)}, {"b": f32(3)}, {}, True, True),
    "Min-one": ("Min", {"a": f32(2, 3)}, None, {}, True, True),
    "Sum": ("Sum", {"a": f32(2, 3), "b": f32(2, 3)}, None, {}, True, True),
    "MatMul-3d-const": ("MatMul", {"a": f32(2, 3, 4)}, {"b": f32(4, 5)}, {}, True, False),
    "MatMul-2d": ("MatMul", {"a": f32(3, 4), "b": f32(4, 5)}, None, {}, True, False),
    "MatMul-batched": ("MatMul", {"a": f32(2, 3, 4), "b": f32(2, 4, 5)}, None, {}, True, False),
    "Gemm": ("Gemm", {"a": f32(3, 4)}, {"b": f32(5, 4), "c": f32(5)},
             {"transB": 1, "alpha": 0.5, "beta": 2.0}, True, False),
    "Gemm-transA": ("Gemm", {"a": f32(4, 3), "b": f32(4, 5)}, None, {"transA": 1}, True, False),
    "Gemm-computed-C": ("Gemm", {"a": f32(3, 4), "b": f32(4, 5), "c": f32(5)}, None,
                        {"beta": 2.0}, False, False),
    "Clip": ("Clip", {"a": f32(4, 5)}, {"lo": np.float32(-0.3), "hi": np.float32(0.4)}, {},
             True, True),
    "Clip-min": ("Clip", {"a": f32(4, 5)}, {"lo": np.float32(-0.3)}, {}, True, True),
    "Concat": ("Concat", {"a": f32(2, 3), "b": f32(2, 1)}, None, {"axis": 1}, True, True),
    "Where": ("Where", {"c": R.random((2, 3)) > 0.5, "a": f32(2, 3), "b": f32(3)}, None, {},
              True, True),
    "ReduceSum-one-axis": ("ReduceSum", {"a": f32(2, 3, 4)}, {"ax": i64(1)}, {"keepdims": 0},
                           True, False),
    "ReduceSum-last-axis": ("ReduceSum", {"a": f32(2, 3, 4)}, {"ax": i64(-1)}, {}, True, False),
    "ReduceSum-two-axes": ("ReduceSum", {"a": f32(2, 3, 4)}, {"ax": i64(0, 2)}, {}, True, True),
    "ReduceMean": ("ReduceMean", {"a": f32(2, 3, 4)}, None, {"axes": [1, -1], "keepdims": 0},
                   True, True),
    "ReduceMax": ("ReduceMax", {"a": f32(2, 3, 4)}, None, {"axes": [1]}, True, True),
    "BatchNormalization": ("BatchNormalization", {"a": f32(2, 3, 4)},
                           {"g": f32(3), "b": f32(3), "m": f32(3), "v": f32(3, positive=True)},
                           {"epsilon": 1e-3}, True, True),
    "LayerNorm-batch-1": ("LayerNormalization", {"a": f32(1, 32)}, {"g": f32(32), "b": f32(32)},
                          {"axis": -1}, True, False),
    "LayerNorm-two-axes": ("LayerNormalization", {"a": f32(3, 2, 5)}, {"g": f32(2, 5)},
                           {"axis": 1, "epsilon": 1e-3}, True, False),
    "Dequantize-axis": ("DequantizeLinear", {"q": R.integers(-128, 127, (3, 4), dtype=np.int8)},
                        {"s": f32(4, positive=True), "z": np.array([0, 1, -2, 3], np.int8)},
                        {"axis": 1}, True, True),
    "Dequantize-no-zero-point": ("DequantizeLinear",
                                 {"q": R.integers(-128, 127, (3, 4), dtype=np.int8)},
                                 {"s": np.float32(0.1)}, {}, True, True),
    "Softmax": ("Softmax", {"a": f32(2, 5)}, None, {"axis": -1}, False, False),
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_op_equals_the_interpreter(onnx_build, case):
    op, feeds, consts, attrs, fast, exact = CASES[case]
    m = one_node(onnx_build, op, feeds, consts, order=attrs.pop("order", None), **attrs)
    compiled = agree(m, feeds, exact=exact)
    assert [s.op_type for s in compiled.interpreted] == ([] if fast else [op])


@pytest.mark.parametrize(
    "out_type, op, feeds, consts, attrs",
    [
        (TensorProto.INT32, "Cast", {"a": f32(5) * 3}, None, {"to": TensorProto.INT32}),
        (TensorProto.BOOL, "Less", {"a": f32(5), "b": f32(5)}, None, {}),
        (TensorProto.INT8, "QuantizeLinear", {"a": f32(3, 4) * 4},
         {"s": np.float32(0.02), "z": np.int8(3)}, {}),
        (TensorProto.UINT8, "QuantizeLinear", {"a": f32(3, 4) * 3},
         {"s": f32(4, positive=True), "z": np.array([0, 10, 128, 255], np.uint8)}, {"axis": 1}),
    ],
)  # fmt: skip
def test_compiled_exact_ops(onnx_build, out_type, op, feeds, consts, attrs):
    m = one_node(onnx_build, op, feeds, consts, out_type=out_type, **attrs)
    assert agree(m, feeds, exact=True).interpreted == []


def test_qdq_chain_runs_in_place(onnx_build):
    """A W8A8 layer as exporters write it: activations quantized and dequantized around a
    MatMul whose int8 weight is dequantized once, at load."""
    consts = {"s": np.float32(0.05), "z": np.int8(0), "wq": R.integers(-127, 128, (6, 3), np.int8),
              "ws": f32(3, positive=True) / 50, "wz": np.zeros(3, np.int8)}  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1),
        helper.make_node("MatMul", ["xd", "w"], ["h"]),
        helper.make_node("QuantizeLinear", ["h", "s", "z"], ["hq"]),
        helper.make_node("DequantizeLinear", ["hq", "s", "z"], ["y"]),
    ]
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    m = onnx_build.model(nodes, [onnx_build.tensor("x", [2, 6])], [onnx_build.tensor("y", None)],
                         inits)  # fmt: skip
    compiled = agree(m, {"x": f32(2, 6)}, rounds=4)
    assert [s.op_type for s, _ in compiled.calls] == [
        n.op_type for n in nodes if n.input[0] != "wq"
    ]
    assert compiled.interpreted == []


def test_views_and_shape_arithmetic_cost_nothing_at_run_time(onnx_build):
    """Shape/Gather/Concat fold to constants; Unsqueeze, Transpose, Slice, Squeeze, Expand and
    a scalar Gather become views made at load; a Reshape that needs a copy runs its kernel."""
    x = f32(2, 3, 4)
    consts = {"zero": i64(0), "one": np.array(1, np.int64), "last": i64(-1), "ax": i64(1),
              "s0": i64(1), "s1": i64(3)}  # fmt: skip
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"]),  # [2]
        helper.make_node("Concat", ["b", "last"], ["flat_shape"], axis=0),  # [2, -1]
        helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]),  # view of x
        helper.make_node("Unsqueeze", ["x", "ax"], ["u"]),  # [2, 1, 3, 4]
        helper.make_node("Squeeze", ["u", "ax"], ["sq"]),
        helper.make_node("Transpose", ["sq"], ["t"], perm=[2, 0, 1]),  # [4, 2, 3]
        helper.make_node("Slice", ["t", "s0", "s1", "zero"], ["sl"]),  # [2, 2, 3]
        helper.make_node("Gather", ["x", "one"], ["g"], axis=2),  # [2, 3]
        helper.make_node("Expand", ["g", "s1"], ["e"]),  # [2, 3], a broadcast view
        helper.make_node("Reshape", ["t", "flat_shape"], ["copy"], name="needs_copy"),
        helper.make_node("Add", ["sl", "g"], ["y1"]),
        helper.make_node("Mul", ["flat", "flat"], ["y2"]),
    ]
    outs = [onnx_build.tensor(n, None) for n in ("y1", "y2", "copy", "e")]
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    m = onnx_build.model(nodes, [onnx_build.tensor("x", [2, 3, 4])], outs, inits)
    compiled = agree(m, {"x": x}, exact=True)
    assert [s.op_type for s, _ in compiled.calls] == ["Reshape", "Add", "Mul"]
    assert [s.name for s in compiled.interpreted] == ["needs_copy"]


def test_shape_computed_from_values_is_left_to_the_interpreter(onnx_build):
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    ins = [onnx_build.tensor("x", [2, 3]), onnx_build.tensor("shape", [2], TensorProto.INT64)]
    m = onnx_build.model([node], ins, [onnx_build.tensor("y", None)])
    assert compile_static(ReferenceGraph(m), {"x": f32(2, 3), "shape": i64(3, 2)}) is None


def test_missing_input_array_is_named(onnx_build):
    m = one_node(onnx_build, "Relu", {"a": f32(3)})
    with pytest.raises(ContractError, match="compiled numpy graph: no array for input 'a'"):
        CompiledGraph(ReferenceGraph(m), {})


def test_kernel_failure_at_load_names_the_node(onnx_build):
    m = one_node(onnx_build, "MatMul", {"a": f32(2, 3), "b": f32(4, 5)})
    with pytest.raises(ContractError, match=r"numpy backend: node 'n' \(MatMul\) failed: "):
        compile_static(ReferenceGraph(m), {"a": f32(2, 3), "b": f32(4, 5)})


def test_unforeseen_shape_change_is_a_contract_error(onnx_build, monkeypatch):
    """The safety net under `OpDef.shape_inputs`: an interpreted kernel returning another shape
    than at load raises instead of broadcasting into the old buffer."""
    monkeypatch.setitem(OPS, "Reshape", replace(OPS["Reshape"], shape_inputs=()))
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="r")
    ins = [onnx_build.tensor("x", [2, 3]), onnx_build.tensor("shape", [2], TensorProto.INT64)]
    m = onnx_build.model([node], ins, [onnx_build.tensor("y", None)])
    bound = {"x": f32(2, 3), "shape": i64(2, 3)}
    compiled = compile_static(ReferenceGraph(m), bound)
    bound["shape"][...] = (3, 2)
    with pytest.raises(ContractError, match=r"node 'r' \(Reshape\) failed: output shape \(3, 2\) "
                       r"differs from \(2, 3\) at load"):  # fmt: skip
        compiled.run()


def test_backend_keeps_the_interpreter_for_value_dependent_shapes(onnx_build, tmp_path):
    """The int8 integrator with its output reshaped to a shape computed from the input (always
    [-1, 3], but only known at run time): not compiled, same hand-checked outputs."""
    m, wq = onnx_build.int8_decoder()
    graph = m.graph
    graph.node[3].output[0] = "y0"
    graph.node[4].input[0] = "y0"
    graph.initializer.extend([numpy_helper.from_array(i64(-1, 3), "target"),
                              numpy_helper.from_array(np.float32(0), "f0")])  # fmt: skip
    graph.node.extend([
        helper.make_node("ReduceSum", ["x"], ["sx"], keepdims=0),
        helper.make_node("Mul", ["sx", "f0"], ["zero_f"]),
        helper.make_node("Cast", ["zero_f"], ["zero_i"], to=TensorProto.INT64),
        helper.make_node("Add", ["target", "zero_i"], ["shape"]),
        helper.make_node("Reshape", ["y0", "shape"], ["y"]),
    ])  # fmt: skip
    attach(m, onnx_build.int8_meta())
    onnx.save(m, tmp_path / "d.onnx")
    plain = onnx_build.save_int8_decoder(tmp_path / "plain.onnx")
    assert NumpyBackend(load_decoder(tmp_path / "d.onnx"), 1).compiled_graph is None
    assert NumpyBackend(load_decoder(plain), 1).compiled_graph is not None
    w = wq.astype(np.float32) * np.float32(0.05)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    s1 = x[0] @ w
    for path in (tmp_path / "d.onnx", plain):
        out = StreamingDecoder(path, backend="numpy").run(x)
        np.testing.assert_allclose(out, [s1, x[1] @ w + 0.5 * s1], rtol=1e-6)
