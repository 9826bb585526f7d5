"""What export reads from the streaming contract: state names, shapes, batch axes, fills."""

from __future__ import annotations

import torch

from cortexedge.export.streamable import inference_copy, initial_state, state_shape, state_specs
from tests.export.small_models import SMALL, build


def test_state_specs_of_families():
    gru = state_specs(build(*SMALL["gru"]))  # nn.GRU state [layers, B, H]
    assert [(s.name, s.shape, s.batch_axis, s.init) for s in gru] == [("h", (2, 1, 24), 1, "zeros")]
    lstm = state_specs(build(*SMALL["lstm"]))
    assert [(s.name, s.batch_axis) for s in lstm] == [("h", 1), ("c", 1)]
    window = state_specs(build(*SMALL["aegru_window"]))  # raw-sample buffer [B, 15, C]
    assert [(s.name, s.shape, s.batch_axis) for s in window] == [("buffer", (1, 15, 16), 0)]
    stateful = state_specs(build(*SMALL["aegru_stateful"]))
    assert [(s.name, s.shape) for s in stateful] == [("buffer", (1, 4, 16)), ("h0", (1, 24))]
    assert [s.input_name for s in stateful] == ["state_buffer", "state_h0"]
    assert [s.output_name for s in stateful] == ["state_buffer_out", "state_h0_out"]


def test_state_shape_and_initial_state():
    (spec,) = state_specs(build(*SMALL["gru"]))
    assert state_shape(spec, 5) == (2, 5, 24)
    (h,) = initial_state((spec,), 3)
    assert h.shape == (2, 3, 24) and h.dtype == "float32" and not h.any()


def test_inference_copy_is_eval_and_leaves_the_model():
    model = build(*SMALL["aegru_window"]).train()
    copy = inference_copy(model)
    assert copy.aux is None and not copy.training
    assert model.aux is not None and model.training
    with torch.no_grad():
        copy.encoder.weight.zero_()
    assert model.encoder.weight.abs().sum() > 0
