"""The streaming step graph: (x, state_<name>...) -> (y, state_<name>_out...), one bin per call.

`StepModule` flattens a decoder's `step(x_t, state) -> (y_t, new_state)` into positional
tensors so that the exporter can name every input and output by the contract
(`cortexedge.contract`). The batch dim is dynamic when the traced graph runs at other batch
sizes, else fixed at 1 (what the streaming runtime uses).
"""

from __future__ import annotations

import onnx
import torch
from torch import Tensor, nn

from cortexedge.contract import StateSpec
from cortexedge.errors import CortexEdgeError
from cortexedge.export.streamable import state_shape
from cortexedge.export.tracing import TraceSpec, trace_batched
from cortexedge.export.verify import Tolerance


class StepModule(nn.Module):
    """`(x, *states) -> (y, *new_states)` around a streaming decoder's `step`."""

    def __init__(self, model: nn.Module, n_states: int) -> None:
        super().__init__()
        self.model, self.n_states = model, n_states

    def forward(self, x: Tensor, *states: Tensor) -> tuple[Tensor, ...]:
        y, new = self.model.step(x, tuple(states))
        new = (new,) if isinstance(new, Tensor) else tuple(new)
        if len(new) != self.n_states:
            raise CortexEdgeError(
                f"{type(self.model).__name__}.step returned {len(new)} state tensors, "
                f"init_state gives {self.n_states}"
            )
        return (y, *new)


def step_spec(
    specs: tuple[StateSpec, ...],
    input_shape: tuple[int, ...],
    opset: int,
    batch: int,
    dynamic: bool,
) -> TraceSpec:
    """Example args (seeded, non-zero states) and contract names for a step graph at `batch`."""
    gen = torch.Generator().manual_seed(batch)
    x = torch.rand((batch, *input_shape), generator=gen) * 3
    states = tuple(torch.randn(state_shape(s, batch), generator=gen) for s in specs)
    inputs = ["x", *(s.input_name for s in specs)]
    outputs = ["y", *(s.output_name for s in specs)]
    axes: dict[str, dict[int, str]] = {}
    if dynamic:
        axes = {"x": {0: "batch"}, "y": {0: "batch"}}
        for s in specs:
            axes[s.input_name] = axes[s.output_name] = {s.batch_axis: "batch"}
    return TraceSpec((x, *states), inputs, outputs, axes, opset)


def export_step(
    model: nn.Module,
    specs: tuple[StateSpec, ...],
    input_shape: tuple[int, ...],
    opset: int,
    tol: Tolerance,
) -> tuple[onnx.ModelProto, bool]:
    """Trace `model.step` into a step graph; returns (graph, batch dim is dynamic)."""
    module = StepModule(model, len(specs)).eval()
    return trace_batched(
        module,
        lambda batch, dynamic: step_spec(specs, input_shape, opset, batch, dynamic),
        type(model).__name__,
        tol,
    )
