"""Streaming contract of every decoder: stepping row by row equals the sequence computation."""

import pytest
import torch

from cortexedge.errors import CortexEdgeError
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.cnn_bilstm import AttnCNNBiLSTM
from cortexedge.train.models.cnn_rnn import CNNRNN, ROIGRU
from cortexedge.train.models.rnn import GRUDecoder, LSTMDecoder

C = 6  # channels of the tiny models


def spikes(b: int, t: int, c: int = C) -> torch.Tensor:
    """Random Poisson counts (rate 1.5 per sample), non-trivial for every channel."""
    return torch.poisson(torch.full((b, t, c), 1.5))


# name -> (model factory, input factory [B, T, ...])
DECODERS = {
    "aegru_window": (
        lambda: AEGRU(C, enc_dim=5, hidden=7, bin_width=3, num_steps=4),
        lambda: spikes(2, 30),
    ),
    "aegru_window_2layers": (
        lambda: AEGRU(C, enc_dim=5, hidden=7, layers=2, bin_width=2, num_steps=3),
        lambda: spikes(2, 17),
    ),
    "aegru_stateful": (
        lambda: AEGRU(C, enc_dim=5, hidden=7, bin_width=4, mode="stateful"),
        lambda: spikes(2, 25),
    ),
    "aegru_stateful_bin1": (  # one raw sample per bin: no buffer in the state at all
        lambda: AEGRU(C, enc_dim=5, hidden=7, bin_width=1, mode="stateful"),
        lambda: spikes(2, 12),
    ),
    "aegru_stateful_2layers": (
        lambda: AEGRU(C, enc_dim=5, hidden=7, layers=2, bin_width=3, mode="stateful"),
        lambda: spikes(2, 20),
    ),
    "gru": (lambda: GRUDecoder(C, hidden=8, transform="log1p"), lambda: spikes(2, 15)),
    "gru_2layers": (lambda: GRUDecoder(C, hidden=8, layers=2), lambda: spikes(2, 15)),
    "lstm": (lambda: LSTMDecoder(C, hidden=8, transform="log_softplus"), lambda: spikes(2, 15)),
    "lstm_2layers": (lambda: LSTMDecoder(C, hidden=8, layers=2), lambda: spikes(2, 15)),
    "cnn_bilstm": (
        lambda: AttnCNNBiLSTM(C, conv_channels=4, hidden=5, attn_dim=6, out_kin=2, lookback=7),
        lambda: torch.randn(2, 16, C),
    ),
    "cnn_rnn": (
        lambda: CNNRNN(frame_shape=(12, 10), conv_channels=(3, 4), hidden=5),
        lambda: torch.rand(2, 9, 12, 10),
    ),
    "cnn_rnn_1frame_2layers": (
        lambda: CNNRNN(frame_shape=(8, 8), frames_per_input=1, conv_channels=(3,), layers=2),
        lambda: torch.rand(2, 6, 8, 8),
    ),
    "roi_gru": (lambda: ROIGRU(in_channels=C), lambda: torch.randn(2, 12, C)),
}


def stepped(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Outputs of `step` over every row of x, from `init_state`, stacked on dim 1."""
    state = model.init_state(x.shape[0])
    ys = []
    for t in range(x.shape[1]):
        y, state = model.step(x[:, t], state)
        assert len(state) == len(model.state_names())
        ys.append(y)
    return torch.stack(ys, dim=1)


@pytest.fixture(params=sorted(DECODERS))
def decoder(request):
    torch.manual_seed(0)
    make_model, make_input = DECODERS[request.param]
    model = make_model().eval()
    return model, make_input()


def test_step_equals_stream(decoder):
    model, x = decoder
    with torch.no_grad():
        expected = model.stream(x)
        got = stepped(model, x)
    assert got.shape == expected.shape
    assert expected.abs().max() > 1e-3  # a non-trivial output
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_state_names_match_init_state(decoder):
    model, _ = decoder
    state = model.init_state(3)
    assert len(state) == len(model.state_names())
    assert all(s.shape[0] == 3 or s.shape[1] == 3 for s in state)  # batch on dim 0 or 1
    assert all(s.dtype == torch.float32 for s in state)


@pytest.mark.parametrize("name", ["gru", "lstm_2layers", "roi_gru", "cnn_rnn"])
def test_stream_of_causal_recurrent_decoders_is_forward(name):
    make_model, make_input = DECODERS[name]
    model, x = make_model().eval(), make_input()
    with torch.no_grad():
        stepped_y = stepped(model, x)
        forward_y = model(x)
    torch.testing.assert_close(stepped_y, forward_y, rtol=0, atol=1e-5)


def test_cnn_bilstm_step_is_forward_on_last_lookback_rows():
    torch.manual_seed(1)
    make_model, make_input = DECODERS["cnn_bilstm"]
    model, x = make_model().eval(), make_input()
    lookback = model.lookback
    with torch.no_grad():
        ys = stepped(model, x)
        for t in (2, lookback - 1, lookback, x.shape[1] - 1):
            window = x[:, max(0, t - lookback + 1) : t + 1]
            zeros = torch.zeros(x.shape[0], lookback - window.shape[1], x.shape[2])
            expected = model(torch.cat([zeros, window], dim=1))
            torch.testing.assert_close(ys[:, t], expected, rtol=0, atol=1e-5)
    assert ys.shape == (2, x.shape[1], 2 + 2)


def test_aegru_window_step_bins_the_last_samples():
    """Independent binning: the window of the last num_steps·bin_width samples, summed by hand."""
    torch.manual_seed(2)
    model = AEGRU(C, enc_dim=5, hidden=7, bin_width=3, num_steps=4).eval()
    x = spikes(1, 20)
    with torch.no_grad():
        ys = stepped(model, x)
        for t in (5, 11, 19):  # partly zero-filled buffer, then full ones
            rows = [x[0, r] if r >= 0 else torch.zeros(C) for r in range(t - 11, t + 1)]
            bins = torch.stack([sum(rows[3 * k : 3 * k + 3]) for k in range(4)])
            torch.testing.assert_close(ys[0, t], model(bins[None])[0, -1], rtol=0, atol=1e-5)


def test_aegru_stateful_steps_one_gru_step_per_box_sum():
    torch.manual_seed(3)
    model = AEGRU(C, enc_dim=5, hidden=7, bin_width=4, mode="stateful").eval()
    x = spikes(1, 12)
    box = torch.stack([x[0, max(0, t - 3) : t + 1].sum(0) for t in range(12)])
    with torch.no_grad():
        torch.testing.assert_close(stepped(model, x)[0], model(box[None])[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["aegru_window", "aegru_stateful", "gru", "lstm", "cnn_bilstm"])
def test_step_rejects_wrong_channel_count(name):
    make_model, _ = DECODERS[name]
    model = make_model().eval()
    state = model.init_state(2)
    with pytest.raises(CortexEdgeError, match=r"x_t must have shape .* with \w+=6, got \[2, 5\]"):
        model.step(torch.zeros(2, C - 1), state)


def test_cnn_rnn_step_rejects_wrong_frame_shape():
    model = DECODERS["cnn_rnn"][0]().eval()
    with pytest.raises(
        CortexEdgeError,
        match=r"CNNRNN: x_t must have shape \[batch, height, width\] with height=12, width=10, "
        r"got \[2, 12, 9\]",
    ):
        model.step(torch.zeros(2, 12, 9), model.init_state(2))


class StepOf(torch.nn.Module):
    """`model.step` as a module's forward, the way an exporter sees it."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x_t, *state):
        return self.model.step(x_t, state)


@pytest.mark.parametrize("mode", ["window", "stateful"])
def test_aegru_step_traces_without_python_control_flow(mode):
    """The export stage traces `step`: a trace at one input must replay on another."""
    torch.manual_seed(4)
    model = AEGRU(C, enc_dim=5, hidden=7, bin_width=3, num_steps=2, mode=mode).eval()
    x = spikes(1, 9)
    state = model.init_state(1)
    for t in range(5):  # a non-zero state to trace from
        _, state = model.step(x[:, t], state)
    exported = torch.export.export(StepOf(model), (x[:, 5], *state), strict=False)
    other_state = tuple(s + 0.5 for s in state)
    with torch.no_grad():
        want_y, want_state = model.step(x[:, 6], other_state)
        got_y, got_state = exported.module()(x[:, 6], *other_state)
    torch.testing.assert_close(got_y, want_y, rtol=0, atol=1e-6)
    for got, want in zip(got_state, want_state, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
