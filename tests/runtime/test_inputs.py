"""BinChecker: the per-step bin validation and its top-byte screen (runtime/inputs.py).

The screen may only accept numbers that the exact check accepts; it is checked exhaustively on
every float16 bit pattern and on random float32 patterns. Everything it lets through to the
exact check (-0.0, huge finite values) must still be accepted, and every bad value must raise
naming its bin or row, with the caller's array left untouched.
"""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge.contract import InputSpec
from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.inputs import BinChecker, _screen_bytes

SPIKES = InputSpec((4,), "spike_counts", "float32", (0.0, None))
FREE = InputSpec((4,), "calcium", "float32", (None, None))


def label(row: int | None) -> str:
    return "block" if row is None else f"row {row}"


def top_bytes(values: np.ndarray) -> np.ndarray:
    """The top (most significant) byte of every number, as the screen reads it."""
    size = values.dtype.itemsize
    return values.reshape(-1).view(np.uint8)[size - 1 :: size]


@pytest.mark.parametrize("dtype, bits", [(np.float16, np.uint16), (np.float32, np.uint32)])
def test_screen_only_accepts_valid_numbers(dtype, bits):
    if bits is np.uint16:
        patterns = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)  # all of them
    else:
        patterns = np.random.default_rng(0).integers(0, 1 << 32, 200_000, dtype=np.uint64)
        patterns = np.concatenate([patterns.astype(np.uint32), [0x7F800000, 0x7F7FFFFF]])
    values = patterns.view(dtype)
    for lo, valid in [(0.0, np.isfinite(values) & (values >= 0)), (None, np.isfinite(values))]:
        screen = np.frombuffer(_screen_bytes(np.dtype(dtype), lo, None), dtype=np.uint8)
        passed = np.isin(top_bytes(values), screen)
        assert valid[passed].all()  # sound: nothing invalid passes
        ordinary = valid & (np.abs(values) < 1e4) & (~np.signbit(values) | (lo is None))
        assert passed[ordinary].all()  # useful: ordinary values pass (-0.0 may go on)


def test_no_screen_for_other_ranges():
    assert _screen_bytes(np.dtype(np.float32), 0.0, 5.0) is None
    assert _screen_bytes(np.dtype(np.float32), -1.0, None) is None
    assert _screen_bytes(np.dtype(np.int16), 0.0, None) is None


def test_into_casts_into_the_buffer():
    check = BinChecker(SPIKES)
    buf = check.buffer()
    check.into(np.array([0, 3, 1, 7]), buf, None, label)  # int64 in, float32 out
    np.testing.assert_array_equal(buf, [[0, 3, 1, 7]])
    assert buf.dtype == np.float32
    check.into([1.5, 2.0, 0.0, 4.0], buf, None, label)  # a list is accepted too
    np.testing.assert_array_equal(buf, [[1.5, 2, 0, 4]])
    other = np.empty((1, 4), dtype=np.float32)  # not made by buffer(): same result
    check.into(np.array([2.0, 0, 0, 1]), other, None, label)
    np.testing.assert_array_equal(other, [[2, 0, 0, 1]])


def test_values_the_screen_defers_are_accepted():
    check = BinChecker(SPIKES)
    buf = check.buffer()
    edge = np.array([-0.0, 3e38, 0.0, np.finfo(np.float32).max], dtype=np.float32)
    check.into(edge, buf, None, label)
    np.testing.assert_array_equal(buf[0], edge)
    assert np.signbit(buf[0, 0])


@pytest.mark.parametrize(
    "value, message",
    [
        (np.nan, r"^row 0: contains NaN or inf$"),
        (np.inf, r"^row 0: contains NaN or inf$"),
        (-np.inf, r"^row 0: contains NaN or inf$"),
        (1e300, r"^row 0: contains NaN or inf$"),  # float64 that overflows float32
        (-2.0, r"^row 0: spike counts must be non-negative \(min -2\)$"),
        (-1e-40, r"^row 0: spike counts must be non-negative"),  # a float32 subnormal
    ],
)
def test_bad_spike_values_raise_and_leave_input_untouched(value, message):
    x = np.array([1.0, value, 0.0, 2.0])
    kept = x.copy()
    check = BinChecker(SPIKES)
    with pytest.raises(CortexEdgeError, match=message):
        check.into(x, check.buffer(), None, label)
    np.testing.assert_array_equal(x, kept)


def test_block_names_the_bad_row():
    check = BinChecker(SPIKES)
    block = np.ones((5, 4), dtype=np.float32)
    block[3, 1] = -1
    with pytest.raises(CortexEdgeError, match=r"^row 3: spike counts must be non-negative"):
        check.into(block, check.buffer(5), 5, label)
    block[3, 1], block[1, 0] = 1, np.nan
    with pytest.raises(CortexEdgeError, match=r"^row 1: contains NaN or inf"):
        check(block, 5, label)
    with pytest.raises(CortexEdgeError, match=r"^block: expected shape \(5, 4\), got \(4, 4\)"):
        check(block[:4], 5, label)


def test_unbounded_range_accepts_negatives_and_refuses_nonfinite():
    check = BinChecker(FREE)
    buf = check.buffer()
    x = np.array([-3.5, 2.0, -0.0, -1e30], dtype=np.float32)
    check.into(x, buf, None, label)
    np.testing.assert_array_equal(buf[0], x)
    for bad in (np.nan, -np.inf):
        with pytest.raises(CortexEdgeError, match=r"^row 0: contains NaN or inf$"):
            check.into(np.array([0.0, bad, 1.0, 1.0]), buf, None, label)


def test_bounded_range_uses_the_exact_check():
    check = BinChecker(InputSpec((4,), "calcium", "float32", (-1.0, 1.0)))
    buf = check.buffer()
    check.into(np.array([-1.0, 1.0, 0.5, 0.0]), buf, None, label)
    with pytest.raises(CortexEdgeError, match=r"^row 0: values must be <= 1 \(max 2\)$"):
        check.into(np.array([0.0, 2.0, 0.0, 0.0]), buf, None, label)
    with pytest.raises(CortexEdgeError, match=r"^row 0: contains NaN or inf$"):
        check.into(np.array([0.0, np.inf, 0.0, 0.0]), buf, None, label)


def test_multistream_error_counts_bins_since_each_stream_reset(gru_op):
    from cortexedge.runtime import MultiStreamDecoder

    multi = MultiStreamDecoder(gru_op.path, 3)
    ok = np.ones((3, *gru_op.meta.input.shape), dtype=np.float32)
    for _ in range(5):
        multi.step(ok)
    multi.reset(1)
    multi.step(ok)
    bad = ok.copy()
    bad[1, 0] = -1
    with pytest.raises(CortexEdgeError, match=r"^stream 1 \(bin 1\): spike counts must be"):
        multi.step(bad)
    bad[1, 0], bad[2, 3] = 1, np.inf
    with pytest.raises(CortexEdgeError, match=r"^stream 2 \(bin 6\): contains NaN or inf"):
        multi.step(bad)
    multi.reset()
    with pytest.raises(CortexEdgeError, match=r"^stream 2 \(bin 0\): contains NaN or inf"):
        multi.step(bad)
