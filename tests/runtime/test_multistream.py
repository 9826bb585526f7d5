"""MultiStreamDecoder: N streams in one batched call equal N single streams; per-stream reset."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError
from cortexedge.runtime import MultiStreamDecoder, StreamingDecoder

N = 3


def streams(shape, n_bins: int, seed: int = 0) -> np.ndarray:
    """[bins, N, *shape] Poisson bins, a different stream on each row."""
    rng = np.random.default_rng(seed)
    return rng.poisson(1.5, size=(n_bins, N, *shape)).astype(np.float32)


def singles(path, bins: np.ndarray, backend: str) -> np.ndarray:
    """Reference: each stream decoded alone; [bins, N, D]."""
    return np.stack(
        [StreamingDecoder(path, backend=backend).run(bins[:, i]) for i in range(N)], axis=1
    )


@pytest.mark.parametrize("name", ["gru_op", "gru_cell", "lstm"])
@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_batched_streams_equal_single_streams(request, name, backend):
    built = request.getfixturevalue(name)
    bins = streams(built.meta.input.shape, 60)
    multi = MultiStreamDecoder(built.path, N, backend=backend)
    assert multi.batched
    got = np.stack([multi.step(b) for b in bins])
    np.testing.assert_allclose(got, singles(built.path, bins, backend), atol=1e-6)


def test_reset_one_stream_leaves_the_others(gru_op):
    bins = streams(gru_op.meta.input.shape, 40, seed=1)
    multi = MultiStreamDecoder(gru_op.path, N)
    for b in bins[:20]:
        multi.step(b)
    multi.reset(1)
    assert np.all(multi.states["h"][:, 1] == 0) and np.abs(multi.states["h"][:, 0]).max() > 0
    tail = np.stack([multi.step(b) for b in bins[20:]])
    ref = singles(gru_op.path, bins, "ort")
    np.testing.assert_allclose(tail[:, 0], ref[20:, 0], atol=1e-6)
    np.testing.assert_allclose(tail[:, 2], ref[20:, 2], atol=1e-6)
    fresh = StreamingDecoder(gru_op.path).run(bins[20:, 1])
    np.testing.assert_allclose(tail[:, 1], fresh, atol=1e-6)
    multi.reset()
    assert np.all(multi.states["h"] == 0)


def test_fixed_batch_one_falls_back_to_one_call_per_stream(onnx_build, tmp_path):
    path = onnx_build.save_int8_decoder(tmp_path / "f.onnx", batch=1)
    with pytest.warns(UserWarning, match="graph batch is fixed at 1; decoding 3 streams"):
        multi = MultiStreamDecoder(path, N)
    assert not multi.batched
    bins = streams((6,), 10, seed=2)
    got = np.stack([multi.step(b) for b in bins])
    np.testing.assert_allclose(got, singles(path, bins, "ort"), rtol=1e-6)
    assert multi.states["s"].shape == (N, 3)
    multi.reset(0)
    assert np.all(multi.states["s"][0] == 0) and np.any(multi.states["s"][1] != 0)


def test_bad_bin_names_the_stream_and_keeps_every_state(gru_op):
    bins = streams(gru_op.meta.input.shape, 6, seed=3)
    multi = MultiStreamDecoder(gru_op.path, N)
    for b in bins[:4]:
        multi.step(b)
    before = multi.states["h"]
    bad = bins[4].copy()
    bad[2, 0] = np.nan
    with pytest.raises(CortexEdgeError, match=r"stream 2 \(bin 4\): contains NaN or inf"):
        multi.step(bad)
    np.testing.assert_array_equal(multi.states["h"], before)
    with pytest.raises(CortexEdgeError, match=r"bins: expected shape \(3, 12\), got \(2, 12\)"):
        multi.step(bins[4][:2])


def test_bad_arguments(gru_op, onnx_build, tmp_path):
    with pytest.raises(CortexEdgeError, match="n_streams: must be >= 1, got 0"):
        MultiStreamDecoder(gru_op.path, 0)
    with pytest.raises(CortexEdgeError, match=r"stream_index: 5 is outside \[0, 3\)"):
        MultiStreamDecoder(gru_op.path, N).reset(5)
    path = onnx_build.save_int8_decoder(tmp_path / "b2.onnx", batch=2)
    with pytest.raises(CortexEdgeError, match="fixed batch of 2, cannot run 3 stream"):
        MultiStreamDecoder(path, N)
