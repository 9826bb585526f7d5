"""Integer C path: the numpy reference's arithmetic by hand, the reference against the brevitas
model, and the generated C bit for bit against the reference (10,000 bins of a real recording)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import emit_int
from cortexedge.export.c.generate import export_c
from cortexedge.export.c.int_extract import Quant, act_table, int_model
from cortexedge.export.c.model_ir import read_structure
from cortexedge.runtime import StreamingDecoder
from cortexedge.runtime.backends.c import CLibrary
from cortexedge.runtime.int_reference import IntDecoder, Requant, layer_norm, load_int_model
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.rnn import GRUDecoder
from tests.export.c_helpers import (
    contract_onnx,
    prune_half,
    ptq,
    real_rows,
    window_batches,
)


def poisson(rows: int, channels: int, seed: int = 0, lam: float = 0.5) -> np.ndarray:
    return np.random.default_rng(seed).poisson(lam, (rows, channels)).astype(np.float32)


def small_aegru(mode: str, layers: int = 1, seed: int = 0, pruned: bool = False) -> AEGRU:
    torch.manual_seed(seed)
    m = AEGRU(12, hidden=8, enc_dim=8, layers=layers, bin_width=4, num_steps=3, mode=mode,
              training_parts=False).eval()  # fmt: skip
    if pruned:
        prune_half(m)
    calib = window_batches(poisson(800, 12), 4, 3)
    return ptq(m, calib if mode == "window" else calib.reshape(1, -1, 12))


def test_requant_is_floor_of_shifted_sum_with_saturation():
    # q = clip((x·m + c) >> s): x=-3: (-9 + 2) >> 2 = floor(-7/4) = -2; x=5: 17 >> 2 = 4;
    # x=100: 302 >> 2 = 75 -> clipped to 10; x=-100: -298 >> 2 = -75 -> clipped to -10
    rq = Requant(np.array([3]), np.array([2]), np.array([2]), -10, 10)
    assert rq(np.array([-3, 5, 100, -100])).tolist() == [-2, 4, 10, -10]


@pytest.mark.parametrize(
    "kind, quant, fn",
    [
        ("sigmoid", Quant(1 / 255, 0, 255), lambda x: 1 / (1 + np.exp(-x))),
        ("sigmoid", Quant(0.0034, 0, 255), lambda x: 1 / (1 + np.exp(-x))),
        ("tanh", Quant(1 / 128, -128, 127), np.tanh),
        ("tanh", Quant(0.05, -8, 7), np.tanh),
    ],
)
def test_activation_table_equals_quantized_float_activation(kind, quant, fn):
    table = act_table(kind, quant)
    pre = np.arange(-12 * 2**16, 12 * 2**16, 37, dtype=np.int64)  # every 37th Q16 value
    want = np.clip(np.round(fn(pre / 2**16) / quant.scale), quant.qmin, quant.qmax)
    got = table(pre)
    assert np.array_equal(got, want)
    assert len(table.lut) <= 1024


def test_integer_layer_norm_matches_float_to_one_q16_step():
    h = np.array([[3 * 2**16, -(2**16), 2**15, 0, 7 * 2**14]], dtype=np.int64)
    x = h[0] / 2**16
    want = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
    got = layer_norm(h, round(1e-5 * 2**32))[0] / 2**16
    np.testing.assert_allclose(got, want, atol=2 / 2**16)


@pytest.mark.parametrize("mode, layers", [("window", 1), ("stateful", 2)])
def test_reference_tracks_the_brevitas_model(mode, layers):
    model = small_aegru(mode, layers)
    x = poisson(200, 12, seed=3)
    with torch.no_grad():
        want = model.stream(torch.tensor(x)[None])[0].numpy()
    im = int_model(read_structure(model), max_count=15)
    got = IntDecoder(im).run(x.astype(np.uint8)) * im.out_scale
    err = np.abs(got - want)
    assert err.mean() <= 0.02 * want.std()  # the stated bound (rounding flips near ties)
    assert err.max() <= 0.25 * want.std()


def test_int_model_file_round_trip(tmp_path):
    im = int_model(read_structure(small_aegru("window")), max_count=7)
    (tmp_path / "m.npz").write_bytes(im.to_bytes())
    back = load_int_model(tmp_path / "m.npz")
    x = poisson(60, 12, seed=4).astype(np.uint8)
    assert np.array_equal(IntDecoder(back).run(x), IntDecoder(im).run(x))
    assert back.cells[0].sigmoid.qmax == 255 and back.mode == "window"


@pytest.mark.parametrize(
    "mode, layers, policy, top",  # top: max_count, 3- or 8-bit stored samples
    [("window", 2, "dense", 5), ("window", 1, "sparse", 255), ("stateful", 1, "sparse", 5),
     ("window", 1, "mask", 5)],
)  # fmt: skip
def test_c_equals_reference_bit_for_bit(tmp_path, mode, layers, policy, top):
    from cortexedge.export.c import build

    model = small_aegru(mode, layers, pruned=policy == "mask")
    im = int_model(read_structure(model), max_count=top)
    program = emit_int.emit(im, policy)
    want = {"dense": "dense", "sparse": "csr", "mask": "mask"}[policy]
    assert {m.fmt for m in program.matrices} == {want}
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "int", 2, 12)
    x = poisson(700, 12, seed=5, lam=1.0)
    x[::50, 3] = 9 if top == 5 else 200
    states = lib.states(1)
    if top == 5:
        with pytest.raises(CortexEdgeError, match="not a whole spike count"):
            lib.run(states, x)  # the host shim refuses counts above max_count, decodes nothing
        x = np.minimum(x, top)
    assert np.array_equal(lib.run(states, x), IntDecoder(im).run(x))


@pytest.mark.parametrize("width", [3, 4])
def test_layer0_projection_kept_in_24_or_32_bits_is_bit_exact(tmp_path, monkeypatch, width):
    from cortexedge.export.c import build

    im = int_model(read_structure(small_aegru("window", 2)), max_count=5)
    bound = int(np.abs(im.cells[0].w_ih.astype(np.int64)).sum(1).max()) * 128
    assert bound < 2**23 and emit_int.layout(im).acc0_bytes == 3  # this one fits 24 bits
    monkeypatch.setattr(emit_int, "_acc0_bytes", lambda model: width)  # the other kind too
    program = emit_int.emit(im, "dense")
    assert f"typedef {'uint8_t' if width == 3 else 'int32_t'} acc0_t;" in program.source
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "int", 2, 12)
    x = np.minimum(poisson(500, 12, seed=8, lam=1.5), 5)
    assert np.array_equal(lib.run(lib.states(1), x), IntDecoder(im).run(x))


def test_effective_macs_leave_out_the_zero_weights_dense_storage_runs():
    # CSR executes only the non-zero weights: its total is the dense build's effective count
    im = int_model(read_structure(small_aegru("window", 1, pruned=True)), max_count=5)
    dense, csr = emit_int.emit(im, "dense").macs, emit_int.emit(im, "sparse").macs
    assert dense["effective"] == csr["total"] == csr["effective"] < dense["total"]
    zeros = sum(int((w == 0).sum()) for w in (im.cells[0].w_ih, im.cells[0].w_hh))
    assert zeros > 0 and dense["total"] - dense["effective"] >= zeros


def test_a_weights_budget_takes_the_fewest_instructions_that_fit(tmp_path):
    from cortexedge.export.c import build, sparse
    from cortexedge.export.c.program import runs_per_step

    torch.manual_seed(2)  # wide enough that pruning saves bytes (8 columns do not)
    model = AEGRU(48, hidden=32, enc_dim=32, bin_width=4, num_steps=3, mode="window",
                  training_parts=False).eval()  # fmt: skip
    prune_half(model)
    im = int_model(read_structure(ptq(model, window_batches(poisson(800, 48), 4, 3))), max_count=5)
    dense, small = emit_int.emit(im, "dense"), emit_int.emit(im, "size")
    budget = (dense.weight_bytes + small.weight_bytes) // 2
    program = emit_int.emit(im, "auto", budget)
    assert small.weight_bytes <= program.weight_bytes <= budget < dense.weight_bytes
    # every other combination of formats that fits costs at least as many estimated instructions
    lay, mats = program.layout, {m.name: m for m in program.matrices}
    fixed = program.weight_bytes - sum(m.nbytes for m in program.matrices)

    def cost(plan):
        return sum(sparse.options(mats[n].w)[f][1] * runs_per_step(lay, n) for n, f in plan.items())

    chosen = {n: m.fmt for n, m in mats.items()}
    names = list(mats)
    for combo in itertools.product(*(sparse.options(mats[n].w) for n in names)):
        plan = dict(zip(names, combo, strict=True))
        size = sum(sparse.options(mats[n].w)[f][0] for n, f in plan.items()) + fixed
        if size <= budget:
            assert cost(plan) >= cost(chosen)
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "int", 2, 48)
    x = np.minimum(poisson(400, 48, seed=6, lam=1.0), 5)
    assert np.array_equal(lib.run(lib.states(1), x), IntDecoder(im).run(x))
    least = small.weight_bytes
    with pytest.raises(CortexEdgeError, match=rf"weights budget {least - 1:,} B: the constant data "
                       rf"takes at least {least:,} B \(matrices"):  # fmt: skip
        emit_int.emit(im, "auto", least - 1)


def test_gru_decoder_w4_without_encoder(tmp_path):
    from cortexedge.export.c import build

    torch.manual_seed(1)
    model = GRUDecoder(12, hidden=8, layers=2, transform="log1p").eval()
    prune_half(model)
    ptq(model, torch.tensor(poisson(300, 12))[None], weight_bits=4)
    im = int_model(read_structure(model), max_count=255)
    assert im.encoder is None and np.abs(im.cells[0].w_ih).max() <= 7
    for name, text in emit_int.emit(im).files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), "int", 2, 12)
    x = poisson(300, 12, seed=6, lam=2.0)
    assert np.array_equal(lib.run(lib.states(1), x), IntDecoder(im).run(x))


@pytest.mark.parametrize(
    "options, message",
    [({"weights_budget": 100}, r"weights budget 100 B: the constant data takes at least [\d,]+ B"),
     ({"weights_budget": 0}, r"weights_budget: must be a whole number of bytes >= 1, got 0"),
     ({"weights_budget": 9000, "sparse": "size"}, r"sparse must be 'auto', not 'size'")],
)  # fmt: skip
def test_a_bad_weights_budget_is_refused_before_anything_is_written(tmp_path, options, message):
    out = tmp_path / "c"
    with pytest.raises(CortexEdgeError, match=message):
        export_c(small_aegru("window"), out, cortex_m=False, **options)
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_aegru_int_c_bit_exact_on_10000_real_bins(tmp_path):
    """Pruned + W8A8 AEGRU (window mode, C=98): C == numpy reference over 10,000 bins of the
    real recording, through the runtime's c backend; close to onnxruntime on the QCDQ graph."""
    x = real_rows(10_000)
    torch.manual_seed(2)
    model = AEGRU(98, hidden=32, bin_width=4, num_steps=5, training_parts=False).eval()
    prune_half(model)
    ptq(model, window_batches(x, 4, 5, rows=800))
    onnx = contract_onnx(model, tmp_path / "q.onnx", 98)
    out = tmp_path / "c"
    res = export_c(model, out, onnx_path=onnx, max_count=7, verify_bins=2000,
                   reference_bins=200, cortex_m=False)  # fmt: skip
    im = load_int_model(out / "decoder_int.npz")
    ref = IntDecoder(im).run(x)
    lib = CLibrary(out / "libdecoder.so", "int", 2, 98)
    assert np.array_equal(lib.run(lib.states(1), x), ref)
    y_c = StreamingDecoder(out / "decoder.onnx", backend="c").run(x)
    scale = im.out_scale.astype(np.float32)
    assert np.array_equal(y_c, ref.astype(np.float32) * scale)
    y_q = StreamingDecoder(out / "decoder.onnx", backend="ort").run(x)
    err = np.abs(y_c - y_q)
    assert err.mean() <= 0.02 * y_q.std()
    assert res.manifest["verification"]["bit_exact_bins"] == 200


def test_a_bias_that_could_leave_int32_with_its_projection_is_refused():
    # the C adds a gate's projection and bias in 32 bits: a bias this close to 2^31 is refused
    # before any file is written (no trained model has one; a tampered integer model might)
    im = int_model(read_structure(small_aegru("stateful")), max_count=7)
    im.cells[0].b_i[5] = 2**31 - 10
    with pytest.raises(CortexEdgeError, match=r"cell 0: bias c0_bi plus its projection exceeds"):
        emit_int.emit(im)
