"""Element-wise ONNX ops: unary and binary maths, comparisons, logic, Clip, Where, Cast.

Each op is one `OpDef` of `ELEMENTWISE`: the reference kernel and, for most, an in-place
builder (a ufunc with `out=`, constants prepared once) that computes the same operations.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, partial, reduce

import numpy as np

from cortexedge.macs import RULES
from cortexedge.runtime.onnx_numpy.opdef import Bound, Builder, Call, Counted, MacRule, OpDef


@cache
def onnx_dtype(elem_type: int) -> np.dtype:
    """numpy dtype of an ONNX TensorProto element type."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


@cache
def scalar(value: float, dtype: np.dtype) -> np.ndarray:
    """A shared read-only 0-d array: ufuncs take it faster than a Python number (~0.5 µs)."""
    a = np.array(value, dtype=dtype)
    a.flags.writeable = False
    return a


def sigmoid(x: np.ndarray, out: np.ndarray | None = None, halved: bool = False) -> np.ndarray:
    """Logistic function written with tanh, (tanh(x/2) + 1)/2: no overflow warning for large
    |x|. Computed in `out` (which may be x itself) or in a new array; `halved` says that x
    already holds x/2 (fused RNN steps fold the halving into their weights, exactly)."""
    half, one = scalar(0.5, x.dtype), scalar(1, x.dtype)
    y = np.empty_like(x) if out is None else out
    if halved:
        np.tanh(x, out=y)
    else:
        np.multiply(x, half, out=y)
        np.tanh(y, out=y)
    np.add(y, one, out=y)
    np.multiply(y, half, out=y)
    return y


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)  # ONNX integer Div truncates toward zero
    return a / b


def _ufunc(f: np.ufunc) -> Builder:
    return lambda n: partial(f, *[n.arg(k) for k in range(len(n.ins))], out=n.outs[0])


def _unary(name: str, f: Callable, fast: Builder | None = None, view: bool = False) -> OpDef:
    """An op y = f(x); a ufunc f writes into the output buffer unless `fast` says otherwise."""
    fast = fast or (_ufunc(f) if isinstance(f, np.ufunc) else None)
    return OpDef(name, lambda ins, attrs: (f(ins[0]),), fast, view=view)


def _binary(
    name: str, f: Callable, fast: Builder | None = None, macs: MacRule | None = None
) -> OpDef:
    """An op y = f(a, b) with broadcasting."""
    fast = fast or (_ufunc(f) if isinstance(f, np.ufunc) else None)
    return OpDef(name, lambda ins, attrs: (f(ins[0], ins[1]),), fast, macs=macs)


def _fast_variadic(f: np.ufunc) -> Builder:
    def build(n: Bound) -> Call:
        first, *rest = [n.arg(k) for k in range(len(n.ins))]
        out = n.outs[0]

        def call() -> None:
            out[...] = first
            for x in rest:
                f(out, x, out=out)

        return call

    return build


def _variadic(name: str, f: np.ufunc) -> OpDef:
    """An op folding any number of inputs with f (Max, Min, Sum)."""
    return OpDef(name, lambda ins, attrs: (reduce(f, ins),), _fast_variadic(f))


def _fast_relu(n: Bound) -> Call:
    return partial(np.maximum, n.ins[0], scalar(0, n.ins[0].dtype), out=n.outs[0])


def _fast_sigmoid(n: Bound) -> Call:
    return partial(sigmoid, n.ins[0], n.outs[0])


def _fast_softplus(n: Bound) -> Call:
    return partial(np.logaddexp, scalar(0, n.ins[0].dtype), n.ins[0], out=n.outs[0])


def _fast_div(n: Bound) -> Call | None:
    if np.issubdtype(n.ins[0].dtype, np.integer):
        return None  # integer Div truncates toward zero: the reference kernel
    return partial(np.divide, n.arg(0), n.arg(1), out=n.outs[0])


def _mul_macs(n: Bound) -> Counted:
    if any(n.const):
        return None  # scaling by a constant is not a MAC (NeuroBench counts weights x inputs)
    return "elementwise", RULES["elementwise"](n.outs[0].size), []


def _clip(ins: list, attrs: dict) -> tuple:
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    x = ins[0]
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return (x.astype(ins[0].dtype, copy=False),)


def _fast_clip(n: Bound) -> Call:
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


def _leaky_relu(ins: list, attrs: dict) -> tuple:
    x = ins[0]
    return (np.where(x < 0, x * attrs.get("alpha", 0.01), x).astype(x.dtype),)


def _fast_where(n: Bound) -> Call:
    cond, a, b = n.arg(0), n.arg(1), n.arg(2)
    out = n.outs[0]

    def call() -> None:
        np.copyto(out, b)
        np.copyto(out, a, where=cond)

    return call


def _fast_cast(n: Bound) -> Call:
    return partial(np.copyto, n.outs[0], n.ins[0], casting="unsafe")


ELEMENTWISE: tuple[OpDef, ...] = (
    _unary("Identity", lambda x: x, view=True),
    _unary("Relu", lambda x: np.maximum(x, 0), _fast_relu),
    _unary("Sigmoid", sigmoid, _fast_sigmoid),
    _unary("Tanh", np.tanh),
    _unary("Softplus", lambda x: np.logaddexp(0, x), _fast_softplus),
    _unary("Log", np.log),
    _unary("Exp", np.exp),
    _unary("Sqrt", np.sqrt),
    _unary("Neg", np.negative),
    _unary("Abs", np.abs),
    _unary("Reciprocal", np.reciprocal),
    _unary("Floor", np.floor),
    _unary("Ceil", np.ceil),
    _unary("Sign", np.sign),
    _unary("Not", np.logical_not),
    _binary("Add", np.add),
    _binary("Sub", np.subtract),
    _binary("Mul", np.multiply, macs=_mul_macs),
    _binary("Div", _div, _fast_div),
    _binary("Pow", lambda a, b: np.power(a, b).astype(a.dtype, copy=False)),
    _binary("Equal", np.equal),
    _binary("Less", np.less),
    _binary("LessOrEqual", np.less_equal),
    _binary("Greater", np.greater),
    _binary("GreaterOrEqual", np.greater_equal),
    _binary("And", np.logical_and),
    _binary("Or", np.logical_or),
    _binary("Xor", np.logical_xor),
    _variadic("Max", np.maximum),
    _variadic("Min", np.minimum),
    _variadic("Sum", np.add),
    OpDef("Clip", _clip, _fast_clip),
    OpDef("LeakyRelu", _leaky_relu),
    OpDef("Where", lambda ins, attrs: (np.where(ins[0], ins[1], ins[2]),), _fast_where),
    OpDef("Cast", lambda ins, attrs: (ins[0].astype(onnx_dtype(attrs["to"])),), _fast_cast),
    OpDef("Dropout", lambda ins, attrs: (ins[0], np.ones(ins[0].shape, dtype=bool))),
)
