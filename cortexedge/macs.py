"""MAC, byte and sparsity counting rules, defined once for the whole project (numpy only).

Both walkers use these rules: the runtime's ONNX walker (cortexedge.runtime.graph_macs) and the
compress stage's torch walker. Counts are per time bin for ONE stream (batch 1) and follow
NeuroBench's synaptic-operation definitions:

- dense: every weight and every input counted as non-zero ("all ones");
- effective: zero weights removed; inputs are assumed active (non-zero) unless an `activity`
  measurement is passed (per input feature, the fraction of bins in which it was non-zero);
- biases are not MACs; activation functions (sigmoid, tanh, ...) are not MACs.

Weight layouts are torch's: Linear [out, in], Conv [out, in/groups, *kernel],
GRU [3H, I] / [3H, H], LSTM [4H, I] / [4H, H].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import numpy as np

Count = tuple[int, int]  # (dense, effective)


def _active(w: np.ndarray, activity: np.ndarray | None) -> float:
    """Σ over non-zero weights of the activity of the input they read (last weight axis = input)."""
    nz = (w != 0).reshape(len(w), -1)
    if activity is None:
        return float(nz.sum())
    return float((nz * np.asarray(activity, dtype=np.float64).reshape(1, -1)).sum())


def linear(w: np.ndarray, positions: int = 1, activity: np.ndarray | None = None) -> Count:
    """Linear / Gemm / MatMul with weight [out, in], applied at `positions` rows per bin.

    dense = out·in·positions; effective = nnz(W)·positions (each non-zero weight × its active
    input, when `activity` [in] is given).
    """
    dense = w.size * positions
    return dense, round(_active(w, activity) * positions)


def conv_taps(
    in_size: int, kernel: int, stride: int = 1, pad: tuple[int, int] = (0, 0), dilation: int = 1
) -> np.ndarray:
    """Per kernel tap along one axis: how many output positions read real (non-pad) input."""
    out = (in_size + pad[0] + pad[1] - dilation * (kernel - 1) - 1) // stride + 1
    starts = np.arange(out) * stride - pad[0]
    pos = starts[:, None] + np.arange(kernel)[None, :] * dilation  # [out, kernel] input index
    return ((pos >= 0) & (pos < in_size)).sum(axis=0)


def conv(
    w: np.ndarray,
    in_spatial: Sequence[int],
    strides: Sequence[int] | None = None,
    pads: Sequence[int] | None = None,
    dilations: Sequence[int] | None = None,
    activity: np.ndarray | None = None,
) -> Count:
    """Conv (1-D, 2-D, …) with weight [out, in/groups, *kernel] on an input of `in_spatial`.

    Counted per output position over the kernel taps that land on real input: taps that fall
    on zero padding are not MACs (what NeuroBench gets by convolving an all-ones input).
    `pads` is ONNX-style [begin_1, …, begin_n, end_1, …, end_n]; `activity` is per input channel.
    """
    nd = w.ndim - 2
    strides = strides or [1] * nd
    pads = pads or [0] * (2 * nd)
    dilations = dilations or [1] * nd
    taps = np.ones((), dtype=np.int64)
    for a in range(nd):
        t = conv_taps(in_spatial[a], w.shape[2 + a], strides[a], (pads[a], pads[nd + a]),
                      dilations[a])  # fmt: skip
        taps = np.multiply.outer(taps, t)
    dense = w.shape[0] * w.shape[1] * int(taps.sum())
    nz = (w != 0).astype(np.float64) * taps[None, None]
    if activity is not None:
        per_channel = np.asarray(activity, dtype=np.float64)
        groups = len(per_channel) // w.shape[1]
        m = w.shape[0] // groups
        act = per_channel.reshape(groups, w.shape[1])  # group g reads channels g·Cg …
        nz = nz * np.repeat(act, m, axis=0).reshape(w.shape[0], w.shape[1], *([1] * nd))
    return dense, round(float(nz.sum()))


def gru(w_ih: np.ndarray, w_hh: np.ndarray, activity: np.ndarray | None = None) -> Count:
    """GRU cell step: W_ih [3H, I], W_hh [3H, H].

    dense = 3H(I+H) + 3H, NeuroBench's GRUCell count. The +3H is the element-wise gate work:
    r⊙(W_hn h + b_hn), (1−z)⊙n and z⊙h, H each. It is counted in full in `effective` too
    (gates are never exactly zero). `activity` [I] applies to the input weights only.
    """
    h = w_hh.shape[1]
    dense = w_ih.size + w_hh.size + 3 * h
    return dense, round(_active(w_ih, activity) + _active(w_hh, None)) + 3 * h


def lstm(
    w_ih: np.ndarray,
    w_hh: np.ndarray,
    peepholes: np.ndarray | None = None,
    activity: np.ndarray | None = None,
) -> Count:
    """LSTM cell step: W_ih [4H, I], W_hh [4H, H], optional peepholes [3H] (ONNX `P`).

    dense = 4H(I+H) + 3H, NeuroBench's LSTMCell count. The +3H element-wise terms are
    f⊙c and i⊙g (the new cell state, 2H) and o⊙tanh(c) (the output, H); peepholes add their
    3H products p⊙c (dense) and nnz(P) (effective).
    """
    h = w_hh.shape[1]
    dense = w_ih.size + w_hh.size + 3 * h
    eff = _active(w_ih, activity) + _active(w_hh, None) + 3 * h
    if peepholes is not None:
        dense += peepholes.size
        eff += np.count_nonzero(peepholes)
    return dense, round(eff)


def elementwise(n: int) -> Count:
    """A product of two activations (gate work written out as Mul): one MAC per element."""
    return n, n


RULES: dict[str, Callable[..., Count]] = {
    "linear": linear,
    "conv": conv,
    "gru": gru,
    "lstm": lstm,
    "elementwise": elementwise,
}


def count_bytes(arrays: Iterable[np.ndarray]) -> int:
    """Bytes at stored precision (an int8 weight is 1 byte, a float32 one 4)."""
    return int(sum(np.asarray(a).nbytes for a in arrays))


def sparsity(arrays: Iterable[np.ndarray]) -> float:
    """Connection sparsity (NeuroBench): zero weights / all weights; 0.0 for no weights."""
    arrays = [np.asarray(a) for a in arrays]
    total = sum(a.size for a in arrays)
    zeros = sum(a.size - np.count_nonzero(a) for a in arrays)
    return float(zeros / total) if total else 0.0


def n_params(arrays: Iterable[np.ndarray]) -> int:
    """Number of stored values."""
    return int(sum(math.prod(np.shape(a)) for a in arrays))
