"""C text of the integer path: shared helpers and the per-layer templates emit_int fills in.

Each piece is the C form of one operation of cortexedge.runtime.int_reference (floor shift,
saturation, activation table, LayerNorm, GRU and LSTM cells, requantizing head); emit_int
substitutes sizes, array names and constants (a literal when a value is the same for every row).
"""

from __future__ import annotations

from cortexedge.runtime.int_reference import LN_INV_SHIFT, LN_OUT_SHIFT, PRE_LIMIT

HELPERS = f"""
#define PRE_LIMIT INT64_C({PRE_LIMIT})

typedef struct {{
    int32_t lo;
    int shift;
    int32_t n, qmin, qmax, steps;
    const uint8_t *lut;
    const int32_t *thr;
}} act_t;

/* floor(v / 2^s), without relying on the sign behaviour of >> */
static inline int64_t asr64(int64_t v, int s)
{{
    return v >= 0 ? v >> s : -((-(v + 1)) >> s) - 1;
}}

static inline int8_t sat8(int64_t v, int32_t lo, int32_t hi)
{{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}}

/* floor(v / 2^s) clipped to ±PRE_LIMIT: a Q16 gate pre-activation */
static inline int32_t pre32(int64_t v, int s)
{{
    int64_t p = asr64(v, s);
    return (int32_t)(p < -PRE_LIMIT ? -PRE_LIMIT : (p > PRE_LIMIT ? PRE_LIMIT : p));
}}

/* quantized activation level of a pre-activation: table start, then the exact thresholds of
 * its table cell (at most `steps`; thr ends in a sentinel no p reaches), without branches */
static inline int32_t act(const act_t *t, int32_t p)
{{
    int32_t i = p < t->lo ? 0 : (int32_t)((uint32_t)(p - t->lo) >> t->shift), q, k;
    if (i > t->n - 1) {{
        i = t->n - 1;
    }}
    q = t->qmin + t->lut[i];
    for (k = 0; k < t->steps; ++k) {{
        q += p >= t->thr[q - t->qmin];
    }}
    return q;
}}
"""

LAYER_NORM = f"""
static uint64_t isqrt64(uint64_t v)
{{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v) {{
        bit >>= 2;
    }}
    while (bit) {{
        if (v >= r + bit) {{
            v -= r + bit;
            r = (r >> 1) + bit;
        }} else {{
            r >>= 1;
        }}
        bit >>= 2;
    }}
    return r;
}}

/* Q16 rows -> normalized Q16 values (no affine part: it is folded into the heads) */
static void layer_norm(int32_t *h, int n, int64_t eps)
{{
    int64_t sum = 0, mean, var, sd, inv;
    uint64_t ss = 0;
    int k;
    for (k = 0; k < n; ++k) {{
        sum += h[k];
    }}
    mean = sum / n;
    if (sum % n != 0 && sum < 0) {{
        mean -= 1; /* floor division */
    }}
    for (k = 0; k < n; ++k) {{
        int64_t d = h[k] - mean;
        ss += (uint64_t)(d * d);
    }}
    var = (int64_t)(ss / (uint64_t)n);
    sd = (int64_t)isqrt64((uint64_t)(var + eps));
    if (sd < 1) {{
        sd = 1;
    }}
    inv = ((int64_t)1 << {LN_INV_SHIFT}) / sd;
    for (k = 0; k < n; ++k) {{
        int64_t v = (h[k] - mean) * inv + ((int64_t)1 << {LN_OUT_SHIFT - 1});
        h[k] = (int32_t)asr64(v, {LN_OUT_SHIFT});
    }}
}}
"""

# one GRU cell: {p} prefix, {n} hidden size, gate constants as C expressions of row index j;
# a projection plus its bias is an int32 (emit_int checks its bound), so each gate product is
# one 32x32->64 multiply
CELL = """
static void {p}_run(const acc0_t *acc_i, const int8_t *x, const int8_t *h, int32_t *hq)
{{
    int u;
    for (u = 0; u < {n}; ++u) {{
        int j;
        int64_t pre[2], g;
        int32_t q[2], cand, ai[3], ah[3] = {{0, 0, 0}}; /* gate rows r, z, n of unit u */
        if (acc_i) {{
            ai[0] = acc0_get(acc_i, u);
            ai[1] = acc0_get(acc_i, {n} + u);
            ai[2] = acc0_get(acc_i, {n2} + u);
        }} else {{
            rows3_{p}_ih(u, x, ai);
        }}
        if (h) {{
            rows3_{p}_hh(u, h, ah);
        }}
        for (j = u; j < 2 * {n}; j += {n}) {{ /* r then z */
            const int32_t i_ = ai[j / {n}] + {p}_bi[j], h_ = ah[j / {n}];
            pre[j / {n}] = (int64_t)i_ * {mi_rz} + (int64_t)h_ * {mh_rz}
                           + ((int64_t)1 << ({s_rz} - 1));
            q[j / {n}] = act(&{p}_sig, pre32(pre[j / {n}], {s_rz}));
        }}
        j = 2 * {n} + u;
        g = (int64_t)q[0] * ((int64_t)ah[2] + (int64_t){p}_bhn[u]);
        pre[0] = (int64_t)(ai[2] + {p}_bi[j]) * {mi_n};
        cand = act(&{p}_tanh, pre32(pre[0] + g * {mh_n} + ((int64_t)1 << ({s_n} - 1)), {s_n}));
        hq[u] = (int32_t)asr64((int64_t)cand * (INT64_C({a}) - (int64_t)q[1] * INT64_C({b}))
                               + (int64_t)q[1] * (h ? h[u] : 0) * INT64_C({c})
                               + ((int64_t)1 << ({g} - 1)), {g});
    }}
{norm}}}
"""

# one LSTM cell (stateful only: hc, the int8 state row [h, c], is never null); hq gets the Q16
# [h', c']: {p} prefix, {n} hidden size, {mi} {mh} {s} the gate constants of row j
LSTM_CELL = """
static void {p}_run(const acc0_t *acc_i, const int8_t *x, const int8_t *hc, int32_t *hq)
{{
    int u;
    (void)acc_i;
    for (u = 0; u < {n}; ++u) {{
        int k;
        int32_t q[4], ai[4], ah[4]; /* gate rows i, f, g, o of unit u */
        int64_t c;
        rows4_{p}_ih(u, x, ai);
        rows4_{p}_hh(u, hc, ah);
        for (k = 0; k < 4; ++k) {{
            const int j = k * {n} + u;
            const int64_t v = (int64_t)(ai[k] + {p}_bi[j]) * {mi} + (int64_t)ah[k] * {mh};
            q[k] = act(k == 2 ? &{p}_tanh : &{p}_sig, pre32(v + ((int64_t)1 << ({s} - 1)), {s}));
        }}
        c = asr64((int64_t)q[1] * hc[{n} + u] * INT64_C({f}) + (int64_t)q[0] * q[2] * INT64_C({i})
                  + ((int64_t)1 << ({g} - 1)), {g});
        hq[{n} + u] = (int32_t)c;
        hq[u] = (int32_t)asr64((int64_t)q[3] * act(&{p}_ctanh, pre32(c, 0)) * INT64_C({o})
                               + ((int64_t)1 << ({g} - 1)), {g});
    }}
}}
"""

# a requantizer of one value x of channel k, and a head over n channels
REQUANT = """
static inline int8_t {name}_one(int32_t x, int k)
{{
    (void)k;
    return sat8(asr64((int64_t)x * {m} + {c}, {s}), {lo}, {hi});
}}
"""

HEAD = """
static void {name}(const int32_t *x, int8_t *dst)
{{
    int k;
    for (k = 0; k < {n}; ++k) {{
        dst[k] = {name}_one(x[k], k);
    }}
}}
"""

IH_ALL = """
static void ih0_all(const int8_t *x, acc0_t *acc)
{{
    int u;
    for (u = 0; u < {n}; ++u) {{
        int32_t a3[3];
        rows3_c0_ih(u, x, a3);
        acc0_put(acc, u, a3[0]);
        acc0_put(acc, {n} + u, a3[1]);
        acc0_put(acc, {n2} + u, a3[2]);
    }}
}}
"""

# layer 0's input projection, kept over a window's chains: int32, or 24 bits when its bound fits
ACC0 = {
    4: """
typedef int32_t acc0_t;
static inline void acc0_put(acc0_t *p, int i, int32_t v)
{
    p[i] = v;
}
static inline int32_t acc0_get(const acc0_t *p, int i)
{
    return p[i];
}
""",
    3: """
typedef uint8_t acc0_t; /* three bytes per value, little-endian two's complement */
static inline void acc0_put(acc0_t *p, int i, int32_t v)
{
    const uint32_t u = (uint32_t)v;
    p[3 * i] = (uint8_t)u;
    p[3 * i + 1] = (uint8_t)(u >> 8);
    p[3 * i + 2] = (uint8_t)(u >> 16);
}
static inline int32_t acc0_get(const acc0_t *p, int i)
{
    const uint32_t u = p[3 * i] | ((uint32_t)p[3 * i + 1] << 8) | ((uint32_t)p[3 * i + 2] << 16);
    return (int32_t)(u ^ 0x800000u) - 0x800000; /* sign-extend bit 23 */
}
""",
}
