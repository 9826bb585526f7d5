"""The streaming contract as export sees it: which modules stream, and what their state looks like.

A decoder streams when it has `init_state(batch) -> tuple[Tensor, ...]` and
`step(x_t, state) -> (y_t, new_state)`; `state_names()` names the state tensors (default
`s0, s1, ...`). Export traces `step` once, so it needs, per state tensor, its shape, dtype,
initial value and which axis is the batch axis (found by comparing `init_state(1)` with
`init_state(2)`: GRU hiddens are [layers, B, H], buffers [B, L, C]).
"""

from __future__ import annotations

import copy
import re

import numpy as np
import torch
from torch import Tensor, nn

from cortexedge.contract import StateSpec
from cortexedge.errors import CortexEdgeError

CONTRACT_HINT = (
    "add `init_state(batch) -> tuple[Tensor, ...]` (the zero state) and "
    "`step(x_t, state) -> (y_t, new_state)` (one bin in, one output and the next state out), "
    "optionally `state_names() -> tuple[str, ...]`"
)


def require_streamable(model: nn.Module) -> None:
    """Raise unless `model` implements the streaming contract; the message says what to add."""
    missing = [m for m in ("init_state", "step") if not callable(getattr(model, m, None))]
    if missing:
        raise CortexEdgeError(
            f"{type(model).__name__} cannot be exported as a streaming decoder: it has no "
            f"{' / '.join(missing)}; {CONTRACT_HINT}"
        )


def inference_copy(model: nn.Module) -> nn.Module:
    """An eval-mode copy without training-only parts (`inference_module()` when the model has
    one, e.g. AEGRU's log-variance branch and Poisson decoder), never the caller's object."""
    strip = getattr(model, "inference_module", None)
    clone = strip() if callable(strip) else copy.deepcopy(model)
    return clone.eval()


def _as_state(model: nn.Module, batch: int) -> tuple[Tensor, ...]:
    state = model.init_state(batch)
    if isinstance(state, Tensor):
        state = (state,)
    if not isinstance(state, (tuple, list)) or not all(isinstance(t, Tensor) for t in state):
        raise CortexEdgeError(
            f"{type(model).__name__}.init_state({batch}) must return a tuple of tensors, "
            f"got {type(state).__name__}"
        )
    return tuple(state)


def _batch_axis(name: str, one: Tensor, two: Tensor) -> int:
    same_rank = one.dim() == two.dim()
    axes = [i for i, (a, b) in enumerate(zip(one.shape, two.shape, strict=same_rank)) if a != b]
    if not same_rank or len(axes) != 1 or (one.shape[axes[0]], two.shape[axes[0]]) != (1, 2):
        raise CortexEdgeError(
            f"state '{name}': init_state(1) gives shape {list(one.shape)} and init_state(2) "
            f"{list(two.shape)}; exactly one axis must be the batch size"
        )
    return axes[0]


def _fill(model: nn.Module, name: str, value: np.ndarray) -> float | str:
    """The contract's `init` of a state: "zeros" or the one value every element starts at."""
    flat = value.reshape(-1)
    if not (flat == flat[0]).all():
        raise CortexEdgeError(
            f"{type(model).__name__}: init_state() must fill state '{name}' with one constant "
            f"value (the runtime recreates it from that value)"
        )
    return "zeros" if flat[0] == 0 else float(flat[0])


def state_specs(model: nn.Module) -> tuple[StateSpec, ...]:
    """Name, per-stream shape, batch axis, dtype and initial fill of every state tensor."""
    require_streamable(model)
    with torch.no_grad():
        one, two = _as_state(model, 1), _as_state(model, 2)
    names_fn = getattr(model, "state_names", None)
    names = tuple(names_fn()) if callable(names_fn) else tuple(f"s{i}" for i in range(len(one)))
    if len(names) != len(one) or len(set(names)) != len(names):
        raise CortexEdgeError(
            f"{type(model).__name__}: state_names() gives {list(names)} for "
            f"{len(one)} state tensors (need one unique name each)"
        )
    specs = []
    for name, a, b in zip(names, one, two, strict=True):
        if not re.fullmatch(r"[A-Za-z0-9_]+", name):
            raise CortexEdgeError(f"state name '{name}' must be letters, digits and _")
        value = a.detach().cpu().numpy()
        specs.append(
            StateSpec(
                name=name,
                shape=tuple(int(s) for s in a.shape),
                dtype=str(value.dtype),
                init=_fill(model, name, value),
                batch_axis=_batch_axis(name, a, b),
            )
        )
    return tuple(specs)


def state_shape(spec: StateSpec, batch: int) -> tuple[int, ...]:
    """The shape of a state tensor for `batch` parallel streams."""
    shape = list(spec.shape)
    shape[spec.batch_axis] = batch
    return tuple(shape)


def initial_state(specs: tuple[StateSpec, ...], batch: int) -> tuple[np.ndarray, ...]:
    """The initial state of `batch` streams, as numpy arrays."""
    return tuple(np.full(state_shape(s, batch), s.fill, dtype=s.dtype) for s in specs)
