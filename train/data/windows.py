"""Segment-aware windowing: box sums, window ends and the windows a decoder trains on.

Every window lies inside one segment (a run of equal segment ids) and inside the rows of one
split, so no training window sees test data and no window stitches two trials together.
Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortexedge import scoring
from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording


@dataclass
class Windows:
    """Windows of one split: inputs `x` [N, L, ...] with per-step targets and the end row of each.

    `y` is [N, L, D] and `labels` [N, L] or [N, L, K] (a label series: step k of window n
    carries the target of the row that step ends on); `ends` [N] are those rows for the last step.
    """

    x: np.ndarray
    y: np.ndarray | None
    labels: np.ndarray | None
    ends: np.ndarray


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CortexEdgeError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)


def _run_starts(breaks: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row of its run, where `breaks[t]` starts a new run."""
    return np.maximum.accumulate(np.where(breaks, np.arange(len(breaks)), 0))


def _segment_breaks(segment: np.ndarray) -> np.ndarray:
    segment = np.asarray(segment)
    if segment.ndim != 1 or len(segment) == 0:
        raise CortexEdgeError(f"segment: expected a non-empty 1-D array, got shape {segment.shape}")
    return np.concatenate(([True], segment[1:] != segment[:-1]))


def box_sum(x: np.ndarray, width: int, segment: np.ndarray) -> np.ndarray:
    """out[t] = x[t-width+1] + ... + x[t], counting rows before t's segment start as zero.

    Returns float32 with the shape of `x`; sums run in int64/float64 so counts stay exact.
    """
    width = _positive_int("width", width)
    breaks = _segment_breaks(segment)
    x = np.asarray(x)
    if len(x) != len(breaks):
        raise CortexEdgeError(f"segment: {len(breaks)} ids for {len(x)} rows of x")
    acc = np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
    csum = np.zeros((len(x) + 1, *x.shape[1:]), dtype=acc)
    np.cumsum(x, axis=0, dtype=acc, out=csum[1:])
    lo = np.maximum(np.arange(len(x)) - width + 1, _run_starts(breaks))
    return (csum[1:] - csum[lo]).astype(np.float32)


def window_ends(segment: np.ndarray, rows: np.ndarray, span: int, stride: int = 1) -> np.ndarray:
    """Rows t of `rows` whose last `span` rows t-span+1..t all lie in `rows` and in t's segment.

    Within each unbroken run the first valid end is kept, then every `stride`-th row after it.
    """
    span, stride = _positive_int("span", span), _positive_int("stride", stride)
    breaks = _segment_breaks(segment)
    rows = np.asarray(rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise CortexEdgeError("rows: expected a 1-D integer index array")
    if rows.size and (rows.min() < 0 or rows.max() >= len(breaks)):
        raise CortexEdgeError(f"rows: index out of range [0, {len(breaks)})")
    inside = np.zeros(len(breaks), dtype=bool)
    inside[rows] = True
    run_breaks = breaks | np.concatenate(([True], ~inside[:-1]))
    offset = np.arange(len(breaks)) - _run_starts(run_breaks) - (span - 1)
    return np.flatnonzero(inside & (offset >= 0) & (offset % stride == 0))


def gather_windows(arr: np.ndarray, ends: np.ndarray, length: int, dilation: int = 1) -> np.ndarray:
    """out[n, k] = arr[ends[n] - (length-1-k) * dilation]; shape [N, length, *arr.shape[1:]]."""
    length, dilation = _positive_int("length", length), _positive_int("dilation", dilation)
    ends = np.asarray(ends, dtype=np.int64)
    idx = ends[:, None] - (length - 1 - np.arange(length))[None, :] * dilation
    if idx.size and (idx.min() < 0 or idx.max() >= len(arr)):
        raise CortexEdgeError(
            f"ends: windows of {length} x {dilation} rows reach outside [0, {len(arr)})"
        )
    return np.asarray(arr)[idx]


def longest_run(rec: Recording, split: str) -> int:
    """Rows in the longest unbroken run of a split (adjacent rows of one segment)."""
    if rec.rows(split).size == 0:
        return 0
    return max(r.end - r.first for r in scoring.runs(rec, split, 0))


def _windows_of(rec: Recording, split: str, span: int, stride: int, what: str) -> np.ndarray:
    ends = window_ends(rec.segment, rec.rows(split), span, stride)
    if len(ends) == 0:
        raise RecordingError(
            f"{what} at {rec.bin_ms:g} ms bins; the longest segment of split '{split}' has "
            f"{longest_run(rec, split)} rows: use shorter windows (the [data] table) or longer "
            "segments"
        )
    return ends


def _targets(rec: Recording, ends: np.ndarray, length: int, dilation: int) -> dict:
    return {
        name: None if arr is None else gather_windows(arr, ends, length, dilation)
        for name, arr in (("y", rec.y), ("labels", rec.labels))
    }


def aegru_windows(
    rec: Recording, split: str, bin_width: int, num_steps: int, stride: int = 1
) -> Windows:
    """AEGRU-style windows: `num_steps` bins of `bin_width` summed samples, ending every `stride`.

    x[n, k] = box_sum(x, bin_width)[end - (num_steps-1-k) * bin_width]; y/labels at the same rows.
    """
    bin_width = _positive_int("bin_width", bin_width)
    num_steps = _positive_int("num_steps", num_steps)
    span = bin_width * num_steps
    what = f"a window of {num_steps} steps x {bin_width} rows = {span} rows"
    ends = _windows_of(rec, split, span, stride, what)
    binned = box_sum(rec.x, bin_width, rec.segment)
    x = gather_windows(binned, ends, num_steps, bin_width)
    return Windows(x=x, ends=ends, **_targets(rec, ends, num_steps, bin_width))


def sliding_windows(rec: Recording, split: str, length: int, stride: int = 1) -> Windows:
    """NeuroBench-style windows of `length` consecutive rows ([T, C] or [T, H, W] inputs)."""
    length = _positive_int("length", length)
    ends = _windows_of(rec, split, length, stride, f"a window of {length} rows")
    x = gather_windows(rec.x, ends, length)
    return Windows(x=x, ends=ends, **_targets(rec, ends, length, 1))
