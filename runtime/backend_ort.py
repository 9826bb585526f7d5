"""The onnxruntime backend, tuned for tiny step graphs where call overhead is everything.

Measured traps (docs/field-notes): RunOptions on `run_with_iobinding` cost ~25 µs per call and
`run_with_ort_values` ~30 µs, so the hot path is one `run_with_iobinding(binding)` on
preallocated OrtValues. Two IOBindings are built at load, one per direction of the state swap:
binding k reads state set k and writes set 1−k, so a step binds nothing at all.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cortexedge.errors import ContractError
from cortexedge.runtime.model import LoadedModel
from cortexedge.runtime.state_buffers import StateBuffers


def session_options(threads: int):
    """Options for a tiny model: `threads` intra-op threads, sequential, all graph optimizations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # the BFC arena's bookkeeping costs ~1.5 µs per call on a GRU step graph (measured 15.8 vs
    # 14.3 µs, C=96 H=64, interleaved); plain malloc is faster for tensors this small
    so.enable_cpu_mem_arena = False
    # Keep QuantizeLinear/DequantizeLinear as written: fusing them into integer matmuls saturates
    # on CPUs without VNNI when 8-bit weights use the full range (errors up to 0.15 measured on
    # a W8 AEGRU encoder); int8 kernels bring no speed-up at this model size anyway.
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    return so


class OrtBackend:
    """onnxruntime with IOBinding, preallocated OrtValues and two swapped state buffers."""

    name: ClassVar[str] = "ort"

    def __init__(self, model: LoadedModel, batch: int, threads: int = 1) -> None:
        import onnxruntime as ort

        model.check_batch(batch)
        try:
            self._session = ort.InferenceSession(
                model.data, session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises its own exception types, one per failure kind
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ContractError(
                f"{model.path}: onnxruntime cannot load the graph ({first})"
            ) from None
        meta = model.meta
        self._x = np.zeros((batch, *meta.input.shape), dtype=meta.input.dtype)
        self._y = np.zeros((batch, len(meta.outputs)), dtype=model.y_dtype)
        self._states = StateBuffers(model.initial_states(batch))
        as_ort = ort.OrtValue.ortvalue_from_numpy
        x_value, y_value = as_ort(self._x), as_ort(self._y)
        state_values = [{k: as_ort(v) for k, v in s.items()} for s in self._states.sets]
        self._bindings = []
        for k in (0, 1):
            binding = self._session.io_binding()
            binding.bind_ortvalue_input("x", x_value)
            binding.bind_ortvalue_output("y", y_value)
            for s in meta.states:
                binding.bind_ortvalue_input(s.input_name, state_values[k][s.name])
                binding.bind_ortvalue_output(s.output_name, state_values[1 - k][s.name])
            self._bindings.append(binding)
        self._keep_alive = (x_value, y_value, state_values)

    def step(self, x: np.ndarray) -> np.ndarray:
        self._x[...] = x  # item assignment: a third of np.copyto's call overhead
        self._session.run_with_iobinding(self._bindings[self._states.live])
        self._states.swap()
        return self._y

    def read_state(self) -> dict[str, np.ndarray]:
        return self._states.read()

    def write_state(self, states: dict[str, np.ndarray]) -> None:
        self._states.write(states)
