"""What ONNX's recurrent ops (GRU, LSTM: ops_gru.py, ops_lstm.py) share: the reference
kernels' plumbing, the fused in-place step's row buffer, and the MAC rule.

A streaming decoder runs its recurrent op on one or a few time steps per call, where numpy's
cost is the number of calls, not the arithmetic. So the fused in-place step is one matrix
product of the row block [x_t | h | 1] (copied into a buffer) with a weight block made once at
load (the layouts are in each op's file). Halving the sigmoid gates' columns is exact and
saves sigmoid's x/2; the rest follows the reference kernel operation by operation, in `out=`
calls on views made once. Handled: layout 0, any direction, constant weights, default
activations, no clip, no sequence_lens; other nodes run the reference kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from cortexedge.errors import ContractError
from cortexedge.macs import RULES
from cortexedge.runtime.onnx_numpy.opdef import Arrays, Bound, Call, MacRule
from cortexedge.runtime.onnx_numpy.ops_elementwise import sigmoid
from cortexedge.runtime.onnx_numpy.ops_linear import product

_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Sigmoid": sigmoid,
    "Tanh": np.tanh,
    "Relu": lambda x: np.maximum(x, 0),
}
DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}


def rnn_setup(ins: Arrays, attrs: dict, n: int, defaults: list[str]) -> tuple:
    """Layout, directions, activations (n per direction) and the cell clip of a reference run."""
    x = ins[0] if attrs.get("layout", 0) == 0 else ins[0].transpose(1, 0, 2)
    seq_lens = ins[4] if len(ins) > 4 else None
    if seq_lens is not None and np.any(seq_lens != x.shape[0]):
        raise ContractError("RNN sequence_lens shorter than the sequence are not supported")
    dirs = DIRECTIONS[attrs.get("direction", "forward")]
    names = attrs.get("activations") or defaults * len(dirs)
    unknown = [a for a in names if a not in _ACTIVATIONS]
    if unknown:
        raise ContractError(f"RNN activation '{unknown[0]}' is not supported by the numpy backend")
    acts = [_ACTIVATIONS[a] for a in names]
    per_dir = [acts[d * n : (d + 1) * n] for d in range(len(dirs))]
    c = attrs.get("clip")
    clip = (lambda v: np.clip(v, -c, c)) if c else (lambda v: v)
    return x, dirs, per_dir, clip


def initial_state(init: np.ndarray | None, d: int, layout: int, shape: tuple, dtype) -> np.ndarray:
    """Direction d's initial RNN state from the optional input, or zeros of `shape`."""
    if init is None:
        return np.zeros(shape, dtype=dtype)
    return init[d] if layout == 0 else init[:, d]


def rnn_outputs(ys: np.ndarray, finals: list[list[np.ndarray]], layout: int) -> tuple:
    """Y [T, D, B, H] and the final states [D, B, H] in the requested layout."""
    stacked = [np.stack(f) for f in finals]
    if layout:
        return (ys.transpose(2, 0, 1, 3), *[s.transpose(1, 0, 2) for s in stacked])
    return (ys, *stacked)


def plain(n: Bound, defaults: list[str]) -> bool:
    """Constant W, R (and B), layout 0, no clip, no sequence lengths, default activations:
    the nodes the fused step takes."""
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


def chain(calls: Sequence[Call]) -> Call:
    """One call running `calls` in order."""
    if len(calls) == 1:
        return calls[0]

    def call() -> None:
        for c in calls:
            c()

    return call


class Direction:
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


def bias(b: np.ndarray | None, d: int, width: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Direction d's input and recurrent biases (zeros when B is omitted)."""
    if b is None:
        return np.zeros(width, dtype=dtype), np.zeros(width, dtype=dtype)
    return b[d, :width], b[d, width:]


def recurrent_macs(kind: str) -> MacRule:
    """The `gru` / `lstm` rule per direction on W[d], R[d] (and peepholes P[d]), times the
    sequence length (a window recomputed each bin costs every one of its steps)."""

    def rule(n: Bound):
        x, w, r = n.ins[:3]
        steps = x.shape[1] if n.attrs.get("layout", 0) else x.shape[0]
        peep = n.input(7)
        dense = eff = 0
        for d in range(w.shape[0]):
            extra = {"peepholes": peep[d]} if peep is not None else {}
            dd, ee = RULES[kind](w[d], r[d], **extra)
            dense, eff = dense + dd, eff + ee
        return kind, (dense * steps, eff * steps), [w, r]

    return rule
