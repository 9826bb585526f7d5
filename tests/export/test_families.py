"""Every model family exports in float, passes its built-in verification, carries a valid
metadata contract and loads in the streaming runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from cortexedge.contract import check_against_graph, from_props
from cortexedge.export.api import to_onnx
from tests.export.small_models import SMALL, build

FAMILIES = {
    **{key: (*SMALL[key], "reaching") for key in SMALL},
    "cnn_bilstm": (
        "cnn_bilstm",
        dict(in_channels=12, lookback=16, conv_channels=8, hidden=8, attn_dim=8),
        "two_photon",
    ),
    "roi_gru": ("roi_gru", dict(in_channels=12, hidden=8, out_dim=2), "two_photon"),
    "cnn_rnn": ("cnn_rnn", dict(frame_shape=(64, 64), conv_channels=(4, 8, 8)), "widefield"),
}
# family -> (streaming mode, window) the metadata must state
STREAMING = {
    "aegru_window": ("window", 15),
    "aegru_stateful": ("stateful", None),
    "gru": ("stateful", None),
    "lstm": ("stateful", None),
    "cnn_bilstm": ("window", 16),
    "roi_gru": ("stateful", None),
    "cnn_rnn": ("stateful", None),
}


@pytest.mark.parametrize("key", list(FAMILIES))
def test_family_exports_verified_step_graph(key, request, tmp_path):
    name, kwargs, rec_name = FAMILIES[key]
    rec = request.getfixturevalue(rec_name)
    model = build(name, kwargs)
    report = to_onnx(model, tmp_path / "d.onnx", recording=rec)

    check = report.verification
    assert check.passed and check.bins >= 1000 and check.split == "test"
    assert check.max_rel_err <= 1e-5 and check.max_abs_err <= check.tolerance
    proto = onnx.load(tmp_path / "d.onnx")
    meta = from_props({p.key: p.value for p in proto.metadata_props})
    check_against_graph(meta, proto)  # names, shapes, dtypes and hash agree with the graph
    assert meta.verification["max_abs_err"] == pytest.approx(check.max_abs_err)
    assert (meta.streaming.mode, meta.streaming.window) == STREAMING[key]
    assert meta.input.shape == rec.input_shape and meta.bin_ms == rec.bin_ms
    assert meta.score["split"] == "test"
    assert meta.bits is None and meta.sparsity == 0.0
    assert meta.macs["dense"] == meta.macs["effective"] > 0
    states = {s.name for s in meta.states}
    assert states == set(model.state_names())
    assert proto.opset_import[0].version >= 17 and proto.ir_version <= 10


def test_training_only_parts_are_not_exported(reaching, tmp_path):
    model = build(*SMALL["aegru_window"])  # built with the log-variance branch and decoder
    assert model.aux is not None
    to_onnx(model, tmp_path / "a.onnx", recording=reaching)
    graph = onnx.load(tmp_path / "a.onnx").graph
    stored = [onnx.numpy_helper.to_array(t) for t in graph.initializer]
    aux = [p.detach().numpy() for p in model.aux.parameters() if p.dim() == 2]
    kept = [p.detach().numpy() for p in model.encoder.parameters() if p.dim() == 2]
    assert len(aux) == 3  # log-variance branch (2 layers) and the Poisson decoder

    def held(w):  # stored as is, or transposed (a MatMul operand)
        return any(np.array_equal(a, w) or np.array_equal(a, w.T) for a in stored)

    assert all(held(w) for w in kept)  # the check does see a weight that is there
    assert not any(held(w) for w in aux)
    assert model.aux is not None  # the caller's model is untouched


def test_preprocessing_is_inside_the_graph(reaching, tmp_path):
    """AEGRU's log(softplus(x)) and binning run in the graph: raw counts in, same y out."""
    model = build(*SMALL["aegru_stateful"])
    to_onnx(model, tmp_path / "a.onnx", recording=reaching)
    ops = {n.op_type for n in onnx.load(tmp_path / "a.onnx").graph.node}
    assert {"Softplus", "Log", "ReduceSum"} <= ops


def test_export_loads_in_streaming_runtime(reaching, tmp_path):
    from cortexedge.runtime.decoder import StreamingDecoder

    model = build(*SMALL["gru"])
    to_onnx(model, tmp_path / "g.onnx", recording=reaching)
    x = reaching.x[reaching.rows("test")][:300].astype(np.float32)
    with torch.no_grad():
        ref = model.stream(torch.as_tensor(x)[None])[0].numpy()
    for backend in ("ort", "numpy"):
        got = StreamingDecoder(tmp_path / "g.onnx", backend=backend).run(x)
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize("key", ["gru", "aegru_stateful"])
def test_verified_on_real_recording(key, real_reaching_path, tmp_path):
    """The real Imperial reaching data (98 units, 20 ms bins): its test split drives the check."""
    from cortexedge.train.data.readers import read

    rec = read(real_reaching_path)
    name, kwargs = SMALL[key]
    model = build(name, {**kwargs, "in_channels": rec.input_shape[0]})
    report = to_onnx(model, tmp_path / "r.onnx", recording=rec)
    assert report.verification.passed and report.verification.split == "test"
    assert report.metadata.bin_ms == 20.0
    assert report.metadata.outputs[0].unit == rec.meta["y_units"] != ""


@pytest.mark.parametrize("key", ["gru", "aegru_window", "cnn_bilstm", "cnn_rnn"])
def test_sequence_graph_equals_torch_stream(key, request, tmp_path):
    """x [B, T, ...] -> y [B, T, D] in onnxruntime equals torch's own sequence path `stream`."""
    from cortexedge.export.verify import session

    name, kwargs, rec_name = FAMILIES[key]
    rec = request.getfixturevalue(rec_name)
    model = build(name, kwargs)
    report = to_onnx(model, tmp_path / "s.onnx", recording=rec, sequence=True, sequence_length=64)
    proto = onnx.load(tmp_path / "s.onnx")
    x_dims = [d.dim_value or d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert x_dims[1:] == [64, *rec.input_shape]
    meta = from_props({p.key: p.value for p in proto.metadata_props})
    assert meta.extra["graph"] == "sequence" and meta.extra["sequence_length"] == 64
    assert meta.states == [] and report.sequence_check.passed

    rows = rec.x[rec.rows("test")][: 2 * 64].astype(np.float32)
    x = rows.reshape(2, 64, *rec.input_shape)[: 2 if report.dynamic_batch else 1]
    got = session(proto.SerializeToString()).run(["y"], {"x": x})[0]
    with torch.no_grad():
        ref = model.stream(torch.as_tensor(x)).numpy()
    assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_stateful_aegru_with_one_sample_bins_exports_without_a_buffer(reaching, tmp_path):
    """bin_width=1: the state is the hidden state alone, and the export verifies."""

    model = build("aegru", dict(in_channels=16, hidden=8, enc_dim=4, bin_width=1, mode="stateful"))
    report = to_onnx(model, tmp_path / "a.onnx", recording=reaching)
    assert [s.name for s in report.metadata.states] == ["h0"]
    assert report.verification.passed
