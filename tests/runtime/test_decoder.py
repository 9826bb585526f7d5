"""StreamingDecoder: backends agree with torch; run == step; checkpoints; missing and bad bins."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge.contract import InputSpec
from cortexedge.errors import ContractError, CortexEdgeError
from cortexedge.runtime import StreamingDecoder

MODELS = ["gru_op", "gru_cell", "lstm", "conv"]


def spikes(built, n: int, seed: int = 0) -> np.ndarray:
    """Poisson spike-count bins of the decoder's input shape (float32)."""
    shape = (n, *built.meta.input.shape)
    return np.random.default_rng(seed).poisson(1.5, size=shape).astype(np.float32)


@pytest.mark.parametrize("name", MODELS)
def test_ort_numpy_and_torch_agree_over_a_stream(request, name):
    built = request.getfixturevalue(name)
    bins = spikes(built, 300)
    want = built.torch_run(bins)
    for backend in ("ort", "numpy"):
        dec = StreamingDecoder(built.path, backend=backend)
        got = np.array([dec.step(b) for b in bins])
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=backend)
        assert all(np.abs(v).max() > 0.01 for v in dec.state.values())  # state really carried
        assert dec.bins_since_reset == 300


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_run_equals_repeated_step(gru_op, backend):
    bins = spikes(gru_op, 120, seed=1)
    dec = StreamingDecoder(gru_op.path, backend=backend)
    stepped = np.array([dec.step(b) for b in bins])
    dec.reset()
    np.testing.assert_array_equal(dec.run(bins), stepped)
    assert dec.run(bins[:0]).shape == (0, 2)


def test_initial_state_comes_from_the_metadata(gru_cell):
    dec = StreamingDecoder(gru_cell.path)
    np.testing.assert_array_equal(dec.state["h"], np.full((1, 16), 0.1, np.float32))


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_state_checkpoint_round_trip_across_sessions(lstm, backend):
    bins = spikes(lstm, 80, seed=2)
    a = StreamingDecoder(lstm.path, backend=backend)
    a.run(bins[:50])
    snapshot = a.state
    tail = a.run(bins[50:])
    b = StreamingDecoder(lstm.path, backend="numpy" if backend == "ort" else "ort")
    b.state = snapshot
    np.testing.assert_allclose(b.run(bins[50:]), tail, atol=1e-6)
    snapshot["h"][...] = 99  # a copy: editing it does not touch the decoder
    assert np.abs(a.state["h"]).max() < 1


def test_bad_state_is_refused_and_state_kept(gru_op):
    dec = StreamingDecoder(gru_op.path)
    dec.run(spikes(gru_op, 10))
    before = dec.state
    for bad, message in [
        ({"c": before["h"]}, r"state: expected names \['h'\], got \['c'\]"),
        ({"h": np.zeros((1, 16))}, r"state 'h': expected shape \(1, 1, 16\), got \(1, 16\)"),
        ({"h": np.full((1, 1, 16), np.nan)}, "state 'h': contains NaN or inf"),
        ([1, 2], "state: expected a dict of arrays, got list"),
    ]:
        with pytest.raises(CortexEdgeError, match=message):
            dec.state = bad
        np.testing.assert_array_equal(dec.state["h"], before["h"])


def test_missing_bin_policies(gru_op):
    bins = spikes(gru_op, 20, seed=3)
    zero = np.zeros_like(bins[0])
    for policy, replacement in (("hold", bins[-1]), ("zero", zero)):
        ref = StreamingDecoder(gru_op.path)
        ref.run(bins)
        want = ref.step(replacement)
        dec = StreamingDecoder(gru_op.path, missing=policy)
        dec.run(bins)
        np.testing.assert_array_equal(dec.step(None), want)
        np.testing.assert_array_equal(dec.state["h"], ref.state["h"])
        assert dec.bins_since_reset == 21
    fresh = StreamingDecoder(gru_op.path).step(zero)
    dec = StreamingDecoder(gru_op.path, missing="reset")
    dec.run(bins)
    np.testing.assert_array_equal(dec.step(None), fresh)
    assert dec.bins_since_reset == 1
    hold_first = StreamingDecoder(gru_op.path, missing="hold")  # nothing to hold yet: zeros
    np.testing.assert_array_equal(hold_first.step(None), fresh)


@pytest.mark.parametrize("backend", ["ort", "numpy"])
@pytest.mark.parametrize(
    "make_bad, message",
    [
        (lambda b: b[:-1], r"bin 5: expected shape \(12,\), got \(11,\)"),
        (lambda b: b[None], r"bin 5: expected shape \(12,\), got \(1, 12\)"),
        (lambda b: np.where(np.arange(12) == 3, np.nan, b), "bin 5: contains NaN or inf"),
        (lambda b: np.where(np.arange(12) == 3, np.inf, b), "bin 5: contains NaN or inf"),
        (lambda b: b - 3, r"bin 5: spike counts must be non-negative \(min -3\)"),
        (lambda b: b.astype(str), r"bin 5: dtype <U32 cannot feed a float32 input"),
    ],
)
def test_bad_bin_names_its_index_and_keeps_the_state(gru_op, backend, make_bad, message):
    bins = spikes(gru_op, 8, seed=4)
    dec = StreamingDecoder(gru_op.path, backend=backend)
    dec.run(bins[:5])
    before = dec.state
    with pytest.raises(CortexEdgeError, match=message):
        dec.step(make_bad(bins[5]))
    np.testing.assert_array_equal(dec.state["h"], before["h"])
    assert dec.bins_since_reset == 5
    clean = StreamingDecoder(gru_op.path, backend=backend)
    np.testing.assert_array_equal(dec.run(bins[5:]), (clean.run(bins[:5]), clean.run(bins[5:]))[1])


def test_bad_bin_inside_run_decodes_nothing(gru_op):
    bins = spikes(gru_op, 10, seed=5)
    dec = StreamingDecoder(gru_op.path)
    dec.run(bins[:3])
    before = dec.state
    bad = bins.copy()
    bad[7, 2] = -1
    with pytest.raises(CortexEdgeError, match=r"^bin 10: spike counts must be non-negative"):
        dec.run(bad)
    np.testing.assert_array_equal(dec.state["h"], before["h"])
    assert dec.bins_since_reset == 3
    with pytest.raises(CortexEdgeError, match=r"bins 3\.\.4: expected shape \(2, 12\), got"):
        dec.run(bins[:2, :5])


def test_declared_range_is_enforced(onnx_build, tmp_path):
    path = onnx_build.save_int8_decoder(
        tmp_path / "c.onnx", input=InputSpec((6,), "calcium", "float32", (-1.0, 1.0))
    )
    dec = StreamingDecoder(path)
    dec.step(np.full(6, -0.5))  # negative is fine for calcium; ints/float64 are cast
    with pytest.raises(CortexEdgeError, match=r"bin 1: values must be <= 1 \(max 2\)"):
        dec.step(np.array([0, 0, 2.0, 0, 0, 0]))
    with pytest.raises(CortexEdgeError, match=r"bin 1: values must be >= -1 \(min -3\)"):
        dec.step(np.array([0, 0, -3.0, 0, 0, 0]))


def test_int8_graph_streams_its_integrator(onnx_build, tmp_path):
    """Hand check: s' = x @ (0.05 Wq) + 0.5 s, on both backends, fixed batch 1 accepted."""
    m, wq = onnx_build.int8_decoder()
    path = onnx_build.save_int8_decoder(tmp_path / "i.onnx", batch=1)
    w = wq.astype(np.float32) * np.float32(0.05)
    x = np.arange(12, dtype=np.float32).reshape(2, 6)
    s1 = x[0] @ w
    s2 = x[1] @ w + 0.5 * s1
    for backend in ("ort", "numpy"):
        out = StreamingDecoder(path, backend=backend).run(x)
        np.testing.assert_allclose(out, [s1, s2], rtol=1e-6)


def test_returned_outputs_are_copies(gru_op):
    dec = StreamingDecoder(gru_op.path)
    bins = spikes(gru_op, 2)
    y0 = dec.step(bins[0])
    kept = y0.copy()
    dec.step(bins[1])
    np.testing.assert_array_equal(y0, kept)


def test_bad_options(gru_op, tmp_path):
    with pytest.raises(CortexEdgeError, match=r"backend 'tpu' is not available \(choose from"):
        StreamingDecoder(gru_op.path, backend="tpu")
    with pytest.raises(CortexEdgeError, match="missing: 'skip' is not one of"):
        StreamingDecoder(gru_op.path, missing="skip")
    with pytest.raises(CortexEdgeError, match="threads: must be >= 1, got 0"):
        StreamingDecoder(gru_op.path, threads=0)
    with pytest.raises(CortexEdgeError, match="decoder file not found"):
        StreamingDecoder(tmp_path / "none.onnx")


def test_fixed_batch_other_than_one_is_refused(onnx_build, tmp_path):
    path = onnx_build.save_int8_decoder(tmp_path / "b4.onnx", batch=4)
    with pytest.raises(ContractError, match="graph has a fixed batch of 4, cannot run 1 stream"):
        StreamingDecoder(path)
