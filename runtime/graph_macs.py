"""MACs, sparsity and memory footprint of an exported step graph, per bin and for one stream.

The graph is run once by the reference interpreter (runtime/onnx_numpy/reference.py) on
batch-1 zero inputs; that folds every constant (so a weight behind DequantizeLinear or a
gate-reordering Slice is seen as the array it really is) and gives every tensor's shape. Each
node is then counted by its op's MAC rule (`OpDef.macs`, beside the op's kernels in
runtime/onnx_numpy/ops_*.py), which maps it to a rule of `cortexedge.macs` (the one definition
shared with the torch-side walker): Gemm / MatMul / Conv in ops_linear.py, GRU / LSTM (× the
sequence length) in recurrent.py, a Mul of two activations (gate work written out) in
ops_elementwise.py. Ops without a rule do no MACs.

An op the numpy engine does not implement (a MaxPool, say) does not stop the count: the walker
runs that node alone in onnxruntime to go on, and lists it in `uncounted` (op type and node
name), so whoever reads the count sees what it leaves out. The export writes that list into the
metadata and the profiler reports it.

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

from cortexedge.errors import ContractError
from cortexedge.macs import count_bytes, sparsity
from cortexedge.runtime.onnx_numpy.opdef import Bound, Kernel
from cortexedge.runtime.onnx_numpy.ops_elementwise import onnx_dtype
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph, Step


@dataclass(frozen=True)
class OpCount:
    """MACs of one node per bin."""

    node: str
    op_type: str
    rule: str
    dense: int
    effective: int


@dataclass(frozen=True)
class UncountedOp:
    """A node the count leaves out: its op is not one the numpy engine implements."""

    node: str
    op_type: str


@dataclass
class GraphCounts:
    """Per-op and total MACs per bin, weight sparsity and memory footprint of a step graph,
    and the nodes left out of the MAC count (`uncounted`)."""

    ops: list[OpCount]
    uncounted: list[UncountedOp]
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


def _alone(model: Any, node: Any, feeds: dict[str, np.ndarray]) -> Any:
    """A model of `node` alone, its inputs typed after `feeds`, with `model`'s opsets."""
    from onnx import helper

    inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in feeds.items()
    ]
    outputs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
    graph = helper.make_graph([node], "alone", inputs, outputs)
    return helper.make_model(
        graph, opset_imports=model.opset_import, ir_version=model.ir_version,
        functions=model.functions,
    )  # fmt: skip


def _onnxruntime_kernel(model: Any) -> Callable[[Any], Kernel]:
    """For a node whose op the numpy engine lacks: a kernel running that node alone in
    onnxruntime, on the walker's values (the walker needs its outputs to go on)."""

    def kernel_of(node: Any) -> Kernel:
        def kernel(ins: list, attrs: dict) -> tuple:
            import onnxruntime as ort

            from cortexedge.runtime.backends.ort import session_options

            feeds = {n: np.asarray(v) for n, v in zip(node.input, ins, strict=True) if n}
            try:
                sess = ort.InferenceSession(
                    _alone(model, node, feeds).SerializeToString(), session_options(1),
                    providers=["CPUExecutionProvider"],
                )  # fmt: skip
                values = iter(sess.run(None, feeds))
            except Exception as e:  # onnxruntime raises its own exception types
                raise ContractError(
                    f"MAC count: onnxruntime cannot run node '{node.name}' ({node.op_type}) "
                    f"alone: {e}"
                ) from None
            return tuple(next(values) if n else None for n in node.output)

        return kernel

    return kernel_of


def _bound(step: Step, env: dict[str, np.ndarray], consts: dict) -> Bound:
    """`step` bound to the values of the walker's run."""
    ins = [env[i] if i else None for i in step.inputs]
    outs = [env[o] if o else None for o in step.outputs]
    used = [bool(o) for o in step.outputs]
    return Bound(ins, [not i or i in consts for i in step.inputs], outs, step.attrs, used)


def _unit_feeds(model: Any, graph: ReferenceGraph) -> dict[str, np.ndarray]:
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


def _peak_bytes(graph: ReferenceGraph, env: dict[str, np.ndarray]) -> int:
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
    Nodes whose op the numpy engine lacks are listed in `uncounted`, not refused.
    """
    graph = ReferenceGraph(model, foreign=_onnxruntime_kernel(model))
    with np.errstate(all="ignore"):
        env = graph.run(_unit_feeds(model, graph))
    ops, uncounted, weights = [], [], {}
    for step in graph.plan:
        if step.foreign:
            uncounted.append(UncountedOp(step.name, step.op_type))
            continue
        rule = step.op.macs
        counted = rule(_bound(step, env, graph.constants)) if rule else None
        if counted is None:
            continue
        name, (dense, eff), ws = counted
        ops.append(OpCount(step.name, step.op_type, name, int(dense), int(eff)))
        # a weight read by two ops (or as a transposed view) counts once: key = memory + size
        weights.update({(w.__array_interface__["data"][0], w.size): w for w in ws})
    states = [n for n in graph.inputs if n.startswith("state_")]
    return GraphCounts(
        ops=ops,
        uncounted=uncounted,
        dense=sum(o.dense for o in ops),
        effective=sum(o.effective for o in ops),
        sparsity=sparsity(weights.values()),
        weight_bytes=count_bytes(graph.constants[n] for n in graph.initializers),
        state_bytes=count_bytes(env[n] for n in states),
        peak_activation_bytes=_peak_bytes(graph, env),
    )
