"""Finalizing a graph: exact constant folding only, pinned IR version, one self-contained file
written atomically, metadata that round-trips through the contract."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cortexedge.contract import from_props, graph_sha256
from cortexedge.errors import CortexEdgeError
from cortexedge.export.api import to_onnx
from cortexedge.export.finalize import check_out_path, finalize_graph, fold_constants
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
