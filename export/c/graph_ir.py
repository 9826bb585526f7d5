"""The C IR of a verified step graph: the float path's only source (export/c/graph_emit.py).

`read_graph(loaded)` runs the step graph once, with the runtime's reference interpreter
(runtime/onnx_numpy), on one stream of inputs at their initial values. That fixes every shape
(the batch is one stream) and folds everything computed from constants alone (weights,
`Shape`-derived shapes, gate reorderings) into constants, so what remains is the nodes that
read the bin or the state. Each of those must be an op the C emitter table holds
(`graph_ops.C_OPS`) and compute in float32; anything else is refused with its op type and
node name. What the C code can build is thus what the graph holds, not which class made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cortexedge.contract import StateSpec
from cortexedge.errors import ContractError, CortexEdgeError
from cortexedge.runtime.model import LoadedModel
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph, Step


@dataclass(frozen=True)
class Tensor:
    """A tensor of the step graph at batch 1: its name, shape and, for a constant, its value."""

    name: str
    shape: tuple[int, ...]
    value: np.ndarray | None = None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def const(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class CNode:
    """One node the C code computes: inputs (None where omitted) and outputs (None where unread)."""

    name: str
    op_type: str
    inputs: tuple[Tensor | None, ...]
    outputs: tuple[Tensor | None, ...]
    attrs: dict
    step: Step  # the runtime's op definition (reference kernel, MAC rule)

    def input(self, k: int) -> Tensor | None:
        """Input k, or None when omitted."""
        return self.inputs[k] if k < len(self.inputs) else None

    def output(self, k: int) -> Tensor | None:
        """Output k, or None when omitted or unread."""
        return self.outputs[k] if k < len(self.outputs) else None


@dataclass(frozen=True)
class StatePair:
    """A state tensor: its contract entry, the graph input it is read from, the output it is
    written to."""

    spec: StateSpec
    input: Tensor
    output: Tensor


@dataclass(frozen=True)
class CGraph:
    """The nodes left to compute, in order, between the bin `x`, the states and `y`."""

    x: Tensor
    y: Tensor
    states: tuple[StatePair, ...]
    nodes: tuple[CNode, ...]
    spike_counts: bool = False  # the bin holds whole counts (the contract's input kind)
    accepted: tuple[float | None, float | None] = (None, None)  # the values the step takes


def readers(g: CGraph) -> dict[str, list[CNode]]:
    """Tensor name -> the nodes that read it (constants left out)."""
    out: dict[str, list[CNode]] = {}
    for n in g.nodes:
        for t in n.inputs:
            if t is not None and not t.const:
                out.setdefault(t.name, []).append(n)
    return out


def producers(g: CGraph) -> dict[str, CNode]:
    """Tensor name -> the node that writes it."""
    return {t.name: n for n in g.nodes for t in n.outputs if t is not None}


def initial_feeds(loaded: LoadedModel) -> dict[str, np.ndarray]:
    """The step graph's feeds for one stream at its start: a zero bin, the initial states."""
    x = np.zeros((1, *loaded.meta.input.shape), dtype=np.float32)
    states = loaded.initial_states(1)
    return {"x": x, **{s.input_name: states[s.name] for s in loaded.meta.states}}


def read_graph(loaded: LoadedModel, emitters: dict) -> CGraph:
    """The C IR of `loaded`'s step graph; every node left must have an entry in `emitters`."""
    try:
        graph = ReferenceGraph(loaded.proto)
    except ContractError as e:
        text = str(e).replace("the numpy backend", "the C generator")
        raise CortexEdgeError(f"C export: {text}") from None
    feeds = initial_feeds(loaded)
    with np.errstate(all="ignore"):
        env = graph.run(feeds)
    const = set(graph.constants)
    read = {i for step in graph.plan for i in step.inputs} | set(graph.outputs)
    tensors: dict[str, Tensor] = {}

    def tensor(name: str) -> Tensor | None:
        if not name:
            return None
        if name not in tensors:
            value = np.asarray(env[name]) if name in const else None
            tensors[name] = Tensor(name, tuple(np.shape(env[name])), value)
        return tensors[name]

    nodes = []
    for step in graph.plan:
        if step.op_type == "Shape" or all(not i or i in const for i in step.inputs):
            const.update(o for o in step.outputs if o)
            continue
        nodes.append(_node(step, env, const, read, tensor, emitters))
    states = tuple(
        StatePair(s, tensor(s.input_name), tensor(s.output_name)) for s in loaded.meta.states
    )
    spec = loaded.meta.input
    counts = spec.kind == "spike_counts"
    lo, hi = spec.range
    if counts:  # as the runtime's bin checks: a count is never negative
        lo = 0.0 if lo is None else max(lo, 0.0)
    return CGraph(tensor("x"), tensor("y"), states, tuple(nodes), counts, (lo, hi))


def _node(step: Step, env: dict, const: set, read: set, tensor, emitters: dict) -> CNode:
    if step.op_type not in emitters:
        raise CortexEdgeError(
            f"C export: op '{step.op_type}' of node '{step.name}' has no C emitter "
            f"(the C generator emits {', '.join(sorted(emitters))})"
        )
    for name in (*step.inputs, *step.outputs):
        if name and name not in const and np.asarray(env[name]).dtype != np.float32:
            raise CortexEdgeError(
                f"C export: node '{step.name}' ({step.op_type}) computes '{name}' in "
                f"{np.asarray(env[name]).dtype} at run time; the float C path computes float32"
            )
    outputs = tuple(tensor(o) if o and o in read else None for o in step.outputs)
    return CNode(step.name, step.op_type, tuple(tensor(i) for i in step.inputs), outputs,
                 step.attrs, step)  # fmt: skip
