"""Window decoders in float C: the window is found in the step graph and computed as a chain
(export/c/window_chain.py), one front end and one input projection per bin.

Checked on AEGRU (K single-step GRU nodes with LayerNorm links) and on a window decoder
written as a user would (an nn.GRU rerun from zero over the last bins of its own buffer), by
the export's own verification against onnxruntime, by executed MACs against a hand count, and
by the runtime's state round trip (the buffer is replayed, which rebuilds the chain's ring).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from cortexedge.export.c import build
from cortexedge.export.c.generate import export_c, float_program, summary_lines
from cortexedge.runtime import StreamingDecoder
from cortexedge.runtime.backends.c import CLibrary
from cortexedge.runtime.graph_macs import count_graph
from cortexedge.runtime.model import load_decoder
from cortexedge.train.models.aegru import AEGRU
from tests.export.c_helpers import contract_onnx

C = 7


class WindowGRU(nn.Module):
    """Each step reruns a GRU from zero over the last `bins` box sums of `width` samples."""

    def __init__(self, channels, out_dim, bins=4, width=3, features=6, hidden=5):
        super().__init__()
        self.channels, self.bins, self.width = channels, bins, width
        self.encoder = nn.Linear(channels, features)
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, out_dim)

    def init_state(self, batch):
        return (torch.zeros(batch, self.bins * self.width, self.channels),)

    def features(self, sums):
        return torch.relu(self.encoder(torch.log1p(sums)))

    def last_state(self, z):
        return self.gru(z)[1][-1]

    def step(self, x_t, state):
        buf = torch.cat([state[0], x_t.unsqueeze(1)], 1)[:, 1:]
        sums = buf.reshape(buf.shape[0], self.bins, self.width, self.channels).sum(2)
        return self.out(self.last_state(self.features(sums))), (buf,)

    def forward(self, x):
        state, ys = self.init_state(x.shape[0]), []
        for t in range(x.shape[1]):
            y, state = self.step(x[:, t], state)
            ys.append(y)
        return torch.stack(ys, 1)


class WindowLSTM(WindowGRU):
    """The same with an nn.LSTM: its chain keeps h and c of every level."""

    def __init__(self, channels, out_dim, **kw):
        super().__init__(channels, out_dim, **kw)
        self.gru = nn.LSTM(6, 5, batch_first=True)

    def last_state(self, z):
        return self.gru(z)[1][0][-1]


class DeepWindow(WindowGRU):
    """A two-layer nn.GRU over the window: layer 1 reads layer 0's every step."""

    def __init__(self, channels, out_dim, **kw):
        super().__init__(channels, out_dim, **kw)
        self.gru = nn.GRU(6, 5, num_layers=2, batch_first=True)


class DeepLSTMWindow(WindowLSTM):
    """A two-layer nn.LSTM over the window."""

    def __init__(self, channels, out_dim, **kw):
        super().__init__(channels, out_dim, **kw)
        self.gru = nn.LSTM(6, 5, num_layers=2, batch_first=True)


class DeepBothWindow(DeepWindow):
    """The same, read out from the final states of both layers: layer 0's is read too."""

    def __init__(self, channels, out_dim, **kw):
        super().__init__(channels, out_dim, **kw)
        self.out = nn.Linear(10, out_dim)

    def last_state(self, z):
        h_n = self.gru(z)[1]
        return torch.cat([h_n[0], h_n[1]], -1)


class MixedWindow(WindowGRU):
    """The same, but the readout also sees the whole buffer: the window is not one chain."""

    def __init__(self, channels, out_dim, **kw):
        super().__init__(channels, out_dim, **kw)
        self.skip = nn.Linear(channels, out_dim)

    def step(self, x_t, state):
        y, (buf,) = super().step(x_t, state)
        return y + self.skip(buf.mean(1)), (buf,)


class CenteredWindow(WindowGRU):
    """The same, but each bin is centred on the window's mean first: bins are not computed
    apart, so the newest bin's front end alone cannot stand for the window's."""

    def features(self, sums):
        return torch.relu(self.encoder(sums - sums.mean(1, keepdim=True)))


def _build(model, tmp_path, bins=3000):
    torch.manual_seed(0)
    onnx = contract_onnx(model.eval(), tmp_path / "m.onnx", C)
    return export_c(model, tmp_path / "c", onnx_path=onnx, verify_bins=bins, cortex_m=False)


def _nnz(t: torch.Tensor) -> int:
    return int(np.count_nonzero(t.detach().numpy()))


@pytest.fixture(scope="module")
def user_window(tmp_path_factory):
    torch.manual_seed(1)
    model = WindowGRU(C, 2).eval()
    return model, _build(model, tmp_path_factory.mktemp("user"))


def test_a_user_window_gru_is_built_as_a_chain(user_window):
    model, res = user_window
    man = res.manifest
    # verified against onnxruntime over the bins (export_c refuses a build beyond 1e-5)
    assert man["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    (spec,) = load_decoder(res.folder / "decoder.onnx").meta.states  # the user's one state
    assert man["states"] == [{"name": spec.name, "kind": "history", "rows": 12}]
    # by hand: the encoder of the newest bin, one input projection, K - 1 recurrent products
    # (the first level starts from zero), the K levels' gate products, the readout
    k, h = model.bins, model.gru.hidden_size
    gru = model.gru
    want = (_nnz(model.encoder.weight) + _nnz(gru.weight_ih_l0)
            + (k - 1) * _nnz(gru.weight_hh_l0) + k * 3 * h + _nnz(model.out.weight))  # fmt: skip
    assert man["macs"]["executed_per_step"] == want
    graph = count_graph(load_decoder(res.folder / "decoder.onnx").proto).dense
    assert man["macs"]["executed"]["graph_dense"] == graph > 2 * want
    header = (res.folder / "decoder.h").read_text()
    assert man["layout"]["window_chain"] == {"bins": 4, "lag": 3}
    assert (
        f"MACs/step {want:,} (the graph's {graph:,}: its window of 4 bins is computed as a "
        "chain)" in summary_lines(res)[2]
    )  # what the export command prints
    assert "the window of 4 bins 3 samples apart is computed as one chain" in " ".join(
        line.lstrip(" *") for line in header.splitlines()
    )


def test_writing_the_state_replays_the_window(user_window, tmp_path):
    # a state read from one decoder and written into another continues the same stream: the C
    # build rebuilds its ring from the replayed buffer, and agrees with onnxruntime throughout
    _, res = user_window
    onnx = res.folder / "decoder.onnx"
    x = np.random.default_rng(2).poisson(1.0, (90, C)).astype(np.float32)
    ort, c = StreamingDecoder(onnx, backend="ort"), StreamingDecoder(onnx, backend="c")
    first = np.array([c.step(r) for r in x[:40]])
    np.testing.assert_allclose(first, [ort.step(r) for r in x[:40]], atol=1e-5)
    resumed = StreamingDecoder(onnx, backend="c")
    resumed.state = c.state
    (name,) = ort.state
    np.testing.assert_array_equal(resumed.state[name], ort.state[name])
    rest = np.array([resumed.step(r) for r in x[40:]])
    np.testing.assert_allclose(rest, [ort.step(r) for r in x[40:]], atol=1e-5)
    np.testing.assert_array_equal(rest, [c.step(r) for r in x[40:]])


def test_aegru_window_is_built_as_a_chain(tmp_path):
    torch.manual_seed(0)
    model = AEGRU(C, hidden=6, enc_dim=5, bin_width=2, num_steps=4, training_parts=False)
    onnx = contract_onnx(model.eval(), tmp_path / "m.onnx", C)
    with warnings.catch_warnings():  # the chain's probes (zeros through Softplus-Log) are quiet
        warnings.simplefilter("error", RuntimeWarning)
        res = export_c(model, tmp_path / "c", onnx_path=onnx, verify_bins=3000, cortex_m=False)
    k, h = 4, 6
    cell = model.cells[0]
    want = (_nnz(model.encoder.weight) + _nnz(cell.weight_ih) + (k - 1) * _nnz(cell.weight_hh)
            + k * 3 * h + _nnz(model.readout.weight))  # fmt: skip
    assert res.manifest["macs"]["executed_per_step"] == want
    assert res.manifest["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    # the C state: the last L bins twice, G_1 .. G_{K-1} for L slots, the slot
    assert res.manifest["memory"]["state_bytes"] == 4 * (2 * 2 * C + (k - 1) * 2 * h) + 8


@pytest.mark.parametrize("cls", [MixedWindow, CenteredWindow])
def test_a_window_that_is_not_a_chain_is_emitted_as_the_graph_computes(cls, tmp_path):
    torch.manual_seed(3)
    model = cls(C, 2).eval()
    res = _build(model, tmp_path, bins=500)
    man = res.manifest
    assert man["states"][0]["kind"] == "tensor"  # the buffer is the graph's state tensor
    assert "window of" not in (res.folder / "decoder.h").read_text()
    assert "chain" not in " ".join(summary_lines(res))
    graph = count_graph(load_decoder(res.folder / "decoder.onnx").proto).dense
    first = _nnz(model.gru.weight_hh_l0)  # only the zero first state's product is skipped
    assert man["macs"]["executed_per_step"] == graph - first
    assert json.loads((res.folder / "decoder_c.json").read_text())["verification"]["bins"] == 500


def _real_window(cls, rec, tmp_path, bins: int, width: int, period: str):
    """A user's window decoder on a real recording: a chain build that matches onnxruntime
    over the recording's test split (up to 10,000 bins) and states its sample period."""
    torch.manual_seed(4)
    model = cls(rec.x.shape[1], rec.y.shape[1], bins=bins, width=width).eval()
    res = export_c(model, tmp_path / "c", recording=rec, verify_bins=10_000, cortex_m=False)
    man = res.manifest
    assert man["layout"]["window_chain"] == {"bins": bins, "lag": width}
    assert man["verified_on"] == "test"
    assert man["verification"]["bins"] == min(10_000, len(rec.rows("test"))) > 3000
    assert man["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    assert f"Sample period: {period} ms" in (res.folder / "decoder.h").read_text()


@pytest.mark.parametrize("cls", [WindowGRU, DeepWindow])
def test_a_user_window_gru_on_the_50ms_matlab_recording(real_s1_mat_path, tmp_path, cls):
    # 52 channels, counts up to 15, read from its MATLAB v5 file; a 1 s window of 5 bins;
    # one GRU layer, or two (a chain of two layers)
    from cortexedge.train.data.arrays import read

    rec = read(real_s1_mat_path, x="spikes", y="vel", bin_ms=50.0)
    _real_window(cls, rec, tmp_path, bins=5, width=4, period="50")


@pytest.mark.parametrize("cls", [WindowLSTM, DeepLSTMWindow])
def test_a_user_window_lstm_on_the_20ms_npz_recording(real_reaching_path, tmp_path, cls):
    # 98 units, counts up to 7, a test split of 3,494 bins; a 600 ms window of 5 bins of 6 samples
    from cortexedge.train.data.readers import read

    rec = read(str(real_reaching_path))
    _real_window(cls, rec, tmp_path, bins=5, width=6, period="20")


def _replay_matches_onnxruntime(res, seed: int) -> None:
    """30 bins, then the state into a fresh C decoder (replayed: every layer's ring rebuilt),
    which continues as onnxruntime does."""
    x = np.random.default_rng(seed).poisson(1.0, (80, C)).astype(np.float32)
    onnx = res.folder / "decoder.onnx"
    c, ort = StreamingDecoder(onnx, backend="c"), StreamingDecoder(onnx, backend="ort")
    np.testing.assert_allclose(c.run(x[:30]), ort.run(x[:30]), atol=1e-5)
    resumed = StreamingDecoder(onnx, backend="c")
    resumed.state = c.state
    np.testing.assert_allclose(resumed.run(x[30:]), ort.run(x[30:]), atol=1e-5)


def test_a_two_layer_aegru_window_is_a_chain_of_two_layers(tmp_path):
    # each layer's state is a chain of its own (ring per level and layer); layer 1 reads
    # layer 0's new state of the same level, so only layer 0 shares one input projection
    torch.manual_seed(5)
    model = AEGRU(C, hidden=6, enc_dim=5, layers=2, bin_width=2, num_steps=3,
                  training_parts=False).eval()  # fmt: skip
    res = _build(model, tmp_path, bins=2000)
    man = res.manifest
    assert man["layout"]["window_chain"] == {"bins": 3, "lag": 2}
    assert man["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    k, h = 3, 6
    c0, c1 = model.cells
    want = (model.encoder.weight.numel() + c0.weight_ih.numel() + (k - 1) * c0.weight_hh.numel()
            + k * c1.weight_ih.numel() + (k - 1) * c1.weight_hh.numel() + 2 * k * 3 * h
            + model.readout.weight.numel())  # fmt: skip
    assert man["macs"]["executed_per_step"] == want
    # the doubled window, then rings for levels 1 .. K-1 of both layers, the slot
    assert man["memory"]["state_bytes"] == 4 * (2 * 2 * C + (k - 1) * 2 * 2 * h) + 8
    _replay_matches_onnxruntime(res, seed=10)


@pytest.mark.parametrize("cls", [DeepWindow, DeepLSTMWindow])
def test_a_stacked_rnn_over_the_window_is_a_chain_of_two_layers(cls, tmp_path):
    # a two-layer nn.GRU (nn.LSTM) exports as two nodes over the whole window (layer 1
    # reading every step of layer 0, h_n[-1] picked from both layers' final states): cut into
    # K levels of two cells, a ring per layer, only layer 0's input projection shared; an
    # LSTM cell's gate products are 3h too (f·c, i·g, o·tanh(c))
    torch.manual_seed(5)
    model = cls(C, 2).eval()
    res = _build(model, tmp_path, bins=2000)
    man = res.manifest
    assert man["layout"]["window_chain"] == {"bins": 4, "lag": 3}
    assert man["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    k, h, gru = 4, 5, model.gru
    want = (_nnz(model.encoder.weight) + _nnz(gru.weight_ih_l0) + k * _nnz(gru.weight_ih_l1)
            + (k - 1) * (_nnz(gru.weight_hh_l0) + _nnz(gru.weight_hh_l1)) + 2 * k * 3 * h
            + _nnz(model.out.weight))  # fmt: skip
    assert man["macs"]["executed_per_step"] == want
    _replay_matches_onnxruntime(res, seed=11)


def test_a_stacked_gru_whose_lower_state_is_read_is_emitted_as_the_graph_computes(tmp_path):
    # the readout also reads layer 0's final state, which a chain does not keep
    torch.manual_seed(5)
    model = DeepBothWindow(C, 2).eval()
    res = _build(model, tmp_path, bins=500)
    assert "window_chain" not in res.manifest["layout"]
    assert res.manifest["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    graph = count_graph(load_decoder(res.folder / "decoder.onnx").proto).dense
    first = _nnz(model.gru.weight_hh_l0) + _nnz(model.gru.weight_hh_l1)  # zero first states
    assert res.manifest["macs"]["executed_per_step"] == graph - first


def test_a_user_window_lstm_is_built_as_a_chain(tmp_path):
    # the chain of an LSTM keeps h and c of levels 1 .. K-1; the graph's count less the
    # encoder of K - 1 bins, K - 1 of the K input projections and the zero first state's
    # recurrent product
    torch.manual_seed(6)
    model = WindowLSTM(C, 2).eval()
    res = _build(model, tmp_path)
    man = res.manifest
    assert man["layout"]["window_chain"] == {"bins": 4, "lag": 3}
    assert man["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    graph = count_graph(load_decoder(res.folder / "decoder.onnx").proto).dense
    k, lstm = model.bins, model.gru
    skipped = (k - 1) * (model.encoder.weight.numel() + lstm.weight_ih_l0.numel())
    assert man["macs"]["executed_per_step"] == graph - skipped - lstm.weight_hh_l0.numel()
    # window (2 L rows of C), h and c rings for K - 1 levels and L slots, the slot
    h = lstm.hidden_size
    assert man["memory"]["state_bytes"] == 4 * (2 * 3 * C + 2 * (k - 1) * 3 * h) + 8
    x = np.random.default_rng(7).poisson(1.0, (60, C)).astype(np.float32)
    onnx = res.folder / "decoder.onnx"
    c, ort = StreamingDecoder(onnx, backend="c"), StreamingDecoder(onnx, backend="ort")
    np.testing.assert_allclose(c.run(x), ort.run(x), atol=1e-5)


@pytest.mark.skipif(
    not build.sanitizers_available(),
    reason="the host C compiler cannot build and run -fsanitize=address,undefined programs",
)
@pytest.mark.parametrize("cls", [WindowGRU, WindowLSTM])
def test_chain_builds_run_clean_under_asan_and_ubsan(cls, tmp_path):
    # the ring slots, the doubled window and the shared projection: no access out of bounds,
    # no undefined behaviour, and the same outputs as the optimised host build
    torch.manual_seed(8)
    onnx = contract_onnx(cls(C, 2).eval(), tmp_path / "m.onnx", C)
    program = float_program(load_decoder(onnx), "dense")
    assert program.describe["window_chain"] == {"bins": 4, "lag": 3}
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "float", 2, C)
    x = np.random.default_rng(9).poisson(1.0, (200, C)).astype(np.float32)
    sanitized = build.sanitized_run(tmp_path, x, lib.raw_dtype)
    assert np.array_equal(sanitized, lib.run(lib.states(1), x))
