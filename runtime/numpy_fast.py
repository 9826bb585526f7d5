"""In-place kernels for the compiled numpy graph (numpy_compiled.py): element-wise, linear,
reduction, normalization and quantization ops writing into preallocated outputs.

A builder gets one node bound to the arrays a compiled run reads (`Bound`: constants, input
buffers, other nodes' output buffers or views of them), knows which of them are constants and
gets the node's preallocated output buffers. It returns a zero-argument call that recomputes
the outputs in place (ufuncs with `out=`, constants prepared once), or None for a case it does
not handle; the compiler then runs the interpreter's kernel (`numpy_ops.OPS`) and copies.

The arithmetic follows the interpreter's kernels operation by operation, except where a BLAS
product replaces a sum (LayerNormalization's statistics, a one-axis ReduceSum, the fused RNN
steps of numpy_fast_rnn.py): there the two differ by float rounding only. Both are written
from the ONNX spec; tests/runtime/test_numpy_compiled.py checks them against each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from cortexedge.runtime.numpy_layers import along, scalar, sigmoid
from cortexedge.runtime.numpy_ops import BINARY, UNARY, VARIADIC, axes_of

Call = Callable[[], None]


@dataclass(frozen=True)
class Bound:
    """One node as the compiler binds it: inputs (None where omitted), which are constants,
    preallocated outputs (one per kernel result), the decoded attributes and which outputs
    anything reads (later nodes or the graph outputs)."""

    ins: list
    const: list[bool]
    outs: list[np.ndarray]
    attrs: dict
    used: list[bool]

    def input(self, k: int) -> np.ndarray | None:
        """Input k, or None when the node omits it."""
        return self.ins[k] if k < len(self.ins) else None

    def arg(self, k: int) -> np.ndarray:
        """Input k as a ufunc writing output 0 takes it fastest (see `lean`)."""
        return lean(self.ins[k], self.const[k], self.outs[0].shape)


def lean(a: np.ndarray, const: bool, shape: tuple[int, ...]) -> np.ndarray:
    """`a` as a ufunc writing an array of `shape` takes it fastest: broadcasting costs a small
    ufunc call ~0.6 µs, so a one-element array becomes a 0-d view (still tracking its buffer)
    and a constant that would broadcast is materialized to `shape` once."""
    if a.size == 1:
        return a.reshape(())
    if const and a.shape != shape:
        return np.ascontiguousarray(np.broadcast_to(a, shape))
    return a


Builder = Callable[[Bound], Call | None]


def _ufunc(f: np.ufunc) -> Builder:
    return lambda n: partial(f, *[n.arg(k) for k in range(len(n.ins))], out=n.outs[0])


def _relu(n: Bound) -> Call:
    return partial(np.maximum, n.ins[0], scalar(0, n.ins[0].dtype), out=n.outs[0])


def _sigmoid(n: Bound) -> Call:
    return partial(sigmoid, n.ins[0], n.outs[0])


def _softplus(n: Bound) -> Call:
    return partial(np.logaddexp, scalar(0, n.ins[0].dtype), n.ins[0], out=n.outs[0])


def _div(n: Bound) -> Call | None:
    if np.issubdtype(n.ins[0].dtype, np.integer):
        return None  # integer Div truncates toward zero: the interpreter's kernel
    return partial(np.divide, n.arg(0), n.arg(1), out=n.outs[0])


def _variadic(f: np.ufunc) -> Builder:
    def build(n: Bound) -> Call:
        first, *rest = [n.arg(k) for k in range(len(n.ins))]
        out = n.outs[0]

        def call() -> None:
            out[...] = first
            for x in rest:
                f(out, x, out=out)

        return call

    return build


def product(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> Call:
    """out = a @ b as a call: np.dot on 2-D views where it applies (it skips ~0.7 µs of
    matmul's dispatch, but only 2-D operands reach BLAS), else matmul."""
    if b.ndim == 2 and a.ndim >= 2 and out.flags.c_contiguous:
        if out.dtype == np.result_type(a, b):
            try:
                rows = np.reshape(a, (-1, a.shape[-1]), copy=False)
            except ValueError:  # not viewable as 2-D without a copy
                rows = None
            if rows is not None:
                return partial(np.dot, rows, b, out.reshape(rows.shape[0], b.shape[1]))
    return partial(np.matmul, a, b, out=out)


def _matmul(n: Bound) -> Call:
    return product(n.ins[0], np.ascontiguousarray(n.ins[1]) if n.const[1] else n.ins[1], n.outs[0])


def _gemm(n: Bound) -> Call | None:
    a = n.ins[0].T if n.attrs.get("transA", 0) else n.ins[0]
    b = n.ins[1].T if n.attrs.get("transB", 0) else n.ins[1]
    b = np.ascontiguousarray(b) if n.const[1] else b
    alpha, beta, c, out = n.attrs.get("alpha", 1.0), n.attrs.get("beta", 1.0), n.input(2), n.outs[0]
    if c is not None and beta != 1.0:
        if not n.const[2]:
            return None
        c = c * np.float32(beta)
    c = None if c is None else lean(c, n.const[2], out.shape)
    scale = scalar(alpha, out.dtype) if alpha != 1.0 else None
    ab = product(a, b, out)

    def call() -> None:
        ab()
        if scale is not None:
            np.multiply(out, scale, out=out)
        if c is not None:
            np.add(out, c, out=out)

    return call


def _clip(n: Bound) -> Call:
    x, out = n.ins[0], n.outs[0]
    lo = n.input(1) if n.input(1) is not None else n.attrs.get("min")
    hi = n.input(2) if n.input(2) is not None else n.attrs.get("max")
    lo, hi = [None if v is None else np.asarray(v, dtype=x.dtype).reshape(()) for v in (lo, hi)]

    def call() -> None:
        if lo is None:
            out[...] = x
        else:
            np.maximum(x, lo, out=out)
        if hi is not None:
            np.minimum(out, hi, out=out)

    return call


def _concat(n: Bound) -> Call:
    return partial(np.concatenate, tuple(n.ins), axis=n.attrs["axis"], out=n.outs[0])


def _cast(n: Bound) -> Call:
    return partial(np.copyto, n.outs[0], n.ins[0], casting="unsafe")


def _where(n: Bound) -> Call:
    cond, a, b = n.arg(0), n.arg(1), n.arg(2)
    out = n.outs[0]

    def call() -> None:
        np.copyto(out, b)
        np.copyto(out, a, where=cond)

    return call


def _axis_sum(x: np.ndarray, axis: int, out: np.ndarray) -> Call | None:
    """out = the sum of x over one axis as a product with a ones vector (BLAS: half the time
    of add.reduce on a [1, 5, 20, 96] window), or None when x does not view as [P, n, Q]."""
    n = x.shape[axis]
    p, q = int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis + 1 :]))
    try:
        x3, o2 = np.reshape(x, (p, n, q), copy=False), np.reshape(out, (p, q), copy=False)
    except ValueError:
        return None
    return partial(np.matmul, np.ones(n, dtype=x.dtype), x3, out=o2)


def _reduce(f: np.ufunc, mean: bool = False) -> Builder:
    def build(n: Bound) -> Call:
        x, out, axes = n.ins[0], n.outs[0], axes_of(n.ins, n.attrs)
        if not axes and n.attrs.get("noop_with_empty_axes", 0):
            return partial(np.copyto, out, x)
        axis = tuple(a % x.ndim for a in axes) if axes else tuple(range(x.ndim))
        keep = bool(n.attrs.get("keepdims", 1))
        count = scalar(int(np.prod([x.shape[a] for a in axis])), out.dtype)
        total = _axis_sum(x, axis[0], out) if f is np.add and len(axis) == 1 else None
        total = total or partial(f.reduce, x, axis=axis, keepdims=keep, out=out)

        def call() -> None:
            total()
            if mean:
                np.divide(out, count, out=out)

        return call

    return build


def _batch_norm(n: Bound) -> Call | None:
    """Inference BatchNormalization, (x − mean)·k + b with k = scale/√(var + ε) made once."""
    if not all(n.const[1:5]):
        return None
    x, scale, b, mean, var = n.ins[:5]
    out = n.outs[0]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    k = (scale / np.sqrt(var + n.attrs.get("epsilon", 1e-5))).reshape(shape)
    k, mean, b = (lean(v.reshape(shape), True, out.shape) for v in (k, mean, b))

    def call() -> None:
        np.subtract(x, mean, out=out)
        np.multiply(out, k, out=out)
        np.add(out, b, out=out)

    return call


def _row_mean(src: np.ndarray, axes: tuple[int, ...], out: np.ndarray) -> Call:
    """out = the mean of src over its trailing `axes` (kept as size-1): one np.dot with a 1/n
    column when src views as rows × n (0.7 µs, against 2 µs for add.reduce and a divide)."""
    count = int(np.prod([src.shape[a] for a in axes]))
    try:
        rows = np.reshape(src, (-1, count), copy=False)
    except ValueError:
        rows = None
    if rows is None or not out.flags.c_contiguous:
        n = scalar(count, out.dtype)

        def call() -> None:
            np.add.reduce(src, axis=axes, keepdims=True, out=out)
            np.divide(out, n, out=out)

        return call
    column = np.full((count, 1), 1 / count, dtype=src.dtype)
    return partial(np.dot, rows, column, out.reshape(rows.shape[0], 1))


def _layer_norm(n: Bound) -> Call:
    """LayerNormalization over the axes from `axis` on, in the output buffers (Mean and
    InvStdDev are outputs 1 and 2) and scratch arrays; one-element statistics are used as 0-d
    views, and the scratch statistic `v` keeps every call out of place (an in-place ufunc on a
    one-element array costs twice a plain one)."""
    x, y, mean, inv = n.ins[0], *n.outs
    axes = tuple(range(n.attrs.get("axis", -1) % x.ndim, x.ndim))
    scale, b = n.arg(1), (None if n.input(2) is None else n.arg(2))
    eps, one = scalar(n.attrs.get("epsilon", 1e-5), x.dtype), scalar(1, x.dtype)
    d, v = np.empty_like(x), np.empty_like(mean)
    mean_of_x, mean_of_squares = _row_mean(x, axes, mean), _row_mean(y, axes, v)
    m, i = (a.reshape(()) if a.size == 1 else a for a in (mean, inv))

    def call() -> None:
        mean_of_x()
        np.subtract(x, m, out=d)
        np.multiply(d, d, out=y)
        mean_of_squares()
        np.add(v, eps, out=inv)
        np.sqrt(inv, out=v)
        np.divide(one, v, out=inv)
        np.multiply(d, i, out=y)
        np.multiply(y, scale, out=y)
        if b is not None:
            np.add(y, b, out=y)

    return call


def _quantize(n: Bound) -> Call | None:
    """QuantizeLinear: round half to even, add the zero point, saturate, in a float scratch."""
    x, scale, zp, out = n.ins[0], n.ins[1], n.input(2), n.outs[0]
    if zp is None or not n.const[2]:
        return None
    axis = n.attrs.get("axis", 1)
    scale, zpf = along(scale, x, axis), along(zp, x, axis).astype(np.float32)
    info = np.iinfo(zp.dtype)
    lo, hi = np.float32(info.min), np.float32(info.max)
    f = np.empty(x.shape, dtype=np.result_type(x.dtype, scale.dtype))

    def call() -> None:
        np.divide(x, scale, out=f)
        np.rint(f, out=f)
        np.add(f, zpf, out=f)
        np.maximum(f, lo, out=f)
        np.minimum(f, hi, out=f)
        np.copyto(out, f, casting="unsafe")

    return call


def _dequantize(n: Bound) -> Call | None:
    """DequantizeLinear: (x − zero point) · scale, in the float32 output."""
    x, scale, zp, out = n.ins[0], n.ins[1], n.input(2), n.outs[0]
    if out.dtype != np.float32 or (zp is not None and not n.const[2]):
        return None
    axis = n.attrs.get("axis", 1)
    scale = along(scale, x, axis)
    zpf = None if zp is None else along(zp, x, axis).astype(np.float32)

    def call() -> None:
        np.copyto(out, x, casting="unsafe")
        if zpf is not None:
            np.subtract(out, zpf, out=out)
        np.multiply(out, scale, out=out)

    return call


FAST: dict[str, Builder] = {
    **{k: _ufunc(f) for k, f in UNARY.items() if isinstance(f, np.ufunc)},
    **{k: _ufunc(f) for k, f in BINARY.items() if isinstance(f, np.ufunc)},
    **{k: _variadic(f) for k, f in VARIADIC.items()},
    "Relu": _relu,
    "Sigmoid": _sigmoid,
    "Softplus": _softplus,
    "Div": _div,
    "MatMul": _matmul,
    "Gemm": _gemm,
    "Clip": _clip,
    "Concat": _concat,
    "Cast": _cast,
    "Where": _where,
    "ReduceSum": _reduce(np.add),
    "ReduceMean": _reduce(np.add, mean=True),
    "ReduceMax": _reduce(np.maximum),
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "QuantizeLinear": _quantize,
    "DequantizeLinear": _dequantize,
}
