"""Windowing against hand-computed arrays: segment boundaries, excluded rows, strides, errors."""

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.windows import (
    aegru_windows,
    box_sum,
    gather_windows,
    sliding_windows,
    window_ends,
)

# 12 rows, segment 0 = rows 0..6, segment 1 = rows 7..11; val takes rows 7, 8 of segment 1
X = np.array([1, 0, 2, 1, 3, 0, 1, 2, 0, 1, 1, 4], dtype=np.uint8)[:, None]
SEG = np.array([0] * 7 + [1] * 5)
SPLIT = {"train": np.arange(7), "val": np.array([7, 8]), "test": np.array([9, 10, 11])}


def _rec(**kw) -> Recording:
    args = dict(x=X, bin_ms=4.0, y=np.arange(12, dtype=np.float32)[:, None], segment=SEG)
    args.update(kw)
    return Recording(split={k: v.copy() for k, v in SPLIT.items()}, **args)


# ---------------------------------------------------------------- box_sum
def test_box_sum_restarts_at_segment_start():
    out = box_sum(X, 2, SEG)
    assert out.dtype == np.float32 and out.shape == (12, 1)
    np.testing.assert_array_equal(out[:, 0], [1, 1, 2, 3, 4, 3, 1, 2, 2, 1, 2, 5])
    np.testing.assert_array_equal(box_sum(X, 3, SEG)[:, 0], [1, 1, 3, 3, 6, 4, 4, 2, 2, 3, 2, 6])


def test_box_sum_width_one_is_identity_and_runs_of_a_reused_id_are_separate():
    np.testing.assert_array_equal(box_sum(X, 1, SEG), X.astype(np.float32))
    x = np.array([1.5, 2.0, 4.0, 8.0, 16.0, 32.0])
    seg = np.array([0, 0, 1, 1, 0, 0])  # id 0 again after id 1: a new run
    np.testing.assert_allclose(box_sum(x, 3, seg), [1.5, 3.5, 4, 12, 16, 48])


def test_box_sum_keeps_trailing_shape():
    x = np.arange(24).reshape(6, 2, 2)
    out = box_sum(x, 2, np.array([0, 0, 0, 1, 1, 1]))
    assert out.shape == (6, 2, 2)
    np.testing.assert_array_equal(out[1], x[0] + x[1])
    np.testing.assert_array_equal(out[3], x[3])
    np.testing.assert_array_equal(out[5], x[4] + x[5])


def test_box_sum_errors():
    with pytest.raises(CortexEdgeError, match="width: expected a positive integer, got 0"):
        box_sum(X, 0, SEG)
    with pytest.raises(CortexEdgeError, match="segment: 11 ids for 12 rows of x"):
        box_sum(X, 2, SEG[:-1])


# ---------------------------------------------------------------- window_ends
def test_window_ends_stay_inside_segments():
    seg = np.array([0] * 5 + [1] * 5)
    np.testing.assert_array_equal(window_ends(seg, np.arange(10), 3), [2, 3, 4, 7, 8, 9])
    # stride counts from the first full window of each run
    np.testing.assert_array_equal(window_ends(seg, np.arange(10), 3, stride=2), [2, 4, 7, 9])
    np.testing.assert_array_equal(window_ends(seg, np.arange(10), 1), np.arange(10))
    assert window_ends(seg, np.arange(10), 6).size == 0


def test_window_ends_skip_rows_outside_the_split():
    seg = np.array([0] * 5 + [1] * 5)
    rows = np.array([0, 1, 2, 4, 5, 6, 7, 8, 9])  # row 3 belongs to another split
    np.testing.assert_array_equal(window_ends(seg, rows, 2), [1, 2, 6, 7, 8, 9])
    np.testing.assert_array_equal(window_ends(seg, rows[::-1], 2), [1, 2, 6, 7, 8, 9])


def test_window_ends_errors():
    with pytest.raises(CortexEdgeError, match=r"rows: index out of range \[0, 12\)"):
        window_ends(SEG, np.array([3, 12]), 2)
    with pytest.raises(CortexEdgeError, match="span: expected a positive integer"):
        window_ends(SEG, np.arange(12), 0)
    with pytest.raises(CortexEdgeError, match="stride: expected a positive integer"):
        window_ends(SEG, np.arange(12), 2, stride=-1)


# ---------------------------------------------------------------- gather_windows
def test_gather_windows_with_dilation():
    arr = np.arange(10) * 10
    out = gather_windows(arr, np.array([4, 9]), 3, dilation=2)
    np.testing.assert_array_equal(out, [[0, 20, 40], [50, 70, 90]])
    frames = np.arange(40).reshape(10, 2, 2)
    out = gather_windows(frames, np.array([1, 5]), 2)
    assert out.shape == (2, 2, 2, 2)
    np.testing.assert_array_equal(out[1, 0], frames[4])


def test_gather_windows_rejects_windows_before_row_zero():
    with pytest.raises(
        CortexEdgeError, match=r"ends: windows of 3 x 1 rows reach outside \[0, 10\)"
    ):
        gather_windows(np.arange(10), np.array([1]), 3)


# ---------------------------------------------------------------- aegru_windows
def test_aegru_windows_hand_computed():
    w = aegru_windows(_rec(), "train", bin_width=2, num_steps=2)
    np.testing.assert_array_equal(w.ends, [3, 4, 5, 6])
    # box sums of width 2: [1, 1, 2, 3, 4, 3, 1 | ...]; step k ends at end - (1 - k) * 2
    np.testing.assert_array_equal(w.x[:, :, 0], [[1, 3], [2, 4], [3, 3], [4, 1]])
    np.testing.assert_array_equal(w.y[:, :, 0], [[1, 3], [2, 4], [3, 5], [4, 6]])
    assert w.x.dtype == np.float32 and w.x.shape == (4, 2, 1) and w.labels is None
    strided = aegru_windows(_rec(), "train", bin_width=2, num_steps=2, stride=2)
    np.testing.assert_array_equal(strided.ends, [3, 5])


def test_aegru_windows_never_read_rows_of_another_split():
    # test = rows 9..11; row 8 (val) must not enter the box sum of the window ending at 10
    w = aegru_windows(_rec(), "test", bin_width=2, num_steps=1)
    np.testing.assert_array_equal(w.ends, [10, 11])
    np.testing.assert_array_equal(w.x[:, 0, 0], [1 + 1, 1 + 4])
    w = aegru_windows(_rec(), "test", bin_width=1, num_steps=3)
    np.testing.assert_array_equal(w.ends, [11])
    np.testing.assert_array_equal(w.x[0, :, 0], [1, 1, 4])


def test_aegru_windows_error_when_no_window_fits():
    # the message says where the number came from, and what the split has
    with pytest.raises(RecordingError) as err:
        aegru_windows(_rec(bin_ms=20.0), "test", bin_width=2, num_steps=2)
    assert str(err.value).startswith(
        "a window of 2 steps x 2 rows = 4 rows at 20 ms bins; the longest segment of split "
        "'test' has 3 rows"
    )
    with pytest.raises(CortexEdgeError, match="bin_width: expected a positive integer"):
        aegru_windows(_rec(), "train", bin_width=0, num_steps=2)
    rec = _rec()
    del rec.split["val"]
    with pytest.raises(RecordingError, match="recording has no 'val' split"):
        aegru_windows(rec, "val", 1, 1)


# ---------------------------------------------------------------- sliding_windows
def test_sliding_windows_hand_computed():
    w = sliding_windows(_rec(), "train", 3, stride=2)
    np.testing.assert_array_equal(w.ends, [2, 4, 6])
    np.testing.assert_array_equal(w.x[:, :, 0], [[1, 0, 2], [2, 1, 3], [3, 0, 1]])
    np.testing.assert_array_equal(w.y[:, :, 0], [[0, 1, 2], [2, 3, 4], [4, 5, 6]])
    assert w.x.dtype == np.uint8  # raw rows, not re-binned
    with pytest.raises(RecordingError, match="a window of 3 rows at 4 ms bins; the longest "
                       "segment of split 'val' has 2 rows"):  # fmt: skip
        sliding_windows(_rec(), "val", 3)


def test_sliding_windows_on_frames_with_multi_label_and_class_labels():
    frames = np.arange(12 * 4, dtype=np.float32).reshape(12, 2, 2)
    multi = np.stack([np.arange(12) % 2, np.arange(12) // 6], axis=1)
    rec = Recording(
        x=frames, bin_ms=33.3, modality="widefield", labels=multi, segment=SEG, split=SPLIT
    )
    w = sliding_windows(rec, "test", 2)
    assert w.x.shape == (2, 2, 2, 2) and w.labels.shape == (2, 2, 2) and w.y is None
    np.testing.assert_array_equal(w.x[0], frames[9:11])
    np.testing.assert_array_equal(w.labels[1], [[0, 1], [1, 1]])
    rec.labels = np.arange(12) % 3
    np.testing.assert_array_equal(sliding_windows(rec, "train", 4).labels[0], [0, 1, 2, 0])
