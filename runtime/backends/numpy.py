"""The numpy backend: the exported graph run by cortexedge's own ONNX interpreter.

An independent reference for onnxruntime (ops written from the ONNX spec, runtime/onnx_numpy/)
and a fallback where onnxruntime is unavailable. Like the onnxruntime backend it keeps two
state sets and swaps them each step; the graph is compiled once per set (the fast tier,
onnx_numpy/compiled.py), bound to the input buffer and to that set, so a step is one copy in,
the compiled calls and the copies out. A graph that cannot be compiled for fixed shapes runs
in the reference interpreter (onnx_numpy/reference.py).
`threads` is accepted for interface compatibility; numpy's BLAS decides its own threading.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cortexedge.runtime.model import LoadedModel
from cortexedge.runtime.onnx_numpy.compiled import CompiledGraph, compile_static
from cortexedge.runtime.onnx_numpy.reference import ReferenceGraph
from cortexedge.runtime.state_buffers import StateBuffers

# per state set k: the graph compiled on set k, its y output and (set 1−k buffer, output) pairs
Plan = tuple[CompiledGraph, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]


class NumpyBackend:
    """Runs the step graph compiled for fixed buffers (or interpreted); outputs are copied."""

    name: ClassVar[str] = "numpy"
    checks_values: ClassVar[bool] = False
    step_bin: ClassVar[None] = None  # no one-call path: callers check, then `step`

    def __init__(self, model: LoadedModel, batch: int, threads: int = 1) -> None:
        model.check_batch(batch)
        meta = model.meta
        self._graph = ReferenceGraph(model.proto)
        self._x = np.zeros((batch, *meta.input.shape), dtype=meta.input.dtype)
        self._y = np.zeros((batch, len(meta.outputs)), dtype=model.y_dtype)
        self._states = StateBuffers(model.initial_states(batch))
        self._names = [(s.name, s.input_name, s.output_name) for s in meta.states]
        plans = [self._plan(k) for k in (0, 1)]
        self._plans: list[Plan] | None = None if None in plans else plans

    def _plan(self, k: int) -> Plan | None:
        sets = self._states.sets
        inputs = {"x": self._x, **{i: sets[k][name] for name, i, _ in self._names}}
        graph = compile_static(self._graph, inputs)
        if graph is None:
            return None
        out = graph.outputs
        return graph, out["y"], [(sets[1 - k][name], out[o]) for name, _, o in self._names]

    def bind_input(self, buffer: np.ndarray) -> None:
        """Nothing to prepare: a step copies x into the buffer the compiled graph reads."""

    @property
    def compiled_graph(self) -> CompiledGraph | None:
        """The compiled graph the next step runs, or None when steps run the interpreter."""
        return None if self._plans is None else self._plans[self._states.live][0]

    def step(self, x: np.ndarray) -> np.ndarray:
        if self._plans is None:
            return self._interpret(x)
        self._x[...] = x  # item assignment: a third of np.copyto's call overhead
        graph, y, copies = self._plans[self._states.live]
        graph.run()
        self._y[...] = y
        for spare, out in copies:
            spare[...] = out
        self._states.swap()
        return self._y

    def _interpret(self, x: np.ndarray) -> np.ndarray:
        current, spare = self._states.current, self._states.spare
        feeds = {"x": x}
        for name, input_name, _ in self._names:
            feeds[input_name] = current[name]
        env = self._graph.run(feeds)
        self._y[...] = env["y"]
        for name, _, output_name in self._names:
            spare[name][...] = env[output_name]
        self._states.swap()
        return self._y

    def read_state(self) -> dict[str, np.ndarray]:
        return self._states.read()

    def write_state(self, states: dict[str, np.ndarray]) -> None:
        self._states.write(states)
