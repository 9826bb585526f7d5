"""The float C emitters, one per ONNX op: `C_OPS`, keyed by the op names of the runtime's table
(runtime/onnx_numpy/registry.py), whose definitions they follow.

An emitter takes a node of the C IR (graph_ir.CNode) and the emission context
(graph_emit.Context: where each tensor lives, constant arrays, stored matrices, helpers) and
returns the C statements that compute the node's outputs. The data-movement ops (Reshape,
Slice, Gather, Concat, Transpose, ...) have no C of their own: their index maps come from the
runtime's reference kernels run on element indices (`moves`), so their semantics are defined
once; a map that is one contiguous range costs nothing (the output is a view), others become
copies. GRU and LSTM are in graph_rnn.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import float_math
from cortexedge.export.c.graph_ir import CNode, Tensor
from cortexedge.runtime.onnx_numpy.ops_linear import conv_geometry
from cortexedge.runtime.onnx_numpy.ops_shape import axes_of

MOVES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Slice", "Gather",
         "Split", "Transpose", "Expand", "Concat")  # fmt: skip
SOURCE = 2**32  # an element index packs (source input k, flat index i) as k·SOURCE + i


def refuse(node: CNode, what: str) -> CortexEdgeError:
    """The one-line error for a node the C generator cannot emit as it is."""
    return CortexEdgeError(f"C export: node '{node.name}' ({node.op_type}): {what}")


# ------------------------------------------------------------------------- data movement
@dataclass(frozen=True)
class Move:
    """Where each element of one output comes from: source input per element and its index."""

    source: np.ndarray  # [n] input position
    index: np.ndarray  # [n] flat element index in that input

    def view(self) -> tuple[int, int] | None:
        """(input, first element) when the output is one contiguous range of one input."""
        if len(self.source) and np.all(self.source == self.source[0]):
            if np.array_equal(self.index, self.index[0] + np.arange(len(self.index))):
                return int(self.source[0]), int(self.index[0])
        return None


def moves(node: CNode) -> list[Move]:
    """The element maps of a data-movement node, one per output, from its reference kernel."""
    data = range(len(node.inputs)) if node.op_type == "Concat" else (0,)
    ins = []
    for k, t in enumerate(node.inputs):
        if t is None:
            ins.append(None)
        elif k in data:
            ins.append((k * SOURCE + np.arange(t.size, dtype=np.float64)).reshape(t.shape))
        elif t.const:
            ins.append(t.value)
        else:
            raise refuse(node, f"input {k} sets a shape or index at run time")
    results = node.step.op.kernel(ins, node.attrs)
    out = []
    for r in results[: len(node.outputs)]:
        flat = np.asarray(r, dtype=np.float64).reshape(-1).astype(np.int64)
        out.append(Move(flat // SOURCE, flat % SOURCE))
    return out


def _runs(index: np.ndarray) -> list[tuple[int, int, int]]:
    """(output start, input start, length) of the runs where both indices advance by one."""
    if not len(index):
        return []
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(index)]])
    return [(int(s), int(index[s]), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def _move(node: CNode, ctx) -> str:
    lines = []
    for out, mv in zip(node.outputs, ctx.moves[node.name], strict=False):
        if out is None or ctx.is_view(out):
            continue
        dst = ctx.ref(out)
        for k in sorted(set(mv.source.tolist())):
            at = np.flatnonzero(mv.source == k)
            src, runs = ctx.ref(node.inputs[k]), _runs(mv.index[at])
            if len(runs) <= 4 and np.array_equal(at, np.arange(at[0], at[0] + len(at))):
                lines += [f"memcpy({dst} + {at[0] + o}, {src} + {i}, sizeof(float) * {n});"
                          for o, i, n in runs if not (src == dst and at[0] + o == i)]  # fmt: skip
                continue
            dst_at = ctx.const_index(at)
            src_at = ctx.const_index(mv.index[at])
            lines.append(f"for (i = 0; i < {len(at)}; ++i) {{\n"
                         f"    {dst}[{dst_at}[i]] = {src}[{src_at}[i]];\n}}")  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------- element-wise
BINARY = {
    "Add": "({0} + {1})",
    "Sub": "({0} - {1})",
    "Mul": "({0} * {1})",
    "Div": "({0} / {1})",
    "Max": "fmaxf({0}, {1})",
    "Min": "fminf({0}, {1})",
    "Pow": "powf({0}, {1})",
}


def _strides(shape: tuple[int, ...], rank: int) -> list[int]:
    """Element strides of `shape` broadcast to `rank` dims (0 along broadcast axes)."""
    shape = (1,) * (rank - len(shape)) + tuple(shape)
    out, step = [], 1
    for d in reversed(shape):
        out.append(step if d != 1 else 0)
        step *= d
    return out[::-1]


def elementwise(ctx, out: Tensor, operands: list[Tensor], expr: str) -> str:
    """C computing `out` = expr(operands...) element by element, with ONNX broadcasting."""
    rank = len(out.shape)
    strides = [_strides(t.shape, rank) for t in operands]
    full = _strides(out.shape, rank)
    terms, nested = [], False
    for t, st in zip(operands, strides, strict=True):
        if t.const and t.size == 1:
            terms.append(ctx.literal(float(t.value.reshape(-1)[0])))
        elif st == full or t.size == out.size:
            terms.append(f"{ctx.ref(t)}[o]")
        else:
            index = " + ".join(f"i{a} * {s}" for a, s in enumerate(st) if s) or "0"
            terms.append(f"{ctx.ref(t)}[{index}]")
            nested = True
    body = f"{ctx.ref(out)}[o] = {expr.format(*terms)};"
    if not nested:
        return f"for (o = 0; o < {out.size}; ++o) {{\n    {body}\n}}"
    return "\n".join(["o = 0;", *nest(out.shape, [body, "++o;"])])


def nest(shape: tuple[int, ...], body: list[str]) -> list[str]:
    """C loops i0, i1, ... over every index of `shape` around the lines of `body`."""
    head, close, indent = [], [], ""
    for a, d in enumerate(shape):
        head.append(f"{indent}for (i{a} = 0; i{a} < {d}; ++i{a}) {{")
        close.insert(0, f"{indent}}}")
        indent += "    "
    return [*head, *(indent + line for line in body), *close]


def _unary(node: CNode, ctx) -> str:
    expr, helper = float_math.UNARY[node.op_type]
    if helper:
        float_math.use(ctx, helper)
    return elementwise(ctx, node.outputs[0], [node.inputs[0]], expr)


def _binary(node: CNode, ctx) -> str:
    if len(node.inputs) != 2:
        raise refuse(node, f"{len(node.inputs)} inputs (the C generator emits two)")
    return elementwise(ctx, node.outputs[0], list(node.inputs), BINARY[node.op_type])


def _clip(node: CNode, ctx) -> str:
    bounds = []
    for k, attr, default in ((1, "min", -np.inf), (2, "max", np.inf)):
        t = node.input(k)
        if t is not None and not t.const:
            raise refuse(node, "bounds computed at run time")
        bounds.append(float(t.value) if t is not None else float(node.attrs.get(attr, default)))
    lo, hi = (ctx.literal(b) for b in bounds)
    expr = f"({{0}} < {lo} ? {lo} : ({{0}} > {hi} ? {hi} : {{0}}))"
    return elementwise(ctx, node.outputs[0], [node.inputs[0]], expr)


# ------------------------------------------------------------------------- normalizations
def _batch_norm(node: CNode, ctx) -> str:
    x, scale, bias, mean, var = node.inputs[:5]
    if not all(t.const for t in (scale, bias, mean, var)) or node.output(1) is not None:
        raise refuse(node, "training mode or statistics computed at run time")
    a = scale.value.astype(np.float64) / np.sqrt(var.value.astype(np.float64)
                                                 + node.attrs.get("epsilon", 1e-5))  # fmt: skip
    b = bias.value - mean.value * a
    shape = (x.shape[1],) + (1,) * (len(x.shape) - 2)
    ta = Tensor(f"{node.name}_a", shape, a.astype(np.float32).reshape(shape))
    tb = Tensor(f"{node.name}_b", shape, b.astype(np.float32).reshape(shape))
    return elementwise(ctx, node.outputs[0], [x, ta, tb], "({0} * {1} + {2})")


LANES = 8


def _lane_sum(n: int, term: str, name: str) -> str:
    """C: `name` = the sum of `term` (an expression of i) over i < n, in LANES partial sums
    (lane l adds terms l, l + LANES, ..; a tail term i lands in lane i - n8) joined pairwise: a
    fixed order, so every build gives the same float, and no chain of n dependent adds (a
    LayerNorm's reductions were a tenth of the AEGRU window step)."""
    n8 = n - n % LANES
    body = f"    {{\n        float p[{LANES}] = {{0.0f}};\n"
    if n8:
        body += f"""        int l;
        for (i = 0; i < {n8}; i += {LANES}) {{
            for (l = 0; l < {LANES}; ++l) {{
                p[l] += {term.replace("[i]", "[i + l]")};
            }}
        }}
"""
    if n % LANES:
        body += f"""        for (i = {n8}; i < {n}; ++i) {{
            p[i - {n8}] += {term};
        }}
"""
    join = [f"p[{lane}]" for lane in range(LANES)]
    while len(join) > 1:  # pairwise: ((p[0] + p[1]) + (p[2] + p[3])) + ...
        join = [f"({a} + {b})" for a, b in zip(join[::2], join[1::2], strict=True)]
    join = join[0][1:-1]
    return body + f"        {name} = {join};\n    }}\n"


def _layer_norm(node: CNode, ctx) -> str:
    x, scale, bias = node.input(0), node.input(1), node.input(2)
    if node.output(1) is not None or node.output(2) is not None:
        raise refuse(node, "its Mean and InvStdDev outputs are read")
    axis = node.attrs.get("axis", -1) % len(x.shape)
    n = int(np.prod(x.shape[axis:]))
    for t in (scale, bias):
        if t is not None and (not t.const or t.size not in (1, n)):
            raise refuse(node, "scale or bias of another shape than the normalized axes")
    g = ctx.const_array(np.broadcast_to(scale.value.reshape(-1), (n,)), f"{node.name}_g")
    b = ctx.const_array(np.broadcast_to(bias.value.reshape(-1), (n,)), f"{node.name}_b") if bias \
        else None  # fmt: skip
    src, dst = ctx.ref(x), ctx.ref(node.outputs[0])
    eps = ctx.literal(float(node.attrs.get("epsilon", 1e-5)))
    add = f" + {b}[i]" if b else ""
    mean, var = _lane_sum(n, "v[i]", "mean"), _lane_sum(n, "(v[i] - mean) * (v[i] - mean)", "var")
    return f"""for (o = 0; o < {x.size // n}; ++o) {{
    const float *v = {src} + o * {n};
    float *w = {dst} + o * {n};
    float mean, var, inv;
{mean}    mean /= {n}.0f;
{var}    inv = 1.0f / sqrtf(var / {n}.0f + {eps});
    for (i = 0; i < {n}; ++i) {{
        w[i] = (v[i] - mean) * inv * {g}[i]{add};
    }}
}}"""


# ------------------------------------------------------------------------- linear
def _rows_times(ctx, node: CNode, a: Tensor, w: np.ndarray, bias: np.ndarray | None,
                out: Tensor) -> str:  # fmt: skip
    """out[m] = W · a[m] (+ bias) for every row m of `a`; W [N, K] constant."""
    m_rows = a.size // w.shape[1]
    mv = ctx.matrix(w, node.name, runs=m_rows)
    src, dst = ctx.ref(a), ctx.ref(out)
    lines = [f"for (o = 0; o < {m_rows}; ++o) {{",
             f"    mv_{mv}({src} + o * {w.shape[1]}, {dst} + o * {w.shape[0]});"]  # fmt: skip
    if bias is not None and np.any(bias):
        full = np.broadcast_to(bias, (m_rows, w.shape[0])).astype(np.float32)
        if np.all(full == full[0]):
            b = ctx.const_array(full[0], f"{node.name}_bias")
            lines.append(f"    for (i = 0; i < {w.shape[0]}; ++i) {{\n"
                         f"        {dst}[o * {w.shape[0]} + i] += {b}[i];\n    }}")  # fmt: skip
        else:
            b = ctx.const_array(full.reshape(-1), f"{node.name}_bias")
            lines.append(f"    for (i = 0; i < {w.shape[0]}; ++i) {{\n"
                         f"        {dst}[o * {w.shape[0]} + i] += {b}[o * {w.shape[0]} + i];"
                         "\n    }")  # fmt: skip
    return "\n".join([*lines, "}"])


def _gemm(node: CNode, ctx) -> str:
    a, b, c = node.input(0), node.input(1), node.input(2)
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    if node.attrs.get("transA", 0) and a.shape[1] != 1:  # A is [K, M]: one row of A^T only
        raise refuse(node, "transA with more than one row")
    if not b.const or (c is not None and not c.const):
        raise refuse(node, "a weight or bias computed at run time")
    w = (b.value if node.attrs.get("transB", 0) else b.value.T).astype(np.float64) * alpha
    bias = None if c is None else c.value.astype(np.float64) * beta
    return _rows_times(ctx, node, a, w.astype(np.float32), bias, node.outputs[0])


def _matmul(node: CNode, ctx) -> str:
    a, b = node.inputs[:2]
    out = node.outputs[0]
    if b.const and b.value.ndim == 2 and not a.const:
        return _rows_times(ctx, node, a, np.ascontiguousarray(b.value.T), None, out)
    if len(a.shape) != 2 or len(b.shape) != 2:
        raise refuse(node, f"a product of {list(a.shape)} and {list(b.shape)} (emitted: "
                     "[M, K] times a constant [K, N], or two matrices)")  # fmt: skip
    (m, k), n = a.shape, b.shape[1]
    pa, pb, po = ctx.ref(a), ctx.ref(b), ctx.ref(out)
    return f"""for (o = 0; o < {m}; ++o) {{
    for (i = 0; i < {n}; ++i) {{
        float s = 0.0f;
        int j;
        for (j = 0; j < {k}; ++j) {{
            s += {pa}[o * {k} + j] * {pb}[j * {n} + i];
        }}
        {po}[o * {n} + i] = s;
    }}
}}"""


def _conv(node: CNode, ctx) -> str:
    x, w, b = node.input(0), node.input(1), node.input(2)
    if not w.const or (b is not None and not b.const):
        raise refuse(node, "a weight or bias computed at run time")
    if len(w.shape) != 3 or node.attrs.get("group", 1) != 1:
        raise refuse(node, "the C generator emits 1-D convolutions with one group")
    (strides,), pads, (dil,) = conv_geometry(x.shape[2:], w.shape, node.attrs)
    (m, cin, k), length, out = w.shape, x.shape[2], node.outputs[0]
    lout = out.shape[2]
    mv = ctx.matrix(w.value.reshape(m, cin * k), node.name, runs=lout)
    bias = ctx.const_array(b.value, f"{node.name}_bias") if b is not None else None
    src, dst = ctx.ref(x), ctx.ref(out)
    add = f" + {bias}[i]" if bias else ""
    return f"""for (o = 0; o < {lout}; ++o) {{
    float patch[{cin * k}], col[{m}];
    int c, t;
    for (c = 0; c < {cin}; ++c) {{
        for (t = 0; t < {k}; ++t) {{
            int at = o * {strides} + t * {dil} - {pads[0]};
            patch[c * {k} + t] = (at >= 0 && at < {length}) ? {src}[c * {length} + at] : 0.0f;
        }}
    }}
    mv_{mv}(patch, col);
    for (i = 0; i < {m}; ++i) {{
        {dst}[i * {lout} + o] = col[i]{add};
    }}
}}"""


# ------------------------------------------------------------------------- reductions
REDUCE = {"ReduceSum": ("0.0f", "{acc} += {v}"), "ReduceMean": ("0.0f", "{acc} += {v}"),
          "ReduceMax": ("-INFINITY", "{acc} = fmaxf({acc}, {v})")}  # fmt: skip


def _reduce(node: CNode, ctx) -> str:
    x, out = node.inputs[0], node.outputs[0]
    axes = axes_of([None if t is None else t.value for t in node.inputs], node.attrs)
    if node.input(1) is not None and not node.input(1).const:
        raise refuse(node, "axes computed at run time")
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return f"memcpy({ctx.ref(out)}, {ctx.ref(x)}, sizeof(float) * {x.size});"
        axes = list(range(len(x.shape)))
    axes = {a % len(x.shape) for a in axes}
    kept = tuple(1 if a in axes else d for a, d in enumerate(x.shape))
    ost = _strides(kept, len(x.shape))
    init, update = REDUCE[node.op_type]
    dst, src = ctx.ref(out), ctx.ref(x)
    index = " + ".join(f"i{a} * {s}" for a, s in enumerate(ost) if s) or "0"
    acc = f"{dst}[{index}]"
    lines = [
        f"for (o = 0; o < {out.size}; ++o) {{\n    {dst}[o] = {init};\n}}",
        "o = 0;",
        *nest(x.shape, [update.format(acc=acc, v=f"{src}[o]") + ";", "++o;"]),
    ]
    if node.op_type == "ReduceMean":
        count = x.size // out.size
        lines.append(f"for (o = 0; o < {out.size}; ++o) {{\n    {dst}[o] /= {count}.0f;\n}}")
    return "\n".join(lines)


# ------------------------------------------------------------------------- the table
def _rnn(node: CNode, ctx) -> str:
    from cortexedge.export.c import graph_rnn

    return graph_rnn.EMITTERS[node.op_type](node, ctx)


Emitter = Callable[[CNode, object], str]
C_OPS: dict[str, Emitter] = {
    **{op: _move for op in MOVES},
    **{op: _unary for op in float_math.UNARY},
    **{op: _binary for op in BINARY},
    "Clip": _clip,
    "BatchNormalization": _batch_norm,
    "LayerNormalization": _layer_norm,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Conv": _conv,
    **{op: _reduce for op in REDUCE},
    "GRU": _rnn,
    "LSTM": _rnn,
}
