"""Validation of incoming bins against the decoder's input spec, cheap enough for every step.

One check for every entry point (StreamingDecoder.step/run, MultiStreamDecoder.step): shape,
a numeric dtype that casts to the graph's input dtype, no NaN/inf, spike counts non-negative,
values inside the declared range. The error names the offending bin (or stream); nothing is
modified, so a decoder that raises keeps its state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from cortexedge.contract import InputSpec
from cortexedge.errors import CortexEdgeError


class BinChecker:
    """Checks blocks of bins shaped [rows, *input shape] and casts them to the input dtype."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        lo, hi = spec.range
        if spec.kind == "spike_counts":
            lo = 0.0 if lo is None else max(lo, 0.0)
        self.lo, self.hi = lo, hi
        self._integer_target = self.dtype.kind in "biu"

    def __call__(
        self, x: Any, rows: int | None, name: str, row_name: Callable[[int], str]
    ) -> np.ndarray:
        """Validate one bin [*shape] (`rows` None) or a block [rows, *shape].

        Returns [rows or 1, *shape] in the input dtype. `name` labels the whole block in a
        message, `row_name(i)` its row i.
        """
        arr = x if type(x) is np.ndarray else np.asarray(x)
        if arr.dtype.kind not in "biuf" or (self._integer_target and arr.dtype.kind == "f"):
            raise CortexEdgeError(f"{name}: dtype {arr.dtype} cannot feed a {self.dtype} input")
        want = self.spec.shape if rows is None else (rows, *self.spec.shape)
        if arr.shape != want:
            raise CortexEdgeError(f"{name}: expected shape {want}, got {arr.shape}")
        if arr.size == 0:
            return arr.astype(self.dtype)
        flat = arr.reshape(1 if rows is None else rows, -1)
        # fast path: one reduction each; NaN/inf make the sum non-finite (ufuncs called directly
        # skip the ndarray-method wrappers, this runs on every step)
        if arr.dtype.kind == "f" and not math.isfinite(np.add.reduce(flat, axis=None)):
            bad = (~np.isfinite(flat)).any(axis=1)
            if bad.any():
                raise CortexEdgeError(f"{row_name(int(np.argmax(bad)))}: contains NaN or inf")
        if self.lo is not None and np.minimum.reduce(flat, axis=None) < self.lo:
            r = int(np.argmax((flat < self.lo).any(axis=1)))
            what = "spike counts must be non-negative" if self.spec.kind == "spike_counts" else (
                f"values must be >= {self.lo:g}")  # fmt: skip
            raise CortexEdgeError(f"{row_name(r)}: {what} (min {flat[r].min():g})")
        if self.hi is not None and np.maximum.reduce(flat, axis=None) > self.hi:
            r = int(np.argmax((flat > self.hi).any(axis=1)))
            raise CortexEdgeError(
                f"{row_name(r)}: values must be <= {self.hi:g} (max {flat[r].max():g})"
            )
        return flat.reshape(len(flat), *self.spec.shape).astype(self.dtype, copy=False)


def check_states(states: Any, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate a state dict against `like` (same names, shapes, finite numbers); cast copies."""
    if not isinstance(states, dict):
        raise CortexEdgeError(f"state: expected a dict of arrays, got {type(states).__name__}")
    if sorted(states) != sorted(like):
        raise CortexEdgeError(f"state: expected names {sorted(like)}, got {sorted(states)}")
    out = {}
    for name, ref in like.items():
        value = np.asarray(states[name])
        if value.dtype.kind not in "biuf":
            raise CortexEdgeError(f"state '{name}': dtype {value.dtype} is not numeric")
        if value.shape != ref.shape:
            raise CortexEdgeError(f"state '{name}': expected shape {ref.shape}, got {value.shape}")
        if not np.isfinite(value).all():
            raise CortexEdgeError(f"state '{name}': contains NaN or inf")
        out[name] = value.astype(ref.dtype)
    return out
