"""The fast tier: a ReferenceGraph specialized for fixed input arrays, the numpy backend's hot
path.

A streaming backend runs the same graph on the same input buffers, with the same shapes, on
every step. `compile_static` uses that once, at load, walking the interpreter's plan on the
buffers' current values:
- `Shape` outputs, and everything computed from constants only, become constants;
- a node whose op only re-views its first input (`OpDef.view`: Reshape, Unsqueeze, Slice,
  scalar Gather, ... with constant indices) becomes that view, made once and free at run time;
- every other node gets output buffers allocated once and a call that refills them: the op's
  in-place kernel (`OpDef.fast`) when it takes the node, otherwise the reference kernel
  followed by a copy.
`run()` is then a loop over argument-less calls, and `outputs` are fixed arrays (buffers or
views) holding the results. Kernels write only into their own buffers, never into the inputs.
A graph where an output shape depends on a computed value rather than on input shapes (a
Reshape to a computed shape: a non-constant `OpDef.shape_inputs`) cannot be fixed this way:
`compile_static` returns None and the caller keeps the reference interpreter.

The in-place kernels follow the reference kernels operation by operation, except where a BLAS
product replaces a sum (LayerNormalization's statistics, a one-axis ReduceSum, the fused RNN
steps): there the two differ by float rounding only. tests/runtime/onnx_numpy/test_compiled.py
checks them against each other.
"""

from __future__ import annotations

from functools import partial

import numpy as np

from cortexedge.errors import ContractError
from cortexedge.runtime.onnx_numpy.opdef import Bound, Call
from cortexedge.runtime.onnx_numpy.reference import FAILURES, ReferenceGraph, Step, node_failure


class _NotStatic(Exception):
    """A node whose output shape depends on values computed at run time."""


def _refill(kernel, ins: list, attrs: dict, outs: list[np.ndarray]) -> None:
    """The generic call: the interpreter's kernel, its results copied into the buffers."""
    for buf, value in zip(outs, kernel(ins, attrs), strict=False):
        if np.shape(value) != buf.shape:  # `shape_inputs` missed a value-dependent shape
            raise ValueError(f"output shape {np.shape(value)} differs from {buf.shape} at load")
        buf[...] = value


class CompiledGraph:
    """`graph` bound to the arrays in `inputs` (written by the caller before each `run`)."""

    def __init__(self, graph: ReferenceGraph, inputs: dict[str, np.ndarray]) -> None:
        missing = [name for name in graph.inputs if name not in inputs]
        if missing:
            raise ContractError(f"compiled numpy graph: no array for input '{missing[0]}'")
        self._values = {**graph.constants, **{k: inputs[k] for k in graph.inputs}}
        self._const = set(graph.constants)
        self._read = {i for step in graph.plan for i in step.inputs} | set(graph.outputs)
        self.calls: list[tuple[Step, Call]] = []
        self.interpreted: list[Step] = []  # nodes no in-place kernel took: kernel + copy
        with np.errstate(all="ignore"):  # the trace runs on whatever the buffers hold
            for step in graph.plan:
                self._bind(step)
        self.outputs: dict[str, np.ndarray] = {o: self._values[o] for o in graph.outputs}
        del self._values, self._const, self._read

    def _bind(self, step: Step) -> None:
        """Trace `step` once on the bound arrays and record how each run recomputes it."""
        values, const = self._values, self._const
        ins = [values[i] if i else None for i in step.inputs]
        is_const = [not i or i in const for i in step.inputs]
        try:
            results = step.op.kernel(ins, step.attrs)
        except ContractError:
            raise
        except FAILURES as e:
            raise node_failure(step, e) from None
        named = [(k, v) for k, v in zip(step.outputs, results, strict=False) if k]
        if step.op_type == "Shape" or all(is_const):
            values.update(named)
            const.update(k for k, _ in named)
            return
        if any(not is_const[p] for p in step.op.shape_inputs if p < len(ins)):
            raise _NotStatic(step.name)
        if step.op.view and all(is_const[1:]):
            if all(np.shares_memory(r, ins[0]) for r in results):
                values.update(named)
                return
        outs = [np.array(r, order="C") for r in results]  # fresh buffers holding the trace
        builder = step.op.fast
        names = list(step.outputs[: len(outs)]) + [""] * (len(outs) - len(step.outputs))
        used = [bool(k) and k in self._read for k in names]
        call = builder(Bound(ins, is_const, outs, step.attrs, used)) if builder else None
        if call is None:
            self.interpreted.append(step)
            call = partial(_refill, step.op.kernel, ins, step.attrs, outs)
        self.calls.append((step, call))
        values.update((k, buf) for k, buf in zip(step.outputs, outs, strict=False) if k)

    def run(self) -> None:
        """Recompute every output from the current contents of the input arrays."""
        step = None
        try:
            for step, call in self.calls:  # noqa: B007 (`step` names a failing node)
                call()
        except ContractError:
            raise
        except FAILURES as e:
            raise node_failure(step, e) from None


def compile_static(graph: ReferenceGraph, inputs: dict[str, np.ndarray]) -> CompiledGraph | None:
    """`graph` compiled for the arrays in `inputs`, or None when a shape depends on values."""
    try:
        return CompiledGraph(graph, inputs)
    except _NotStatic:
        return None
