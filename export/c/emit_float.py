"""The float32 C path: a FloatModel (export.c.model_ir) as C99 with <math.h>.

Same structure and registry as the integer path (emit_int): `EMITTERS` maps each layer kind to
its emitter, the shared skeleton (emit_common) holds the API and the streaming driver; each
GRU layer gets its own cell function from the CELL template. The
arithmetic follows torch's GRUCell (gates r, z, n; h' = (1 − z)·n + z·h) and LayerNorm
(biased variance), so outputs agree with onnxruntime to float rounding (about 1e-6).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import emit_common
from cortexedge.export.c.emit_common import Layout
from cortexedge.export.c.model_ir import FloatCell, FloatModel
from cortexedge.export.c.program import Emitted, Program, assemble
from cortexedge.export.c.sparse import CArray, matvec_function, store

HELPERS = """
/* exp(x) in float32 without libm, so that loops of gates vectorize: x = k·ln2 + r with
 * |r| <= ln2/2 (ln2 in two parts), exp(r) by a degree-7 Taylor-like polynomial (Cephes' expf
 * coefficients), times 2^k built in the exponent bits. Relative error below 1e-7 over the
 * clamped range [-87, 88] (tests/export/test_c_float.py measures it). */
static float exp_poly(float x)
{
    float k, r, p;
    int32_t e;
    uint32_t bits;
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    k = floorf(x * 1.44269504f + 0.5f);
    r = x - k * 0.693359375f - k * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    e = (int32_t)k + 127;
    bits = (uint32_t)e << 23;
    memcpy(&k, &bits, sizeof k);
    return p * k;
}

static float sigmoid(float x)
{
    return 1.0f / (1.0f + exp_poly(-x));
}

/* tanh through one exponential: tanh|x| = (1 - e)/(1 + e), e = exp(-2|x|); absolute error
 * below 1e-7, as the sigmoid's */
static float tanh_exp(float x)
{
    float e = exp_poly(-2.0f * fabsf(x)), t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}
"""

# one GRU cell (torch's GRUCell, then LayerNorm when {norm} is set): {p} prefix, {n} hidden;
# acc_i: the input projections when the caller has them (the window cache), else computed here
CELL = """
static void {p}_run(const float *acc_i, const float *x, const float *h, float *hq)
{{
    float ai[{n3}], ah[{n3}];
    const float *h_prev = h ? h : ah; /* no state: ah is all zeros then (a branch-free loop) */
    int u;
    if (!acc_i) {{
        mv_{p}_ih(x, ai);
        acc_i = ai;
    }}
    if (h) {{
        mv_{p}_hh(h, ah);
    }} else {{
        for (u = 0; u < {n3}; ++u) {{
            ah[u] = 0.0f;
        }}
    }}
    for (u = 0; u < {n}; ++u) {{
        float r = sigmoid((acc_i[u] + {p}_bih[u]) + (ah[u] + {p}_bhh[u]));
        float z = sigmoid((acc_i[{n} + u] + {p}_bih[{n} + u]) + (ah[{n} + u] + {p}_bhh[{n} + u]));
        float hn = ah[{n2} + u] + {p}_bhh[{n2} + u];
        float cand = tanh_exp((acc_i[{n2} + u] + {p}_bih[{n2} + u]) + r * hn);
        hq[u] = (1.0f - z) * cand + z * h_prev[u];
    }}
{norm}}}

static void {p}_state(const float *hq, float *dst)
{{
    memcpy(dst, hq, sizeof(float) * {n});
}}

static void {p}_out(const float *hq, float *dst)
{{
    memcpy(dst, hq, sizeof(float) * {n});
}}
"""

LAYER_NORM = """    {{
        float mean = 0.0f, var = 0.0f, inv;
        for (u = 0; u < {n}; ++u) {{
            mean += hq[u];
        }}
        mean /= {n}.0f;
        for (u = 0; u < {n}; ++u) {{
            var += (hq[u] - mean) * (hq[u] - mean);
        }}
        inv = 1.0f / sqrtf(var / {n}.0f + {eps!r}f);
        for (u = 0; u < {n}; ++u) {{
            hq[u] = (hq[u] - mean) * inv * {p}_gamma[u] + {p}_beta[u];
        }}
    }}
"""

IH_ALL = """
static void ih0_all(const float *x, float *acc)
{
    mv_c0_ih(x, acc);
}
"""

# input transform name -> C expression of `v`, and the same function in numpy (float64)
TRANSFORMS = {
    "none": "v",
    "log1p": "log1pf(v)",
    "log_softplus": "logf(v > 0.0f ? v + log1pf(expf(-v)) : log1pf(expf(v)))",
}
TRANSFORMS_NP: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log1p": np.log1p,
    "log_softplus": lambda v: np.log(np.logaddexp(0.0, v)),
}
# box sums of whole spike counts below this are transformed by table lookup (1 KB of flash):
# the libm calls cost more than the rest of a stateful step on a host CPU
TABLE_SIZE = 256


def _transform(model: FloatModel) -> tuple[str, list[CArray]]:
    """C `transform(v)`: a table for whole counts 0 .. TABLE_SIZE-1 (each entry the float64
    function rounded to float32), the libm expression for any other value."""
    expr = TRANSFORMS[model.transform]
    if model.transform == "none":
        return f"\nstatic float transform(float v)\n{{\n    return {expr};\n}}\n", []
    table = TRANSFORMS_NP[model.transform](np.arange(TABLE_SIZE, dtype=np.float64))
    code = f"""
/* whole counts from the table (the float64 function rounded), other values through libm */
static float transform(float v)
{{
    if (v >= 0.0f && v < {TABLE_SIZE}.0f && v == (float)(int)v) {{
        return decoder_tf[(int)v];
    }}
    return {expr};
}}
"""
    return code, [CArray("decoder_tf", table.astype(np.float32))]


def _front(model: FloatModel, lay: Layout, policy: str) -> Emitted:
    transform, arrays = _transform(model)
    c, rows = lay.channels, lay.ring_rows
    if rows:  # row by row, so the adds run across channels (they vectorize); same order
        box = f"""    float sums[{c}];
    int c, r;
    for (c = 0; c < {c}; ++c) {{
        sums[c] = 0.0f;
    }}
    for (r = s->ring_pos; r < {rows}; ++r) {{ /* oldest first */
        add_row(sums, s->ring[r]);
    }}
    for (r = 0; r < s->ring_pos; ++r) {{
        add_row(sums, s->ring[r]);
    }}
    for (c = 0; c < {c}; ++c) {{
        q[c] = transform(sums[c] + bin[c]);
    }}
    memcpy(s->ring[s->ring_pos], bin, sizeof s->ring[s->ring_pos]);
    s->ring_pos = (uint16_t)((s->ring_pos + 1) % {rows});
"""
    else:
        box = f"""    int c;
    (void)s;
    for (c = 0; c < {c}; ++c) {{
        q[c] = transform(bin[c]);
    }}
"""
    add_row = f"""
static void add_row(float *restrict sums, const float *restrict row)
{{
    int c;
    for (c = 0; c < {c}; ++c) {{
        sums[c] += row[c];
    }}
}}
"""
    code = f"""{transform}{add_row if rows else ""}
/* box sum of the last {lay.width} raw samples, then the input transform */
static void front(decoder_state_t *s, const float *bin, float *q)
{{
{box}}}
"""
    return Emitted(code, arrays, [])


def _encoder(model: FloatModel, lay: Layout, policy: str) -> Emitted:
    c = lay.channels
    zero_in = f"""
static void input_zero(float *qx)
{{
    float q_in[{c}];
    int k;
    for (k = 0; k < {c}; ++k) {{
        q_in[k] = transform(0.0f);
    }}
    encode(q_in, qx);
}}
"""
    if model.enc_w is None:
        zero_in = f"""
static void input_zero(float *qx)
{{
    int k;
    for (k = 0; k < {c}; ++k) {{
        qx[k] = transform(0.0f);
    }}
}}
"""
        code = """
static void input_bin(decoder_state_t *s, const float *bin, float *qx)
{
    front(s, bin, qx);
}
"""
        return Emitted(code + (zero_in if lay.cached else ""), [], [])
    e = model.enc_w.shape[0]
    mat = store("enc", model.enc_w, policy, columns=True)
    lim = f"{model.clamp!r}f"
    clamp = f"        v = v < -{lim} ? -{lim} : (v > {lim} ? {lim} : v);\n"
    clamp = clamp if model.clamp is not None else ""
    code = f"""
{matvec_function(mat)}
static void encode(const float *q_in, float *qx)
{{
    int o;
    mv_enc(q_in, qx);
    for (o = 0; o < {e}; ++o) {{
        float v = qx[o] + enc_b[o];
{clamp}        qx[o] = v;
    }}
}}

static void input_bin(decoder_state_t *s, const float *bin, float *qx)
{{
    float q_in[{c}];
    front(s, bin, q_in);
    encode(q_in, qx);
}}
"""
    arrays = list(mat.arrays) + [CArray("enc_b", model.enc_b)]
    return Emitted(code + (zero_in if lay.cached else ""), arrays, [mat])


def _cell(cell: FloatCell, i: int, policy: str) -> Emitted:
    p, n = f"c{i}", cell.w_hh.shape[1]
    ih = store(f"{p}_ih", cell.w_ih, policy, columns=True)
    hh = store(f"{p}_hh", cell.w_hh, policy, columns=True)
    arrays = list(ih.arrays) + list(hh.arrays) + [CArray(f"{p}_bih", cell.b_ih),
                                                  CArray(f"{p}_bhh", cell.b_hh)]  # fmt: skip
    norm = ""
    if cell.ln_gamma is not None:
        arrays += [CArray(f"{p}_gamma", cell.ln_gamma), CArray(f"{p}_beta", cell.ln_beta)]
        norm = LAYER_NORM.format(p=p, n=n, eps=float(cell.ln_eps))
    code = (
        matvec_function(ih) + "\n" + matvec_function(hh)
        + CELL.format(p=p, n=n, n2=2 * n, n3=3 * n, norm=norm)
    )  # fmt: skip
    return Emitted(code, arrays, [ih, hh])


def _cells(model: FloatModel, lay: Layout, policy: str) -> Emitted:
    parts = [_cell(c, i, policy) for i, c in enumerate(model.cells)]
    ih0 = IH_ALL if lay.cached else ""
    code = "".join(p.code for p in parts) + emit_common.cell_tables(lay, len(parts)) + ih0
    return Emitted(code, [a for p in parts for a in p.arrays], [m for p in parts for m in p.stored])


def _readout(model: FloatModel, lay: Layout, policy: str) -> Emitted:
    mat = store("out", model.out_w, policy, columns=True)
    code = f"""
{matvec_function(mat)}
static void readout(const float *x, float *out)
{{
    int d;
    mv_out(x, out);
    for (d = 0; d < {lay.outputs}; ++d) {{
        out[d] += out_b[d];
    }}
}}
"""
    return Emitted(code, list(mat.arrays) + [CArray("out_b", model.out_b)], [mat])


# layer kind -> emitter, in the order the generated file defines them
EMITTERS: dict[str, Callable[[FloatModel, Layout, str], Emitted]] = {
    "front": _front,
    "encoder": _encoder,
    "gru_cell": _cells,
    "readout": _readout,
}


def layout(model: FloatModel) -> Layout:
    """Sizes and C types of the float decoder."""
    enc = None if model.enc_w is None else model.enc_w.shape[0]
    return Layout(
        "float", model.channels, model.outputs, enc, model.cells[0].w_hh.shape[1],
        len(model.cells), model.width, model.mode, model.num_steps, model.lag,
        "float", "float", "float", "float", 32,
    )  # fmt: skip


def _host_io(lay: Layout) -> str:
    if lay.mode != "stateful":
        return ""
    return f"""
void decoder_host_get_hidden(const decoder_state_t *s, int layer, float *h);
void decoder_host_set_hidden(decoder_state_t *s, int layer, const float *h);

void decoder_host_get_hidden(const decoder_state_t *s, int layer, float *h)
{{
    memcpy(h, s->h[layer], sizeof(float) * {lay.hidden});
}}

void decoder_host_set_hidden(decoder_state_t *s, int layer, const float *h)
{{
    memcpy(s->h[layer], h, sizeof(float) * {lay.hidden});
}}
"""


def emit(model: FloatModel, policy: str = "auto") -> Program:
    """The float C program of `model`; `policy` chooses dense/CSR storage per matrix."""
    lay = layout(model)
    for w in [
        model.enc_w,
        model.out_w,
        *(c.w_ih for c in model.cells),
        *(c.w_hh for c in model.cells),
    ]:
        if w is not None and not np.isfinite(w).all():
            raise CortexEdgeError("C export: the model has non-finite weights")
    parts = [emit_fn(model, lay, policy) for emit_fn in EMITTERS.values()]
    host = emit_common.host_shim(
        lay,
        convert="in[c] = v;",
        validate="(v - v == 0.0f) & (v >= lo) & (v <= hi)",  # finite and in range
        emit="y[k + d] = out[d];\n                if (raw) {\n"
        "                    raw[k + d] = out[d];\n                }",
        hidden_io=_host_io(lay),
    )
    return assemble(lay, parts, HELPERS, [], host, ["<math.h>", "<stdint.h>", "<string.h>"])
