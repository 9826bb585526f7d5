"""Odd inputs a caller may pass a decoder: one clear error each, the state left as it was."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.decoder import StreamingDecoder


@pytest.fixture
def decoder(onnx_build, tmp_path) -> StreamingDecoder:
    return StreamingDecoder(onnx_build.save_int8_decoder(tmp_path / "d.onnx"))


@pytest.mark.parametrize(
    "bin_, message",
    [
        ([[1, 2], [3]], "bin 0: not an array of numbers"),  # ragged nested list
        (["a", "b", "c", "d"], "bin 0: dtype <U1 cannot feed a float32 input"),
        (np.array([1 + 2j] * 4), "bin 0: dtype complex128 cannot feed a float32 input"),
    ],
)
def test_odd_bins_are_one_error_and_change_nothing(decoder, bin_, message):
    before = decoder.state
    with pytest.raises(CortexEdgeError, match=message):
        decoder.step(bin_)
    assert decoder.bins_since_reset == 0
    for name, value in before.items():
        np.testing.assert_array_equal(decoder.state[name], value)


def test_state_values_that_overflow_float32_are_refused(decoder):
    before = decoder.state
    huge = {name: np.full(v.shape, 1e300) for name, v in before.items()}
    with pytest.raises(CortexEdgeError, match=r"state '\w+': a value overflows float32"):
        decoder.state = huge
    for name, value in before.items():
        np.testing.assert_array_equal(decoder.state[name], value)
