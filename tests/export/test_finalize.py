"""Finalizing a graph: exact constant folding only, exact layout rewrites, unread optional
outputs unnamed, pinned IR version, one self-contained file written atomically, metadata that
round-trips through the contract."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cortexedge.contract import from_props, graph_sha256
from cortexedge.errors import CortexEdgeError
from cortexedge.export.api import to_onnx
from cortexedge.export.finalize import check_out_path, finalize_graph, fold_constants, simplify
from tests.export.small_models import SMALL, build


def _model(nodes, inits, outputs):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info(n, t, shape) for n, t, shape in outputs],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_folds_integer_shape_work_but_not_float_math():
    inits = [
        numpy_helper.from_array(np.array([7], np.int64), "a"),
        numpy_helper.from_array(np.array([4], np.int64), "b"),
        numpy_helper.from_array(np.array([0.1], np.float32), "c"),
        numpy_helper.from_array(np.array([0.2], np.float32), "d"),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),  # static [2, 3]: folded
        helper.make_node("Mod", ["a", "b"], ["m"]),  # integer: folded to [3]
        helper.make_node("Concat", ["s", "m"], ["shape3"], axis=0),  # folded to [2, 3, 3]
        helper.make_node("Mul", ["c", "d"], ["cd"]),  # float rounding: kept
        helper.make_node("Mul", ["x", "cd"], ["y"]),
    ]
    outputs = [("y", TensorProto.FLOAT, [2, 3]), ("shape3", TensorProto.INT64, [3])]
    folded = fold_constants(_model(nodes, inits, outputs))
    assert [n.op_type for n in folded.graph.node] == ["Mul", "Mul"]
    values = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}
    assert values["m"].tolist() == [3] and values["shape3"].tolist() == [2, 3, 3]


def test_finalized_graph_pins_ir_and_checks(reaching, tmp_path):
    report = to_onnx(build(*SMALL["gru"]), tmp_path / "g.onnx", recording=reaching)
    proto = onnx.load(tmp_path / "g.onnx")
    assert proto.ir_version == 8 and proto.opset_import[0].version == 17  # ORT-accepted IR
    onnx.checker.check_model(proto, full_check=True)
    assert all(t.data_location != TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [p.name for p in tmp_path.iterdir()] == ["g.onnx"]  # one file, no temp, no side data
    meta = from_props({p.key: p.value for p in proto.metadata_props})
    assert meta.graph_sha256 == graph_sha256(proto) == report.metadata.graph_sha256
    assert meta.extra["graph"] == "step" and meta.extra["graph_macs_dense"] > 0
    assert meta.extra["dynamic_batch"] is True
    assert meta.extra["recording_fingerprint"] == reaching.fingerprint()


def test_rejects_checker_failures():
    bad = _model([helper.make_node("Relu", ["nowhere"], ["y"])], [], [("y", 1, [2, 3])])
    with pytest.raises(CortexEdgeError, match="exported graph fails the ONNX checks"):
        finalize_graph(bad, simplify_graph=False)


def test_out_path_checks(tmp_path):
    assert check_out_path(tmp_path / "a.onnx") == tmp_path / "a.onnx"
    with pytest.raises(CortexEdgeError, match="output path is a folder"):
        check_out_path(tmp_path)


def _const(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, feeds)


def test_layout_pairs_are_removed_exactly():
    """Squeeze/Unsqueeze on equal axes cancel, a one-row Gather + Unsqueeze becomes a Slice;
    unequal axes, and a pair whose result is a graph output, stay."""
    inits = [_const(n, np.array(v, np.int64)) for n, v in
             [("a0", [0]), ("a1", [1]), ("a2", [2]), ("i1", 1), ("ilast", -1)]]  # fmt: skip
    nodes = [
        helper.make_node("Unsqueeze", ["x", "a0"], ["u"]),  # [1, 2, 3]
        helper.make_node("Squeeze", ["u", "a0"], ["s"]),  # = x
        helper.make_node("Relu", ["s"], ["y1"]),
        helper.make_node("Squeeze", ["z", "a0"], ["zs"]),  # z [1, 3, 1] -> [3, 1]
        helper.make_node("Unsqueeze", ["zs", "a2"], ["y2"]),  # other axis: kept
        helper.make_node("Gather", ["x", "i1"], ["row"], axis=0),  # [3]
        helper.make_node("Unsqueeze", ["row", "a0"], ["row2"]),  # = x[1:2]
        helper.make_node("Gather", ["x", "ilast"], ["col"], axis=1),  # [2]
        helper.make_node("Unsqueeze", ["col", "a1"], ["col2"]),  # = x[:, -1:]
        helper.make_node("Add", ["row2", "col2"], ["y3"]),  # [2, 3]
        helper.make_node("Squeeze", ["u", "a0"], ["y4"]),  # a graph output: kept
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
         helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 1])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, None) for i in range(1, 5)],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    out = simplify(model)
    ops = Counter(n.op_type for n in out.graph.node)
    assert ops == Counter(Unsqueeze=2, Relu=1, Squeeze=2, Slice=2, Add=1)  # from 4 U, 3 S, 2 G
    assert next(n for n in out.graph.node if n.op_type == "Relu").input[0] == "x"
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((2, 3), dtype=np.float32),
             "z": rng.standard_normal((1, 3, 1), dtype=np.float32)}  # fmt: skip
    for got, want in zip(_outputs(out, feeds), _outputs(model, feeds), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("axis", "moved"), [(-1, True), (1, False)])
def test_squeeze_moves_below_a_layer_norm_over_trailing_axes(axis, moved):
    """Squeeze -> LayerNorm -> Unsqueeze (a GRU op's Y_h normalised, fed to the next op) becomes
    LayerNorm on [1, B, H]; the 2-D result stays for its graph output. A positive LayerNorm
    axis counts from the front, so the Squeeze stays before it."""
    rng = np.random.default_rng(3)
    inits = [_const("a0", np.array([0], np.int64)),
             _const("scale", rng.standard_normal(4, dtype=np.float32)),
             _const("bias", rng.standard_normal(4, dtype=np.float32))]  # fmt: skip
    nodes = [
        helper.make_node("Squeeze", ["y", "a0"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "scale", "bias"], ["n"], axis=axis),
        helper.make_node("Unsqueeze", ["n", "a0"], ["u"]),
        helper.make_node("Relu", ["u"], ["r"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4])],
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [2, 4]),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 2, 4])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    out = finalize_graph(model)
    ops = [n.op_type for n in out.graph.node]
    if moved:
        assert ops == ["LayerNormalization", "Squeeze", "Relu"]
        assert out.graph.node[0].input[0] == "y" and out.graph.node[1].output[0] == "n"
        assert out.graph.node[2].input[0] == out.graph.node[0].output[0]
    else:
        assert ops == ["Squeeze", "LayerNormalization", "Unsqueeze", "Relu"]
    feeds = {"y": rng.standard_normal((1, 2, 4), dtype=np.float32)}
    for got, want in zip(_outputs(out, feeds), _outputs(model, feeds), strict=True):
        np.testing.assert_array_equal(got, want)


def _recurrent_model(op: str) -> onnx.ModelProto:
    """One GRU or LSTM op (hidden 4) of which only Y_h is a graph output, plus a TopK whose
    indices nobody reads (a required output)."""
    gates = {"GRU": 3, "LSTM": 4}[op]
    rng = np.random.default_rng(1)
    inits = [_const("W", rng.standard_normal((1, gates * 4, 3), dtype=np.float32)),
             _const("R", rng.standard_normal((1, gates * 4, 4), dtype=np.float32)),
             _const("k", np.array([2], np.int64))]  # fmt: skip
    nodes = [
        helper.make_node(
            op, ["x", "W", "R"], ["Y", "Y_h", *(["Y_c"] if op == "LSTM" else [])], hidden_size=4
        ),
        helper.make_node("TopK", ["Y_h", "k"], ["top", "top_idx"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [
            helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [1, 2, 4]),
            helper.make_tensor_value_info("top", TensorProto.FLOAT, [1, 2, 2]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("op", ["GRU", "LSTM"])
def test_unread_optional_outputs_are_left_unnamed(op):
    import onnxruntime as ort

    model = _recurrent_model(op)
    out = finalize_graph(model)
    rnn, topk = out.graph.node
    assert list(rnn.output) == ["", "Y_h"]  # Y unnamed, LSTM's trailing Y_c dropped
    assert list(topk.output) == ["top", "top_idx"]  # required outputs keep their names
    x = np.random.default_rng(2).standard_normal((1, 2, 3), dtype=np.float32)
    runs = [ort.InferenceSession(m.SerializeToString()).run(None, {"x": x}) for m in (model, out)]
    for got, want in zip(*runs, strict=True):
        np.testing.assert_array_equal(got, want)
