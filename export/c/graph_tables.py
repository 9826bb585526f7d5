"""Tables for unary chains on whole numbers: where a spike-count input makes a tensor integral,
a chain of unary ops on it (Softplus then Log, the log1p transform, ...) becomes one lookup.

`integral(g)` follows whole-number values from a spike-count bin through the ops that keep
them whole (data movement, sums, differences, products, Relu, Abs, Neg, Max, Min with
whole-number constants). `chains(g, whole)` finds the runs of unary nodes that start on such
a tensor, each intermediate read by the next node only. `emit_chain` writes one loop: a value
that is a whole number below TABLE_SIZE reads the table, which holds the chain computed by the
runtime's own reference kernels in float32 (the runtime's definition of each op); any other
value (a fraction, a large count, NaN) computes the chain with its C expressions, so the
table changes the speed and never the defined result.
"""

from __future__ import annotations

import numpy as np

from cortexedge.export.c import float_math, graph_ir
from cortexedge.export.c.graph_ir import CGraph, CNode, Tensor

CHAIN = "UnaryChain"  # the op type of a fused chain in the emitted node list

TABLE_SIZE = 256
KEEPS_WHOLE = ("ReduceSum", "Add", "Sub", "Mul", "Neg", "Abs", "Relu", "Max", "Min")
# the unary ops whose C is costly enough that a table pays (a Relu or a Neg alone does not)
COSTLY = ("Softplus", "Log", "Exp", "Tanh", "Sigmoid", "Sqrt")


def _whole(t: Tensor, whole: set[str]) -> bool:
    if t.const:
        return bool(np.all(np.isfinite(t.value)) and np.all(t.value == np.round(t.value)))
    return t.name in whole


def integral(g: CGraph, spike_counts: bool, past: tuple[str, ...] = ()) -> set[str]:
    """Names of the tensors that hold whole numbers whenever the bin does. A state counts as
    whole when what the step writes into it is (a buffer of past bins): assumed, then dropped
    until the assumption holds; `past` names tensors of past bins only (a window chain's)."""
    if not spike_counts:
        return set()
    states = {s.input.name: s.output.name for s in g.states}
    while True:
        whole = _propagate(g, {g.x.name, *states, *past})
        broken = [i for i, o in states.items() if o not in whole]
        if not broken:
            return whole
        for i in broken:
            del states[i]


def _propagate(g: CGraph, whole: set[str]) -> set[str]:
    from cortexedge.export.c.graph_ops import MOVES

    whole = set(whole)
    for node in g.nodes:
        data = node.inputs if node.op_type in ("Concat", *KEEPS_WHOLE) else node.inputs[:1]
        if node.op_type in (*MOVES, *KEEPS_WHOLE) and all(
            t is not None and _whole(t, whole) for t in data
        ):
            whole.update(t.name for t in node.outputs if t is not None)
    return whole


def chains(g: CGraph, whole: set[str]) -> dict[str, list[CNode]]:
    """First node name -> the unary chain it starts (at least one costly op)."""
    readers = graph_ir.readers(g)
    outputs = {g.y.name, *(s.output.name for s in g.states)}
    found, taken = {}, set()
    for node in g.nodes:
        if node.name in taken or node.op_type not in float_math.UNARY:
            continue
        if node.inputs[0].name not in whole:
            continue
        chain = [node]
        while True:
            out = chain[-1].outputs[0]
            nxt = readers.get(out.name, [])
            if out.name in outputs or len(nxt) != 1 or nxt[0].op_type not in float_math.UNARY:
                break
            chain.append(nxt[0])
        if any(n.op_type in COSTLY for n in chain) and np.isfinite(_table(chain)).all():
            found[node.name] = chain
            taken.update(n.name for n in chain)
    return found


def _table(chain: list[CNode]) -> np.ndarray:
    """The chain on 0 .. TABLE_SIZE-1, by the runtime's reference kernels in float32."""
    values = np.arange(TABLE_SIZE, dtype=np.float32)
    with np.errstate(all="ignore"):
        for node in chain:
            values = np.asarray(node.step.op.kernel([values], node.attrs)[0], dtype=np.float32)
    return values


def emit_chain(chain: list[CNode], ctx) -> str:
    """The loop computing the chain's last output from its first input."""
    expr = "v"
    for node in chain:
        text, helper = float_math.UNARY[node.op_type]
        if helper:
            float_math.use(ctx, helper)
        expr = text.format(expr)
    table = ctx.const_array(_table(chain), f"{chain[-1].name}_table")
    src, dst = ctx.ref(chain[0].inputs[0]), ctx.ref(chain[-1].outputs[0])
    size = chain[-1].outputs[0].size
    whole = f"v >= 0.0f && v < {TABLE_SIZE}.0f && v == (float)(int)v"
    # a first pass tests the whole tensor without branches (it vectorizes); a bin of counts,
    # the usual case, then takes the plain table loop
    return f"""{{
    int tabled = 1;
    for (o = 0; o < {size}; ++o) {{
        const float v = {src}[o];
        tabled &= (v >= 0.0f) & (v < {TABLE_SIZE}.0f) & (v == floorf(v));
    }}
    if (tabled) {{
        for (o = 0; o < {size}; ++o) {{
            {dst}[o] = {table}[(int){src}[o]];
        }}
    }} else {{
        for (o = 0; o < {size}; ++o) {{
            const float v = {src}[o];
            {dst}[o] = ({whole}) ? {table}[(int)v] : {expr};
        }}
    }}
}}"""
