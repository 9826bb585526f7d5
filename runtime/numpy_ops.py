"""The numpy backend's op registry: ONNX op type -> numpy kernel.

Element-wise, shape and linear-algebra ops are defined here; the layer ops (GRU, LSTM, Conv,
normalizations, quantization) come from `numpy_layers.py`. A kernel takes (inputs, attrs) and
returns a tuple of outputs; optional inputs that the node leaves empty are None. `attrs` holds
the node's attributes decoded to Python values plus `_outputs`, the node's output count.

Two op properties serve the static-shape compiler (numpy_compiled.py): `SHAPE_INPUTS`, the
inputs whose values (not only shapes) set an op's output shape, and `VIEW_OPS`, the ops whose
output can be a view of their first input. A new op must be added to them when it qualifies.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache, reduce

import numpy as np

from cortexedge.runtime.numpy_layers import LAYER_OPS, Arrays, sigmoid

Kernel = Callable[[Arrays, dict], tuple]


@cache
def onnx_dtype(elem_type: int) -> np.dtype:
    """numpy dtype of an ONNX TensorProto element type."""
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.integer):
        return np.trunc(a / b).astype(a.dtype)  # ONNX integer Div truncates toward zero
    return a / b


UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "Identity": lambda x: x,
    "Relu": lambda x: np.maximum(x, 0),
    "Sigmoid": sigmoid,
    "Tanh": np.tanh,
    "Softplus": lambda x: np.logaddexp(0, x),
    "Log": np.log,
    "Exp": np.exp,
    "Sqrt": np.sqrt,
    "Neg": np.negative,
    "Abs": np.abs,
    "Reciprocal": np.reciprocal,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Sign": np.sign,
    "Not": np.logical_not,
}
BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": _div,
    "Pow": lambda a, b: np.power(a, b).astype(a.dtype, copy=False),
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
    "And": np.logical_and,
    "Or": np.logical_or,
    "Xor": np.logical_xor,
}
VARIADIC = {"Max": np.maximum, "Min": np.minimum, "Sum": np.add}


def axes_of(ins: Arrays, attrs: dict, pos: int = 1) -> list[int] | None:
    """Axes from the input at `pos` (newer opsets) or from the `axes` attribute (older ones)."""
    if len(ins) > pos and ins[pos] is not None:
        return ins[pos].tolist()
    return attrs.get("axes")


def _gemm(ins: Arrays, attrs: dict) -> tuple:
    a = ins[0].T if attrs.get("transA", 0) else ins[0]
    b = ins[1].T if attrs.get("transB", 0) else ins[1]
    y = a @ b
    alpha, beta = attrs.get("alpha", 1.0), attrs.get("beta", 1.0)
    if alpha != 1.0:
        y = y * np.float32(alpha)
    if len(ins) > 2 and ins[2] is not None:
        y = y + (ins[2] if beta == 1.0 else ins[2] * np.float32(beta))
    return (y.astype(ins[0].dtype, copy=False),)


def _clip(ins: Arrays, attrs: dict) -> tuple:
    lo = ins[1] if len(ins) > 1 and ins[1] is not None else attrs.get("min")
    hi = ins[2] if len(ins) > 2 and ins[2] is not None else attrs.get("max")
    x = ins[0]
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return (x.astype(ins[0].dtype, copy=False),)


def _slice(ins: Arrays, attrs: dict) -> tuple:
    x, starts, ends = ins[0], ins[1], ins[2]
    axes = ins[3] if len(ins) > 3 and ins[3] is not None else range(len(starts))
    steps = ins[4] if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(st))
    return (x[tuple(index)],)


def _reshape(ins: Arrays, attrs: dict) -> tuple:
    x, shape = ins[0], ins[1].tolist()
    if not attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return (x.reshape(shape),)


def _squeeze(ins: Arrays, attrs: dict) -> tuple:
    x, axes = ins[0], axes_of(ins, attrs)
    if axes is None:
        return (x.reshape([d for d in x.shape if d != 1]),)
    shape = list(x.shape)
    for a in sorted((a % x.ndim for a in axes), reverse=True):
        del shape[a]
    return (x.reshape(shape),)


def _unsqueeze(ins: Arrays, attrs: dict) -> tuple:
    x, axes = ins[0], axes_of(ins, attrs)
    rank, shape = x.ndim + len(axes), list(x.shape)
    for a in sorted(a % rank for a in axes):
        shape.insert(a, 1)
    return (x.reshape(shape),)


def _gather(ins: Arrays, attrs: dict) -> tuple:
    x, idx, axis = ins[0], ins[1], attrs.get("axis", 0)
    if idx.ndim == 0:  # a scalar index is a plain (view) indexing, much cheaper than take
        return (x[(slice(None),) * (axis % x.ndim) + (int(idx),)],)
    return (np.take(x, idx, axis=axis),)


def _split(ins: Arrays, attrs: dict) -> tuple:
    x, axis, n = ins[0], attrs.get("axis", 0) % ins[0].ndim, attrs["_outputs"]
    sizes = ins[1].tolist() if len(ins) > 1 and ins[1] is not None else attrs.get("split")
    if sizes is None:
        size = -(-x.shape[axis] // n)
        sizes = [min(size, x.shape[axis] - k * size) for k in range(n)]
    lead, start, parts = (slice(None),) * axis, 0, []
    for size in sizes:  # plain slicing: views, much cheaper than np.split on tiny tensors
        parts.append(x[(*lead, slice(start, start + size))])
        start += size
    return tuple(parts)


def _reducer(fn: Callable) -> Kernel:
    def kernel(ins: Arrays, attrs: dict) -> tuple:
        axes = axes_of(ins, attrs)
        if not axes and attrs.get("noop_with_empty_axes", 0):
            return (ins[0],)
        keep = bool(attrs.get("keepdims", 1))
        return (fn(ins[0], axis=tuple(axes) if axes else None, keepdims=keep),)

    return kernel


def _softmax(ins: Arrays, attrs: dict) -> tuple:
    x = ins[0]
    e = np.exp(x - x.max(axis=attrs.get("axis", -1), keepdims=True))
    return (e / e.sum(axis=attrs.get("axis", -1), keepdims=True),)


def _constant(ins: Arrays, attrs: dict) -> tuple:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):  # fmt: skip
        if key in attrs:
            return (np.asarray(attrs[key], dtype=dtype),)
    raise ValueError("Constant node without a supported value attribute")


def _constant_of_shape(ins: Arrays, attrs: dict) -> tuple:
    value = attrs.get("value", np.zeros(1, dtype=np.float32))
    return (np.full([int(s) for s in ins[0]], value.reshape(()), dtype=value.dtype),)


def _shape(ins: Arrays, attrs: dict) -> tuple:
    dims = ins[0].shape[attrs.get("start", 0) : attrs.get("end", None)]
    return (np.array(dims, dtype=np.int64),)


def _expand(ins: Arrays, attrs: dict) -> tuple:
    shape = np.broadcast_shapes(ins[0].shape, tuple(int(s) for s in ins[1]))
    return (np.broadcast_to(ins[0], shape),)


def _flatten(ins: Arrays, attrs: dict) -> tuple:
    x, axis = ins[0], attrs.get("axis", 1) % max(ins[0].ndim, 1)
    return (x.reshape(int(np.prod(x.shape[:axis])), -1),)


def _unary(f: Callable) -> Kernel:
    return lambda ins, attrs: (f(ins[0]),)


def _binary(f: Callable) -> Kernel:
    return lambda ins, attrs: (f(ins[0], ins[1]),)


def _variadic(f: Callable) -> Kernel:
    return lambda ins, attrs: (reduce(f, ins),)


# input positions whose *values* decide the output shape; every other op's output shape follows
# from its input shapes alone (Gather's from the indices' shape), so it is fixed once they are
SHAPE_INPUTS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,),
    "Slice": (1, 2, 3, 4),
    "Squeeze": (1,),
    "Unsqueeze": (1,),
    "Expand": (1,),
    "ConstantOfShape": (0,),
    "Split": (1,),
    "ReduceMean": (1,),
    "ReduceSum": (1,),
    "ReduceMax": (1,),
}
# ops that may only re-view input 0: with their other inputs constant, an output that shares
# memory with input 0 is that input seen another way, and stays valid as its values change
VIEW_OPS = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Gather",
                      "Slice", "Split", "Transpose", "Expand"})  # fmt: skip

OPS: dict[str, Kernel] = {
    **{k: _unary(f) for k, f in UNARY.items()},
    **{k: _binary(f) for k, f in BINARY.items()},
    **{k: _variadic(f) for k, f in VARIADIC.items()},
    "Gemm": _gemm,
    "MatMul": lambda ins, attrs: (ins[0] @ ins[1],),
    "Clip": _clip,
    "LeakyRelu": lambda ins, attrs: (
        np.where(ins[0] < 0, ins[0] * attrs.get("alpha", 0.01), ins[0]).astype(ins[0].dtype),
    ),  # fmt: skip
    "Concat": lambda ins, attrs: (np.concatenate(ins, axis=attrs["axis"]),),
    "Slice": _slice,
    "Gather": _gather,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": lambda ins, attrs: (np.transpose(ins[0], attrs.get("perm")),),
    "Shape": _shape,
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Split": _split,
    "ReduceMean": _reducer(np.mean),
    "ReduceSum": _reducer(np.sum),
    "ReduceMax": _reducer(np.max),
    "Softmax": _softmax,
    "Cast": lambda ins, attrs: (ins[0].astype(onnx_dtype(attrs["to"])),),
    "Where": lambda ins, attrs: (np.where(ins[0], ins[1], ins[2]),),
    "Expand": _expand,
    "Dropout": lambda ins, attrs: (ins[0], np.ones(ins[0].shape, dtype=bool)),
    **LAYER_OPS,
}
