"""The onnxruntime backend: batch dims fixed at load, bound input buffers read in place."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.backends.ort import OrtBackend, batch_dim_names
from cortexedge.runtime.model import load_decoder


def test_batch_dims_of_input_and_states_are_named(gru_op, lstm):
    # x [batch, C] and h [1, batch, H] (and c for the LSTM) share one symbolic batch dim
    for built in (gru_op, lstm):
        model = load_decoder(built.path)
        graph = model.proto.graph
        x = next(i for i in graph.input if i.name == "x")
        assert batch_dim_names(model) == {x.type.tensor_type.shape.dim[0].dim_param}


def test_bound_buffers_are_read_in_place_and_others_copied(gru_op):
    model = load_decoder(gru_op.path)
    backend, other = OrtBackend(model, 1), OrtBackend(model, 1)
    buffers = [np.zeros((1, *model.meta.input.shape), np.float32) for _ in range(2)]
    for b in buffers:
        backend.bind_input(b)
    bins = np.random.default_rng(0).poisson(1.5, (40, *model.meta.input.shape))
    for i, row in enumerate(bins.astype(np.float32)):
        buffers[i % 2][0] = row  # alternate, as StreamingDecoder does
        np.testing.assert_array_equal(backend.step(buffers[i % 2]), other.step(row[None]))
    assert not backend._x.any()  # its own input buffer was never needed


@pytest.mark.parametrize("shape, dtype", [((1, 12), np.float64), ((2, 12), np.float32)])
def test_a_buffer_of_another_layout_is_refused(gru_op, shape, dtype):
    backend = OrtBackend(load_decoder(gru_op.path), 1)
    with pytest.raises(CortexEdgeError, match=r"^ort backend: cannot bind a"):
        backend.bind_input(np.zeros(shape, dtype))
