"""Two preallocated sets of state buffers, swapped every step.

Step k reads its state from set A and writes the new state into set B, which step k+1 reads.
A step that fails never touches the live set, so the state stays exactly as it was. Shared by
the onnxruntime and numpy backends.
"""

from __future__ import annotations

import numpy as np


class StateBuffers:
    """The live state set and its spare, plus copies in and out for checkpointing."""

    def __init__(self, initial: dict[str, np.ndarray]) -> None:
        self.sets = [{k: np.ascontiguousarray(v).copy() for k, v in initial.items()}]
        self.sets.append({k: v.copy() for k, v in self.sets[0].items()})
        self.live = 0

    @property
    def current(self) -> dict[str, np.ndarray]:
        """The state the next step reads."""
        return self.sets[self.live]

    @property
    def spare(self) -> dict[str, np.ndarray]:
        """Where the next step writes its new state."""
        return self.sets[1 - self.live]

    def swap(self) -> None:
        """Make the spare (just written) set live; call only after a successful step."""
        self.live ^= 1

    def read(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.current.items()}

    def write(self, states: dict[str, np.ndarray]) -> None:
        """Copy `states` (validated by the caller: same names and shapes) into the live set."""
        for k, buf in self.current.items():
            np.copyto(buf, states[k], casting="same_kind")
