"""Linear ONNX ops, the ones that carry MACs: Gemm, MatMul and Conv.

Their MAC rules map a node to the rules of `cortexedge.macs`, the one definition shared with
the torch-side walker:

| op | rule | weight |
|---|---|---|
| Gemm / MatMul with a constant operand | linear | that operand, as [out, in] |
| Gemm / MatMul of two activations | linear (all ones) | none: every product counts |
| Conv | conv | W |
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cortexedge.macs import RULES
from cortexedge.runtime.onnx_numpy.opdef import Arrays, Bound, Call, Counted, OpDef, lean
from cortexedge.runtime.onnx_numpy.ops_elementwise import scalar


def product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Call:
    """out = a @ b as a call: np.dot on 2-D views where it applies (it skips ~0.7 µs of
    matmul's dispatch, but only 2-D operands reach BLAS), else matmul."""
    if b.ndim == 2 and a.ndim >= 2 and out.flags.c_contiguous:
        if out.dtype == np.result_type(a, b):
            try:
                rows = np.reshape(a, (-1, a.shape[-1]), copy=False)
            except ValueError:  # not viewable as 2-D without a copy
                rows = None
            if rows is not None:
                return partial(np.dot, rows, b, out.reshape(rows.shape[0], b.shape[1]))
    return partial(np.matmul, a, b, out=out)


def _linear(w: np.ndarray | None, positions: int, rows: int, cols: int) -> Counted:
    """`w` [out, in] when constant, else a product of activations counted as all ones."""
    if w is None:
        ones = np.broadcast_to(np.ones(1, dtype=bool), (rows, cols))
        return "linear", RULES["linear"](ones, positions=positions), []
    return "linear", RULES["linear"](w, positions=positions), [w]


def _gemm(ins: Arrays, attrs: dict) -> tuple:
    a = ins[0].T if attrs.get("transA", 0) else ins[0]
    b = ins[1].T if attrs.get("transB", 0) else ins[1]
    y = a @ b
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = y * np.float32(alpha)
    if len(ins) > 2 and ins[2] is not None:
        y = y + (ins[2] if beta == 1.0 else ins[2] * np.float32(beta))
    return (y.astype(ins[0].dtype, copy=False),)


def _fast_gemm(n: Bound) -> Call | None:
    a = n.ins[0].T if n.attrs.get("transA", 0) else n.ins[0]
    b = n.ins[1].T if n.attrs.get("transB", 0) else n.ins[1]
    b = np.ascontiguousarray(b) if n.const[1] else b
    alpha, beta, c, out = n.attrs.get("alpha", 1.0), n.attrs.get("beta", 1.0), n.input(2), n.outs[0]
    if c is not None and beta != 1.0:
        if not n.const[2]:
            return None
        c = c * np.float32(beta)
    c = None if c is None else lean(c, n.const[2], out.shape)
    scale = scalar(alpha, out.dtype) if alpha != 1.0 else None
    ab = product(a, b, out)

    def call() -> None:
        ab()
        if scale is not None:
            np.multiply(out, scale, out=out)
        if c is not None:
            np.add(out, c, out=out)

    return call


def _gemm_macs(n: Bound) -> Counted:
    a = n.ins[0].T if n.attrs.get("transA", 0) else n.ins[0]  # [M, K]
    b = n.ins[1].T if n.attrs.get("transB", 0) else n.ins[1]  # [K, N]
    if n.const[1]:
        return _linear(b.T, a.shape[0], *b.T.shape)
    if n.const[0]:
        return _linear(a, b.shape[1], *a.shape)
    return _linear(None, a.shape[0], b.shape[1], a.shape[1])


def _fast_matmul(n: Bound) -> Call:
    return product(n.ins[0], np.ascontiguousarray(n.ins[1]) if n.const[1] else n.ins[1], n.outs[0])


def _matmul_macs(n: Bound) -> Counted:
    (a, b), out = n.ins, n.outs[0]
    if n.const[1] and b.ndim == 2:
        return _linear(b.T, out.size // b.shape[1], *b.T.shape)
    if n.const[0] and a.ndim == 2:
        return _linear(a, out.size // a.shape[0], *a.shape)
    return _linear(None, out.size, 1, a.shape[-1])


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


def _conv(ins: Arrays, attrs: dict) -> tuple:
    """Any number of spatial axes, groups, strides, dilations and padding."""
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


def _conv_macs(n: Bound) -> Counted:
    x, w = n.ins[0], n.ins[1]
    strides, pads, dil = conv_geometry(x.shape[2:], w.shape, n.attrs)
    dense, eff = RULES["conv"](w, x.shape[2:], strides, pads, dil)
    return "conv", (dense * x.shape[0], eff * x.shape[0]), [w]


LINEAR: tuple[OpDef, ...] = (
    OpDef("Gemm", _gemm, _fast_gemm, macs=_gemm_macs),
    OpDef("MatMul", lambda ins, attrs: (ins[0] @ ins[1],), _fast_matmul, macs=_matmul_macs),
    OpDef("Conv", _conv, macs=_conv_macs),
)
