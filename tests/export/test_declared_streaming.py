"""What export stamps comes from what a model's class declares, for a user's class as for ours."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cortexedge.contract import Streaming
from cortexedge.errors import CortexEdgeError
from cortexedge.export.api import to_onnx
from cortexedge.runtime.model import load_decoder
from cortexedge.train.models.registry import register_model

CHANNELS, WINDOW = 6, 4


class WindowMean(nn.Module):
    """A user's window decoder, written as a user would: a linear readout of the mean of the
    last WINDOW bins, which the state holds."""

    modality = "spikes"
    streaming_mode = "window"
    streaming_window = WINDOW

    def __init__(self, channels: int = CHANNELS) -> None:
        super().__init__()
        self.channels = channels
        self.readout = nn.Linear(channels, 2)

    def config(self) -> dict:
        return {"channels": self.channels}

    def forward(self, x):  # [B, T, C] -> [B, T, 2]
        padded = torch.cat([x.new_zeros(x.shape[0], WINDOW - 1, x.shape[2]), x], dim=1)
        return self.readout(padded.unfold(1, WINDOW, 1).mean(-1))

    def init_state(self, batch: int):
        return (torch.zeros(batch, WINDOW, self.channels),)

    def step(self, x_t, state):
        window = torch.cat([state[0][:, 1:], x_t.unsqueeze(1)], dim=1)
        return self.readout(window.mean(1)), (window,)


class Stateless(nn.Module):
    """A user's decoder that declares nothing: a linear readout of each bin."""

    def __init__(self) -> None:
        super().__init__()
        self.readout = nn.Linear(CHANNELS, 2)

    def config(self) -> dict:
        return {}

    def forward(self, x):
        return self.readout(x)

    def init_state(self, batch: int):
        return ()

    def step(self, x_t, state):
        return self.readout(x_t), ()


def test_a_registered_window_model_is_stamped_window(family_table, tmp_path):
    register_model("window_mean")(WindowMean)
    torch.manual_seed(0)
    to_onnx(WindowMean(), tmp_path / "w.onnx", input_shape=(CHANNELS,), bin_ms=20.0)
    meta = load_decoder(tmp_path / "w.onnx").meta
    assert meta.streaming == Streaming("window", WINDOW)
    assert meta.model_family == "window_mean" and meta.input.kind == "spike_counts"
    assert "assumed" not in meta.extra
    own = meta.extra["step_vs_sequence"]  # its step was checked against its forward
    assert own["against"].startswith("its own forward over 256 bins") and own["max_abs_err"] < 1e-5


def test_an_undeclared_model_is_stamped_stateful_and_says_it_was_assumed(tmp_path):
    to_onnx(Stateless(), tmp_path / "s.onnx", input_shape=(CHANNELS,), modality="spikes",
            bin_ms=4.0)  # fmt: skip
    meta = load_decoder(tmp_path / "s.onnx").meta
    assert meta.streaming == Streaming("stateful")
    assert "declares none" in meta.extra["assumed"]


def test_a_bad_declaration_is_one_clear_error(tmp_path):
    model = WindowMean()
    model.streaming_window = 0
    with pytest.raises(CortexEdgeError, match="streaming_window a whole number of bins >= 1"):
        to_onnx(model, tmp_path / "b.onnx", input_shape=(CHANNELS,), bin_ms=4.0)
    assert not (tmp_path / "b.onnx").exists()


def test_our_families_declare_what_they_stream(reaching):
    from cortexedge.families import streaming_of
    from cortexedge.train.models.registry import build_model

    window = build_model("aegru", in_channels=4)
    stateful = build_model("aegru", in_channels=4, mode="stateful")
    assert streaming_of(window) == (Streaming("window", 100), True)
    assert streaming_of(stateful) == (Streaming("stateful"), True)
    assert streaming_of(build_model("cnn_bilstm", in_channels=4, lookback=8))[0].window == 8


class Disagrees(Stateless):
    """A user's decoder whose step is off by 0.25 from its forward."""

    def step(self, x_t, state):
        return self.readout(x_t) + 0.25, ()


def test_a_step_that_disagrees_with_forward_is_refused_with_both_errors(tmp_path):
    with pytest.raises(CortexEdgeError) as err:
        to_onnx(Disagrees(), tmp_path / "d.onnx", input_shape=(CHANNELS,), modality="spikes",
                bin_ms=4.0)  # fmt: skip
    text = str(err.value)
    assert "Disagrees.step differs from its own forward over 256 bins" in text
    assert "max |Δy| 0.25 (" in text and "the ONNX graph against torch step: max |Δy| " in text
    assert not (tmp_path / "d.onnx").exists()
