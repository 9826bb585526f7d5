"""The numpy backend: the exported graph run by cortexedge's own ONNX interpreter.

An independent reference for onnxruntime (kernels written from the ONNX spec, numpy_ops.py)
and a fallback where onnxruntime is unavailable. `threads` is accepted for interface
compatibility; numpy's BLAS decides its own threading.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cortexedge.runtime.model import LoadedModel
from cortexedge.runtime.numpy_graph import NumpyGraph
from cortexedge.runtime.state_buffers import StateBuffers


class NumpyBackend:
    """Runs the step graph with NumpyGraph; outputs are copied into preallocated buffers."""

    name: ClassVar[str] = "numpy"

    def __init__(self, model: LoadedModel, batch: int, threads: int = 1) -> None:
        model.check_batch(batch)
        self._graph = NumpyGraph(model.proto)
        self._y = np.zeros((batch, len(model.meta.outputs)), dtype=model.y_dtype)
        self._states = StateBuffers(model.initial_states(batch))
        self._names = [(s.name, s.input_name, s.output_name) for s in model.meta.states]

    def step(self, x: np.ndarray) -> np.ndarray:
        current, spare = self._states.current, self._states.spare
        feeds = {"x": x}
        for name, input_name, _ in self._names:
            feeds[input_name] = current[name]
        env = self._graph.run(feeds)
        self._y[...] = env["y"]  # item assignment: a third of np.copyto's call overhead
        for name, _, output_name in self._names:
            spare[name][...] = env[output_name]
        self._states.swap()
        return self._y

    def read_state(self) -> dict[str, np.ndarray]:
        return self._states.read()

    def write_state(self, states: dict[str, np.ndarray]) -> None:
        self._states.write(states)
