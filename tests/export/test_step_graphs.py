"""The form of exported step graphs: no layout plumbing between the recurrent ops.

onnxruntime pays ~0.3 µs per node on a streaming step, so the decoders' `step` and the
finalizer keep only the nodes that compute: the GRU/LSTM decoders read out from the op's new
hidden state (its sequence output left unnamed), AEGRU runs its GRU ops on [1, B, *] rows
with LayerNorm reading them directly, and its window mode reads out the last bin only.
"""

from __future__ import annotations

from collections import Counter

import onnx
import pytest

from cortexedge.export.api import to_onnx
from tests.export.small_models import SMALL, build


def _export(name: str, tmp_path, **changes) -> onnx.ModelProto:
    family, kwargs = SMALL[name]
    model = build(family, {**kwargs, **changes})
    if hasattr(model, "inference_module"):
        model = model.inference_module()
    report = to_onnx(model, tmp_path / f"{name}.onnx", modality="spikes", bin_ms=4.0)
    assert report.metadata.extra["dynamic_batch"] is True  # the batch dim stayed free
    return onnx.load(tmp_path / f"{name}.onnx")


def _producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in graph.node for o in n.output if o}


@pytest.mark.parametrize(("name", "op"), [("gru", "GRU"), ("lstm", "LSTM")])
def test_recurrent_decoder_step_is_unsqueeze_op_gather_gemm(name, op, tmp_path):
    graph = _export(name, tmp_path, layers=1, transform="none").graph
    assert [n.op_type for n in graph.node] == ["Unsqueeze", op, "Gather", "Gemm"]
    rnn = graph.node[1]
    assert rnn.input[0] == graph.node[0].output[0]  # x_t.unsqueeze(0): no Transpose
    states = ["state_h_out", "state_c_out"][: len(rnn.output) - 1]
    assert list(rnn.output) == ["", *states]  # sequence output Y unnamed: not computed
    assert graph.node[2].input[0] == "state_h_out"  # the readout reads the new hidden state


def test_two_layer_gru_keeps_only_the_layer_plumbing(tmp_path):
    graph = _export("gru", tmp_path, transform="none").graph  # 2 layers
    ops = Counter(n.op_type for n in graph.node)
    assert ops == Counter(Unsqueeze=1, Slice=2, GRU=2, Squeeze=1, Concat=1, Gather=1, Gemm=1)
    first, second = (n for n in graph.node if n.op_type == "GRU")
    assert first.output[0] and not second.output[0]  # layer 2 reads Y of layer 1, not beyond


def test_aegru_stateful_step_is_one_gru_op_per_layer(tmp_path):
    graph = _export("aegru_stateful", tmp_path, layers=2).graph
    ops = Counter(n.op_type for n in graph.node)
    # x joins the buffer (Unsqueeze, Concat), box sum, transform, encoder, BatchNorm, clamp;
    # x and each layer's state enter the GRU ops as [1, B, *]; 2-D states out; one readout
    assert ops == Counter(Unsqueeze=4, Concat=1, ReduceSum=1, Slice=1, Softplus=1, Log=1,
                          Gemm=2, BatchNormalization=1, Clip=1, GRU=2, LayerNormalization=2,
                          Squeeze=2)  # fmt: skip
    producers = _producers(graph)
    grus = [n for n in graph.node if n.op_type == "GRU"]
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert [producers[n.input[0]] for n in norms] == grus  # LayerNorm reads Y_h itself
    assert producers[grus[1].input[0]] is norms[0]  # layer 2 reads layer 1's h directly


def test_aegru_window_step_runs_the_stack_on_rows_and_reads_out_once(tmp_path):
    graph = _export("aegru_window", tmp_path, layers=2).graph
    steps = SMALL["aegru_window"][1]["num_steps"]
    ops = Counter(n.op_type for n in graph.node)
    assert ops["GRU"] == ops["LayerNormalization"] == 2 * steps
    assert ops["Gemm"] == 2 and ops["MatMul"] == 0  # the encoder once on all bins; one readout
    assert ops["Transpose"] == 1 and ops["If"] == 0  # bins made sequence-first once
    producers = _producers(graph)
    grus = [n for n in graph.node if n.op_type == "GRU"]
    for gru in grus:
        assert not gru.output[0]  # only Y_h is read
        assert producers[gru.input[0]].op_type in ("Slice", "LayerNormalization")  # a bin row
        if len(gru.input) > 5 and gru.input[5]:  # the first bin of a layer starts from zeros
            assert producers[gru.input[5]].op_type in ("LayerNormalization", "Unsqueeze")
    readout = _producers(graph)["y"]
    assert readout.op_type == "Gemm" and readout.output[0] == "y"
    last_norm = producers[producers[readout.input[0]].input[0]]  # through one Squeeze
    assert last_norm is [n for n in graph.node if n.op_type == "LayerNormalization"][-1]


def test_cnn_rnn_step_reads_out_the_gru_state_without_transposes(tmp_path):
    model = build("cnn_rnn", dict(frame_shape=(32, 32), conv_channels=(4, 8, 8)))
    to_onnx(model, tmp_path / "m.onnx", modality="widefield", bin_ms=33.0)
    graph = onnx.load(tmp_path / "m.onnx").graph
    assert "Transpose" not in {n.op_type for n in graph.node}
    gru = next(n for n in graph.node if n.op_type == "GRU")
    assert gru.output[0] == ""  # the sequence output is not computed
    readout = _producers(graph)["y"]
    assert readout.op_type == "Gemm"
    assert _producers(graph)[readout.input[0]].input[0] == gru.output[1]  # reads the new h
