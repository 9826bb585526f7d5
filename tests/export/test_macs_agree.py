"""One MAC definition: an exported float decoder's graph count equals the torch-side count."""

from __future__ import annotations

import onnx
import pytest

from cortexedge.compress.macs_torch import count_macs
from cortexedge.export.api import to_onnx
from cortexedge.runtime.graph_macs import count_graph
from tests.export.small_models import SMALL, build


@pytest.mark.parametrize("name", ["aegru_window", "aegru_stateful", "gru", "lstm"])
def test_graph_count_equals_torch_count(name, reaching, tmp_path):
    family, kwargs = SMALL[name]
    model = build(family, kwargs)
    report = to_onnx(model, tmp_path / "d.onnx", recording=reaching)
    proto = onnx.load(tmp_path / "d.onnx")
    graph = count_graph(proto)
    torch_count = count_macs(model.inference_module() if family == "aegru" else model, (16,))
    assert (graph.dense, graph.effective) == (torch_count.dense, torch_count.effective)
    assert report.metadata.macs == {"dense": graph.dense, "effective": graph.effective}
    # AEGRU cells are single GRU ops, not a dozen elementwise nodes each
    ops = [n.op_type for n in proto.graph.node]
    if family in ("aegru",):
        cells = kwargs.get("layers", 1) * (kwargs["num_steps"] if name == "aegru_window" else 1)
        assert ops.count("GRU") == cells and "Sigmoid" not in ops


def test_compressed_exports_count_what_compress_reported(compressed, compressed_onnx):
    """Pruned, W8A8 and W4A8 GRU and AEGRU: graph count == compress stage == file metadata."""
    for (family, bits), (_, stage) in compressed.items():
        report, path = compressed_onnx[(family, bits)]
        graph = count_graph(onnx.load(path))
        expected = (stage["macs_dense"], stage["macs_effective"])
        assert (graph.dense, graph.effective) == expected, (family, bits)
        assert (report.metadata.macs["dense"], report.metadata.macs["effective"]) == expected
