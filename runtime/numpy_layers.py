"""Numpy reference kernels for ONNX's layer ops: GRU, LSTM, Conv, normalizations, quantization.

Written from the ONNX operator specification, independently of onnxruntime, so that the numpy
backend can check it. Every kernel takes (inputs, attrs) and returns a tuple of outputs; the
op registry that maps op types to kernels lives in `numpy_ops.py`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cortexedge.errors import ContractError

Arrays = list  # list[np.ndarray | None]; optional inputs are None


@cache
def scalar(value: float, dtype: np.dtype) -> np.ndarray:
    """A shared read-only 0-d array: ufuncs take it faster than a Python number (~0.5 µs)."""
    a = np.array(value, dtype=dtype)
    a.flags.writeable = False
    return a


def sigmoid(x: np.ndarray, out: np.ndarray | None = None, halved: bool = False) -> np.ndarray:
    """Logistic function written with tanh, (tanh(x/2) + 1)/2: no overflow warning for large
    |x|. Computed in `out` (which may be x itself) or in a new array; `halved` says that x
    already holds x/2 (fused RNN steps fold the halving into their weights, exactly)."""
    half, one = scalar(0.5, x.dtype), scalar(1, x.dtype)
    y = np.empty_like(x) if out is None else out
    if halved:
        np.tanh(x, out=y)
    else:
        np.multiply(x, half, out=y)
        np.tanh(y, out=y)
    np.add(y, one, out=y)
    np.multiply(y, half, out=y)
    return y


_RNN_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Sigmoid": sigmoid,
    "Tanh": np.tanh,
    "Relu": lambda x: np.maximum(x, 0),
}
DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}


def _rnn_setup(ins: Arrays, attrs: dict, n: int, defaults: list[str]) -> tuple:
    """Shared RNN plumbing: layout, sizes, directions, activations and the cell clip."""
    x = ins[0] if attrs.get("layout", 0) == 0 else ins[0].transpose(1, 0, 2)
    seq_lens = ins[4] if len(ins) > 4 else None
    if seq_lens is not None and np.any(seq_lens != x.shape[0]):
        raise ContractError("RNN sequence_lens shorter than the sequence are not supported")
    dirs = DIRECTIONS[attrs.get("direction", "forward")]
    names = attrs.get("activations") or defaults * len(dirs)
    unknown = [a for a in names if a not in _RNN_ACTIVATIONS]
    if unknown:
        raise ContractError(f"RNN activation '{unknown[0]}' is not supported by the numpy backend")
    acts = [_RNN_ACTIVATIONS[a] for a in names]
    per_dir = [acts[d * n : (d + 1) * n] for d in range(len(dirs))]
    c = attrs.get("clip")
    clip = (lambda v: np.clip(v, -c, c)) if c else (lambda v: v)
    return x, dirs, per_dir, clip


def initial_state(init: np.ndarray | None, d: int, layout: int, shape: tuple, dtype) -> np.ndarray:
    """Direction d's initial RNN state from the optional input, or zeros of `shape`."""
    if init is None:
        return np.zeros(shape, dtype=dtype)
    return init[d] if layout == 0 else init[:, d]


def _rnn_outputs(ys: np.ndarray, finals: list[list[np.ndarray]], layout: int) -> tuple:
    """Y [T, D, B, H] and the final states [D, B, H] in the requested layout."""
    stacked = [np.stack(f) for f in finals]
    if layout:
        return (ys.transpose(2, 0, 1, 3), *[s.transpose(1, 0, 2) for s in stacked])
    return (ys, *stacked)


def gru(ins: Arrays, attrs: dict) -> tuple:
    """ONNX GRU (gates z, r, h), including `linear_before_reset`, both directions and layouts."""
    ins = ins + [None] * (6 - len(ins))
    _, w, r, b, _, h0 = ins
    x, dirs, acts, clip = _rnn_setup(ins, attrs, 2, ["Sigmoid", "Tanh"])
    layout, lbr = attrs.get("layout", 0), attrs.get("linear_before_reset", 0)
    T, B, _ = x.shape
    H = r.shape[-1]
    ys = np.empty((T, len(dirs), B, H), dtype=x.dtype)
    finals = []
    for d, reverse in enumerate(dirs):
        f, g = acts[d]
        bias = b[d] if b is not None else np.zeros(6 * H, dtype=x.dtype)
        wb, rb = bias[: 3 * H], bias[3 * H :]
        rd = r[d]
        h = initial_state(h0, d, layout, (B, H), x.dtype)
        xw = x @ w[d].T + wb
        for t in reversed(range(T)) if reverse else range(T):
            if lbr:
                hr = h @ rd.T + rb
                zr = f(clip(xw[t, :, : 2 * H] + hr[:, : 2 * H]))
                n = g(clip(xw[t, :, 2 * H :] + zr[:, H:] * hr[:, 2 * H :]))
            else:
                zr = f(clip(xw[t, :, : 2 * H] + h @ rd[: 2 * H].T + rb[: 2 * H]))
                n = g(clip(xw[t, :, 2 * H :] + (zr[:, H:] * h) @ rd[2 * H :].T + rb[2 * H :]))
            h = n + zr[:, :H] * (h - n)  # = (1 - z)·n + z·h
            ys[t, d] = h
        finals.append(h)
    return _rnn_outputs(ys, [finals], layout)


def lstm(ins: Arrays, attrs: dict) -> tuple:
    """ONNX LSTM (gates i, o, f, c), with optional peepholes P [D, 3H] and `input_forget`."""
    ins = ins + [None] * (8 - len(ins))
    _, w, r, b, _, h0, c0, p = ins
    x, dirs, acts, clip = _rnn_setup(ins, attrs, 3, ["Sigmoid", "Tanh", "Tanh"])
    layout, couple = attrs.get("layout", 0), attrs.get("input_forget", 0)
    T, B, _ = x.shape
    H = r.shape[-1]
    ys = np.empty((T, len(dirs), B, H), dtype=x.dtype)
    hs, cs = [], []
    for d, reverse in enumerate(dirs):
        f, g, act_h = acts[d]
        bias = b[d, : 4 * H] + b[d, 4 * H :] if b is not None else 0
        pi, po, pf = (p[d, :H], p[d, H : 2 * H], p[d, 2 * H :]) if p is not None else (0, 0, 0)
        h = initial_state(h0, d, layout, (B, H), x.dtype)
        c = initial_state(c0, d, layout, (B, H), x.dtype)
        xw = x @ w[d].T + bias
        for t in reversed(range(T)) if reverse else range(T):
            gates = xw[t] + h @ r[d].T
            i = f(clip(gates[:, :H] + pi * c))
            fg = 1 - i if couple else f(clip(gates[:, 2 * H : 3 * H] + pf * c))
            c = fg * c + i * g(clip(gates[:, 3 * H :]))
            o = f(clip(gates[:, H : 2 * H] + po * c))
            h = o * act_h(c)
            ys[t, d] = h
        hs.append(h)
        cs.append(c)
    return _rnn_outputs(ys, [hs, cs], layout)


def conv_geometry(
    in_spatial: Sequence[int], w_shape: Sequence[int], attrs: dict
) -> tuple[list[int], list[int], list[int]]:
    """Resolved (strides, pads [begins…, ends…], dilations) of an ONNX Conv, auto_pad included."""
    nd = len(w_shape) - 2
    kernel = attrs.get("kernel_shape") or list(w_shape[2:])
    strides = list(attrs.get("strides") or [1] * nd)
    dil = list(attrs.get("dilations") or [1] * nd)
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for a in range(nd):
            out = math.ceil(in_spatial[a] / strides[a])
            total = max((out - 1) * strides[a] + (kernel[a] - 1) * dil[a] + 1 - in_spatial[a], 0)
            small, big = total // 2, total - total // 2
            pads[a], pads[nd + a] = (small, big) if auto == "SAME_UPPER" else (big, small)
    elif auto == "VALID":
        pads = [0] * (2 * nd)
    else:
        pads = list(attrs.get("pads") or [0] * (2 * nd))
    return strides, pads, dil


def conv(ins: Arrays, attrs: dict) -> tuple:
    """ONNX Conv, any number of spatial axes, groups, strides, dilations and padding."""
    x, w = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    nd = w.ndim - 2
    strides, pads, dil = conv_geometry(x.shape[2:], w.shape, attrs)
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[a], pads[nd + a]) for a in range(nd)])
    extent = [(w.shape[2 + a] - 1) * dil[a] + 1 for a in range(nd)]
    win = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + nd)))
    win = win[(slice(None),) * 2 + tuple(slice(None, None, s) for s in strides)
              + tuple(slice(None, None, d) for d in dil)]  # fmt: skip
    groups = attrs.get("group", 1)
    cg, mg = x.shape[1] // groups, w.shape[0] // groups
    axes_x = [1, *range(2 + nd, 2 + 2 * nd)]
    axes_w = [1, *range(2, 2 + nd)]
    parts = [
        np.moveaxis(
            np.tensordot(
                win[:, k * cg : (k + 1) * cg], w[k * mg : (k + 1) * mg], axes=(axes_x, axes_w)
            ),
            -1,
            1,
        )  # fmt: skip
        for k in range(groups)
    ]
    y = parts[0] if groups == 1 else np.concatenate(parts, axis=1)
    if b is not None:
        y = y + b.reshape(1, -1, *[1] * nd)
    return (y.astype(x.dtype, copy=False),)


def layer_norm(ins: Arrays, attrs: dict) -> tuple:
    """LayerNormalization over the axes from `axis` on; also returns Mean and InvStdDev."""
    x, scale = ins[0], ins[1]
    b = ins[2] if len(ins) > 2 else None
    axes = tuple(range(attrs.get("axis", -1) % x.ndim, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    d = x - mean
    inv = 1 / np.sqrt((d * d).mean(axis=axes, keepdims=True) + attrs.get("epsilon", 1e-5))
    y = d * inv * scale
    return (y if b is None else y + b), mean, inv


def batch_norm(ins: Arrays, attrs: dict) -> tuple:
    """BatchNormalization in inference mode (running statistics), channels on axis 1."""
    x, scale, b, mean, var = ins[:5]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    k = scale / np.sqrt(var + attrs.get("epsilon", 1e-5))
    return ((x - mean.reshape(shape)) * k.reshape(shape) + b.reshape(shape),)


def along(p: np.ndarray, x: np.ndarray, axis: int) -> np.ndarray:
    """A per-tensor scalar, or a per-axis vector shaped to broadcast along `axis` of x."""
    if p.size == 1:
        return p.reshape(())
    shape = [1] * x.ndim
    shape[axis % x.ndim] = -1
    return p.reshape(shape)


def quantize_linear(ins: Arrays, attrs: dict) -> tuple:
    """QuantizeLinear: saturate(round_half_even(x / scale) + zero_point), per tensor or axis."""
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 and ins[2] is not None else np.zeros((), dtype=np.uint8)
    axis = attrs.get("axis", 1)
    q = np.rint(x / along(scale, x, axis)) + along(zp, x, axis).astype(np.float32)
    info = np.iinfo(zp.dtype)
    return (np.clip(q, info.min, info.max).astype(zp.dtype),)


def dequantize_linear(ins: Arrays, attrs: dict) -> tuple:
    """DequantizeLinear: (x − zero_point) · scale, per tensor or per axis."""
    x, scale = ins[0], ins[1]
    zp = ins[2] if len(ins) > 2 and ins[2] is not None else None
    axis = attrs.get("axis", 1)
    xf = x.astype(np.float32)
    if zp is not None:
        xf = xf - along(zp, x, axis).astype(np.float32)
    return ((xf * along(scale, x, axis)).astype(scale.dtype, copy=False),)


LAYER_OPS: dict[str, Callable[[Arrays, dict], tuple]] = {
    "GRU": gru,
    "LSTM": lstm,
    "Conv": conv,
    "LayerNormalization": layer_norm,
    "BatchNormalization": batch_norm,
    "QuantizeLinear": quantize_linear,
    "DequantizeLinear": dequantize_linear,
}
