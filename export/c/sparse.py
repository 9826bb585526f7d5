"""Weight storage for the C generator: dense, CSR or bit mask per matrix, chosen and reported.

A matrix [rows, cols] is stored dense (row-major), as CSR (per-row start offsets `ptr`, rows+1
entries, the column index of every non-zero `idx` and its value `val`) or, for int8, as a
bit mask (one bit per entry, 32 columns per word, `ptr` and `val` as CSR): the mask spends one
bit per entry instead of a byte per non-zero, so pruning saves flash at any density below
about 85%. Sparse formats execute the non-zeros only (the NeuroBench effective count). Every
layer reads one row at a time through `row_<name>(r, x)`, so the storage choice changes one
small function.

Choice (`policy`): "dense", "sparse" (CSR), "mask", "size" (fewer bytes) or "auto" (fewer
estimated Cortex-M4 instructions, ties broken by size). The estimates are the generated loops
as gcc -O2 compiles them for the Cortex-M4: a dense int8 row 2 instructions per MAC (two word
loads, four SXTB16 and two SMLAD per four MACs: `row_function`), a dense float row 5 (2 loads,
VMLA, compare, branch), 6 per stored CSR non-zero (the column index load on top) and 7 per mask
non-zero (finding the next set bit) plus 4 per mask word, plus the row set-up; so an int8
matrix goes sparse below about a third of its entries, a float one below about 80%. On a host
CPU dense rows are the faster ones (they vectorize).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.macs import linear

POLICIES = ("auto", "dense", "sparse", "mask", "size")
DENSE_INSNS_PER_MAC, DENSE_INSNS_PER_ROW = 5.0, 8.0  # float rows
DSP_INSNS_PER_MAC = 2.0  # int8 rows with SMLAD
CSR_INSNS_PER_NZ, CSR_INSNS_PER_ROW = 6.0, 12.0
MASK_INSNS_PER_NZ, MASK_INSNS_PER_WORD, MASK_INSNS_PER_ROW = 7.0, 4.0, 12.0
C_TYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.int32): "int32_t",
    np.dtype(np.uint32): "uint32_t",
    np.dtype(np.int64): "int64_t",
    np.dtype(np.float32): "float",
}


@dataclass(frozen=True)
class CArray:
    """A const array for decoder_weights.c (placed in flash)."""

    name: str
    values: np.ndarray

    @property
    def ctype(self) -> str:
        return C_TYPES[self.values.dtype]

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes)

    def declaration(self) -> str:
        return f"extern const {self.ctype} {self.name}[{self.values.size}];"

    def definition(self) -> str:
        body = ", ".join(_literal(v, self.values.dtype) for v in self.values.reshape(-1))
        lines, line = [], "   "
        for item in body.split(", "):
            if len(line) + len(item) > 96:
                lines.append(line.rstrip())
                line = "   "
            line += f" {item},"
        lines.append(line.rstrip().rstrip(","))
        return (
            f"const {self.ctype} {self.name}[{self.values.size}] = {{\n" + "\n".join(lines) + "\n};"
        )


def float_literal(v: float) -> str:
    """A C float literal of `v` rounded to float32 (±inf as INFINITY, from <math.h>)."""
    if not np.isfinite(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    text = f"{float(np.float32(v)):.9g}"
    return text + ("f" if any(ch in text for ch in ".e") else ".0f")


def _literal(v, dtype: np.dtype) -> str:
    if dtype == np.float32:
        return float_literal(v)
    if dtype == np.int64:
        return f"INT64_C({int(v)})"
    if dtype == np.int32 and int(v) == -(2**31):
        return "(-2147483647 - 1)"
    return str(int(v))


@dataclass(frozen=True, kw_only=True)
class Stored:
    """One matrix as stored: its format, arrays, bytes and the MACs one full mat-vec executes."""

    name: str
    fmt: str  # "dense" or "csr"
    rows: int
    cols: int
    arrays: tuple[CArray, ...]
    dense_bytes: int
    csr_bytes: int
    macs: int  # per full mat-vec (all rows)
    effective: int  # of those, the MACs of a non-zero weight
    row_macs: tuple[int, ...]  # per row
    w: np.ndarray = field(compare=False, repr=False)  # the matrix, for a budget's re-choice

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    def report(self) -> dict:
        return {
            "matrix": self.name, "format": self.fmt, "shape": [self.rows, self.cols],
            "bytes": self.nbytes, "dense_bytes": self.dense_bytes, "csr_bytes": self.csr_bytes,
            "macs_per_matvec": self.macs,
        }  # fmt: skip


def _index_dtype(n: int) -> np.dtype:
    return np.dtype(np.uint8) if n <= 256 else np.dtype(np.uint16)


def _ptr_dtype(nnz: int) -> np.dtype:
    return np.dtype(np.uint16) if nnz <= 65535 else np.dtype(np.int32)


def _words(cols: int) -> int:
    return -(-cols // 32)


def estimated_insns(w: np.ndarray, fmt: str) -> float:
    """Estimated Cortex-M4 instructions of one mat-vec in format `fmt`."""
    rows, nnz = w.shape[0], np.count_nonzero(w)
    if fmt == "dense":
        per_mac = DSP_INSNS_PER_MAC if w.dtype == np.int8 else DENSE_INSNS_PER_MAC
        return rows * DENSE_INSNS_PER_ROW + w.size * per_mac
    if fmt == "mask":
        words = rows * _words(w.shape[1])
        return rows * MASK_INSNS_PER_ROW + words * MASK_INSNS_PER_WORD + nnz * MASK_INSNS_PER_NZ
    return rows * CSR_INSNS_PER_ROW + nnz * CSR_INSNS_PER_NZ


def _mask_bytes(w: np.ndarray) -> int:
    nnz = int(np.count_nonzero(w))
    rows = w.shape[0]
    return rows * _words(w.shape[1]) * 4 + (rows + 1) * _ptr_dtype(nnz).itemsize + nnz


def _csr_bytes(w: np.ndarray) -> int:
    nnz = int(np.count_nonzero(w))
    idx, ptr = _index_dtype(w.shape[1]).itemsize, _ptr_dtype(nnz).itemsize
    return nnz * (w.itemsize + idx) + (w.shape[0] + 1) * ptr


def options(w: np.ndarray) -> dict[str, tuple[int, float]]:
    """Per format `w` may take: (bytes, estimated Cortex-M4 instructions of one mat-vec)."""
    sizes = {"dense": w.nbytes, "csr": _csr_bytes(w)}
    if w.dtype == np.int8:
        sizes["mask"] = _mask_bytes(w)
    return {f: (int(n), estimated_insns(w, f)) for f, n in sizes.items()}


MAX_BUDGET_MATRICES = 12  # the exact search tries every combination (3^12 at most)


def fit_budget(
    matrices: list[Stored], runs: Mapping[str, int], budget: int, fixed: int = 0
) -> dict[str, str]:
    """Per matrix the format of the fewest estimated instructions per step (a mat-vec's
    estimate times its `runs`) whose bytes, with `fixed` bytes of other constant data, fit
    `budget`; exact over every combination. Refused when even the smallest storage does not."""
    if len(matrices) > MAX_BUDGET_MATRICES:
        raise CortexEdgeError(
            f"weights budget: {len(matrices)} matrices, at most {MAX_BUDGET_MATRICES} are searched"
        )
    names = [m.name for m in matrices]
    choices = [sorted(options(m.w).items()) for m in matrices]
    best, best_key = None, None
    for combo in itertools.product(*choices):
        size = sum(b for _, (b, _) in combo)
        if size + fixed > budget:
            continue
        key = (sum(e * runs[n] for n, (_, (_, e)) in zip(names, combo, strict=True)), size)
        if best_key is None or key < best_key:
            best, best_key = combo, key
    if best is None:
        least = sum(min(b for _, (b, _) in c) for c in choices)
        raise CortexEdgeError(
            f"weights budget {budget:,} B: the constant data takes at least {least + fixed:,} B "
            f"(matrices {least:,} B in their smallest storage, tables and scales {fixed:,} B)"
        )
    return {n: f for n, (f, _) in zip(names, best, strict=True)}


def choose(w: np.ndarray, policy: str | Mapping[str, str], name: str = "") -> str:
    """'dense', 'csr' or (int8) 'mask' for matrix `w` under `policy` (see the module
    docstring), or the format a plan (matrix name -> format, from `fit_budget`) gives it."""
    if isinstance(policy, Mapping):
        return policy[name]
    if policy not in POLICIES:
        raise CortexEdgeError(
            f"sparse: policy must be one of {', '.join(POLICIES)}, got {policy!r}"
        )
    formats = options(w)
    if policy == "mask" and "mask" not in formats:
        raise CortexEdgeError("sparse: the 'mask' format stores int8 matrices only")
    if policy in ("dense", "sparse", "mask"):
        return {"dense": "dense", "sparse": "csr", "mask": "mask"}[policy]
    if policy == "size":
        return min(formats, key=lambda f: (formats[f][0], f != "dense"))
    return min(formats, key=lambda f: (formats[f][1], formats[f][0]))


def store(
    name: str, w: np.ndarray, policy: str | Mapping[str, str], columns: bool = False
) -> Stored:
    """Store matrix `w` (int8 or float32, [rows, cols]) under the C symbol prefix `name`;
    `columns`: a dense matrix column by column (for `matvec_function`)."""
    w = np.ascontiguousarray(w)
    fmt = choose(w, policy, name)
    rows, cols = w.shape
    nz_rows = (w != 0).sum(1)
    if fmt == "dense":
        arrays = (CArray(f"{name}_w", (w.T if columns else w).reshape(-1)),)
        row_macs = tuple([cols] * rows)
    elif fmt == "mask":
        r, c = np.nonzero(w)
        ptr = np.concatenate([[0], np.cumsum(nz_rows)]).astype(_ptr_dtype(len(r)))
        padded = np.zeros((rows, _words(cols) * 32), dtype=bool)
        padded[:, :cols] = w != 0
        bits = (padded.reshape(rows, -1, 32) * (1 << np.arange(32, dtype=np.uint64))).sum(-1)
        arrays = (
            CArray(f"{name}_mask", bits.astype(np.uint32).reshape(-1)),
            CArray(f"{name}_ptr", ptr),
            CArray(f"{name}_val", w[r, c]),
        )
        row_macs = tuple(int(n) for n in nz_rows)
    else:
        r, c = np.nonzero(w)
        ptr = np.concatenate([[0], np.cumsum(nz_rows)]).astype(_ptr_dtype(len(r)))
        arrays = (
            CArray(f"{name}_ptr", ptr),
            CArray(f"{name}_idx", c.astype(_index_dtype(cols))),
            CArray(f"{name}_val", w[r, c]),
        )
        row_macs = tuple(int(n) for n in nz_rows)
    dense_count, effective = linear(w)
    return Stored(
        name=name, fmt=fmt, rows=rows, cols=cols, arrays=arrays, dense_bytes=int(w.nbytes),
        csr_bytes=_csr_bytes(w), macs=dense_count if fmt == "dense" else effective,
        effective=effective, row_macs=row_macs, w=w,
    )  # fmt: skip


DSP_DOT = """    int i = 0;
#if defined(__ARM_FEATURE_SIMD32)
    for (; i + 4 <= {cols}; i += 4) {{ /* four int8 products in two SMLADs */
        int8x4_t wq, xq;
        memcpy(&wq, w + i, sizeof wq);
        memcpy(&xq, x + i, sizeof xq);
        a = __smlad(__sxtb16(wq), __sxtb16(xq), a);
        a = __smlad(__sxtb16(ROR8(wq)), __sxtb16(ROR8(xq)), a);
    }}
#endif
    for (; i < {cols}; ++i) {{
        a += (int32_t)w[i] * x[i];
    }}
"""
# what the int8 rows need: the ACLE intrinsics where the core has the DSP extension (dense),
# a count of trailing zeros (mask: one instruction pair, RBIT + CLZ, on the Cortex-M4)
DSP_HELPERS = """
#if defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#define ROR8(v) ((int32_t)(((uint32_t)(v) >> 8) | ((uint32_t)(v) << 24)))
#endif
#if defined(__GNUC__)
#define CE_CTZ(v) __builtin_ctz(v)
#else
static int ce_ctz(uint32_t v)
{
    int n = 0;
    while (!(v & 1u)) {
        v >>= 1;
        ++n;
    }
    return n;
}
#define CE_CTZ(v) ce_ctz(v)
#endif
"""
MASK_DOT = """    const uint32_t *m = {name}_mask + (long)r * {words};
    const int8_t *v = {name}_val + {name}_ptr[r];
    int g;
    for (g = 0; g < {words}; ++g) {{ /* the set bits of word g: the non-zero columns */
        uint32_t bits = m[g];
        const int8_t *xg = x + 32 * g;
        while (bits) {{
            a += (int32_t)*v++ * xg[CE_CTZ(bits)];
            bits &= bits - 1u;
        }}
    }}
"""


def row_function(s: Stored, acc: str, xtype: str) -> str:
    """C: `static <acc> row_<name>(int r, const <xtype> *x)`, the dot product of row r with x.
    A dense int8 row runs four products per two SMLAD instructions where the core has the
    DSP extension (__ARM_FEATURE_SIMD32: Cortex-M4/M7/M33), else the plain loop, which gives
    the same integers (exact sums; needs DSP_HELPERS in the file)."""
    head = f"static {acc} row_{s.name}(int r, const {xtype} *x)\n{{\n    {acc} a = 0;\n"
    if s.fmt == "mask":
        body = MASK_DOT.format(name=s.name, words=_words(s.cols))
    elif s.fmt == "dense" and s.arrays[0].ctype == "int8_t" and xtype == "int8_t":
        body = (f"    const int8_t *w = {s.name}_w + (long)r * {s.cols};\n"
                + DSP_DOT.format(cols=s.cols))  # fmt: skip
    elif s.fmt == "dense":
        body = (
            f"    const {s.arrays[0].ctype} *w = {s.name}_w + (long)r * {s.cols};\n"
            f"    int i;\n    for (i = 0; i < {s.cols}; ++i) {{\n"
            f"        a += ({acc})w[i] * x[i];\n    }}\n"
        )
    else:
        body = (
            f"    int k;\n    for (k = {s.name}_ptr[r]; k < {s.name}_ptr[r + 1]; ++k) {{\n"
            f"        a += ({acc}){s.name}_val[k] * x[{s.name}_idx[k]];\n    }}\n"
        )
    return head + body + "    return a;\n}\n"


_COUNT = {3: "three", 4: "four"}


def _gate_rows_head(name: str, n: int, gates: int) -> str:
    rows = [f"{k * n} + u" if k else "u" for k in range(gates)]
    return (
        f"\n/* rows {', '.join(rows[:-1])} and {rows[-1]} of {name} times x: the {_COUNT[gates]} "
        f"gate rows of unit u */\nstatic void rows{gates}_{name}(int u, const int8_t *x, "
        f"int32_t *a{gates})\n{{\n"
    )


DSP_DOTS = """    const int8_t *w0 = {name}_w + (long)u * {cols};
    const int8_t {ws};
    int32_t {zeros};
    int i = 0;
#if defined(__ARM_FEATURE_SIMD32)
    for (; i + 4 <= {cols}; i += 4) {{ /* x widened once for the {count} rows */
        int8x4_t xq, q;
        int16x2_t lo, hi;
        memcpy(&xq, x + i, sizeof xq);
        lo = __sxtb16(xq);
        hi = __sxtb16(ROR8(xq));
{simd}    }}
#endif
    for (; i < {cols}; ++i) {{
{tail}    }}
{stores}"""


def _dsp_dots(name: str, cols: int, stride: int, gates: int) -> str:
    """The dense body of rows<gates>_: x loaded and widened once for all the gate rows."""
    acc = "abcd"[:gates]
    simd = "".join(
        f"        memcpy(&q, w{k} + i, sizeof q);\n        {a} = __smlad(__sxtb16(ROR8(q)), hi, "
        f"__smlad(__sxtb16(q), lo, {a}));\n"
        for k, a in enumerate(acc)
    )
    return DSP_DOTS.format(
        name=name, cols=cols, count=_COUNT[gates], simd=simd,
        ws=", ".join(f"*w{k} = w{k - 1} + {stride}" for k in range(1, gates)),
        zeros=", ".join(f"{a} = 0" for a in acc),
        tail="".join(f"        {a} += (int32_t)w{k}[i] * x[i];\n" for k, a in enumerate(acc)),
        stores="".join(f"    a{gates}[{k}] = {a};\n" for k, a in enumerate(acc)),
    )  # fmt: skip


def gate_rows_function(s: Stored, n: int, gates: int = 3) -> str:
    """C: `static void rows<gates>_<name>(int u, const int8_t *x, int32_t *a<gates>)`, rows u,
    n + u, .. of an int8 matrix times x (3 gates: a GRU, 4: an LSTM). Dense: x is loaded and
    widened once for all the rows (under the DSP extension); CSR: one `row_<name>` call per
    gate (defined here too)."""
    head = _gate_rows_head(s.name, n, gates)
    if s.fmt == "dense":
        return head + _dsp_dots(s.name, s.cols, n * s.cols, gates) + "}\n"
    calls = "".join(f"    a{gates}[{k}] = row_{s.name}(u + {k * n}, x);\n" for k in range(gates))
    return row_function(s, "int32_t", "int8_t") + head + calls + "}\n"


def matvec_function(s: Stored) -> str:
    """C: `static void mv_<name>(const float *x, float *y)`, y = W·x over all rows, for the float
    path (a matrix stored with `columns=True`). Dense: y accumulates column after column, so
    the inner loop runs along y (it vectorizes, and no row ends in a horizontal sum) while
    every y[r] still adds its terms in column order; four columns go into one pass, so y is
    loaded and stored a quarter as often (the same sums, bit for bit); CSR: row by row."""
    if s.fmt == "dense":
        n, c4 = s.rows, s.cols - s.cols % 4
        body = f"""    int i, r;
    for (r = 0; r < {n}; ++r) {{
        y[r] = 0.0f;
    }}
"""
        if c4:
            body += f"""    for (i = 0; i < {c4}; i += 4) {{ /* four columns a pass, in order */
        const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        const float *w = {s.name}_w + (long)i * {n};
        for (r = 0; r < {n}; ++r) {{
            y[r] = (((y[r] + w[r] * x0) + w[{n} + r] * x1) + w[{2 * n} + r] * x2)
                   + w[{3 * n} + r] * x3;
        }}
    }}
"""
        if s.cols % 4:
            body += f"""    for (i = {c4}; i < {s.cols}; ++i) {{
        const float xi = x[i], *w = {s.name}_w + (long)i * {n};
        for (r = 0; r < {n}; ++r) {{
            y[r] += w[r] * xi;
        }}
    }}
"""
    else:
        body = f"""    int r, k;
    for (r = 0; r < {s.rows}; ++r) {{
        float a = 0.0f;
        for (k = {s.name}_ptr[r]; k < {s.name}_ptr[r + 1]; ++k) {{
            a += {s.name}_val[k] * x[{s.name}_idx[k]];
        }}
        y[r] = a;
    }}
"""
    return f"static void mv_{s.name}(const float *x, float *y)\n{{\n{body}}}\n"
