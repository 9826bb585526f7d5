"""Shape ONNX ops: views (Reshape, Slice, Gather, Split, Transpose, ...), Shape, Concat and
constants.

Most of them only re-view their first input (`view=True`): the compiled tier makes that view
once, at load. Their shape inputs (`shape_inputs`) must then be constants, else the graph's
shapes depend on values and it stays with the reference interpreter.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from cortexedge.runtime.onnx_numpy.opdef import Arrays, Bound, Call, OpDef


def axes_of(ins: Arrays, attrs: dict, pos: int = 1) -> list[int] | None:
    """Axes from the input at `pos` (newer opsets) or from the `axes` attribute (older ones)."""
    if len(ins) > pos and ins[pos] is not None:
        return ins[pos].tolist()
    return attrs.get("axes")


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


def _flatten(ins: Arrays, attrs: dict) -> tuple:
    x, axis = ins[0], attrs.get("axis", 1) % max(ins[0].ndim, 1)
    return (x.reshape(int(np.prod(x.shape[:axis])), -1),)


def _expand(ins: Arrays, attrs: dict) -> tuple:
    shape = np.broadcast_shapes(ins[0].shape, tuple(int(s) for s in ins[1]))
    return (np.broadcast_to(ins[0], shape),)


def _shape(ins: Arrays, attrs: dict) -> tuple:
    dims = ins[0].shape[attrs.get("start", 0) : attrs.get("end", None)]
    return (np.array(dims, dtype=np.int64),)


def _constant(ins: Arrays, attrs: dict) -> tuple:
    for key, dtype in (("value", None), ("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):  # fmt: skip
        if key in attrs:
            return (np.asarray(attrs[key], dtype=dtype),)
    raise ValueError("Constant node without a supported value attribute")


def _constant_of_shape(ins: Arrays, attrs: dict) -> tuple:
    value = attrs.get("value", np.zeros(1, dtype=np.float32))
    return (np.full([int(s) for s in ins[0]], value.reshape(()), dtype=value.dtype),)


def _fast_concat(n: Bound) -> Call:
    return partial(np.concatenate, tuple(n.ins), axis=n.attrs["axis"], out=n.outs[0])


SHAPE: tuple[OpDef, ...] = (
    OpDef("Reshape", _reshape, shape_inputs=(1,), view=True),
    OpDef("Flatten", _flatten, view=True),
    OpDef("Squeeze", _squeeze, shape_inputs=(1,), view=True),
    OpDef("Unsqueeze", _unsqueeze, shape_inputs=(1,), view=True),
    OpDef("Slice", _slice, shape_inputs=(1, 2, 3, 4), view=True),
    OpDef("Gather", _gather, view=True),
    OpDef("Split", _split, shape_inputs=(1,), view=True),
    OpDef("Transpose", lambda ins, attrs: (np.transpose(ins[0], attrs.get("perm")),), view=True),
    OpDef("Expand", _expand, shape_inputs=(1,), view=True),
    OpDef("Concat", lambda ins, attrs: (np.concatenate(ins, axis=attrs["axis"]),), _fast_concat),
    OpDef("Shape", _shape),
    OpDef("Constant", _constant),
    OpDef("ConstantOfShape", _constant_of_shape, shape_inputs=(0,)),
)
