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
from cortexedge.export.c.sparse import CArray, row_function, store

HELPERS = """
static float sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

/* tanh through one expf: tanh|x| = (1 - e)/(1 + e), e = exp(-2|x|); absolute error below
 * 2.4e-7 (glibc's tanhf goes through expm1f and costs three times as much) */
static float tanh_exp(float x)
{
    float e = expf(-2.0f * fabsf(x)), t = (1.0f - e) / (1.0f + e);
    return x < 0.0f ? -t : t;
}
"""

# one GRU cell (torch's GRUCell, then LayerNorm when {norm} is set): {p} prefix, {n} hidden
CELL = """
static void {p}_run(const float *acc_i, const float *x, const float *h, float *hq)
{{
    int u;
    for (u = 0; u < {n}; ++u) {{
        float ir = (acc_i ? acc_i[u] : row_{p}_ih(u, x)) + {p}_bih[u];
        float iz = (acc_i ? acc_i[{n} + u] : row_{p}_ih({n} + u, x)) + {p}_bih[{n} + u];
        float in_ = (acc_i ? acc_i[{n2} + u] : row_{p}_ih({n2} + u, x)) + {p}_bih[{n2} + u];
        float hr = (h ? row_{p}_hh(u, h) : 0.0f) + {p}_bhh[u];
        float hz = (h ? row_{p}_hh({n} + u, h) : 0.0f) + {p}_bhh[{n} + u];
        float hn = (h ? row_{p}_hh({n2} + u, h) : 0.0f) + {p}_bhh[{n2} + u];
        float r = sigmoid(ir + hr);
        float z = sigmoid(iz + hz);
        float cand = tanh_exp(in_ + r * hn);
        hq[u] = (1.0f - z) * cand + z * (h ? h[u] : 0.0f);
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
{{
    int r;
    for (r = 0; r < {rows}; ++r) {{
        acc[r] = row_c0_ih(r, x);
    }}
}}
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
    for (r = 0; r < {rows}; ++r) {{ /* oldest first */
        const float *row = s->ring[(s->ring_pos + r) % {rows}];
        for (c = 0; c < {c}; ++c) {{
            sums[c] += row[c];
        }}
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
    code = f"""{transform}
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
    mat = store("enc", model.enc_w, policy)
    lim = f"{model.clamp!r}f"
    clamp = f"        v = v < -{lim} ? -{lim} : (v > {lim} ? {lim} : v);\n"
    clamp = clamp if model.clamp is not None else ""
    code = f"""
{row_function(mat, "float", "float")}
static void encode(const float *q_in, float *qx)
{{
    int o;
    for (o = 0; o < {e}; ++o) {{
        float v = row_enc(o, q_in) + enc_b[o];
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
    ih, hh = store(f"{p}_ih", cell.w_ih, policy), store(f"{p}_hh", cell.w_hh, policy)
    arrays = list(ih.arrays) + list(hh.arrays) + [CArray(f"{p}_bih", cell.b_ih),
                                                  CArray(f"{p}_bhh", cell.b_hh)]  # fmt: skip
    norm = ""
    if cell.ln_gamma is not None:
        arrays += [CArray(f"{p}_gamma", cell.ln_gamma), CArray(f"{p}_beta", cell.ln_beta)]
        norm = LAYER_NORM.format(p=p, n=n, eps=float(cell.ln_eps))
    code = (
        row_function(ih, "float", "float") + "\n" + row_function(hh, "float", "float")
        + CELL.format(p=p, n=n, n2=2 * n, norm=norm)
    )  # fmt: skip
    return Emitted(code, arrays, [ih, hh])


def _cells(model: FloatModel, lay: Layout, policy: str) -> Emitted:
    parts = [_cell(c, i, policy) for i, c in enumerate(model.cells)]
    ih0 = IH_ALL.format(rows=3 * lay.hidden) if lay.cached else ""
    code = "".join(p.code for p in parts) + emit_common.cell_tables(lay, len(parts)) + ih0
    return Emitted(code, [a for p in parts for a in p.arrays], [m for p in parts for m in p.stored])


def _readout(model: FloatModel, lay: Layout, policy: str) -> Emitted:
    mat = store("out", model.out_w, policy)
    code = f"""
{row_function(mat, "float", "float")}
static void readout(const float *x, float *out)
{{
    int d;
    for (d = 0; d < {lay.outputs}; ++d) {{
        out[d] = row_out(d, x) + out_b[d];
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
        validate="v == v",
        emit="y[k + d] = out[d];\n                if (raw) {\n"
        "                    raw[k + d] = out[d];\n                }",
        hidden_io=_host_io(lay),
    )
    return assemble(lay, parts, HELPERS, [], host, ["<math.h>", "<stdint.h>", "<string.h>"])
