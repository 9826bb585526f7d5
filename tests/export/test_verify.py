"""The built-in verification measures real differences: a tampered graph fails, tolerances are
what the docs state, and the batched torch reference equals stepping one bin at a time."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from cortexedge.export.finalize import finalize_graph, serialize
from cortexedge.export.onnx_step import export_step
from cortexedge.export.streamable import initial_state, state_specs
from cortexedge.export.verify import (
    Tolerance,
    session,
    step_torch,
    stream_batch,
    stream_onnx,
    verify_step,
)
from tests.export.small_models import SMALL, build


def _step_graph(model, shape=(16,)):
    specs = state_specs(model)
    graph, dynamic = export_step(model, specs, shape, 17, Tolerance())
    return finalize_graph(graph), specs, dynamic


def test_tolerances():
    assert Tolerance().rtol == 1e-5 and Tolerance().steps(1.0, 1.0) is None
    assert Tolerance(8).rtol == 4 / 128  # 4 steps of an 8-bit grid over the output range
    assert Tolerance(8).steps(0.5, 64.0) == pytest.approx(1.0)  # step = 64 / 2^7


def test_exact_graph_passes_and_tampered_graph_fails(reaching):
    model = build(*SMALL["gru"])
    graph, specs, _ = _step_graph(model)
    inputs = reaching.x[reaching.rows("test")].astype(np.float32)
    good = verify_step(model, session(serialize(graph)), specs, inputs, Tolerance(), split="test")
    assert good.passed and good.max_rel_err < 1e-6 and good.bins == 1000 and good.streams == 2

    weights = max(graph.graph.initializer, key=lambda t: np.prod(t.dims))  # a recurrent matrix
    w = numpy_helper.to_array(weights).copy()
    w.flat[0] *= 1.01  # one weight off by 1%
    weights.CopyFrom(numpy_helper.from_array(w, weights.name))
    bad = verify_step(model, session(serialize(graph)), specs, inputs, Tolerance(), split="test")
    assert not bad.passed and bad.max_rel_err > 1e-5


def test_batched_torch_reference_equals_single_steps(reaching):
    model = build(*SMALL["aegru_stateful"])
    graph, specs, _ = _step_graph(model)
    xs = stream_batch(reaching.x[:400], 30, 0, 2)
    _, states = stream_onnx(session(serialize(graph)), specs, xs, initial_state(specs, 2))
    y_batched, new_batched = step_torch(model, specs, xs, states[:-1])
    with torch.no_grad():
        for t in (0, 17, 29):
            y, new = model.step(torch.as_tensor(xs[t]), tuple(map(torch.as_tensor, states[t])))
            np.testing.assert_allclose(y_batched[t], y.numpy(), rtol=0, atol=1e-6)
            for a, b in zip(new_batched[t], new, strict=True):
                np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-6)


def test_stream_batch_tiles_and_offsets_streams():
    rows = np.arange(10)[:, None]
    xs = stream_batch(rows, 8, 4, 2)  # 12 bins of 2 streams from 10 rows
    assert xs.shape == (12, 2, 1)
    assert xs[:, 0, 0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert xs[:3, 1, 0].tolist() == [5, 6, 7]


class _BakedBatch(torch.nn.Module):
    """A streaming decoder whose step builds a tensor from the traced batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.cell = torch.nn.GRUCell(16, 8)
        self.readout = torch.nn.Linear(8, 2)

    def init_state(self, batch: int):
        return (torch.zeros(batch, 8),)

    def step(self, x_t, state):
        bias = torch.ones(int(x_t.shape[0]), 8) * 0.1  # int(): the batch becomes a constant
        h = self.cell(torch.log1p(x_t), state[0] + bias)
        return self.readout(h), (h,)


def test_fixed_batch_fallback_still_verifies(reaching):
    """A step that bakes the traced batch size into the graph: export falls back to batch 1."""
    model = _BakedBatch().eval()
    graph, specs, dynamic = _step_graph(model)
    assert not dynamic
    x_dims = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    assert x_dims == [1, 16]
    inputs = reaching.x.astype(np.float32)
    check = verify_step(
        model, session(serialize(graph)), specs, inputs, Tolerance(), split="x", streams=1
    )
    assert check.passed
    assert onnx.checker.check_model(graph, full_check=True) is None


@pytest.mark.parametrize("name", ["aegru_window", "aegru_stateful"])
def test_aegru_step_graphs_keep_a_free_batch(name):
    graph, _, dynamic = _step_graph(build(*SMALL[name]))
    assert dynamic
    assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param
