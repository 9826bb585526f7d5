"""Pruned (+ quantized) GRU and AEGRU exports: QCDQ graphs that onnxruntime runs with int8
weights equal to brevitas's integers, pruned zeros exact, the compress stage's MACs and bytes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cortexedge.contract import from_props
from cortexedge.export.api import to_onnx

CASES = [(k, b) for k in ("gru", "aegru_window", "aegru_stateful") for b in (8, 4)]


@pytest.mark.parametrize("key,bits", CASES)
def test_quantized_export(compressed, compressed_onnx, key, bits):
    from cortexedge.compress.artifacts import load_compressed
    from cortexedge.compress.footprint import deployed_arrays

    folder, stage = compressed[(key, bits)]
    report, path = compressed_onnx[(key, bits)]
    proto = onnx.load(path)
    meta = from_props({p.key: p.value for p in proto.metadata_props})

    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    check = report.verification
    assert check.passed and check.bins >= 1000
    assert check.max_err_steps is not None and check.max_err_steps <= 4
    assert meta.bits == {"weights": bits, "activations": 8}

    arrays = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    ints = [a for a in arrays if a.dtype == np.int8 and a.ndim == 2]
    floats = [a for a in arrays if a.dtype == np.float32 and a.ndim == 2]
    assert not any(a.any() for a in floats)  # no float weight copies (a zero start state at most)
    model, _ = load_compressed(folder)
    expected = {k: a for k, (a, kind) in deployed_arrays(model).items() if kind == "weight_int"}
    assert len(ints) == len(expected)
    for name, w in expected.items():
        assert any(np.array_equal(a, w) for a in ints), f"{name} not stored as its integers"
    lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    assert all(a.min() >= lo and a.max() <= hi for a in ints)
    zeros = sum(int((a == 0).sum()) for a in ints) / sum(a.size for a in ints)
    assert zeros >= 0.5  # the 50% pruned weights are exact zeros (plus any rounded to zero)

    # one definition of the numbers: the compress stage reported the same
    assert meta.macs == {
        "dense": round(stage["macs_dense"]),
        "effective": round(stage["macs_effective"]),
    }
    assert meta.macs["effective"] < meta.macs["dense"]
    assert (meta.params, meta.bytes) == (stage["params"], stage["bytes"])
    assert meta.sparsity == pytest.approx(stage["sparsity"])


@pytest.mark.parametrize("key", ["gru", "aegru_window", "aegru_stateful"])
def test_pruned_float_export_keeps_exact_zeros(compressed, compressed_onnx, key):
    from cortexedge.compress.artifacts import load_compressed
    from cortexedge.compress.magnitude import prunable

    folder, stage = compressed[(key, None)]
    report, path = compressed_onnx[(key, None)]
    assert report.verification.passed and report.metadata.bits is None
    assert report.metadata.macs["effective"] == round(stage["macs_effective"])
    assert report.metadata.sparsity == pytest.approx(stage["sparsity"]) and stage["sparsity"] >= 0.5
    stored = [numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
    model, _ = load_compressed(folder)
    for name, (module, tensor) in prunable(model).items():
        w = getattr(module, tensor).detach().numpy()
        # stored as is, transposed or gate-reordered: the same values, the same exact zeros
        assert any(np.array_equal(np.sort(a, None), np.sort(w, None)) for a in stored), name


def test_quantized_sequence_graph(compressed, reaching, tmp_path):
    folder, _ = compressed[("gru", 8)]
    report = to_onnx(folder, tmp_path / "s.onnx", recording=reaching, sequence=True)
    assert report.graph == "sequence" and report.verification.passed
    assert report.sequence_check.max_rel_err <= 1e-6  # the Scan runs the very same step graph
    proto = onnx.load(tmp_path / "s.onnx")
    assert [n.op_type for n in proto.graph.node].count("Scan") == 1
    body = next(n for n in proto.graph.node if n.op_type == "Scan").attribute[0].g
    assert any(n.op_type == "QuantizeLinear" for n in body.node)
