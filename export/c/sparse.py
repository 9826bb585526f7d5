"""Weight storage for the C generator: dense or sparse (CSR) per matrix, chosen and reported.

A matrix [rows, cols] is stored either dense (row-major) or as CSR: per-row start offsets
(`ptr`, rows+1 entries), the column index of every non-zero (`idx`) and its value (`val`), so
the executed MACs equal the non-zeros (the NeuroBench effective count). Every layer reads one
row at a time through `row_<name>(r, x)`, so the storage choice changes one small function.

Choice (`policy`): "dense", "sparse", "size" (fewer bytes) or "auto" (fewer estimated Cortex-M4
instructions, ties broken by size). The estimates are the generated loops as gcc -O2 compiles
them for the Cortex-M4: 5 instructions per dense MAC (2 loads, SMLABB, compare, branch) and 6
per stored non-zero (the column index load on top), plus the row set-up; CSR is faster below
about 80% density. On a host CPU dense rows are the faster ones (they vectorize).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.macs import linear

POLICIES = ("auto", "dense", "sparse", "size")
DENSE_INSNS_PER_MAC, DENSE_INSNS_PER_ROW = 5.0, 8.0
CSR_INSNS_PER_NZ, CSR_INSNS_PER_ROW = 6.0, 12.0
C_TYPES = {
    np.dtype(np.int8): "int8_t",
    np.dtype(np.uint8): "uint8_t",
    np.dtype(np.int16): "int16_t",
    np.dtype(np.uint16): "uint16_t",
    np.dtype(np.int32): "int32_t",
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


def _literal(v, dtype: np.dtype) -> str:
    if dtype == np.float32:
        text = f"{float(v):.9g}"
        return text + ("f" if any(ch in text for ch in ".e") else ".0f")
    if dtype == np.int64:
        return f"INT64_C({int(v)})"
    if dtype == np.int32 and int(v) == -(2**31):
        return "(-2147483647 - 1)"
    return str(int(v))


@dataclass(frozen=True)
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
    row_macs: tuple[int, ...]  # per row

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


def estimated_insns(w: np.ndarray, fmt: str) -> float:
    """Estimated Cortex-M4 instructions of one mat-vec in format `fmt`."""
    rows = w.shape[0]
    if fmt == "dense":
        return rows * DENSE_INSNS_PER_ROW + w.size * DENSE_INSNS_PER_MAC
    return rows * CSR_INSNS_PER_ROW + np.count_nonzero(w) * CSR_INSNS_PER_NZ


def _csr_bytes(w: np.ndarray) -> int:
    nnz = int(np.count_nonzero(w))
    idx, ptr = _index_dtype(w.shape[1]).itemsize, _ptr_dtype(nnz).itemsize
    return nnz * (w.itemsize + idx) + (w.shape[0] + 1) * ptr


def choose(w: np.ndarray, policy: str) -> str:
    """'dense' or 'csr' for matrix `w` under `policy` (see the module docstring)."""
    if policy not in POLICIES:
        raise CortexEdgeError(
            f"sparse: policy must be one of {', '.join(POLICIES)}, got {policy!r}"
        )
    sizes = {"dense": w.nbytes, "csr": _csr_bytes(w)}
    if policy in ("dense", "sparse"):
        return {"dense": "dense", "sparse": "csr"}[policy]
    if policy == "size":
        return min(sizes, key=lambda f: (sizes[f], f != "dense"))
    cost = {f: estimated_insns(w, f) for f in sizes}
    return min(sizes, key=lambda f: (cost[f], sizes[f]))


def store(name: str, w: np.ndarray, policy: str, columns: bool = False) -> Stored:
    """Store matrix `w` (int8 or float32, [rows, cols]) under the C symbol prefix `name`;
    `columns`: a dense matrix column by column (for `matvec_function`)."""
    w = np.ascontiguousarray(w)
    fmt = choose(w, policy)
    rows, cols = w.shape
    nz_rows = (w != 0).sum(1)
    if fmt == "dense":
        arrays = (CArray(f"{name}_w", (w.T if columns else w).reshape(-1)),)
        row_macs = tuple([cols] * rows)
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
        name, fmt, rows, cols, arrays, int(w.nbytes), _csr_bytes(w),
        dense_count if fmt == "dense" else effective, row_macs,
    )  # fmt: skip


def row_function(s: Stored, acc: str, xtype: str) -> str:
    """C: `static <acc> row_<name>(int r, const <xtype> *x)`, the dot product of row r with x."""
    head = f"static {acc} row_{s.name}(int r, const {xtype} *x)\n{{\n    {acc} a = 0;\n"
    if s.fmt == "dense":
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


def matvec_function(s: Stored) -> str:
    """C: `static void mv_<name>(const float *x, float *y)`, y = W·x over all rows, for the float
    path (a matrix stored with `columns=True`). Dense: y accumulates column after column, so
    the inner loop runs along y (it vectorizes, and no row ends in a horizontal sum) while
    every y[r] still adds its terms in column order; CSR: row by row."""
    if s.fmt == "dense":
        body = f"""    int i, r;
    for (r = 0; r < {s.rows}; ++r) {{
        y[r] = 0.0f;
    }}
    for (i = 0; i < {s.cols}; ++i) {{
        const float xi = x[i], *w = {s.name}_w + (long)i * {s.rows};
        for (r = 0; r < {s.rows}; ++r) {{
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
