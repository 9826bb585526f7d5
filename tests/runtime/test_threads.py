"""One StreamingDecoder shared by threads: every step happens once, whole, on every backend."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cortexedge.runtime.decoder import StreamingDecoder

THREADS, STEPS = 4, 300


@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_shared_decoder_loses_and_doubles_no_step(onnx_build, tmp_path, backend):
    shared_steps_are_whole(onnx_build.save_int8_decoder(tmp_path / "d.onnx"), backend)


def shared_steps_are_whole(path, backend: str, steps: int = STEPS) -> None:
    """THREADS threads step one decoder `steps` times each: the state and the multiset of
    outputs are those of THREADS * steps steps of a decoder of its own."""
    shared = StreamingDecoder(path, backend=backend)
    alone = StreamingDecoder(path, backend=backend)
    shape = shared.meta.input.shape
    rng = np.random.default_rng(0)
    bin_ = rng.integers(0, 3, size=shape).astype(shared.meta.input.dtype)
    # the same bin everywhere: after N steps in any interleaving the state is that of N steps
    expected = [alone.step(bin_) for _ in range(THREADS * steps)]
    outputs: list[list[np.ndarray]] = [[] for _ in range(THREADS)]
    start = threading.Barrier(THREADS)

    def work(k: int) -> None:
        start.wait()
        for _ in range(steps):
            outputs[k].append(shared.step(bin_))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert shared.bins_since_reset == THREADS * steps
    for name, value in alone.state.items():
        np.testing.assert_array_equal(shared.state[name], value)
    # every output of the shared decoder is one of the sequence, each exactly once
    got = sorted(tuple(np.round(y, 6)) for ys in outputs for y in ys)
    want = sorted(tuple(np.round(y, 6)) for y in expected)
    assert got == want
