"""Integer C of decoder classes the toolkit has no reader for (tests/users: plain torch, written
as a user writes them): the layers read from what their step calls, the numpy reference against
the brevitas model, the C bit for bit against the reference with the graph's states mapped by
what the step passes, 10,000 bins of each real recording, and the steps it refuses to read."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c.generate import export_c
from cortexedge.export.c.int_extract import int_model
from cortexedge.export.c.model_ir import read_structure
from cortexedge.runtime import StreamingDecoder
from cortexedge.runtime.backends.c import CLibrary
from cortexedge.runtime.int_reference import IntDecoder, load_int_model
from tests.export.c_helpers import prune_half, ptq, real_recording
from tests.users.cell_stack import CellStack
from tests.users.conv_gru import ConvGRU
from tests.users.norm_gru import NormGRU
from tests.users.plain_lstm import PlainLSTM


def poisson(rows: int, channels: int, seed: int = 0, lam: float = 2.0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, (rows, channels)).astype(np.float32)


def quantized(cls, channels: int = 12, calib=None, **kw) -> nn.Module:
    """A user's class, half its weights pruned, quantized W8A8 by the compress stage."""
    torch.manual_seed(2)
    model = cls(channels, 2, **kw).eval()
    prune_half(model)
    calib = poisson(400, channels) if calib is None else calib
    return ptq(model, torch.tensor(calib)[None])


def test_the_layers_are_read_from_what_the_step_calls():
    lstm = quantized(PlainLSTM)
    s = read_structure(lstm)
    assert (s.family, s.channels, s.mode, s.transform) == ("PlainLSTM", 12, "stateful", "none")
    assert s.cells == list(lstm.lstm.cells) and s.readout is lstm.head and s.encoder is None
    assert s.front is None  # the LSTM reads the bin itself
    assert s.state_parts == [("h", [0]), ("c", [0])]  # init_state gives (h, c)
    gru = quantized(NormGRU)
    s = read_structure(gru)
    assert s.cells == list(gru.gru.cells) and s.readout is gru.out
    assert s.state_parts == [("h", [0, 1])]  # one [2, B, H] state for both layers
    a, b = s.front  # (x - 0.5) / 0.7 per channel, from the class's buffers
    np.testing.assert_allclose(a, np.full(12, 1 / 0.7), rtol=1e-6)
    np.testing.assert_allclose(b, np.full(12, -0.5 / 0.7), rtol=1e-6)


@pytest.mark.parametrize("cls", [PlainLSTM, NormGRU])
def test_reference_tracks_the_brevitas_model(cls):
    model = quantized(cls)
    x = poisson(300, 12, seed=6)
    with torch.no_grad():
        want = model(torch.tensor(x)[None])[0].numpy()
    im = int_model(read_structure(model), max_count=255)
    got = IntDecoder(im).run(x.astype(np.uint8)) * im.out_scale
    err = np.abs(got - want)
    assert err.mean() <= 0.02 * want.std()  # the GRU path's stated bound
    assert err.max() <= 0.25 * want.std()
    if cls is NormGRU:  # the z-scoring is a diagonal requantizer over counts kept as they are
        assert np.array_equal(im.encoder.w, np.eye(12, dtype=np.int8))
        assert np.array_equal(im.lut, np.arange(len(im.lut))) and len(im.lut) <= 128


@pytest.mark.parametrize(
    "cls, states",
    [(PlainLSTM, [("s0", [0]), ("s1", [1])]), (NormGRU, [("s0", [0, 1])])],
)
def test_states_map_as_the_step_passes_them(tmp_path, cls, states):
    """The graph's states s0, s1 are the C rows the step hands its layers: read through the
    runtime they equal the reference's times their scales, close to onnxruntime's own states
    on the QCDQ graph, and a state written into a fresh decoder continues bit for bit."""
    out = tmp_path / "c"
    export_c(quantized(cls), out, bin_ms=20.0, input_shape=(12,), modality="spikes", max_count=15,
             verify_bins=500, reference_bins=500, cortex_m=False)  # fmt: skip
    man = json.loads((out / "decoder_c.json").read_text())
    assert man["states"] == [{"name": n, "kind": "hidden", "layers": ls} for n, ls in states]
    assert man["verification"]["bit_exact_bins"] == 500
    x = np.minimum(poisson(250, 12, seed=8), 15)
    c, ort = (StreamingDecoder(out / "decoder.onnx", backend=b) for b in ("c", "ort"))
    c.run(x[:150]), ort.run(x[:150])
    im = load_int_model(out / "decoder_int.npz")
    ref = IntDecoder(im)
    ref.run(x[:150])
    n = im.cells[0].hidden
    for name, part_layers in states:
        got = c.state[name]
        for k, index in enumerate(part_layers):  # index = part · layers + layer
            part, layer = divmod(index, len(im.cells))
            cell = im.cells[layer]
            scale = cell.cell_scale if part else cell.state_scale
            want = ref.h[layer, 0, part * n : (part + 1) * n].astype(np.float32)
            assert np.array_equal(got[k, 0], want * np.float32(scale))
            # the same quantity as onnxruntime's state on the QCDQ graph, to a few steps
            assert np.abs(got[k, 0] - ort.state[name][k, 0]).mean() <= 2 * scale
    fresh = StreamingDecoder(out / "decoder.onnx", backend="c")
    fresh.state = c.state
    assert np.array_equal(fresh.run(x[150:]), c.run(x[150:]))


@pytest.mark.slow
@pytest.mark.parametrize("cls", [PlainLSTM, NormGRU])
@pytest.mark.parametrize("which", ["npz", "mat"])
def test_user_int_c_bit_exact_on_10000_real_bins(tmp_path, request, cls, which):
    """Each user class, pruned W8A8, on each real recording (20 ms .npz, 98 units; 50 ms
    MATLAB, 52 channels): the C equals the numpy reference over 10,000 bins and stays close to
    onnxruntime on the QCDQ graph."""
    rec, top = real_recording(which, request)
    x = rec.x[:10_000].astype(np.float32)
    model = quantized(cls, x.shape[1], calib=x[:800], hidden=16)
    out = tmp_path / "c"
    res = export_c(model, out, recording=rec, max_count=top, verify_bins=2000,
                   reference_bins=200, cortex_m=False)  # fmt: skip
    assert res.manifest["verification"]["r2_vs_onnx"] > 0.99
    assert f"{rec.bin_ms:g} ms" in (out / "decoder.h").read_text()
    lib = CLibrary(out / "libdecoder.so", "int", rec.y.shape[1], x.shape[1])
    ref = IntDecoder(load_int_model(out / "decoder_int.npz")).run(x)
    assert np.array_equal(lib.run(lib.states(1), x), ref)


class ReluBetween(nn.Module):
    """A step that computes between its layers."""

    def __init__(self, c, d, hidden=8):
        super().__init__()
        self.gru, self.head, self.hidden = (
            nn.GRU(c, hidden, batch_first=True),
            nn.Linear(hidden, d),
            hidden,
        )

    def init_state(self, batch):
        return (torch.zeros(1, batch, self.hidden),)

    def step(self, x, state):
        y, h = self.gru(x.unsqueeze(1), state[0])
        return self.head(torch.relu(y[:, 0])), (h,)

    def forward(self, x):
        return self.head(torch.relu(self.gru(x)[0]))


class LogFront(ReluBetween):
    def step(self, x, state):
        y, h = self.gru(torch.log1p(x).unsqueeze(1), state[0])
        return self.head(y[:, 0]), (h,)


class MixingFront(ReluBetween):
    def step(self, x, state):
        y, h = self.gru((x + x.roll(1, dims=1)).unsqueeze(1), state[0])
        return self.head(y[:, 0]), (h,)


class SwappedState(PlainLSTM):
    def step(self, x, state):
        y, (h, c) = self.lstm(x.unsqueeze(1), state)
        return self.head(y[:, 0]), (c, h)


class Windowed(ReluBetween):
    streaming_mode, streaming_window = "window", 4


class Failing(ReluBetween):
    def step(self, x, state):
        raise ValueError("no step today")


@pytest.mark.parametrize(
    "cls, message",
    [
        (ReluBetween, r"ReluBetween.step computes something between 'gru' and 'head'"),
        (LogFront, r"transforms the bin before its first layer by more than x·a \+ b"),
        (MixingFront, r"transforms the bin before its first layer by more than x·a \+ b"),
        (SwappedState, r"must pass layer 'lstm' one tensor of its state tuple and return"),
        (CellStack, r"calls gru_cell, layernorm, gru_cell, linear; the integer path reads"),
        (ConvGRU, r"cannot emit layer 'conv' of type QuantConv1d"),
        (Windowed, r"statefully; Windowed declares streaming_mode 'window'"),
        (Failing, r"Failing.step failed on a bin of 12 channels: no step today"),
    ],
)
def test_a_step_it_cannot_read_is_refused_with_what_differs(cls, message):
    model = quantized(cls, calib=poisson(50, 12))
    with pytest.raises(CortexEdgeError, match=message):
        int_model(read_structure(model), max_count=255)
