"""The ONNX GRU op: reference kernel, fused in-place step (recurrent.py) and MAC rule.

Fused weight blocks (transposed), one product per step with the row [x_t | h | 1]:

    linear_before_reset=1:  [[W_zr/2  W_n  0  ]      -> [zr/2 | x·W_nᵀ+Wb_n | h·R_nᵀ+Rb_n]
                             [R_zr/2  0    R_n]
                             [(Wb+Rb)_zr/2  Wb_n  Rb_n]]
    linear_before_reset=0:  [[W_zr/2 W_n] [R_zr/2 0] [(Wb+Rb)_zr/2 Wb_n+Rb_n]]
                             -> [zr/2 | x·W_nᵀ+Wb_n+Rb_n], then (r⊙h)·R_nᵀ separately
"""

from __future__ import annotations

from functools import partial

import numpy as np

from cortexedge.runtime.onnx_numpy.opdef import Arrays, Bound, Call, OpDef
from cortexedge.runtime.onnx_numpy.ops_elementwise import sigmoid
from cortexedge.runtime.onnx_numpy.ops_linear import product
from cortexedge.runtime.onnx_numpy.recurrent import (
    DIRECTIONS,
    Direction,
    bias,
    chain,
    initial_state,
    plain,
    recurrent_macs,
    rnn_outputs,
    rnn_setup,
)


def gru(ins: Arrays, attrs: dict) -> tuple:
    """ONNX GRU (gates z, r, h), including `linear_before_reset`, both directions and layouts."""
    ins = ins + [None] * (6 - len(ins))
    _, w, r, b, _, h0 = ins
    x, dirs, acts, clip = rnn_setup(ins, attrs, 2, ["Sigmoid", "Tanh"])
    layout, lbr = attrs.get("layout", 0), attrs.get("linear_before_reset", 0)
    T, B, _ = x.shape
    H = r.shape[-1]
    ys = np.empty((T, len(dirs), B, H), dtype=x.dtype)
    finals = []
    for d, reverse in enumerate(dirs):
        f, g = acts[d]
        bias_d = b[d] if b is not None else np.zeros(6 * H, dtype=x.dtype)
        wb, rb = bias_d[: 3 * H], bias_d[3 * H :]
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
    return rnn_outputs(ys, [finals], layout)


def _blocks(w, r, wb, rb, H: int, lbr: bool) -> list[np.ndarray]:
    wt, rt = w.T.copy(), r.T.copy()
    wt[:, : 2 * H] *= 0.5
    rt[:, : 2 * H] *= 0.5
    b = np.concatenate([(wb[: 2 * H] + rb[: 2 * H]) * 0.5, wb[2 * H :]])
    if not lbr:
        b[2 * H :] += rb[2 * H :]
        rt[:, 2 * H :] = 0
        return [wt, rt, b[None]]
    return [
        np.hstack([wt, np.zeros((wt.shape[0], H), dtype=wt.dtype)]),
        np.hstack([rt[:, : 2 * H], np.zeros((H, H), dtype=rt.dtype), rt[:, 2 * H :]]),
        np.concatenate([b, rb[2 * H :]])[None],
    ]


def _step(fused: Direction, x_t, h, hout, rn_t: np.ndarray | None) -> Call:
    """One GRU step h -> hout (both [B, H]); rn_t = R_nᵀ when linear_before_reset=0."""
    B, H = h.shape
    g = np.empty((B, (3 if rn_t is not None else 4) * H), dtype=h.dtype)
    nb, tmp = np.empty((B, H), dtype=h.dtype), np.empty((B, H), dtype=h.dtype)
    zr, z, r, xn = g[:, : 2 * H], g[:, :H], g[:, H : 2 * H], g[:, 2 * H : 3 * H]
    load = fused.load(x_t, h, g)
    if rn_t is None:  # n = tanh(x·W_nᵀ + Wb_n + r ⊙ (h·R_nᵀ + Rb_n))
        hn = g[:, 3 * H :]

        def candidate() -> None:
            np.multiply(r, hn, out=nb)
            np.add(xn, nb, out=nb)
    else:  # n = tanh(x·W_nᵀ + Wb_n + Rb_n + (r ⊙ h)·R_nᵀ)
        rh = product(tmp, rn_t, nb)

        def candidate() -> None:
            np.multiply(r, h, out=tmp)
            rh()
            np.add(xn, nb, out=nb)

    def call() -> None:
        load()
        sigmoid(zr, zr, halved=True)
        candidate()
        np.tanh(nb, out=nb)
        np.subtract(h, nb, out=tmp)  # h' = n + z ⊙ (h − n)
        np.multiply(z, tmp, out=tmp)
        np.add(nb, tmp, out=hout)

    return call


def fused_gru(n: Bound) -> Call | None:
    """Both `linear_before_reset` forms, one fused step per time step and direction."""
    if not plain(n, ["Sigmoid", "Tanh"]):
        return None
    x, w, r, b, h0 = n.ins[0], n.ins[1], n.ins[2], n.input(3), n.input(5)
    y, yh = n.outs[:2]
    H, lbr = r.shape[-1], bool(n.attrs.get("linear_before_reset", 0))
    calls = []
    for d, reverse in enumerate(DIRECTIONS[n.attrs.get("direction", "forward")]):
        wb, rb = bias(b, d, 3 * H, x.dtype)
        fused = Direction(x, H, reverse, _blocks(w[d], r[d], wb, rb, H, lbr))
        rn_t = None if lbr else np.ascontiguousarray(r[d, 2 * H :].T)
        h = initial_state(h0, d, 0, yh[d].shape, yh.dtype)
        for t, hout in zip(fused.order, fused.outputs(y, yh, d, n.used[0]), strict=True):
            calls.append(_step(fused, x[t], h, hout, rn_t))
            h = hout
        if n.used[0] and n.used[1]:
            calls.append(partial(np.copyto, yh[d], h))
    return chain(calls)


GRU = OpDef("GRU", gru, fused_gru, macs=recurrent_macs("gru"))
