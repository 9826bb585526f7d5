"""MACs, sparsity and memory footprint of an exported step graph, per bin and for one stream.

The graph is run once by the numpy interpreter on batch-1 zero inputs; that folds every
constant (so a weight behind DequantizeLinear or a gate-reordering Slice is seen as the array
it really is) and gives every tensor's shape. Each MAC-bearing node is then mapped to a rule of
`cortexedge.macs` (the one definition shared with the torch-side walker):

| op | rule | weight |
|---|---|---|
| Gemm / MatMul with a constant operand | linear | that operand, as [out, in] |
| Gemm / MatMul of two activations | linear (all ones) | none: every product counts |
| Conv | conv | W |
| GRU / LSTM | gru / lstm, × sequence length | W[d], R[d] (P) per direction |
| Mul of two activations (gate work written out) | elementwise | none |

Note: a GRU cell written out as ops counts the Muls it really has. torch's GRUCell export
computes h' = n + z⊙(h − n), two Muls, so it counts 3H(I+H) + 2H, while the ONNX GRU op (and
NeuroBench's GRUCell rule) counts 3H(I+H) + 3H.

Footprint: `weight_bytes` are all initializers at their stored dtype (int8 counts 1 byte);
`state_bytes` the state inputs for one stream; `peak_activation_bytes` the largest total size
of activation tensors alive at once along the topological order (graph inputs, intermediates
and outputs; a tensor lives from its producer to its last consumer; views are counted as copies,
no in-place reuse assumed; constants excluded, they are in `weight_bytes`).
`footprint_bytes` = weights + state, the NeuroBench "parameters + buffers" notion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cortexedge.macs import RULES, count_bytes, sparsity
from cortexedge.runtime.numpy_graph import NumpyGraph, Step
from cortexedge.runtime.numpy_layers import conv_geometry
from cortexedge.runtime.numpy_ops import onnx_dtype

# a rule adapter returns (rule name, (dense, effective), weight arrays) or None (no MACs)
Counted = tuple[str, tuple[int, int], list[np.ndarray]] | None


@dataclass(frozen=True)
class OpCount:
    """MACs of one node per bin."""

    node: str
    op_type: str
    rule: str
    dense: int
    effective: int


@dataclass
class GraphCounts:
    """Per-op and total MACs per bin, weight sparsity and memory footprint of a step graph."""

    ops: list[OpCount]
    dense: int
    effective: int
    sparsity: float
    weight_bytes: int
    state_bytes: int
    peak_activation_bytes: int

    @property
    def footprint_bytes(self) -> int:
        return self.weight_bytes + self.state_bytes

    def to_dict(self) -> dict:
        out = asdict(self)
        out["footprint_bytes"] = self.footprint_bytes
        return out


def _all_ones(rows: int, cols: int) -> np.ndarray:
    return np.broadcast_to(np.ones(1, dtype=bool), (rows, cols))


def _linear(w: np.ndarray | None, positions: int, rows: int, cols: int) -> Counted:
    """`w` [out, in] when constant, else a product of activations counted as all ones."""
    weight = _all_ones(rows, cols) if w is None else w
    return "linear", RULES["linear"](weight, positions=positions), [] if w is None else [w]


def _gemm(step: Step, env: dict, consts: dict) -> Counted:
    a_name, b_name = step.inputs[:2]
    a = env[a_name].T if step.attrs.get("transA", 0) else env[a_name]  # [M, K]
    b = env[b_name].T if step.attrs.get("transB", 0) else env[b_name]  # [K, N]
    if b_name in consts:
        return _linear(b.T, a.shape[0], *b.T.shape)
    if a_name in consts:
        return _linear(a, b.shape[1], *a.shape)
    return _linear(None, a.shape[0], b.shape[1], a.shape[1])


def _matmul(step: Step, env: dict, consts: dict) -> Counted:
    a_name, b_name = step.inputs
    a, b, out = env[a_name], env[b_name], env[step.outputs[0]]
    if b_name in consts and b.ndim == 2:
        return _linear(b.T, out.size // b.shape[1], *b.T.shape)
    if a_name in consts and a.ndim == 2:
        return _linear(a, out.size // a.shape[0], *a.shape)
    return _linear(None, out.size, 1, a.shape[-1])


def _conv(step: Step, env: dict, consts: dict) -> Counted:
    x, w = env[step.inputs[0]], env[step.inputs[1]]
    strides, pads, dil = conv_geometry(x.shape[2:], w.shape, step.attrs)
    dense, eff = RULES["conv"](w, x.shape[2:], strides, pads, dil)
    n = x.shape[0]
    return "conv", (dense * n, eff * n), [w]


def _recurrent(kind: str) -> Callable[[Step, dict, dict], Counted]:
    def adapter(step: Step, env: dict, consts: dict) -> Counted:
        x, w, r = (env[n] for n in step.inputs[:3])
        steps = x.shape[1] if step.attrs.get("layout", 0) else x.shape[0]
        peep = env[step.inputs[7]] if len(step.inputs) > 7 and step.inputs[7] else None
        dense = eff = 0
        for d in range(w.shape[0]):
            extra = {"peepholes": peep[d]} if peep is not None else {}
            dd, ee = RULES[kind](w[d], r[d], **extra)
            dense, eff = dense + dd, eff + ee
        return kind, (dense * steps, eff * steps), [w, r]

    return adapter


def _mul(step: Step, env: dict, consts: dict) -> Counted:
    if any(name in consts for name in step.inputs):
        return None  # scaling by a constant is not a MAC (NeuroBench counts weights x inputs)
    return "elementwise", RULES["elementwise"](env[step.outputs[0]].size), []


MAC_OPS: dict[str, Callable[[Step, dict, dict], Counted]] = {
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Conv": _conv,
    "GRU": _recurrent("gru"),
    "LSTM": _recurrent("lstm"),
    "Mul": _mul,
}


def _unit_feeds(model: Any, graph: NumpyGraph) -> dict[str, np.ndarray]:
    """Zero inputs with every symbolic (batch) dimension set to 1."""
    feeds = {}
    for v in model.graph.input:
        if v.name in graph.initializers:
            continue
        t = v.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
                 for d in t.shape.dim]  # fmt: skip
        feeds[v.name] = np.zeros(shape, dtype=onnx_dtype(t.elem_type))
    return feeds


def _peak_bytes(graph: NumpyGraph, env: dict[str, np.ndarray]) -> int:
    consts = graph.constants
    last: dict[str, int] = {}
    for i, step in enumerate(graph.plan):
        for name in step.inputs:
            if name and name not in consts:
                last[name] = i
    for name in graph.outputs:
        last[name] = len(graph.plan)
    live = sum(env[n].nbytes for n in graph.inputs if n in last)
    peak = live
    for i, step in enumerate(graph.plan):
        outs = [o for o in step.outputs if o]
        live += sum(env[o].nbytes for o in outs)
        peak = max(peak, live)
        done = {n for n in step.inputs if n and n not in consts and last[n] == i}
        done |= {o for o in outs if last.get(o, i) == i}
        live -= sum(env[n].nbytes for n in done)
    return peak


def count_graph(model: Any) -> GraphCounts:
    """Count MACs per op and in total, weight sparsity and footprint of an ONNX step graph.

    Works on any step graph following the naming convention (inputs `x`, `state_*`); the
    metadata contract is not needed, so the export stage can count before it writes it.
    """
    graph = NumpyGraph(model)
    with np.errstate(all="ignore"):
        env = graph.run(_unit_feeds(model, graph))
    ops, weights = [], {}
    for step in graph.plan:
        adapter = MAC_OPS.get(step.op_type)
        counted = adapter(step, env, graph.constants) if adapter else None
        if counted is None:
            continue
        rule, (dense, eff), ws = counted
        ops.append(OpCount(step.name, step.op_type, rule, int(dense), int(eff)))
        # a weight read by two ops (or as a transposed view) counts once: key = memory + size
        weights.update({(w.__array_interface__["data"][0], w.size): w for w in ws})
    states = [n for n in graph.inputs if n.startswith("state_")]
    return GraphCounts(
        ops=ops,
        dense=sum(o.dense for o in ops),
        effective=sum(o.effective for o in ops),
        sparsity=sparsity(weights.values()),
        weight_bytes=count_bytes(graph.constants[n] for n in graph.initializers),
        state_bytes=count_bytes(env[n] for n in states),
        peak_activation_bytes=_peak_bytes(graph, env),
    )
