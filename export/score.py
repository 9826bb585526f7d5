"""The score written into an export: the step graph, run in onnxruntime, scored on a recording's
test split by the one definition every stage uses (`cortexedge.scoring`): every test row,
each run of rows streamed from the initial state after its context rows.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from cortexedge import scoring
from cortexedge.contract import StateSpec, Streaming
from cortexedge.export.streamable import initial_state
from cortexedge.export.verify import stream_onnx
from cortexedge.recording import Recording


def score(
    sess: ort.InferenceSession,
    specs: tuple[StateSpec, ...],
    rec: Recording,
    kind: str,
    streaming: Streaming,
    dynamic_batch: bool,
) -> dict:
    """{"metric", "value", "split", "rows", "context_rows"} of the step graph on the test split
    (runs side by side when the graph takes a batch)."""

    def decode(x: np.ndarray) -> np.ndarray:
        xs = np.ascontiguousarray(np.swapaxes(x, 0, 1))  # [T, B, ...]
        return np.swapaxes(stream_onnx(sess, specs, xs, initial_state(specs, len(x)))[0], 0, 1)

    context = scoring.context_rows(streaming, rec.bin_ms)
    result = scoring.score(rec, "test", kind, decode, context, 64 if dynamic_batch else 1)
    return {k: result[k] for k in ("metric", "value", "split", "rows", "context_rows")}
