"""Integer C path for LSTM decoders: one cell's arithmetic by hand, the numpy reference against
the brevitas model, the C bit for bit against the reference, h and c through the runtime's
state API, and 10,000 bins of each real recording."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cortexedge.errors import ContractError, CortexEdgeError
from cortexedge.export.c import build, emit_int
from cortexedge.export.c.generate import export_c
from cortexedge.export.c.int_extract import Quant, act_table, int_model
from cortexedge.export.c.model_ir import read_structure
from cortexedge.runtime import StreamingDecoder
from cortexedge.runtime.backends.c import CLibrary
from cortexedge.runtime.int_reference import IntDecoder, IntLSTMCell, Requant, load_int_model
from cortexedge.train.models.rnn import GRUDecoder, LSTMDecoder
from tests.export.c_helpers import prune_half, ptq, real_recording


def poisson(rows: int, channels: int, seed: int = 0, lam: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, (rows, channels)).astype(np.float32)


def small_lstm(layers: int = 2, channels: int = 12, hidden: int = 8, calib=None) -> LSTMDecoder:
    torch.manual_seed(1)
    model = LSTMDecoder(channels, hidden=hidden, layers=layers, transform="log1p").eval()
    prune_half(model)
    calib = poisson(400, channels) if calib is None else calib
    return ptq(model, torch.tensor(calib)[None])


def test_one_lstm_cell_by_hand():
    """One unit, one input: gate order i, f, g, o, c' = f·c + i·g and h' = o·tanh(c'), each a
    floor-shifted Q16 blend of table levels, computed here with Python integers."""
    q_sig, q_tanh, s_c = Quant(1 / 255, 0, 255), Quant(1 / 127, -127, 127), 0.02
    g = 24
    blend = np.array([round(q_sig.scale * s_c * 2**40), round(q_sig.scale * q_tanh.scale * 2**40),
                      round(q_sig.scale * q_tanh.scale * 2**40), g])  # fmt: skip
    none = Requant(np.ones(2, np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64), -128, 127)
    cell = IntLSTMCell(
        w_ih=np.array([[100], [-50], [90], [120]], np.int8),
        w_hh=np.array([[3], [2], [-4], [1]], np.int8), b_i=np.array([10, -20, 0, 5]),
        m_i=np.full(4, 40), m_h=np.full(4, 900), shift=np.full(4, 2),
        sigmoid=act_table("sigmoid", q_sig), tanh=act_table("tanh", q_tanh),
        cell_tanh=act_table("tanh", q_tanh), blend=blend, state=none, out=none,
        state_scale=0.01, cell_scale=s_c,
    )  # fmt: skip
    x, h, c = 37, -11, 60
    acc_i = cell.input_projection(np.array([[x]]))
    got = cell(acc_i, np.array([[h, c]]))
    pre = [((x * wi + b) * 40 + h * wh * 900 + 2) >> 2
           for wi, wh, b in zip((100, -50, 90, 120), (3, 2, -4, 1), (10, -20, 0, 5),
                                 strict=True)]  # fmt: skip
    level = lambda p, q, fn: min(max(math.floor(fn(p / 2**16) / q.scale + 0.5), q.qmin),  # noqa: E731
                                 q.qmax)  # fmt: skip
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    qi, qf, qo = (level(pre[k], q_sig, sig) for k in (0, 1, 3))
    qg = level(pre[2], q_tanh, math.tanh)
    c_new = (qf * c * int(blend[0]) + qi * qg * int(blend[1]) + (1 << (g - 1))) >> g
    h_new = (qo * level(c_new, q_tanh, math.tanh) * int(blend[2]) + (1 << (g - 1))) >> g
    assert got.tolist() == [[h_new, c_new]]
    # and in real units: c' = f·c + i·g, h' = o·tanh(c'), to the quantizers' resolution
    f, i, o = (q * q_sig.scale for q in (qf, qi, qo))
    assert abs(c_new / 2**16 - (f * c * s_c + i * qg * q_tanh.scale)) < 1e-4
    assert abs(h_new / 2**16 - o * math.tanh(c_new / 2**16)) < 0.01


def test_reference_tracks_the_brevitas_lstm():
    model = small_lstm()
    x = poisson(300, 12, seed=6, lam=2.0)
    with torch.no_grad():
        want = model(torch.tensor(x)[None])[0].numpy()
    im = int_model(read_structure(model), max_count=255)
    assert [type(c).__name__ for c in im.cells] == ["IntLSTMCell"] * 2
    got = IntDecoder(im).run(x.astype(np.uint8)) * im.out_scale
    err = np.abs(got - want)
    assert err.mean() <= 0.02 * want.std()  # the GRU path's stated bound
    assert err.max() <= 0.25 * want.std()


@pytest.mark.parametrize("policy, layers", [("dense", 2), ("sparse", 1), ("mask", 2)])
def test_lstm_c_equals_reference_bit_for_bit(tmp_path, policy, layers):
    im = int_model(read_structure(small_lstm(layers)), max_count=255)
    program = emit_int.emit(im, policy)
    assert {m.fmt for m in program.matrices} == {"dense": {"dense"}, "sparse": {"csr"},
                                                 "mask": {"mask"}}[policy]  # fmt: skip
    assert f"h[{layers}][16]" in program.files()["decoder.h"]  # h then c per layer
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "int", 2, 12)
    x = poisson(600, 12, seed=7, lam=2.0)
    assert np.array_equal(lib.run(lib.states(1), x), IntDecoder(im).run(x))


def test_lstm_h_and_c_through_the_state_api(tmp_path):
    """The runtime reads h and c of the C build as the reference holds them (times their
    scales); written into a fresh decoder, they continue bit for bit."""
    model = small_lstm()
    out = tmp_path / "c"
    export_c(model, out, bin_ms=20.0, max_count=15, verify_bins=500, reference_bins=500,
             cortex_m=False)  # fmt: skip
    man = json.loads((out / "decoder_c.json").read_text())
    assert man["states"] == [{"name": "h", "kind": "hidden", "layers": [0, 1]},
                             {"name": "c", "kind": "hidden", "layers": [2, 3]}]  # fmt: skip
    assert man["verification"]["bit_exact_bins"] == 500
    x = np.minimum(poisson(250, 12, seed=8, lam=2.0), 15)
    a = StreamingDecoder(out / "decoder.onnx", backend="c")
    a.run(x[:150])
    state = a.state
    im = load_int_model(out / "decoder_int.npz")
    ref = IntDecoder(im)
    ref.run(x[:150])
    for li, cell in enumerate(im.cells):
        h, c = ref.h[li, 0].astype(np.float32).reshape(2, 8)  # the reference's row [h, c]
        assert np.array_equal(state["h"][li, 0], h * np.float32(cell.state_scale))
        assert np.array_equal(state["c"][li, 0], c * np.float32(cell.cell_scale))
    b = StreamingDecoder(out / "decoder.onnx", backend="c")
    b.state = state
    assert np.array_equal(b.run(x[150:]), a.run(x[150:]))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["npz", "mat"])
def test_lstm_int_c_bit_exact_on_10000_real_bins(tmp_path, request, which):
    """A pruned W8A8 LSTM decoder on each real recording (20 ms .npz, 98 units; 50 ms MATLAB,
    52 channels): the C equals the numpy reference over 10,000 bins, and stays close to
    onnxruntime on the QCDQ graph; the header gives the recording's bin width."""
    rec, top = real_recording(which, request)
    x = rec.x[:10_000].astype(np.float32)
    model = small_lstm(1, x.shape[1], hidden=16, calib=x[:800])
    out = tmp_path / "c"
    res = export_c(model, out, recording=rec, max_count=top, verify_bins=2000,
                   reference_bins=200, cortex_m=False)  # fmt: skip
    assert res.manifest["verification"]["r2_vs_onnx"] > 0.99
    assert f"{rec.bin_ms:g} ms" in (out / "decoder.h").read_text()
    lib = CLibrary(out / "libdecoder.so", "int", rec.y.shape[1], x.shape[1])
    ref = IntDecoder(load_int_model(out / "decoder_int.npz")).run(x)
    assert np.array_equal(lib.run(lib.states(1), x), ref)


def test_an_lstm_bias_that_could_leave_int32_is_refused():
    im = int_model(read_structure(small_lstm(1)), max_count=255)
    im.cells[0].b_i[0] = -(2**31) + 5
    with pytest.raises(CortexEdgeError, match=r"cell 0: bias c0_bi plus its projection exceeds"):
        emit_int.emit(im)


def test_an_lstm_int_model_file_round_trips_and_a_tampered_one_is_refused(tmp_path):
    im = int_model(read_structure(small_lstm()), max_count=255)
    path = tmp_path / "m.npz"
    path.write_bytes(im.to_bytes())
    back = load_int_model(path)
    assert [type(c).__name__ for c in back.cells] == ["IntLSTMCell"] * 2
    x = poisson(120, 12, seed=9, lam=2.0).astype(np.uint8)
    assert np.array_equal(IntDecoder(back).run(x), IntDecoder(im).run(x))
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    for edit, message in ((lambda c: c.update({"__class__": "IntRNNCell"}), "'IntRNNCell'"),
                          (lambda c: c.pop("blend"), "'blend'")):  # fmt: skip
        bad = json.loads(json.dumps(meta))
        edit(bad["fields"]["cells"][0])
        arrays["__meta__"] = np.frombuffer(json.dumps(bad).encode(), np.uint8)
        np.savez(tmp_path / "bad.npz", **arrays)
        refused = rf"bad.npz: not a readable integer model .*{message}"
        with pytest.raises(ContractError, match=refused):
            load_int_model(tmp_path / "bad.npz")


@pytest.mark.parametrize("cls", [GRUDecoder, LSTMDecoder])
def test_a_row_pruned_to_zero_under_per_channel_scales_builds(tmp_path, cls):
    # a row that structured pruning emptied gets a vanishing per-channel scale from brevitas;
    # its bias must not be counted in those units (it was ~1e13 and refused as beyond int32)
    from cortexedge.compress.qat import calibrate, quantize
    from cortexedge.compress.quant_gru import QuantSpec

    torch.manual_seed(2)
    model = cls(12, hidden=8, layers=2, transform="log1p").eval()
    with torch.no_grad():
        model.rnn.weight_ih_l1[3].zero_()
    quantize(model, QuantSpec(per_channel=True))
    calibrate(model, [torch.tensor(poisson(400, 12))[None]])
    model.eval()
    im = int_model(read_structure(model), max_count=255)
    assert not im.cells[1].w_ih[3].any() and np.abs(im.cells[1].b_i).max() < 2**24
    for name, text in emit_int.emit(im).files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "int", 2, 12)
    x = poisson(400, 12, seed=12, lam=2.0)
    ref = IntDecoder(im).run(x)
    assert np.array_equal(lib.run(lib.states(1), x), ref)
    with torch.no_grad():
        want = model(torch.tensor(x)[None])[0].numpy()
    assert np.abs(ref * im.out_scale - want).mean() <= 0.02 * want.std()
