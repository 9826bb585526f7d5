"""What the decoders share about their inputs: the input transforms and the shape check.

The shape check runs at each model's boundary (`forward`, `stream`, `step`) and raises a
`CortexEdgeError` naming the expected and the received shape. Under `torch.jit.trace` (the legacy
ONNX exporter) it is skipped: a Python `if` on a traced size would only print TracerWarnings,
and the exported graph has fixed shapes anyway. The dynamo exporter sees static shapes and
drops the check from the graph by itself.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from cortexedge.errors import CortexEdgeError


def log_softplus(x: Tensor) -> Tensor:
    """log(softplus(x)): AEGRU's input transform; ≈ log(x) for counts ≥ 2, finite at 0."""
    return torch.log(F.softplus(x))


INPUT_TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda x: x,
    "log1p": torch.log1p,
    "log_softplus": log_softplus,
}


def input_transform(name: str) -> Callable[[Tensor], Tensor]:
    """The transform registered as `name`; CortexEdgeError listing the known ones otherwise."""
    if name not in INPUT_TRANSFORMS:
        known = ", ".join(INPUT_TRANSFORMS)
        raise CortexEdgeError(f"unknown input transform '{name}' (known: {known})")
    return INPUT_TRANSFORMS[name]


def check_input(x: Tensor, model: str, arg: str, axes: tuple[str, ...], tail: tuple) -> None:
    """Raise unless `x` has one dim per name in `axes` and its trailing dims equal `tail`.

    `axes` names every dim (e.g. ("batch", "steps", "channels")); `tail` holds the sizes the
    model fixes for the last len(tail) of them.
    """
    if torch.jit.is_tracing():
        return
    shape = tuple(x.shape)
    if len(shape) != len(axes) or shape[len(axes) - len(tail) :] != tuple(tail):
        fixed = ", ".join(
            f"{name}={size}" for name, size in zip(axes[len(axes) - len(tail) :], tail, strict=True)
        )
        raise CortexEdgeError(
            f"{model}: {arg} must have shape [{', '.join(axes)}] with {fixed}, got {list(shape)}"
        )


def check_sizes(model: str, **sizes: int) -> None:
    """Raise unless every named constructor size is an int >= 1 (e.g. hidden=64)."""
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise CortexEdgeError(f"{model}: {name} must be an integer >= 1, got {size!r}")


def check_dropout(model: str, p: float) -> None:
    """Raise unless the dropout probability lies in [0, 1)."""
    if not 0.0 <= p < 1.0:
        raise CortexEdgeError(f"{model}: dropout must lie in [0, 1), got {p!r}")
