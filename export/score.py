"""The score written into an export: the exported step graph, run in onnxruntime over a
recording's test split, scored against its targets (R² for regression, accuracy otherwise).

Each test segment (trial) is streamed from the initial state, so no state leaks between trials
that were not contiguous in time. Predictions by target kind follow the training specs: values
for regression, logit > 0 for binary and multi-label targets, argmax for class ids.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from cortexedge import metrics
from cortexedge.contract import StateSpec
from cortexedge.errors import CortexEdgeError
from cortexedge.export.streamable import initial_state
from cortexedge.export.verify import stream_onnx
from cortexedge.recording import Recording

# target kind -> class predictions from the outputs y [N, D] (labels [N] or [N, K])
PREDICTORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "binary": lambda y, labels: (y[:, 0] > 0).astype(np.int64),
    "multilabel": lambda y, labels: (y[:, : labels.shape[1]] > 0).astype(np.int64),
    "multiclass": lambda y, labels: y.argmax(-1),
}


def _metric(rec: Recording, rows: np.ndarray, y: np.ndarray, kind: str) -> tuple[str, float]:
    if kind == "regression":
        if y.shape[1] < rec.y.shape[1]:
            raise CortexEdgeError(
                f"recording: {rec.y.shape[1]} targets, but the decoder has {y.shape[1]} outputs; "
                "score it on a recording of its own targets"
            )
        return "r2", metrics.r2_score(rec.y[rows], y[:, : rec.y.shape[1]])
    labels = rec.labels[rows]
    return "accuracy", metrics.accuracy(labels, PREDICTORS[kind](y, labels))


def stream_segments(
    sess: ort.InferenceSession, specs: tuple[StateSpec, ...], rec: Recording, rows: np.ndarray
) -> np.ndarray:
    """y [len(rows), D]: the step graph over `rows`, from the initial state at every segment."""
    seg = rec.segment[rows]
    starts = np.flatnonzero(np.concatenate(([True], (seg[1:] != seg[:-1]) | (np.diff(rows) != 1))))
    ends = np.append(starts[1:], len(rows))
    x = rec.x[rows].astype(np.float32)
    out = [
        stream_onnx(sess, specs, x[a:b, None], initial_state(specs, 1))[0][:, 0]
        for a, b in zip(starts, ends, strict=True)
    ]
    return np.concatenate(out)


def score(
    sess: ort.InferenceSession, specs: tuple[StateSpec, ...], rec: Recording, kind: str
) -> dict:
    """{"metric", "value", "split"} of the step graph on the recording's test split."""
    rows = rec.rows("test")
    y = stream_segments(sess, specs, rec, rows)
    name, value = _metric(rec, rows, y, kind)
    return {"metric": name, "value": float(value), "split": "test"}
