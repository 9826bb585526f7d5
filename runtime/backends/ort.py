"""The onnxruntime backend, tuned for tiny step graphs where call overhead is everything.

The hot path is one run of an IOBinding on preallocated OrtValues. Two IOBindings are built per
input buffer, one per direction of the state swap: binding k reads state set k and writes set
1−k, so a step binds nothing at all. Buffers the caller registers with `bind_input` (the
StreamingDecoder's two bin buffers) are read in place; any other input is first copied into the
backend's own bound buffer.

Measured (the study kept in docs/onnxruntime-tuning.md: one thread, every variant interleaved
in one run on the noisy shared 2-core machine, p50 ratios against the settings before it):
- the run goes straight to the pybind session, `sess._sess.run_with_iobinding(binding,
  run_options)` (private names: onnxruntime is pinned at 1.31.1), with one empty RunOptions
  made at load. Passing a RunOptions instead of None saves ~2.5 µs per call; the public
  wrapper adds ~1.5 µs of WebGPU-capture checks, and ~45 µs when given a RunOptions (its
  `gpu_graph_id` lookup misses through a C++ exception: the field notes' RunOptions trap);
- the graph's symbolic batch dims are fixed at load to the backend's batch
  (`add_free_dimension_override_by_name`), so onnxruntime folds the exported Shape arithmetic
  and plans memory statically (AEGRU stateful: 28 -> 22 nodes); outputs are unchanged.
Together, bare `step` p50: GRU C=96 H=64 14.7 -> 11.1 µs (0.75x), AEGRU stateful 32.1 -> 22.4
(0.70x), AEGRU window 71.4 -> 63.2 (0.89x). Binding the decoder's buffers saves ~0.4 µs more.
Graph optimisation levels, memory pattern/reuse, execution order, spinning, denormals-as-zero,
env allocators and pre-packing measured within noise or slower; `run_with_ort_values` is ~30 µs
slower than IOBinding (field notes).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from cortexedge.errors import ContractError, CortexEdgeError
from cortexedge.runtime.model import LoadedModel
from cortexedge.runtime.state_buffers import StateBuffers


def session_options(threads: int, fixed_dims: dict[str, int] | None = None):
    """Options for a tiny model: `threads` intra-op threads, sequential, all graph optimizations;
    `fixed_dims` fixes symbolic dims (by name) at load, letting ORT fold their shape arithmetic."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    # the BFC arena's bookkeeping costs ~1 µs per call on these step graphs (arena on: 1.04x to
    # 1.07x p50, interleaved); plain malloc is faster for tensors this small
    so.enable_cpu_mem_arena = False
    # Keep QuantizeLinear/DequantizeLinear as written: fusing them into integer matmuls saturates
    # on CPUs without VNNI when 8-bit weights use the full range (errors up to 0.15 measured on
    # a W8 AEGRU encoder); int8 kernels bring no speed-up at this model size anyway.
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    for name, size in (fixed_dims or {}).items():
        so.add_free_dimension_override_by_name(name, size)
    return so


def batch_dim_names(model: LoadedModel) -> set[str]:
    """Names of the symbolic dims on the batch axes of `x` and of the state inputs."""
    axes = {"x": 0, **{s.input_name: s.batch_axis for s in model.meta.states}}
    inputs = (i for i in model.proto.graph.input if i.name in axes)
    return {i.type.tensor_type.shape.dim[axes[i.name]].dim_param for i in inputs} - {""}


class OrtBackend:
    """onnxruntime with IOBinding, preallocated OrtValues and two swapped state buffers."""

    name: ClassVar[str] = "ort"
    checks_values: ClassVar[bool] = False  # onnxruntime decodes NaN/inf: callers screen them
    step_bin: ClassVar[None] = None  # no one-call path: callers check, then `step`

    def __init__(self, model: LoadedModel, batch: int, threads: int = 1) -> None:
        import onnxruntime as ort

        model.check_batch(batch)
        options = session_options(threads, dict.fromkeys(batch_dim_names(model), batch))
        try:
            self._session = ort.InferenceSession(
                model.data, options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # ORT raises its own exception types, one per failure kind
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ContractError(
                f"{model.path}: onnxruntime cannot load the graph ({first})"
            ) from None
        meta = model.meta
        self._specs = meta.states
        self._x = np.zeros((batch, *meta.input.shape), dtype=meta.input.dtype)
        self._y = np.zeros((batch, len(meta.outputs)), dtype=model.y_dtype)
        self._states = StateBuffers(model.initial_states(batch))
        self._as_ort = ort.OrtValue.ortvalue_from_numpy
        self._y_value = self._as_ort(self._y)
        self._state_values = [{k: self._as_ort(v) for k, v in s.items()} for s in self._states.sets]
        # the pybind call (see the module docstring) and, per bound input buffer, its arguments
        self._run = self._session._sess.run_with_iobinding
        self._run_options = ort.RunOptions()
        self._calls: dict[int, tuple] = {}
        self.bind_input(self._x)
        self._own = self._calls[id(self._x)]

    def bind_input(self, buffer: np.ndarray) -> None:
        """Let `step` read `buffer` ([batch, *input shape], input dtype, C-contiguous) in place:
        its two IOBindings, one per direction of the state swap, are built here, once."""
        if not (buffer.dtype == self._x.dtype and buffer.shape == self._x.shape
                and buffer.flags.c_contiguous):  # fmt: skip
            raise CortexEdgeError(f"ort backend: cannot bind a {buffer.dtype} {buffer.shape} input")
        x_value = self._as_ort(buffer)  # shares the buffer's memory
        bindings = []
        for k in (0, 1):
            binding = self._session.io_binding()
            binding.bind_ortvalue_input("x", x_value)
            binding.bind_ortvalue_output("y", self._y_value)
            for s in self._specs:
                binding.bind_ortvalue_input(s.input_name, self._state_values[k][s.name])
                binding.bind_ortvalue_output(s.output_name, self._state_values[1 - k][s.name])
            bindings.append(binding)
        calls = [(b._iobinding, self._run_options) for b in bindings]
        # the entry keeps the buffer alive, so its id cannot be reused by another array
        self._calls[id(buffer)] = (calls, buffer, x_value, bindings)

    def step(self, x: np.ndarray) -> np.ndarray:
        bound = self._calls.get(id(x))
        if bound is None:
            self._x[...] = x  # item assignment: a third of np.copyto's call overhead
            bound = self._own
        self._run(*bound[0][self._states.live])
        self._states.swap()
        return self._y

    def read_state(self) -> dict[str, np.ndarray]:
        return self._states.read()

    def write_state(self, states: dict[str, np.ndarray]) -> None:
        self._states.write(states)
