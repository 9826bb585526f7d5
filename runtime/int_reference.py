"""The integer decoder semantics, defined once: the numpy reference the generated C matches.

An `IntModel` is what the C generator emits on its integer path: int8 weights, int32
accumulators, requantization by an integer multiplier and shift, sigmoid/tanh by table, int8
state. Every operation below is integer-only and every rounding is explicit, so the C code
(cortexedge.export.c.emit_int) and `IntDecoder` compute the same numbers:

- floor shift: `x >> s` is floor(x / 2^s) (numpy's arithmetic shift; a helper in C). Rounding
  to nearest (half up) adds 2^(s-1) first; requantizers carry it inside their offset `c`.
- requant: q = clip((x·m + c) >> shift, lo, hi), int64 products, per-channel m, c, shift. The
  exporter checks that |x·m + c| < 2^62 for every reachable x, so nothing wraps.
- input: one raw sample of spike counts (uint8, clipped to `max_count`); a bin is the box sum of
  the last `width` samples; `lut[min(bin, len(lut)-1)]` is the quantized input transform.
- GRU gates: pre = ((acc_ih + b_i)·m_i + acc_hh·m_h + 2^(shift-1)) >> shift in Q16
  (PRE_FRAC), clipped to ±PRE_LIMIT; biases are in accumulator units. For the candidate,
  acc_hh is replaced by q_r·(acc_hh + b_hn) (r multiplies W_hn·h + b_hn, as in torch).
  sigmoid / tanh: `ActTable`, exact level lookup by thresholds.
- blend h' = n + z·(h − n) in Q16: (q_n·(A − q_z·B) + q_z·q_h·C + 2^(G-1)) >> G.
- LSTM cells (`IntLSTMCell`): the same Q16 pre-activations over the 4H rows i, f, g, o (one
  bias, b_ih + b_hh); c' = f·c + i·g and h' = o·tanh(c') are Q16 blends of table levels and
  the int8 c; the int8 state row of a layer is [h, c].
- LayerNorm (optional): mean and variance by floor division, std = isqrt(var + eps) (floor
  square root), r = (d·(2^47 // std) + 2^30) >> 31, normalized values in Q16.
- two requantizing heads per cell: `state` (the int8 state the next step reads) and `out` (the
  next layer's or the readout's int8 input). The readout returns int32 accumulators with bias;
  y = acc · out_scale.
- streaming: "stateful" keeps each layer's int8 state; "window" (AEGRU) reruns the GRU from zero
  over `num_steps` bins `lag` samples apart. Chains that start at earlier samples are cached:
  H_k(t) = cell(x(t), H_{k-1}(t − lag)), H_1(t) = cell(x(t), 0), y(t) = readout(H_K(t)), so each
  step runs one encoder pass and shares the layer-0 input projection across the K cells (here
  the K chains of a step run as one batch; they only read the cache of t − lag).
"""

from __future__ import annotations

import io
import json
import math
import os
import typing
from dataclasses import dataclass, fields, is_dataclass

import numpy as np

from cortexedge.errors import ContractError, CortexEdgeError

PRE_FRAC = 16  # gate pre-activations and hidden values are Q16 (real = int / 2^16)
PRE_LIMIT = 1 << 30  # pre-activations are clipped to ±PRE_LIMIT before the table lookup
LN_INV_SHIFT = 47  # inv_std = 2^47 // std
LN_OUT_SHIFT = 31  # normalized = (d · inv_std + 2^30) >> 31, in Q16
FORMAT_VERSION = 1


@dataclass
class Requant:
    """q = clip((x·m + c) >> shift, lo, hi); m, c, shift per channel (or one value for all)."""

    m: np.ndarray
    c: np.ndarray
    shift: np.ndarray
    lo: int
    hi: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum((x * self.m + self.c) >> self.shift, self.lo), self.hi)


@dataclass
class ActTable:
    """A monotone activation quantized to levels qmin..qmax, on Q16 pre-activations.

    thr[j] is the smallest pre-activation whose level is >= qmin + j + 1 (thresholds are
    sorted), so the level of `pre` is qmin + #{j : thr[j] <= pre}. The C code finds the same
    count faster: it starts at qmin + lut[clip((pre − lo) >> cell_shift, 0, len(lut) − 1)],
    the level at that table cell's start, then adds pre >= thr[level − qmin] as many times as
    one cell holds thresholds at most (thr padded with a sentinel no pre reaches); cells are
    about as wide as the closest two thresholds.
    """

    lo: int
    cell_shift: int
    lut: np.ndarray
    thr: np.ndarray
    qmin: int
    qmax: int

    def __call__(self, pre: np.ndarray) -> np.ndarray:
        return self.qmin + np.searchsorted(self.thr, pre, side="right")


@dataclass
class IntLinear:
    """int8 weights [out, in]; requantized to int8 (`rq`) or returned as int32 acc + `bias`."""

    w: np.ndarray
    rq: Requant | None = None
    bias: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        acc = x @ self.w.T.astype(np.int64)
        return self.rq(acc) if self.rq is not None else acc + self.bias


class _Cell:
    """What the GRU and LSTM cells share: `parts` state vectors per layer (h; h and c), and
    the input projection (int8 inputs times w_ih, int64 accumulators)."""

    parts = 1
    w_ih: np.ndarray
    w_hh: np.ndarray

    @property
    def hidden(self) -> int:
        return self.w_hh.shape[1]

    @property
    def state_width(self) -> int:
        return self.parts * self.hidden

    def input_projection(self, x: np.ndarray) -> np.ndarray:
        return x @ self.w_ih.T.astype(np.int64)


@dataclass
class IntGRUCell(_Cell):
    """One quantized GRU cell (torch gate order r, z, n) with optional LayerNorm and two heads."""

    w_ih: np.ndarray
    w_hh: np.ndarray
    b_i: np.ndarray
    b_hn: np.ndarray
    m_i: np.ndarray
    m_h: np.ndarray
    shift: np.ndarray
    sigmoid: ActTable
    tanh: ActTable
    blend: np.ndarray  # A, B, C, G
    state: Requant
    out: Requant
    state_scale: float  # real value of one state LSB (to read/write states as floats)
    ln_eps: int | None = None  # eps in Q32; None: no LayerNorm

    def __call__(self, acc_i: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Input projection acc_i [B, 3H] and int8 state h [B, H] -> Q16 cell output [B, H]."""
        n = self.hidden
        w_hh = self.w_hh.astype(np.int64)
        base = (acc_i + self.b_i) * self.m_i + (np.int64(1) << (self.shift - 1))
        rz = (base[:, : 2 * n] + (h @ w_hh[: 2 * n].T) * self.m_h[: 2 * n]) >> self.shift[: 2 * n]
        q_rz = self.sigmoid(_clip_pre(rz))
        q_r, q_z = q_rz[:, :n], q_rz[:, n:]
        hn = q_r * (h @ w_hh[2 * n :].T + self.b_hn)
        pre_n = (base[:, 2 * n :] + hn * self.m_h[2 * n :]) >> self.shift[2 * n :]
        q_n = self.tanh(_clip_pre(pre_n))
        a, b, c, g = (int(v) for v in self.blend)
        hq = (q_n * (a - q_z * b) + q_z * h.astype(np.int64) * c + (1 << (g - 1))) >> g
        return hq if self.ln_eps is None else layer_norm(hq, self.ln_eps)


@dataclass
class IntLSTMCell(_Cell):
    """One quantized LSTM cell (torch gate order i, f, g, o) with two heads.

    Its state row is [h, c] (2H int8) and its output [h', c'] (2H values in Q16); `state`
    requantizes both halves (h to the state quantizer, c to the cell quantizer) and `out`
    the first half (h') to the next layer's input."""

    parts = 2
    w_ih: np.ndarray
    w_hh: np.ndarray
    b_i: np.ndarray  # b_ih + b_hh in accumulator units
    m_i: np.ndarray
    m_h: np.ndarray
    shift: np.ndarray
    sigmoid: ActTable  # i, f, o
    tanh: ActTable  # g
    cell_tanh: ActTable  # tanh(c') before the output gate
    blend: np.ndarray  # F, I, O, G
    state: Requant
    out: Requant
    state_scale: float  # real value of one h LSB
    cell_scale: float  # real value of one c LSB

    def __call__(self, acc_i: np.ndarray, hc: np.ndarray) -> np.ndarray:
        """Input projection acc_i [B, 4H] and int8 state [h, c] [B, 2H] -> Q16 [h', c'] [B, 2H].

        c' = (q_f·q_c·F + q_i·q_g·I + 2^(G-1)) >> G and h' = (q_o·q_t·O + 2^(G-1)) >> G, where
        q_t is the quantized tanh of c' (before c' is requantized into the state)."""
        n = self.hidden
        h, c = hc[:, :n].astype(np.int64), hc[:, n:].astype(np.int64)
        acc_h = h @ self.w_hh.T.astype(np.int64)
        pre = ((acc_i + self.b_i) * self.m_i + acc_h * self.m_h
               + (np.int64(1) << (self.shift - 1))) >> self.shift  # fmt: skip
        pre = _clip_pre(pre)
        q_i, q_f, q_o = (self.sigmoid(pre[:, k * n : (k + 1) * n]) for k in (0, 1, 3))
        q_g = self.tanh(pre[:, 2 * n : 3 * n])
        f, i, o, g = (int(v) for v in self.blend)
        half = np.int64(1) << (g - 1)
        c_new = (q_f * c * f + q_i * q_g * i + half) >> g
        h_new = (q_o * self.cell_tanh(_clip_pre(c_new)) * o + half) >> g
        return np.concatenate([h_new, c_new], axis=1)


def acc_bound(w: np.ndarray, largest_input: float) -> np.ndarray:
    """Per row of integer weights `w`, the largest |accumulator| over inputs with
    |x| <= `largest_input`: what sizes requantizers and the stored projections."""
    return np.abs(w.astype(np.int64)).sum(1) * float(largest_input)


def _clip_pre(pre: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(pre, -PRE_LIMIT), PRE_LIMIT)


def isqrt(n: np.ndarray) -> np.ndarray:
    """Elementwise floor square root of non-negative int64 values (exact)."""
    return np.array([math.isqrt(int(v)) for v in n.reshape(-1)], dtype=np.int64).reshape(n.shape)


def layer_norm(h: np.ndarray, eps: int) -> np.ndarray:
    """Integer LayerNorm of Q16 rows h [B, H] -> normalized Q16 values (no affine part)."""
    n = h.shape[-1]
    mean = h.sum(-1, keepdims=True) // n
    d = h - mean
    var = (d * d).sum(-1, keepdims=True) // n
    inv = (1 << LN_INV_SHIFT) // np.maximum(isqrt(var + eps), 1)
    return (d * inv + (1 << (LN_OUT_SHIFT - 1))) >> LN_OUT_SHIFT


@dataclass
class IntModel:
    """An integer decoder: front end, optional encoder, GRU cells, readout.

    `width`: samples per bin (box sum); `lut`: bin count -> int8 input; `mode`: "stateful" or
    "window" (`num_steps` bins, `lag` samples apart); `out_scale` [D]: y = acc · out_scale.
    """

    channels: int
    width: int
    max_count: int
    lut: np.ndarray
    mode: str
    num_steps: int
    lag: int
    encoder: IntLinear | None
    cells: list[IntGRUCell | IntLSTMCell]
    readout: IntLinear
    out_scale: np.ndarray

    @property
    def outputs(self) -> int:
        return self.readout.w.shape[0]

    def to_bytes(self) -> bytes:
        """The model as one .npz (arrays and a JSON entry of the scalars), read without pickle."""
        arrays: dict[str, np.ndarray] = {}
        meta = {"format_version": FORMAT_VERSION, "fields": _flatten(self, "", arrays)}
        arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()


def load_int_model(path: str | os.PathLike) -> IntModel:
    """Read an IntModel written by `IntModel.to_bytes` (ContractError naming the file if bad)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("__meta__").tobytes())
    except (OSError, ValueError, KeyError) as e:
        raise ContractError(f"{path}: not a readable integer model ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ContractError(f"{path}: integer model format {meta.get('format_version')} unknown")
    try:
        return _build(IntModel, meta["fields"], arrays)
    except (KeyError, TypeError, ValueError) as e:  # a field missing, mistyped or unknown
        raise ContractError(f"{path}: not a readable integer model ({e})") from None


def _flatten(obj, prefix: str, arrays: dict) -> dict:
    """Dataclass -> JSON-able dict; arrays go to `arrays` under dotted paths."""
    out = {}
    for f in fields(obj):
        v, key = getattr(obj, f.name), f"{prefix}{f.name}"
        if isinstance(v, np.ndarray):
            arrays[key] = v
            out[f.name] = {"array": key}
        elif is_dataclass(v):
            out[f.name] = _flatten(v, key + ".", arrays)
        elif isinstance(v, list):  # items carry their class: a list may hold GRU or LSTM cells
            out[f.name] = [
                {**_flatten(x, f"{key}.{i}.", arrays), "__class__": type(x).__name__}
                for i, x in enumerate(v)
            ]
        else:
            out[f.name] = v
    return out


def _build(cls, spec: dict, arrays: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        v, hint = spec[f.name], hints[f.name]
        inner = _dataclasses_in(hint)
        if isinstance(v, dict) and "array" in v:
            kwargs[f.name] = arrays[v["array"]]
        elif isinstance(v, dict):
            kwargs[f.name] = _build(inner[0] if inner else hint, v, arrays)
        elif isinstance(v, list):
            kwargs[f.name] = [_build(_item_class(inner, x), x, arrays) for x in v]
        else:
            kwargs[f.name] = v
    return cls(**kwargs)


def _dataclasses_in(hint) -> list:
    """The dataclasses a type hint names (through list[...], unions and Optional)."""
    if is_dataclass(hint):
        return [hint]
    return [c for a in typing.get_args(hint) for c in _dataclasses_in(a)]


def _item_class(candidates: list, spec: dict):
    """The class a list item was written from (files before LSTM cells hold GRU cells only)."""
    name = spec.get("__class__", candidates[0].__name__)
    match = [c for c in candidates if c.__name__ == name]
    if not match:
        raise ValueError(f"unknown cell class {name!r}")
    return match[0]


class IntDecoder:
    """Runs an IntModel on `batch` streams of raw uint8 samples; returns int32 accumulators."""

    def __init__(self, model: IntModel, batch: int = 1) -> None:
        self.model, self.batch = model, batch
        self.reset()

    def reset(self) -> None:
        m, b = self.model, self.batch
        self.ring = np.zeros((b, m.width - 1, m.channels), dtype=np.int64)
        self.ring_pos, self.slot = 0, 0
        layers, hidden = len(m.cells), m.cells[0].hidden
        if m.mode == "stateful":
            self.h = np.zeros((layers, b, m.cells[0].state_width), dtype=np.int64)
            return
        self.cache = np.zeros((layers, m.num_steps - 1, m.lag, b, hidden), dtype=np.int64)
        x0 = self._encode(np.zeros((b, m.channels), dtype=np.int64))
        acc0 = m.cells[0].input_projection(x0)
        chain: list[list[np.ndarray]] = [[] for _ in m.cells]
        for k in range(1, m.num_steps):
            x = x0
            for li, cell in enumerate(m.cells):
                h = np.zeros((b, hidden), np.int64) if k == 1 else chain[li][k - 2]
                r = cell(acc0 if li == 0 else cell.input_projection(x), h)
                chain[li].append(cell.state(r))
                self.cache[li, k - 1] = chain[li][-1][None]
                x = cell.out(r)

    def _encode(self, counts: np.ndarray) -> np.ndarray:
        m = self.model
        q = m.lut[np.minimum(counts, len(m.lut) - 1)].astype(np.int64)
        return m.encoder(q) if m.encoder is not None else q

    def step(self, x: np.ndarray) -> np.ndarray:
        """One raw sample per stream, x [B, C] (non-negative integers) -> int32 acc [B, D]."""
        m = self.model
        x = np.minimum(np.asarray(x, dtype=np.int64), m.max_count)
        counts = x + self.ring.sum(1)
        if m.width > 1:
            self.ring[:, self.ring_pos] = x
            self.ring_pos = (self.ring_pos + 1) % (m.width - 1)
        qx = self._encode(counts)
        if m.mode == "stateful":
            for li, cell in enumerate(m.cells):
                r = cell(cell.input_projection(qx), self.h[li])
                self.h[li] = cell.state(r)
                qx = cell.out(r[:, : cell.hidden])
            return m.readout(qx)
        k, b = m.num_steps, self.batch
        x_in = np.broadcast_to(qx, (k, *qx.shape)).reshape(k * b, -1)  # every chain reads x(t)
        for li, cell in enumerate(m.cells):
            h = np.concatenate(
                [np.zeros((1, b, cell.hidden), np.int64), self.cache[li, :, self.slot]]
            )
            r = cell(cell.input_projection(x_in), h.reshape(k * b, -1))  # chain k: H_{k-1}(t-lag)
            self.cache[li, :, self.slot] = cell.state(r).reshape(k, b, -1)[: k - 1]
            x_in = cell.out(r)
        y = m.readout(x_in.reshape(k, b, -1)[-1])
        self.slot = (self.slot + 1) % m.lag
        return y

    def run(self, xs: np.ndarray) -> np.ndarray:
        """Consecutive samples [T, C] (batch 1) -> int32 accumulators [T, D]."""
        if self.batch != 1:
            raise CortexEdgeError(f"IntDecoder.run: needs batch 1, this decoder has {self.batch}")
        return np.concatenate([self.step(x[None]) for x in np.asarray(xs)]).astype(np.int32)
