"""The float helper functions of the generated C (one definition each), and which C expression
computes each unary ONNX op.

Gate activations (Sigmoid, Tanh) and Exp go through `exp_poly`, a float32 exponential without
libm, so that loops of gates vectorize on the host: x = k·ln2 + r with |r| <= ln2/2 (ln2 in two
parts), exp(r) by a degree-7 polynomial (Cephes' expf coefficients; Horner steps as explicit fmaf,
one correctly rounded operation in every build, one instruction where the FPU fuses: x86-64-v3,
the Cortex-M4F; the range reduction stays unfused, as its exactness needs), times 2^k built
in the exponent bits. Relative error below 1e-7 over the clamped range [-87, 88]
(tests/export/test_c_float.py measures it). A NaN stays NaN without any float-to-integer
conversion of it (k is taken as 0 for the exponent bits), so NaN input is defined behaviour.
"""

from __future__ import annotations

INLINE = """
/* on a host CPU the gate helpers are inlined into their loops, which then vectorize; a
 * microcontroller keeps one copy of each (smaller code, no vector unit to feed) */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__aarch64__))
#define CE_INLINE static inline __attribute__((always_inline))
#else
#define CE_INLINE static inline
#endif
"""
EXP_POLY = """
CE_INLINE float exp_poly(float x)
{
    float k, r, p, scale;
    int32_t e;
    uint32_t bits;
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    k = floorf(x * 1.44269504f + 0.5f);
    r = x - k * 0.693359375f - k * -2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    p = fmaf(p, r * r, r) + 1.0f;
    e = (int32_t)(k == k ? k : 0.0f) + 127; /* NaN: p is NaN, any exponent will do */
    bits = (uint32_t)e << 23;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
"""
SIGMOID = """
CE_INLINE float sigmoid_f(float x)
{
    return 1.0f / (1.0f + exp_poly(-x));
}
"""
TANH = """
/* tanh: for |x| >= 0.625 through one exponential, tanh|x| = (1 - e)/(1 + e), e = exp(-2|x|);
 * below, where that difference would cancel, x + x^3 P(x^2) (Cephes' tanhf polynomial), so
 * the relative error stays near float rounding for small gates too; both arms are computed
 * and one selected, which keeps the loop branch-free */
CE_INLINE float tanh_f(float x)
{
    float a = fabsf(x), e = exp_poly(-2.0f * a), t = (1.0f - e) / (1.0f + e), z = x * x;
    float p = (((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z
               + 1.33314422036e-1f) * z - 3.33332819422e-1f;
    float small = x + x * z * p;
    return a < 0.625f ? small : (x < 0.0f ? -t : t);
}
"""
SOFTPLUS = """
/* log(1 + e^x) without overflow: x + log1p(e^-x) for x > 0 */
static float softplus_f(float x)
{
    return x > 0.0f ? x + log1pf(expf(-x)) : log1pf(expf(x));
}
"""
# helper -> (its C text, the helpers it calls), in the order they must be defined
HELPERS = {
    "inline": (INLINE, ()),
    "exp_poly": (EXP_POLY, ("inline",)),
    "sigmoid_f": (SIGMOID, ("exp_poly",)),
    "tanh_f": (TANH, ("exp_poly",)),
    "softplus_f": (SOFTPLUS, ()),
}

# unary ONNX op -> (C expression of {0}, the helper it calls or None)
UNARY = {
    "Relu": ("({0} > 0.0f ? {0} : 0.0f)", None),
    "Tanh": ("tanh_f({0})", "tanh_f"),
    "Sigmoid": ("sigmoid_f({0})", "sigmoid_f"),
    "Exp": ("exp_poly({0})", "exp_poly"),
    "Log": ("logf({0})", None),
    "Softplus": ("softplus_f({0})", "softplus_f"),
    "Neg": ("(-{0})", None),
    "Abs": ("fabsf({0})", None),
    "Sqrt": ("sqrtf({0})", None),
    "Reciprocal": ("(1.0f / {0})", None),
}


def use(ctx, name: str) -> None:
    """Make helper `name` (and those it calls, first) part of the program."""
    text, needs = HELPERS[name]
    for dep in needs:
        use(ctx, dep)
    ctx.helper(name, text)
