"""The backend interface of the streaming runtime and the registry of available backends.

A backend runs one step graph for a fixed number of streams (`batch`) and owns the recurrent
state between calls. StreamingDecoder and MultiStreamDecoder only talk to this interface, so a
new backend slots in by adding one entry to `BACKENDS`. A backend that can run only some files
(the C backend needs a C build next to the .onnx) says so with a static `available(model)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.backends.c import CBackend
from cortexedge.runtime.backends.numpy import NumpyBackend
from cortexedge.runtime.backends.ort import OrtBackend
from cortexedge.runtime.model import LoadedModel


class Backend(Protocol):
    """What StreamingDecoder needs from an execution engine.

    - `__init__(model, batch, threads)`: load the validated model for `batch` streams and
      preallocate every buffer; the state starts at the metadata's initial value.
    - `step(x)`: x is a validated [batch, *input shape] array in the input dtype; returns y
      [batch, D], a buffer the backend reuses on the next step (copy it to keep it).
      The new state replaces the old one only when the step succeeds.
    - `read_state()` / `write_state(states)`: copies of the state tensors by name (batch on
      each state's batch axis); `write_state` of the initial states is a reset.
    - `bind_input(buffer)`: a [batch, *input shape] array of the input dtype that the caller
      will pass to `step` again and again; a backend may prepare to read it in place.
    - `checks_values`: True when `step` itself refuses NaN, inf and out-of-range values
      (raising CortexEdgeError before any state changes), so callers may skip their screen.
    - `step_bin`: None, or (batch 1) a one-call path for a caller's raw bin:
      `step_bin(bin, into)` copies a bin that is already a native C-contiguous array of the
      input dtype and shape into `into` (a bound buffer), checks its values and decodes it,
      returning a new [D] output; it returns None, having changed nothing, for any other bin
      or a refused value, and the caller then takes the general path.
    - `check_block(x, label)` (optional): refuse, before any row of a validated block
      [rows, ...] is decoded, a value `step` would refuse mid-block (CortexEdgeError naming
      the row by `label(r)`), so that `StreamingDecoder.run` changes nothing on a bad bin.
    """

    name: ClassVar[str]
    checks_values: ClassVar[bool]
    step_bin: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None

    def __init__(self, model: LoadedModel, batch: int, threads: int = 1) -> None: ...

    def bind_input(self, buffer: np.ndarray) -> None: ...

    def step(self, x: np.ndarray) -> np.ndarray: ...

    def read_state(self) -> dict[str, np.ndarray]: ...

    def write_state(self, states: dict[str, np.ndarray]) -> None: ...


BACKENDS: dict[str, type[Backend]] = {"ort": OrtBackend, "numpy": NumpyBackend, "c": CBackend}


def available_for(model: LoadedModel) -> tuple[str, ...]:
    """Names of the backends that can run `model` (what "all backends" means for a file)."""
    return tuple(
        name for name, cls in BACKENDS.items() if getattr(cls, "available", lambda m: True)(model)
    )


def backend_class(name: str) -> type[Backend]:
    """The backend registered under `name`, or a one-line error listing the available ones."""
    if name not in BACKENDS:
        raise CortexEdgeError(f"backend '{name}' is not available (choose from {sorted(BACKENDS)})")
    return BACKENDS[name]
