"""The integer C path: an IntModel (cortexedge.runtime.int_reference) as C99 that matches the
numpy reference bit for bit.

`EMITTERS` maps each layer kind to the function that emits it (C code, constant arrays and the
stored matrices); `emit(model, policy)` runs them in order and assembles the program with the
shared skeleton of emit_common. A per-row constant that is the same for every row (per-tensor
scales) is written as a literal instead of an array, which saves flash and loads.

Raw samples are stored in the state at the fewest bits that hold `max_count` (1..8 bits; a
sample whose bits straddle a byte boundary is read through two bytes; a row is packed exactly).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import emit_common, int_templates, sparse
from cortexedge.export.c.emit_common import Layout
from cortexedge.export.c.program import Emitted, Program, assemble, runs_per_step
from cortexedge.export.c.sparse import CArray, gate_rows_function, row_function, store
from cortexedge.runtime.int_reference import (
    ActTable,
    IntGRUCell,
    IntLSTMCell,
    IntModel,
    Requant,
    acc_bound,
)


def _const(name: str, values: np.ndarray, index: str, dtype) -> tuple[str, list[CArray]]:
    """A C expression for values[index]: a literal when all values agree, else an array."""
    values = np.asarray(values).reshape(-1)
    if np.all(values == values[0]):
        v = int(values[0])
        return (f"INT64_C({v})" if np.dtype(dtype) == np.int64 else str(v)), []
    info = np.iinfo(dtype)
    if values.min() < info.min or values.max() > info.max:
        raise CortexEdgeError(f"C export: constant {name} does not fit {np.dtype(dtype).name}")
    return f"{name}[{index}]", [CArray(name, values.astype(dtype))]


def _requant(name: str, rq: Requant, n: int, head: bool) -> tuple[str, list[CArray]]:
    """`name_one(x, k)` requantizing value x of channel k (k < n), and with `head` also
    `name(x, dst)` over all n channels."""
    if rq.lo < -128 or rq.hi > 127:
        raise CortexEdgeError(f"C export: requantizer {name} targets a range outside int8")
    m, am = _const(f"{name}_m", np.broadcast_to(rq.m, (n,)), "k", np.int32)
    c, ac = _const(f"{name}_c", np.broadcast_to(rq.c, (n,)), "k", np.int64)
    s, as_ = _const(f"{name}_s", np.broadcast_to(rq.shift, (n,)), "k", np.int8)
    code = int_templates.REQUANT.format(name=name, m=m, c=c, s=s, lo=rq.lo, hi=rq.hi)
    if head:
        code += int_templates.HEAD.format(name=name, n=n)
    return code, am + ac + as_


def _act(name: str, t: ActTable) -> tuple[str, list[CArray]]:
    # a sentinel after the last threshold stops the level walk at qmax without a bounds test
    thr = np.append(np.clip(t.thr, -(2**31), 2**31 - 1), 2**31 - 1).astype(np.int32)
    # the most thresholds one table cell holds: the walk after the table takes that many steps
    steps = int(np.diff(t.lut.astype(np.int64)).max(initial=0))
    arrays = [CArray(f"{name}_lut", t.lut.astype(np.uint8)), CArray(f"{name}_thr", thr)]
    code = (
        f"static const act_t {name} = {{{t.lo}, {t.cell_shift}, {len(t.lut)}, {t.qmin}, "
        f"{t.qmax}, {steps}, {name}_lut, {name}_thr}};\n"
    )
    return code, arrays


def _unpack(lay: Layout, row: str) -> str:
    """C: the sample of channel k in the packed ring row `row` (`sample_bits` bits each)."""
    bits = lay.sample_bits
    if bits == 8:
        return f"{row}[k]"
    byte = f"(unsigned){row}[(k * {bits}) >> 3]"
    if 8 % bits:  # a sample may straddle two bytes: only then is the next one read
        spill = f"((unsigned){row}[((k * {bits}) >> 3) + 1] << 8)"
        byte = f"({byte} | (((k * {bits}) & 7) > {8 - bits} ? {spill} : 0u))"
    return f"(({byte} >> ((k * {bits}) & 7)) & {(1 << bits) - 1}u)"


def _front(model: IntModel, lay: Layout, policy: str) -> Emitted:
    bits, c, n_lut = lay.sample_bits, lay.channels, len(model.lut)
    lut = CArray("decoder_lut", model.lut.astype(np.int8))
    lookup = f"decoder_lut[total < {n_lut}u ? total : {n_lut - 1}u]"
    if not lay.ring_rows:  # one sample per bin: no box sum
        code = f"""
static void front(decoder_state_t *s, const uint8_t *bin, int8_t *q)
{{
    int k;
    (void)s;
    for (k = 0; k < {c}; ++k) {{
        const unsigned total = bin[k];
        q[k] = {lookup};
    }}
}}
"""
        return Emitted(code, [lut], [])
    spill = f"""        if (((k * {bits}) & 7) > {8 - bits}) {{ /* straddles into the next byte */
            row[((k * {bits}) >> 3) + 1] |= (uint8_t)(x >> 8);
        }}
"""
    code = f"""
/* box sum of the last {lay.width} raw samples (a running sum: the new sample in, the oldest
 * one, about to be overwritten in the ring, out), then the input table */
static void front(decoder_state_t *s, const uint8_t *bin, int8_t *q)
{{
    uint8_t *row = s->ring[s->ring_pos];
    int k;
    for (k = 0; k < {c}; ++k) {{
        const unsigned total = (unsigned)s->sums[k] + bin[k];
        s->sums[k] = ({lay.sum_t})(total - {_unpack(lay, "row")});
        q[k] = {lookup};
    }}
    memset(row, 0, sizeof s->ring[0]);
    for (k = 0; k < {c}; ++k) {{
        unsigned x = (unsigned)bin[k] << ((k * {bits}) & 7);
        row[(k * {bits}) >> 3] |= (uint8_t)(x & 0xFFu);
{"" if 8 % bits == 0 else spill}    }}
    s->ring_pos = (uint16_t)((s->ring_pos + 1) % {lay.ring_rows});
}}
"""
    return Emitted(code, [lut], [])


def _encoder(model: IntModel, lay: Layout, policy: str) -> Emitted:
    c = lay.channels
    if model.encoder is None:
        code = """
static void input_bin(decoder_state_t *s, const uint8_t *bin, int8_t *qx, int8_t *raw)
{
    (void)raw; /* no encoder: the table values are the cells' input */
    front(s, bin, qx);
}
"""
        zero = f"""
static void input_zero(int8_t *qx, int8_t *raw)
{{
    (void)raw;
    memset(qx, decoder_lut[0], {c});
}}
"""
        return Emitted(code + (zero if lay.cached else ""), [], [])
    e = model.encoder.w.shape[0]
    mat = store("enc", model.encoder.w, policy)
    head, arrays = _requant("enc_rq", model.encoder.rq, e, head=False)
    code = f"""
{row_function(mat, "int32_t", "int8_t")}{head}
static void encode(const int8_t *q_in, int8_t *qx)
{{
    int o;
    for (o = 0; o < {e}; ++o) {{
        qx[o] = enc_rq_one(row_enc(o, q_in), o);
    }}
}}

/* raw: {c} bytes of the caller's scratch for the bin's table values */
static void input_bin(decoder_state_t *s, const uint8_t *bin, int8_t *qx, int8_t *raw)
{{
    front(s, bin, raw);
    encode(raw, qx);
}}
"""
    zero = f"""
static void input_zero(int8_t *qx, int8_t *raw)
{{
    memset(raw, decoder_lut[0], {c});
    encode(raw, qx);
}}
"""
    return Emitted(code + (zero if lay.cached else ""), list(mat.arrays) + arrays, [mat])


def _fits32(bias: np.ndarray, name: str, i: int, w: np.ndarray) -> None:
    """Refuse a bias that, added to its projection of int8 inputs, could leave int32 (the C
    adds them in 32 bits)."""
    bound = acc_bound(w, 128).max(initial=0) + np.abs(bias).max(initial=0)
    if bound >= 2**31:
        raise CortexEdgeError(f"C export: cell {i}: bias {name} plus its projection exceeds int32")


def _cell(cell: IntGRUCell, i: int, policy: str) -> Emitted:
    p, n = f"c{i}", cell.hidden
    ih, hh = store(f"{p}_ih", cell.w_ih, policy), store(f"{p}_hh", cell.w_hh, policy)
    arrays = list(ih.arrays) + list(hh.arrays)
    consts = {}
    rz, cand = slice(0, 2 * n), slice(2 * n, 3 * n)
    for key, values, rows, dtype in (
        ("mi_rz", cell.m_i, rz, np.int32), ("mh_rz", cell.m_h, rz, np.int32),
        ("s_rz", cell.shift, rz, np.int8), ("mi_n", cell.m_i, cand, np.int32),
        ("mh_n", cell.m_h, cand, np.int32), ("s_n", cell.shift, cand, np.int8),
    ):  # fmt: skip
        block = np.asarray(values)[rows]
        if np.all(block == block[0]):
            consts[key], extra = _const(f"{p}_{key}", block, "j", dtype)
        else:  # per-row: one array over all 3H rows, indexed by j
            consts[key], extra = f"{p}_{key[:2]}[j]", []
            if not any(a.name == f"{p}_{key[:2]}" for a in arrays):
                extra = [CArray(f"{p}_{key[:2]}", np.asarray(values).astype(dtype))]
        arrays += extra
    for name, values, w in ((f"{p}_bi", cell.b_i, cell.w_ih), (f"{p}_bhn", cell.b_hn, cell.w_hh)):
        _fits32(values, name, i, w)
        arrays.append(CArray(name, np.asarray(values).astype(np.int32)))
    sig, sig_arrays = _act(f"{p}_sig", cell.sigmoid)
    tanh, tanh_arrays = _act(f"{p}_tanh", cell.tanh)
    state, st_arrays = _requant(f"{p}_state", cell.state, n, head=True)
    out, out_arrays = _requant(f"{p}_out", cell.out, n, head=True)
    a, b, c, g = (int(v) for v in cell.blend)
    norm = "" if cell.ln_eps is None else f"    layer_norm(hq, {n}, INT64_C({int(cell.ln_eps)}));\n"
    body = int_templates.CELL.format(p=p, n=n, n2=2 * n, a=a, b=b, c=c, g=g, norm=norm, **consts)
    code = (
        gate_rows_function(ih, n) + "\n" + gate_rows_function(hh, n)
        + sig + tanh + body + state + out
    )  # fmt: skip
    return Emitted(code, arrays + sig_arrays + tanh_arrays + st_arrays + out_arrays, [ih, hh])


def _lstm_cell(cell: IntLSTMCell, i: int, policy: str) -> Emitted:
    p, n = f"c{i}", cell.hidden
    ih, hh = store(f"{p}_ih", cell.w_ih, policy), store(f"{p}_hh", cell.w_hh, policy)
    arrays = list(ih.arrays) + list(hh.arrays)
    consts = {}
    for key, values, dtype in (("mi", cell.m_i, np.int32), ("mh", cell.m_h, np.int32),
                               ("s", cell.shift, np.int8)):  # fmt: skip
        consts[key], extra = _const(f"{p}_{key}", values, "j", dtype)
        arrays += extra
    _fits32(cell.b_i, f"{p}_bi", i, cell.w_ih)
    arrays.append(CArray(f"{p}_bi", cell.b_i.astype(np.int32)))
    code = gate_rows_function(ih, n, 4) + "\n" + gate_rows_function(hh, n, 4)
    for name, table in (("sig", cell.sigmoid), ("tanh", cell.tanh), ("ctanh", cell.cell_tanh)):
        text, extra = _act(f"{p}_{name}", table)
        code, arrays = code + text, arrays + extra
    f, i_, o, g = (int(v) for v in cell.blend)
    code += int_templates.LSTM_CELL.format(p=p, n=n, f=f, i=i_, o=o, g=g, **consts)
    for name, rq, width in (("state", cell.state, 2 * n), ("out", cell.out, n)):
        text, extra = _requant(f"{p}_{name}", rq, width, head=True)
        code, arrays = code + text, arrays + extra
    return Emitted(code, arrays, [ih, hh])


# integer cell type -> its emitter
CELL_EMITTERS = {IntGRUCell: _cell, IntLSTMCell: _lstm_cell}


def _cells(model: IntModel, lay: Layout, policy: str) -> Emitted:
    parts = [CELL_EMITTERS[type(c)](c, i, policy) for i, c in enumerate(model.cells)]
    norms = any(getattr(c, "ln_eps", None) is not None for c in model.cells)
    ln = int_templates.LAYER_NORM if norms else ""
    ih0 = int_templates.IH_ALL.format(n=lay.hidden, n2=2 * lay.hidden) if lay.cached else ""
    code = ln + "".join(p.code for p in parts) + emit_common.cell_tables(lay, len(parts)) + ih0
    return Emitted(code, [a for p in parts for a in p.arrays], [m for p in parts for m in p.stored])


def _readout(model: IntModel, lay: Layout, policy: str) -> Emitted:
    mat = store("out", model.readout.w, policy)
    bias = CArray("out_b", model.readout.bias.astype(np.int32))
    code = f"""
{row_function(mat, "int32_t", "int8_t")}
static void readout(const int8_t *x, int32_t *out)
{{
    int d;
    for (d = 0; d < {lay.outputs}; ++d) {{
        out[d] = row_out(d, x) + out_b[d];
    }}
}}
"""
    return Emitted(code, list(mat.arrays) + [bias], [mat])


# layer kind -> emitter, in the order the generated file defines them
EMITTERS: dict[str, Callable[[IntModel, Layout, str], Emitted]] = {
    "front": _front,
    "encoder": _encoder,
    "gru_cell": _cells,
    "readout": _readout,
}


def layout(model: IntModel) -> Layout:
    """Sizes and C types of the integer decoder."""
    bits = max(int(model.max_count).bit_length(), 1)
    enc = None if model.encoder is None else model.encoder.w.shape[0]
    return Layout(
        numeric="int", channels=model.channels, outputs=model.outputs, enc_dim=enc,
        hidden=model.cells[0].hidden, state_width=model.cells[0].state_width,
        layers=len(model.cells), width=model.width,
        mode=model.mode, num_steps=model.num_steps, lag=model.lag, in_t="uint8_t",
        out_t="int32_t", act_t="int8_t", acc_t="int32_t", sample_bits=bits,
        max_count=model.max_count, acc0_bytes=_acc0_bytes(model),
    )  # fmt: skip


def _acc0_bytes(model: IntModel) -> int:
    """3 when every layer-0 input projection fits 24 bits (its inputs are int8), else 4: a
    window keeps 3H of them over its chains, and on the device that stack is RAM."""
    bound = acc_bound(model.cells[0].w_ih, 128).max(initial=0)  # the cells' inputs are int8
    return 3 if bound < 2**23 else 4


def _host_io(model: IntModel, lay: Layout) -> str:
    """Host get/set of a hidden state as floats: `index` is layer l (h) or, for an LSTM,
    layers + l (its c); each part has its quantizer's scale."""
    if lay.mode != "stateful":
        return ""
    lstm = isinstance(model.cells[0], IntLSTMCell)
    parts = [c.state_scale for c in model.cells] + (
        [c.cell_scale for c in model.cells] if lstm else []
    )
    scales = ", ".join(f"{v!r}f" for v in parts)
    row = f"s->h[index % {lay.layers}] + (index / {lay.layers}) * {lay.hidden}"
    return f"""
static const float state_scale[{len(parts)}] = {{{scales}}};
void decoder_host_get_hidden(const decoder_state_t *s, int index, float *h);
void decoder_host_set_hidden(decoder_state_t *s, int index, const float *h);

void decoder_host_get_hidden(const decoder_state_t *s, int index, float *h)
{{
    const int8_t *row = {row};
    int k;
    for (k = 0; k < {lay.hidden}; ++k) {{
        h[k] = (float)row[k] * state_scale[index];
    }}
}}

/* the state quantizer of the model: round half to even, saturate */
void decoder_host_set_hidden(decoder_state_t *s, int index, const float *h)
{{
    int8_t *row = {row};
    int k;
    for (k = 0; k < {lay.hidden}; ++k) {{
        float q = nearbyintf(h[k] / state_scale[index]);
        row[k] = (int8_t)(q < -128.0f ? -128.0f : (q > 127.0f ? 127.0f : q));
    }}
}}
"""


def emit(model: IntModel, policy: str = "auto", budget: int | None = None) -> Program:
    """The integer C program of `model`; `policy` chooses dense/CSR/mask storage per matrix;
    with a `budget` (bytes of constant data), the fewest estimated instructions that fit it."""
    if budget is not None:
        dense = emit(model, "dense")
        fixed = dense.weight_bytes - sum(m.nbytes for m in dense.matrices)  # tables, scales
        runs = {m.name: runs_per_step(dense.layout, m.name) for m in dense.matrices}
        policy = sparse.fit_budget(dense.matrices, runs, budget, fixed)
    lay = layout(model)
    parts = [emit_fn(model, lay, policy) for emit_fn in EMITTERS.values()]
    scales = ", ".join(f"{float(s)!r}f" for s in model.out_scale)
    macros = [
        f"#define DECODER_MAX_COUNT {model.max_count} /* larger counts are refused */",
        "/* y[d] = out[d] * DECODER_OUTPUT_SCALES[d] */",
        f"#define DECODER_OUTPUT_SCALES {{{scales}}}",
    ]
    host = emit_common.host_shim(
        lay,
        convert="in[c] = (decoder_input_t)v;",
        validate=f"(v >= lo) & (v <= hi) & (v >= 0.0f) & (v <= {model.max_count}.0f)"
        " & (v == floorf(v))",  # a whole count the build accepts (NaN fails every test)
        emit="y[k + d] = (float)out[d] * out_scale[d];\n                if (raw) {\n"
        "                    raw[k + d] = out[d];\n                }",
        hidden_io=_host_io(model, lay),
        constants=f"\nstatic const float out_scale[{lay.outputs}] = DECODER_OUTPUT_SCALES;\n",
    )
    helpers = sparse.DSP_HELPERS + int_templates.HELPERS + int_templates.ACC0[lay.acc0_bytes]
    return assemble(lay, parts, helpers, macros, host, ["<stdint.h>", "<string.h>"])
