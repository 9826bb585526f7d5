"""From a brevitas QAT decoder (cortexedge.compress.qat) to the integer IR (`IntModel`).

The QAT model computes, per layer, float arithmetic between quantizers (QuantLinear weights and
inputs, QuantSigmoid / QuantTanh, QuantIdentity on the state; BatchNorm, LayerNorm and the gate
arithmetic in float). Here every float step between two quantizers becomes integer arithmetic
with the real scales folded into integer multipliers (cortexedge.runtime.int_reference defines
what they mean):

- the input transform and the first input quantizer become one table over bin counts;
- encoder bias, BatchNorm and the ±clamp fold into a per-channel requantizer whose target is
  the first GRU cell's input quantizer;
- gate biases move to accumulator units; gate pre-activations are Q16 sums of both
  projections (one rounding); sigmoid / tanh are exact level tables (thresholds of the
  quantized activation, in Q16);
- the LayerNorm affine and the next quantizer fold into the two heads of each cell.
Every requantizer is checked so that no int64 intermediate can reach 2^62.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from cortexedge.compress.quant_gru import QuantGRUCell, QuantLSTMCell
from cortexedge.errors import CortexEdgeError
from cortexedge.export.c.model_ir import Structure
from cortexedge.runtime.int_reference import (
    PRE_FRAC,
    PRE_LIMIT,
    ActTable,
    IntGRUCell,
    IntLinear,
    IntLSTMCell,
    IntModel,
    Requant,
    acc_bound,
)

BOUND = 1 << 62  # no int64 intermediate may reach this
MULT_BITS = 31  # multipliers are scaled into [2^30, 2^31)
BLEND_SHIFT = 24
MAX_TABLE_CELLS = 512


@dataclass(frozen=True)
class Quant:
    """A per-tensor activation quantizer: real = q · scale, q in [qmin, qmax]."""

    scale: float
    qmin: int
    qmax: int


def act_quant(proxy) -> Quant:
    """Scale and integer range of a brevitas activation quantizer proxy (probed as it runs)."""
    with torch.no_grad():
        qt = proxy(torch.zeros(1))
    if float(torch.as_tensor(qt.zero_point).abs().max()) != 0.0:
        raise CortexEdgeError(
            "C export: asymmetric (zero-point) activation quantizers are not supported"
        )
    bits, signed = int(qt.bit_width), bool(qt.signed)
    narrow = bool(getattr(proxy, "is_narrow_range", False))
    lo = (-(2 ** (bits - 1)) + int(narrow)) if signed else 0
    hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    return Quant(float(qt.scale), lo, hi)


def weight_quant(layer) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights [out, in], per-row weight scales [out]) of a brevitas QuantLinear.

    A row pruned to zero multiplies nothing, so its scale is free; a per-channel quantizer
    gives it a vanishing one, which would put its bias at ~1e13 accumulator units: such a row
    takes the matrix's largest scale instead (the same real values)."""
    with torch.no_grad():
        qt = layer.quant_weight()
    if float(torch.as_tensor(qt.zero_point).abs().max()) != 0.0:
        raise CortexEdgeError("C export: asymmetric weight quantizers are not supported")
    w = qt.int().cpu().numpy().astype(np.int8)
    scale = np.broadcast_to(qt.scale.detach().cpu().double().numpy().reshape(-1), (w.shape[0],))
    scale, zero = scale.copy(), ~w.any(axis=1)
    if zero.any():
        scale[zero] = scale[~zero].max() if (~zero).any() else 1.0
    return w, scale


def _bias(layer, n: int) -> np.ndarray:
    b = getattr(layer, "bias", None)
    return np.zeros(n) if b is None else b.detach().cpu().double().numpy()


def _shift_for(
    mult: np.ndarray, operand_bounds: list[np.ndarray], offset: np.ndarray
) -> np.ndarray:
    """Per-channel shifts: the largest |multiplier| lands in [2^30, 2^31), then smaller while the
    worst-case |Σ operand·m + c| would reach 2^62."""
    mult = np.atleast_2d(mult)
    top = np.abs(mult).max(0)
    shift = np.where(top > 0, np.floor(np.log2((2**MULT_BITS - 1) / np.maximum(top, 1e-300))), 32)
    shift = np.clip(shift, 1, 62).astype(np.int64)
    while True:
        terms = zip(operand_bounds, mult, strict=True)
        worst = sum(b * np.abs(m) for b, m in terms) + np.abs(offset) + 2
        worst = worst * np.exp2(shift.astype(np.float64))
        over = worst >= BOUND / 2
        if not over.any():
            return shift
        if (shift[over] <= 1).any():
            raise CortexEdgeError("C export: a requantizer cannot be made overflow-free in int64")
        shift[over] -= 1


def requant(
    mult, offset, bound, out: Quant, lo: int | None = None, hi: int | None = None
) -> Requant:
    """q = clip(round(x·mult + offset), lo, hi) for |x| <= bound, as an integer Requant.

    `offset` is clipped to a range where the result is saturated anyway, so that huge offsets
    (a near-zero BatchNorm scale) still fit."""
    mult, offset = np.atleast_1d(np.asarray(mult, float)), np.atleast_1d(np.asarray(offset, float))
    lo = out.qmin if lo is None else lo
    hi = out.qmax if hi is None else hi
    reach = np.abs(mult) * bound + abs(hi - lo) + 2
    offset = np.clip(offset, -reach, reach)
    shift = _shift_for(mult, [np.full_like(mult, bound)], offset)
    m = np.round(mult * np.exp2(shift)).astype(np.int64)
    c = np.round(offset * np.exp2(shift)).astype(np.int64) + (np.int64(1) << (shift - 1))
    return Requant(m, c, shift, int(lo), int(hi))


def act_table(kind: str, q: Quant) -> ActTable:
    """Exact level table of sigmoid or tanh followed by quantizer `q`, on Q16 pre-activations."""
    inv, lo_sup, hi_sup = {
        "sigmoid": (lambda y: np.log(y / (1 - y)), 0.0, 1.0),
        "tanh": (np.arctanh, -1.0, 1.0),
    }[kind]
    y = (np.arange(q.qmin, q.qmax) + 0.5) * q.scale  # level q -> q+1 boundary
    thr = np.empty(len(y), dtype=np.int64)
    inside = (y > lo_sup) & (y < hi_sup)
    with np.errstate(divide="ignore"):
        thr[inside] = np.ceil(inv(y[inside]) * 2**PRE_FRAC)
    thr[~inside] = np.where(y[~inside] <= lo_sup, -PRE_LIMIT - 1, PRE_LIMIT + 1)
    thr = np.clip(thr, -PRE_LIMIT - 1, PRE_LIMIT + 1)
    finite = thr[(thr > -PRE_LIMIT - 1) & (thr < PRE_LIMIT + 1)]
    if len(finite) == 0:
        lut = np.array([np.count_nonzero(thr <= 0)], dtype=np.uint8)
        return ActTable(0, 0, lut, thr, q.qmin, q.qmax)
    gaps = np.diff(finite)
    gap = int(gaps[gaps > 0].min()) if (gaps > 0).any() else 1
    span = int(finite[-1] - finite[0]) + 1
    cell_shift = max(
        int(math.floor(math.log2(gap))), math.ceil(math.log2(span / MAX_TABLE_CELLS)), 0
    )
    lo = int(finite[0]) - (1 << cell_shift)
    n = ((int(finite[-1]) - lo) >> cell_shift) + 2
    starts = lo + (np.arange(n, dtype=np.int64) << cell_shift)
    lut = np.searchsorted(thr, starts, side="right")  # levels above qmin at each cell start
    if lut.max() > 255:
        raise CortexEdgeError(f"C export: {kind} quantizer has more than 256 levels")
    return ActTable(lo, cell_shift, lut.astype(np.uint8), thr, q.qmin, q.qmax)


def input_table(transform: str, proxy, width: int, max_count: int) -> np.ndarray:
    """int8 input of every reachable bin count (0 .. width·max_count): the transform then the
    first quantizer, computed by the brevitas quantizer itself; cut after its last change."""
    from cortexedge.train.models.inputs import input_transform

    counts = torch.arange(width * max_count + 1, dtype=torch.float32)
    with torch.no_grad():
        q = proxy(input_transform(transform)(counts)).int().cpu().numpy().astype(np.int64)
    change = np.nonzero(np.diff(q))[0]
    length = int(change[-1]) + 2 if len(change) else 1
    return q[:length].astype(np.int8)


def _encoder(s: Structure, q_in: Quant, target: Quant) -> IntLinear:
    w, s_w = weight_quant(s.encoder)
    b = _bias(s.encoder, w.shape[0])
    gamma, beta = np.ones(w.shape[0]), np.zeros(w.shape[0])
    mean, sd = np.zeros(w.shape[0]), np.ones(w.shape[0])
    if s.norm is not None:
        bn = s.norm
        gamma, beta = (bn.weight.detach().double().numpy(), bn.bias.detach().double().numpy())
        mean = bn.running_mean.detach().double().numpy()
        sd = np.sqrt(bn.running_var.detach().double().numpy() + bn.eps)
    mult = gamma / sd * q_in.scale * s_w / target.scale
    offset = (gamma * (b - mean) / sd + beta) / target.scale
    lo, hi = target.qmin, target.qmax
    if s.clamp is not None:
        edge = torch.round(torch.tensor([-s.clamp, s.clamp]) / torch.tensor(target.scale))
        lo, hi = max(lo, int(edge[0])), min(hi, int(edge[1]))
    bound = float(acc_bound(w, _largest(q_in)).max())
    return IntLinear(w, requant(mult, offset, bound, target, lo, hi))


def _front(s: Structure, target: Quant, max_count: int) -> tuple[np.ndarray, IntLinear]:
    """(input table, encoder) of a class whose first layer reads bin·a + b per channel: the
    table keeps counts as they are (int8) up to where every channel's quantized value stops
    changing, and a diagonal encoder requantizes a·count + b into the first layer's input."""
    a, b = (np.asarray(v, dtype=np.float64) for v in s.front)
    counts = np.arange(max_count + 1, dtype=np.float64)[:, None]
    q = np.clip(np.round((counts * a + b) / target.scale), target.qmin, target.qmax)
    change = np.nonzero(np.any(np.diff(q, axis=0) != 0, axis=1))[0]
    top = int(change[-1]) + 1 if len(change) else 0
    if top > 127:
        raise CortexEdgeError(
            f"C export: {s.family}'s input quantizer still changes at {top} counts; the "
            "integer path keeps a bin's counts as int8 before its affine front end (<= 127)"
        )
    eye = np.eye(s.channels, dtype=np.int8)
    rq = requant(a / target.scale, b / target.scale, float(max(top, 1)), target)
    return np.arange(top + 1, dtype=np.int8), IntLinear(eye, rq)


def _largest(q: Quant) -> int:
    return max(abs(q.qmin), q.qmax)


def _cell(cell, norm, q_x: Quant, target: Quant) -> IntGRUCell:
    """One QuantGRUCell (+ LayerNorm) whose `out` head quantizes to `target`."""
    q_h = act_quant(cell.state_quant.act_quant)
    q_sig, q_tanh = act_quant(cell.gate_act.act_quant), act_quant(cell.cand_act.act_quant)
    w_ih, s_wi = weight_quant(cell.ih)
    w_hh, s_wh = weight_quant(cell.hh)
    n = w_hh.shape[1]
    b_ih, b_hh = _bias(cell.ih, 3 * n), _bias(cell.hh, 3 * n)
    one = 2.0**PRE_FRAC
    m_i = q_x.scale * s_wi * one
    m_h = q_h.scale * s_wh * one
    gate_bias = np.concatenate([(b_ih + b_hh)[: 2 * n], b_ih[2 * n :]])
    b_i = np.round(gate_bias / (q_x.scale * s_wi)).astype(np.int64)  # accumulator units
    b_hn = np.round(b_hh[2 * n :] / (q_h.scale * s_wh[2 * n :])).astype(np.int64)
    m_h[2 * n :] *= q_sig.scale  # the candidate reads q_r · (acc_hn + b_hn)
    bound_i = acc_bound(w_ih, _largest(q_x)) + np.abs(b_i)
    bound_h = acc_bound(w_hh, _largest(q_h))
    bound_h[2 * n :] = (bound_h[2 * n :] + np.abs(b_hn)) * q_sig.qmax
    shift = _shift_for(np.stack([m_i, m_h]), [bound_i, bound_h], np.zeros(3 * n))
    scale = np.exp2(shift)
    g = 2.0 ** (PRE_FRAC + BLEND_SHIFT)
    blend = np.array([round(q_tanh.scale * g), round(q_tanh.scale * q_sig.scale * g),
                      round(q_sig.scale * q_h.scale * g), BLEND_SHIFT], dtype=np.int64)  # fmt: skip
    qn, qz, qh = max(-q_tanh.qmin, q_tanh.qmax), q_sig.qmax, max(-q_h.qmin, q_h.qmax)
    if qn * (blend[0] + qz * blend[1]) + qz * qh * blend[2] >= BOUND:
        raise CortexEdgeError("C export: GRU state update would overflow int64")
    if norm is None:
        h_bound = max(qn * q_tanh.scale, qh * q_h.scale) * one + 2
        heads = [requant(1.0 / (one * t.scale), 0.0, h_bound, t) for t in (q_h, target)]
        eps = None
    else:
        gamma = np.ones(n) if norm.weight is None else norm.weight.detach().double().numpy()
        beta = np.zeros(n) if norm.bias is None else norm.bias.detach().double().numpy()
        r_bound = math.sqrt(n) * one * 1.01 + 2
        heads = [
            requant(gamma / (one * t.scale), beta / t.scale, r_bound, t) for t in (q_h, target)
        ]
        eps = max(int(round(norm.eps * 2.0 ** (2 * PRE_FRAC))), 1)  # the variance is Q32
    return IntGRUCell(
        w_ih, w_hh, b_i, b_hn, np.round(m_i * scale).astype(np.int64),
        np.round(m_h * scale).astype(np.int64), shift, act_table("sigmoid", q_sig),
        act_table("tanh", q_tanh), blend, heads[0], heads[1], q_h.scale, eps,
    )  # fmt: skip


def _lstm_cell(cell, _norm, q_x: Quant, target: Quant) -> IntLSTMCell:
    """One QuantLSTMCell whose `out` head quantizes h' to `target` (the readers give an LSTM
    no LayerNorm)."""
    q_h, q_c = act_quant(cell.state_quant.act_quant), act_quant(cell.cell_quant.act_quant)
    q_sig, q_g = act_quant(cell.gate_act.act_quant), act_quant(cell.cand_act.act_quant)
    q_t = act_quant(cell.cell_act.act_quant)
    w_ih, s_wi = weight_quant(cell.ih)
    w_hh, s_wh = weight_quant(cell.hh)
    n = w_hh.shape[1]
    one = 2.0**PRE_FRAC
    m_i, m_h = q_x.scale * s_wi * one, q_h.scale * s_wh * one
    b_i = np.round((_bias(cell.ih, 4 * n) + _bias(cell.hh, 4 * n)) / (q_x.scale * s_wi))
    b_i = b_i.astype(np.int64)  # accumulator units
    bound_i = acc_bound(w_ih, _largest(q_x)) + np.abs(b_i)
    shift = _shift_for(np.stack([m_i, m_h]), [bound_i, acc_bound(w_hh, _largest(q_h))],
                       np.zeros(4 * n))  # fmt: skip
    g = 2.0 ** (PRE_FRAC + BLEND_SHIFT)
    blend = np.array([round(q_sig.scale * q_c.scale * g), round(q_sig.scale * q_g.scale * g),
                      round(q_sig.scale * q_t.scale * g), BLEND_SHIFT], dtype=np.int64)  # fmt: skip
    qs, qc = q_sig.qmax, _largest(q_c)
    if qs * (qc * blend[0] + _largest(q_g) * blend[1] + _largest(q_t) * blend[2]) >= BOUND:
        raise CortexEdgeError("C export: LSTM state update would overflow int64")
    if (q_h.qmin, q_h.qmax) != (q_c.qmin, q_c.qmax):
        raise CortexEdgeError("C export: an LSTM's h and c quantizers must share one range")
    gate = qs * q_sig.scale  # the largest gate value
    c_bound = gate * (qc * q_c.scale + _largest(q_g) * q_g.scale) * one + 2
    h_bound = gate * _largest(q_t) * q_t.scale * one + 2
    inv = np.r_[np.full(n, 1 / (one * q_h.scale)), np.full(n, 1 / (one * q_c.scale))]
    state = requant(inv, 0.0, max(c_bound, h_bound), q_h)
    return IntLSTMCell(
        w_ih=w_ih, w_hh=w_hh, b_i=b_i, m_i=np.round(m_i * np.exp2(shift)).astype(np.int64),
        m_h=np.round(m_h * np.exp2(shift)).astype(np.int64), shift=shift,
        sigmoid=act_table("sigmoid", q_sig), tanh=act_table("tanh", q_g),
        cell_tanh=act_table("tanh", q_t), blend=blend, state=state,
        out=requant(1.0 / (one * target.scale), 0.0, h_bound, target),
        state_scale=q_h.scale, cell_scale=q_c.scale,
    )  # fmt: skip


# quantized cell type -> the extraction of its integer cell
CELLS = {QuantGRUCell: _cell, QuantLSTMCell: _lstm_cell}


def int_model(s: Structure, max_count: int = 255) -> IntModel:
    """The integer IR of a quantized decoder structure; inputs are raw spike counts <= max_count."""
    if not s.quantized:
        raise CortexEdgeError(
            "C export: the integer path needs a quantized model (cortexedge compress with QAT)"
        )
    if not (isinstance(max_count, int) and 1 <= max_count <= 255):
        raise CortexEdgeError(f"max_count: must be an integer in 1..255, got {max_count!r}")
    if s.width * max_count > 65535:
        raise CortexEdgeError(
            f"C export: bins of {s.width} samples up to {max_count} overflow 16 bits"
        )
    extract = [next((f for t, f in CELLS.items() if isinstance(c, t)), None) for c in s.cells]
    if None in extract:
        raise CortexEdgeError("C export: the integer path needs every recurrent layer quantized")
    widths = sorted({c.hidden_size for c in s.cells})
    if len(widths) > 1:
        raise CortexEdgeError(
            f"C export: the integer path needs its recurrent layers of one width (got {widths})"
        )
    inputs = [act_quant(c.input_quant.act_quant) for c in s.cells]
    q_out = act_quant(s.readout.input_quant)
    if s.front is not None:
        lut, encoder = _front(s, inputs[0], max_count)
    else:
        first = s.encoder.input_quant if s.encoder is not None else s.cells[0].input_quant
        first = getattr(first, "act_quant", first)
        lut = input_table(s.transform, first, s.width, max_count)
        encoder = _encoder(s, act_quant(first), inputs[0]) if s.encoder is not None else None
    targets = inputs[1:] + [q_out]
    layers = zip(s.cells, s.norms, inputs, targets, strict=True)
    cells = [f(c, norm, q_x, t) for f, (c, norm, q_x, t) in zip(extract, layers, strict=True)]
    w_out, s_wo = weight_quant(s.readout)
    b_out = np.round(_bias(s.readout, w_out.shape[0]) / (q_out.scale * s_wo)).astype(np.int64)
    return IntModel(
        s.channels, s.width, max_count, lut, s.mode, s.num_steps, s.lag, encoder, cells,
        IntLinear(w_out, None, b_out), q_out.scale * s_wo,
    )  # fmt: skip
