"""The reference interpreter: any ONNX graph of the ops in `registry.OPS`, run on numpy.

At load it decodes initializers and attributes once, orders the nodes topologically, looks
every op up in `OPS` and folds every node whose inputs are all constant (weights behind
DequantizeLinear, gate-reordering Slices, shape constants). `run` then executes only the
remaining nodes and returns every tensor it computed, so callers can read outputs or trace
intermediate shapes: the MAC walker (runtime/graph_macs.py) does, and the numpy backend runs
graphs whose shapes depend on values here. Other graphs it runs in the fast tier
(compiled.py), for which this interpreter stays the reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cortexedge.errors import ContractError
from cortexedge.runtime.onnx_numpy.opdef import Kernel, OpDef
from cortexedge.runtime.onnx_numpy.registry import OPS


@dataclass(frozen=True)
class Step:
    """One node to execute: its op definition, decoded attributes and tensor names."""

    name: str
    op_type: str
    op: OpDef
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict

    @property
    def foreign(self) -> bool:
        """True when the op is not one of `OPS` (its kernel came from the graph's `foreign`)."""
        return OPS.get(self.op_type) is not self.op


def _attribute(a: Any) -> Any:
    """An ONNX attribute as a Python value: tensors to numpy, strings to str."""
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(a)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode() for v in value]
    if hasattr(value, "data_type"):
        return numpy_helper.to_array(value)
    return value


def _topological(nodes: list, available: set[str]) -> list:
    """Nodes in an order where every input is produced before use (ONNX order when valid)."""
    done, order, pending = set(available) | {""}, [], list(nodes)
    while pending:
        waiting = []
        for n in pending:
            if all(i in done for i in n.input):
                done.update(n.output)
                order.append(n)
            else:
                waiting.append(n)
        if len(waiting) == len(pending):
            n = waiting[0]
            missing = next(i for i in n.input if i not in done)
            raise ContractError(f"graph node '{n.name}' ({n.op_type}) reads '{missing}', "
                                "which nothing produces")  # fmt: skip
        pending = waiting
    return order


class ReferenceGraph:
    """An ONNX graph prepared for repeated numpy execution (constants folded at load).

    `foreign`, when given, supplies the kernel of a node whose op is not in `OPS` (the MAC
    walker evaluates those with onnxruntime); without it such a node is refused, naming it.
    """

    def __init__(self, model: Any, foreign: Callable[[Any], Kernel] | None = None) -> None:
        from onnx import numpy_helper

        graph = model.graph
        self.constants: dict[str, np.ndarray] = {
            t.name: numpy_helper.to_array(t) for t in graph.initializer
        }
        self.initializers = frozenset(self.constants)
        self.inputs = [i.name for i in graph.input if i.name not in self.initializers]
        self.outputs = [o.name for o in graph.output]
        self.plan: list[Step] = []
        for node in _topological(list(graph.node), set(self.inputs) | self.initializers):
            step = _compile(node, foreign)
            if all(i == "" or i in self.constants for i in step.inputs):
                _execute([step], self.constants)
            else:
                self.plan.append(step)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Execute the graph; returns every tensor by name (constants, feeds, intermediates)."""
        env = dict(self.constants)
        env.update(feeds)
        _execute(self.plan, env)
        return env


def _compile(node: Any, foreign: Callable[[Any], Kernel] | None) -> Step:
    """The node's Step: its op from `OPS` (or from `foreign`) and its decoded attributes."""
    op = OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
    if op is None and foreign is not None:
        op = OpDef(node.op_type, foreign(node))
    if op is None:
        domain = f" (domain '{node.domain}')" if node.domain else ""
        raise ContractError(
            f"op '{node.op_type}'{domain} of node '{node.name}' is not supported by "
            "the numpy backend"
        )
    attrs = {a.name: _attribute(a) for a in node.attribute}
    attrs["_outputs"] = len(node.output)
    return Step(node.name, node.op_type, op, tuple(node.input), tuple(node.output), attrs)


# what a kernel raises on tensors it cannot take; ContractError (a ValueError) passes unchanged
FAILURES = (ValueError, IndexError, TypeError, KeyError)


def node_failure(step: Step, e: Exception) -> ContractError:
    """The one-line error for a node whose kernel raised `e`."""
    return ContractError(f"numpy backend: node '{step.name}' ({step.op_type}) failed: {e}")


def _execute(steps: list[Step], env: dict[str, np.ndarray]) -> None:
    """Run `steps` in order, reading and writing tensors in `env` (the interpreter's loop)."""
    step = None
    try:
        for step in steps:
            results = step.op.kernel([env[i] if i else None for i in step.inputs], step.attrs)
            # a kernel may return optional outputs the node does not name (Dropout's mask)
            for name, value in zip(step.outputs, results, strict=False):
                env[name] = value
    except ContractError:
        raise
    except FAILURES as e:
        raise node_failure(step, e) from None
