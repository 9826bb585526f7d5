"""What the runtime knows about one ONNX op, in one record: `OpDef`.

An op definition holds
- `kernel`, the reference kernel: (inputs, attrs) -> a tuple of outputs, written from the
  ONNX operator specification. Optional inputs the node leaves empty are None; `attrs` holds
  the node's attributes decoded to Python values plus `_outputs`, the node's output count;
- `fast`, where one exists, the builder of an in-place kernel for the compiled tier
  (compiled.py): given the node bound to fixed arrays (`Bound`) it returns a zero-argument call
  that refills the preallocated outputs, or None for a case it does not handle (the compiled
  tier then runs `kernel` and copies);
- `shape_inputs`, the input positions whose *values* (not only shapes) set the output shape;
  every other op's output shape follows from its input shapes alone;
- `view`, whether the op only re-views input 0: with its other inputs constant, an output that
  shares memory with input 0 is that input seen another way, and stays valid as it changes;
- `macs`, its MAC rule for the graph walker (runtime/graph_macs.py): the node bound to the
  walker's values -> (rule of `cortexedge.macs`, (dense, effective), weight arrays), or None
  when the node does no MACs. Ops without a rule do no MACs (activations, shape ops).

The ops themselves are defined in the `ops_*.py` files beside this one and gathered, one entry
each, in `registry.OPS`. Other per-op tables of other stages (the C emitters of `export/c`)
are keyed by the same ONNX op names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Arrays = list  # list[np.ndarray | None]; optional inputs are None
Kernel = Callable[[Arrays, dict], tuple]
Call = Callable[[], None]
# (rule name, (dense, effective) per bin, the weight arrays it read), or None: no MACs
Counted = tuple[str, tuple[int, int], list[np.ndarray]] | None


@dataclass(frozen=True)
class Bound:
    """One node bound to arrays: inputs (None where omitted), which are constants, outputs (one
    per kernel result), the decoded attributes and which outputs anything reads (later nodes or
    the graph outputs). The compiled tier binds preallocated buffers; the MAC walker the values
    of one run."""

    ins: list
    const: list[bool]
    outs: list[np.ndarray]
    attrs: dict
    used: list[bool]

    def input(self, k: int) -> np.ndarray | None:
        """Input k, or None when the node omits it."""
        return self.ins[k] if k < len(self.ins) else None

    def arg(self, k: int) -> np.ndarray:
        """Input k as a ufunc writing output 0 takes it fastest (see `lean`)."""
        return lean(self.ins[k], self.const[k], self.outs[0].shape)


def lean(a: np.ndarray, const: bool, shape: tuple[int, ...]) -> np.ndarray:
    """`a` as a ufunc writing an array of `shape` takes it fastest: broadcasting costs a small
    ufunc call ~0.6 µs, so a one-element array becomes a 0-d view (still tracking its buffer)
    and a constant that would broadcast is materialized to `shape` once."""
    if a.size == 1:
        return a.reshape(())
    if const and a.shape != shape:
        return np.ascontiguousarray(np.broadcast_to(a, shape))
    return a


Builder = Callable[[Bound], Call | None]
MacRule = Callable[[Bound], Counted]


@dataclass(frozen=True)
class OpDef:
    """One ONNX op: reference kernel, in-place builder, shape facts and MAC rule."""

    name: str
    kernel: Kernel
    fast: Builder | None = None
    shape_inputs: tuple[int, ...] = ()
    view: bool = False
    macs: MacRule | None = None
