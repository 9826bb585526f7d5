"""Fused in-place GRU and LSTM steps for the compiled numpy graph (builders as numpy_fast.py).

A streaming decoder runs its recurrent op on one or a few time steps per call, where numpy's
cost is the number of calls, not the arithmetic. So each step is one matrix product of the
row block [x_t | h | 1] (copied into a buffer) with a weight block made once at load:

    GRU, linear_before_reset=1:  [[W_zr/2  W_n  0  ]      -> [zr/2 | x·W_nᵀ+Wb_n | h·R_nᵀ+Rb_n]
                                  [R_zr/2  0    R_n]
                                  [(Wb+Rb)_zr/2  Wb_n  Rb_n]]
    GRU, linear_before_reset=0:  [[W_zr/2 W_n] [R_zr/2 0] [(Wb+Rb)_zr/2 Wb_n+Rb_n]]
                                  -> [zr/2 | x·W_nᵀ+Wb_n+Rb_n], then (r⊙h)·R_nᵀ separately
    LSTM:                        [[W_iof/2 W_c] [R_iof/2 R_c] [(Wb+Rb)_iof/2 (Wb+Rb)_c]]

(weights transposed). Halving the sigmoid gates' columns is exact and saves sigmoid's x/2;
the rest follows `numpy_layers.gru` / `lstm` operation by operation, in `out=` calls on views
made once. Handled: layout 0, any direction, constant weights, default activations, no clip,
no sequence_lens, and for LSTM no peepholes nor `input_forget`; other nodes return None and
run the interpreter's kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np

from cortexedge.runtime.numpy_fast import Bound, Call, product
from cortexedge.runtime.numpy_layers import DIRECTIONS, initial_state, sigmoid


def _plain(n: Bound, defaults: list[str]) -> bool:
    """Constant W, R (and B), layout 0, no clip, no sequence lengths, default activations."""
    a = n.attrs
    dirs = len(DIRECTIONS[a.get("direction", "forward")])
    acts = a.get("activations")
    return (
        all(n.const[1:3])
        and (n.input(3) is None or n.const[3])
        and n.input(4) is None
        and not a.get("layout", 0)
        and not a.get("clip")
        and (not acts or list(acts) == defaults * dirs)
    )


def _chain(calls: Sequence[Call]) -> Call:
    if len(calls) == 1:
        return calls[0]

    def call() -> None:
        for c in calls:
            c()

    return call


class _Direction:
    """One direction's [x | h | 1] row buffer, its fused weight block and its step order."""

    def __init__(self, x: np.ndarray, H: int, reverse: bool, blocks: list[np.ndarray]) -> None:
        T, B, inputs = x.shape
        self.weights = np.ascontiguousarray(np.concatenate(blocks, axis=0))
        self.rows = np.zeros((B, inputs + H + 1), dtype=x.dtype)
        self.rows[:, -1] = 1
        self.x, self.h = self.rows[:, :inputs], self.rows[:, inputs : inputs + H]
        self.order = list(reversed(range(T))) if reverse else list(range(T))

    def load(self, x_t: np.ndarray, h: np.ndarray, out: np.ndarray) -> Call:
        """A call filling the row buffer with x_t and h and multiplying it into `out`."""
        xs, hs, dot = self.x, self.h, product(self.rows, self.weights, out)

        def call() -> None:
            xs[...] = x_t
            hs[...] = h
            dot()

        return call

    def outputs(self, y: np.ndarray, yh: np.ndarray, d: int, y_read: bool) -> list[np.ndarray]:
        """Where each step writes h: Y[t, d], except that when nothing reads Y the last step
        writes Y_h[d] directly."""
        outs = [y[t, d] for t in self.order]
        if not y_read:
            outs[-1] = yh[d]
        return outs


def _bias(b: np.ndarray | None, d: int, width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Direction d's input and recurrent biases (zeros when B is omitted)."""
    if b is None:
        return np.zeros(width, dtype=dtype), np.zeros(width, dtype=dtype)
    return b[d, :width], b[d, width:]


def _gru_blocks(w, r, wb, rb, H: int, lbr: bool) -> list[np.ndarray]:
    wt, rt = w.T.copy(), r.T.copy()
    wt[:, : 2 * H] *= 0.5
    rt[:, : 2 * H] *= 0.5
    bias = np.concatenate([(wb[: 2 * H] + rb[: 2 * H]) * 0.5, wb[2 * H :]])
    if not lbr:
        bias[2 * H :] += rb[2 * H :]
        rt[:, 2 * H :] = 0
        return [wt, rt, bias[None]]
    return [
        np.hstack([wt, np.zeros((wt.shape[0], H), dtype=wt.dtype)]),
        np.hstack([rt[:, : 2 * H], np.zeros((H, H), dtype=rt.dtype), rt[:, 2 * H :]]),
        np.concatenate([bias, rb[2 * H :]])[None],
    ]


def _gru_step(fused: _Direction, x_t, h, hout, rn_t: np.ndarray | None) -> Call:
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


def gru(n: Bound) -> Call | None:
    """ONNX GRU (gates z, r, h), both `linear_before_reset` forms."""
    if not _plain(n, ["Sigmoid", "Tanh"]):
        return None
    x, w, r, b, h0 = n.ins[0], n.ins[1], n.ins[2], n.input(3), n.input(5)
    y, yh = n.outs[:2]
    H, lbr = r.shape[-1], bool(n.attrs.get("linear_before_reset", 0))
    calls = []
    for d, reverse in enumerate(DIRECTIONS[n.attrs.get("direction", "forward")]):
        wb, rb = _bias(b, d, 3 * H, x.dtype)
        fused = _Direction(x, H, reverse, _gru_blocks(w[d], r[d], wb, rb, H, lbr))
        rn_t = None if lbr else np.ascontiguousarray(r[d, 2 * H :].T)
        h = initial_state(h0, d, 0, yh[d].shape, yh.dtype)
        for t, hout in zip(fused.order, fused.outputs(y, yh, d, n.used[0]), strict=True):
            calls.append(_gru_step(fused, x[t], h, hout, rn_t))
            h = hout
        if n.used[0] and n.used[1]:
            calls.append(partial(np.copyto, yh[d], h))
    return _chain(calls)


def _lstm_step(fused: _Direction, x_t, h, c, hout, cout) -> Call:
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


def _lstm_blocks(w, r, wb, rb, H: int) -> list[np.ndarray]:
    blocks = [w.T.copy(), r.T.copy(), (wb + rb)[None]]
    for block in blocks:
        block[:, : 3 * H] *= 0.5
    return blocks


def lstm(n: Bound) -> Call | None:
    """ONNX LSTM (gates i, o, f, c) without peepholes."""
    if not _plain(n, ["Sigmoid", "Tanh", "Tanh"]) or n.input(7) is not None:
        return None
    if n.attrs.get("input_forget", 0):
        return None
    x, w, r, b, h0, c0 = n.ins[0], n.ins[1], n.ins[2], n.input(3), n.input(5), n.input(6)
    y, yh, yc = n.outs[:3]
    H = r.shape[-1]
    calls = []
    for d, reverse in enumerate(DIRECTIONS[n.attrs.get("direction", "forward")]):
        wb, rb = _bias(b, d, 4 * H, x.dtype)
        fused = _Direction(x, H, reverse, _lstm_blocks(w[d], r[d], wb, rb, H))
        h = initial_state(h0, d, 0, yh[d].shape, yh.dtype)
        c = initial_state(c0, d, 0, yc[d].shape, yc.dtype)
        cs = [*np.empty((len(fused.order) - 1, *c.shape), dtype=c.dtype), yc[d]]
        for t, hout, cout in zip(fused.order, fused.outputs(y, yh, d, n.used[0]), cs, strict=True):
            calls.append(_lstm_step(fused, x[t], h, c, hout, cout))
            h, c = hout, cout
        if n.used[0] and n.used[1]:
            calls.append(partial(np.copyto, yh[d], h))
    return _chain(calls)


RNN_FAST = {"GRU": gru, "LSTM": lstm}
