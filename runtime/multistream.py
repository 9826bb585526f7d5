"""MultiStreamDecoder: N independent streams decoded in one batched call per bin.

The exporter writes step graphs with a dynamic batch dimension B, so N streams share one
session and one call. A graph whose batch is fixed at N is used as is. A graph fixed at batch 1
cannot batch: the decoder then falls back to N backends stepped one after another, sets
`batched` to False and warns, because the cost then grows with N.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from cortexedge.errors import CortexEdgeError
from cortexedge.runtime.backends import backend_class
from cortexedge.runtime.inputs import BinChecker, check_states
from cortexedge.runtime.model import load_decoder


class MultiStreamDecoder:
    """Decode `n_streams` independent streams; `step(bins [N, *input]) -> [N, D]`."""

    def __init__(
        self, path: str | os.PathLike, n_streams: int, backend: str = "ort", threads: int = 1
    ) -> None:
        if n_streams < 1:
            raise CortexEdgeError(f"n_streams: must be >= 1, got {n_streams}")
        cls = backend_class(backend)
        self.model = load_decoder(path)
        self.meta = self.model.meta
        self.n_streams = n_streams
        self.batched = self.model.batch != 1 or n_streams == 1
        if self.batched:  # the backend refuses a fixed batch other than n_streams
            self._backends = [cls(self.model, batch=n_streams, threads=threads)]
        else:
            warnings.warn(
                f"{self.model.path}: graph batch is fixed at 1; decoding {n_streams} streams "
                "with one call per stream",
                stacklevel=2,
            )
            self._backends = [cls(self.model, batch=1, threads=threads) for _ in range(n_streams)]
        self._check = BinChecker(self.meta.input)
        self._initial = self.model.initial_states(n_streams)
        # a stream's bin index is steps since construction minus the steps at its last reset:
        # one int increment per step (an array increment is a ufunc call, ~5 µs next to ORT)
        self._steps = 0
        self._reset_at = np.zeros(n_streams, dtype=np.int64)
        self._x = self._check.buffer(n_streams)

    def step(self, bins: np.ndarray) -> np.ndarray:
        """Decode one bin of every stream; returns [N, D] (a copy)."""
        x = self._x
        self._check.into(bins, x, self.n_streams, self._label)
        if self.batched:
            y = self._backends[0].step(x).copy()
        else:
            y = np.concatenate([b.step(x[i : i + 1]) for i, b in enumerate(self._backends)])
        self._steps += 1
        return y

    def _label(self, stream: int | None) -> str:
        if stream is None:
            return "bins"
        return f"stream {stream} (bin {self._steps - self._reset_at[stream]})"

    def reset(self, stream_index: int | None = None) -> None:
        """Reset one stream's state (or every stream's when `stream_index` is None)."""
        if stream_index is None:
            self.states = self._initial
            self._reset_at[:] = self._steps
            return
        if not 0 <= stream_index < self.n_streams:
            raise CortexEdgeError(f"stream_index: {stream_index} is outside [0, {self.n_streams})")
        states = self.states
        for s in self.meta.states:
            index = [slice(None)] * len(s.shape)
            index[s.batch_axis] = stream_index
            states[s.name][tuple(index)] = s.fill
        self.states = states
        self._reset_at[stream_index] = self._steps

    @property
    def states(self) -> dict[str, np.ndarray]:
        """A copy of every stream's state, streams on each state's batch axis."""
        if self.batched:
            return self._backends[0].read_state()
        parts = [b.read_state() for b in self._backends]
        return {
            s.name: np.concatenate([p[s.name] for p in parts], axis=s.batch_axis)
            for s in self.meta.states
        }

    @states.setter
    def states(self, states: dict[str, np.ndarray]) -> None:
        states = check_states(states, self._initial)
        if self.batched:
            self._backends[0].write_state(states)
            return
        for i, backend in enumerate(self._backends):
            backend.write_state(
                {s.name: np.take(states[s.name], [i], axis=s.batch_axis) for s in self.meta.states}
            )
