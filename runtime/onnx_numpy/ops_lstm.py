"""The ONNX LSTM op: reference kernel, fused in-place step (recurrent.py) and MAC rule.

Fused weight block (transposed), one product per step with the row [x_t | h | 1]:

    [[W_iof/2 W_c] [R_iof/2 R_c] [(Wb+Rb)_iof/2 (Wb+Rb)_c]]

The fused step takes no peepholes and no `input_forget`; those run the reference kernel.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from cortexedge.runtime.onnx_numpy.opdef import Arrays, Bound, Call, OpDef
from cortexedge.runtime.onnx_numpy.ops_elementwise import sigmoid
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


def lstm(ins: Arrays, attrs: dict) -> tuple:
    """ONNX LSTM (gates i, o, f, c), with optional peepholes P [D, 3H] and `input_forget`."""
    ins = ins + [None] * (8 - len(ins))
    _, w, r, b, _, h0, c0, p = ins
    x, dirs, acts, clip = rnn_setup(ins, attrs, 3, ["Sigmoid", "Tanh", "Tanh"])
    layout, couple = attrs.get("layout", 0), attrs.get("input_forget", 0)
    T, B, _ = x.shape
    H = r.shape[-1]
    ys = np.empty((T, len(dirs), B, H), dtype=x.dtype)
    hs, cs = [], []
    for d, reverse in enumerate(dirs):
        f, g, act_h = acts[d]
        bias_d = b[d, : 4 * H] + b[d, 4 * H :] if b is not None else 0
        pi, po, pf = (p[d, :H], p[d, H : 2 * H], p[d, 2 * H :]) if p is not None else (0, 0, 0)
        h = initial_state(h0, d, layout, (B, H), x.dtype)
        c = initial_state(c0, d, layout, (B, H), x.dtype)
        xw = x @ w[d].T + bias_d
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
    return rnn_outputs(ys, [hs, cs], layout)


def _step(fused: Direction, x_t, h, c, hout, cout) -> Call:
    """One LSTM step (h, c) -> (hout, cout), gates in ONNX order i, o, f, c."""
    B, H = h.shape
    g = np.empty((B, 4 * H), dtype=h.dtype)
    tmp = np.empty((B, H), dtype=h.dtype)
    sig, i, o, f, cand = (
        g[:, : 3 * H],
        g[:, :H],
        g[:, H : 2 * H],
        g[:, 2 * H : 3 * H],
        g[:, 3 * H :],
    )
    load = fused.load(x_t, h, g)

    def call() -> None:
        load()
        np.tanh(cand, out=cand)
        sigmoid(sig, sig, halved=True)
        np.multiply(f, c, out=cout)  # c' = f ⊙ c + i ⊙ tanh(ĉ)
        np.multiply(i, cand, out=tmp)
        np.add(cout, tmp, out=cout)
        np.tanh(cout, out=tmp)  # h' = o ⊙ tanh(c')
        np.multiply(o, tmp, out=hout)

    return call


def _blocks(w, r, wb, rb, H: int) -> list[np.ndarray]:
    blocks = [w.T.copy(), r.T.copy(), (wb + rb)[None]]
    for block in blocks:
        block[:, : 3 * H] *= 0.5
    return blocks


def fused_lstm(n: Bound) -> Call | None:
    """One fused step per time step and direction, without peepholes."""
    if not plain(n, ["Sigmoid", "Tanh", "Tanh"]) or n.input(7) is not None:
        return None
    if n.attrs.get("input_forget", 0):
        return None
    x, w, r, b, h0, c0 = n.ins[0], n.ins[1], n.ins[2], n.input(3), n.input(5), n.input(6)
    y, yh, yc = n.outs[:3]
    H = r.shape[-1]
    calls = []
    for d, reverse in enumerate(DIRECTIONS[n.attrs.get("direction", "forward")]):
        wb, rb = bias(b, d, 4 * H, x.dtype)
        fused = Direction(x, H, reverse, _blocks(w[d], r[d], wb, rb, H))
        h = initial_state(h0, d, 0, yh[d].shape, yh.dtype)
        c = initial_state(c0, d, 0, yc[d].shape, yc.dtype)
        cs = [*np.empty((len(fused.order) - 1, *c.shape), dtype=c.dtype), yc[d]]
        for t, hout, cout in zip(fused.order, fused.outputs(y, yh, d, n.used[0]), cs, strict=True):
            calls.append(_step(fused, x[t], h, c, hout, cout))
            h, c = hout, cout
        if n.used[0] and n.used[1]:
            calls.append(partial(np.copyto, yh[d], h))
    return chain(calls)


LSTM = OpDef("LSTM", lstm, fused_lstm, macs=recurrent_macs("lstm"))
