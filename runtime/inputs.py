"""Validation of incoming bins against the decoder's input spec, cheap enough for every step.

One check for every entry point (StreamingDecoder.step/run, MultiStreamDecoder.step): shape,
a numeric dtype that casts to the graph's input dtype, no NaN/inf, spike counts non-negative,
values inside the declared range. The error names the offending bin (or stream); the caller's
array is never modified, so a decoder that raises keeps its state.

Speed (benchmarks/latency.py): a numpy ufunc call next to an onnxruntime step costs several
µs more than on its own, as much as the step itself, so the common cases avoid ufuncs. A float
bin is cast into a preallocated buffer and screened with one bytes operation on the top byte of
every number: in IEEE-754 that byte holds the sign and the highest exponent bits, so for
spike counts (range [0, ∞)) a top byte below the first one an inf or NaN can have proves every
value finite and non-negative; for an unbounded range the top byte (sign masked off) does the
same for finiteness. Only a bin that fails the screen (a bad value, or a rare -0.0 or huge
value) goes through the exact check, which then raises or accepts it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from cortexedge.contract import InputSpec
from cortexedge.errors import CortexEdgeError

# float dtype -> the smallest top byte (sign bit clear) an inf or NaN can have
_FIRST_NONFINITE_TOP_BYTE = {np.dtype(np.float16): 0x7C, np.dtype(np.float32): 0x7F,
                             np.dtype(np.float64): 0x7F}  # fmt: skip

Label = Callable[[int | None], str]  # row index -> "bin 12" / "stream 3 (bin 7)"; None: the block


def _screen_bytes(dtype: np.dtype, lo: float | None, hi: float | None) -> bytes | None:
    """Top-byte values that prove a number valid for the range, or None when no screen applies
    (integer dtype, big-endian host, a bound other than lo=0 / unbounded)."""
    first = _FIRST_NONFINITE_TOP_BYTE.get(dtype)
    if first is None or sys.byteorder != "little" or hi is not None:
        return None
    if lo == 0.0:  # sign clear and below the inf/NaN exponents
        return bytes(range(first))
    if lo is None:  # either sign, below the inf/NaN exponents
        return bytes(b for b in range(256) if b & 0x7F < first)
    return None


class BinChecker:
    """Checks blocks of bins shaped [rows, *input shape] and casts them to the input dtype."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.dtype = np.dtype(spec.dtype)
        self._shape = tuple(spec.shape)
        lo, hi = spec.range
        if spec.kind == "spike_counts":
            lo = 0.0 if lo is None else max(lo, 0.0)
        self.lo, self.hi = lo, hi
        self._integer_target = self.dtype.kind in "biu"
        self._screen = _screen_bytes(self.dtype, lo, hi)
        self._tops: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # id -> (buffer, top bytes)

    def buffer(self, rows: int = 1) -> np.ndarray:
        """A zeroed C-contiguous [rows, *shape] buffer for `into`, its top-byte view made once
        (the buffer lives as long as the checker)."""
        out = np.zeros((rows, *self._shape), dtype=self.dtype)
        self._tops[id(out)] = (out, self._top_bytes(out))
        return out

    def _top_bytes(self, out: np.ndarray) -> np.ndarray:
        """The top byte of every number of `out` (a strided uint8 view; little-endian)."""
        size = self.dtype.itemsize
        return out.reshape(-1).view(np.uint8)[size - 1 :: size]

    def into(
        self, x: Any, out: np.ndarray, rows: int | None, label: Label, values: bool = True
    ) -> None:
        """Validate one bin [*shape] (`rows` None) or a block [rows, *shape] and write it, in
        the input dtype, into `out` ([rows or 1, *shape], C-contiguous; fastest when made by
        `buffer`). On error `out` may hold garbage; `x` is untouched. `label(r)` names row r
        in a message, `label(None)` the whole block. `values=False` leaves the values of a
        float input to a consumer that checks them itself (then `check_values` on refusal)."""
        arr = x if type(x) is np.ndarray else _as_array(x, label)
        overflow = arr.dtype is not self.dtype and self._cast_may_overflow(arr.dtype, label)
        want = self._shape if rows is None else (rows, *self._shape)
        if arr.shape != want:
            raise CortexEdgeError(f"{label(None)}: expected shape {want}, got {arr.shape}")
        if self._screen is None:
            self._exact_into(arr, out, label)
            return
        if overflow:  # float64 -> float32: an overflow to inf is refused below, not a warning
            with np.errstate(over="ignore"):
                out[...] = arr
        else:
            out[...] = arr  # item assignment: a third of np.copyto's call overhead
        if not values:
            return
        known = self._tops.get(id(out))
        top = known[1] if known is not None and known[0] is out else self._top_bytes(out)
        if top.tobytes().translate(None, self._screen):  # a top byte outside the screen
            self._exact(out.reshape(len(out), -1), label)

    def _cast_may_overflow(self, dtype: np.dtype, label: Label) -> bool:
        """Refuse a dtype that cannot feed the input; True when casting it may overflow."""
        if dtype.kind not in "biuf" or (self._integer_target and dtype.kind == "f"):
            raise CortexEdgeError(f"{label(None)}: dtype {dtype} cannot feed a {self.dtype} input")
        return dtype.kind == "f" and dtype.itemsize > self.dtype.itemsize

    def _exact_into(self, arr: np.ndarray, out: np.ndarray, label: Label) -> None:
        """No screen: the exact check, on the caller's values for an integer input (the cast
        could wrap them), on the cast values for a float one (overflow to inf is caught)."""
        if self._integer_target:
            self._exact(arr.reshape(len(out), -1), label)
            out[...] = arr
            return
        with np.errstate(over="ignore"):
            out[...] = arr
        self._exact(out.reshape(len(out), -1), label)

    def __call__(self, x: Any, rows: int | None, label: Label) -> np.ndarray:
        """`into` a new array: the validated bins [rows or 1, *shape] in the input dtype."""
        out = np.empty((1 if rows is None else rows, *self._shape), dtype=self.dtype)
        self.into(x, out, rows, label)
        return out

    def as_block(self, x: Any, label: Label) -> np.ndarray:
        """`x` as an array of rows; a list of rows that cannot be one names its first row of
        the wrong shape (`label(r)`), a ragged row included."""
        try:
            return np.asarray(x)
        except (ValueError, TypeError) as e:
            for r, row in enumerate(x if isinstance(x, list | tuple) else ()):
                try:
                    shape = np.shape(row)
                except (ValueError, TypeError):
                    shape = "a ragged list"
                if shape != self._shape:
                    raise CortexEdgeError(
                        f"{label(r)}: expected shape {self._shape}, got {shape}"
                    ) from None
            raise CortexEdgeError(f"{label(None)}: not an array of numbers ({e})") from None

    def check_values(self, out: np.ndarray, label: Label) -> None:
        """The exact value check of a block `out` [rows, *shape] already in the input dtype."""
        self._exact(out.reshape(len(out), -1), label)

    def _exact(self, flat: np.ndarray, label: Label) -> None:
        """The exact check of rows `flat` [rows, n]: raises naming the first bad row."""
        if flat.size == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):  # sums of huge or infinite values
            total = np.add.reduce(flat, axis=None) if flat.dtype.kind == "f" else 0.0
        if not math.isfinite(total):
            bad = (~np.isfinite(flat)).any(axis=1)
            if bad.any():
                raise CortexEdgeError(f"{label(int(np.argmax(bad)))}: contains NaN or inf")
        if self.lo is not None and np.minimum.reduce(flat, axis=None) < self.lo:
            r = int(np.argmax((flat < self.lo).any(axis=1)))
            what = "spike counts must be non-negative" if self.spec.kind == "spike_counts" else (
                f"values must be >= {self.lo:g}")  # fmt: skip
            raise CortexEdgeError(f"{label(r)}: {what} (min {flat[r].min():g})")
        if self.hi is not None and np.maximum.reduce(flat, axis=None) > self.hi:
            r = int(np.argmax((flat > self.hi).any(axis=1)))
            raise CortexEdgeError(
                f"{label(r)}: values must be <= {self.hi:g} (max {flat[r].max():g})"
            )


def _as_array(x: Any, label: Label) -> np.ndarray:
    """`x` as an array, or one clear error (a ragged nested list cannot be one)."""
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise CortexEdgeError(f"{label(None)}: not an array of numbers ({e})") from None


def check_states(states: Any, like: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Validate a state dict against `like` (same names, shapes, finite numbers); cast copies."""
    if not isinstance(states, dict):
        raise CortexEdgeError(f"state: expected a dict of arrays, got {type(states).__name__}")
    if set(states) != set(like):  # a set: keys need not be comparable (1 and "h")
        raise CortexEdgeError(
            f"state: expected names {sorted(like)}, got {sorted(map(str, states))}"
        )
    out = {}
    for name, ref in like.items():
        try:
            value = np.asarray(states[name])
        except (ValueError, TypeError) as e:
            raise CortexEdgeError(f"state '{name}': not an array of numbers ({e})") from None
        if value.dtype.kind not in "biuf":
            raise CortexEdgeError(f"state '{name}': dtype {value.dtype} is not numeric")
        if value.shape != ref.shape:
            raise CortexEdgeError(f"state '{name}': expected shape {ref.shape}, got {value.shape}")
        if not np.isfinite(value).all():
            raise CortexEdgeError(f"state '{name}': contains NaN or inf")
        with np.errstate(over="ignore"):
            cast = value.astype(ref.dtype)
        if not np.isfinite(cast).all():
            raise CortexEdgeError(f"state '{name}': a value overflows {ref.dtype}")
        out[name] = cast
    return out
