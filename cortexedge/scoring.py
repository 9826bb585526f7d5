"""One accuracy definition, for every stage that reports one: train, compress, export, profile.

The score of a decoder on a split of a recording is NeuroBench's R² (regression) or accuracy
(classifiers) over **every row of the split**, each decoded causally as a deployed decoder
would: every unbroken run of the split's rows (adjacent rows of one segment) is streamed from
the decoder's initial state, starting up to `context` rows earlier where earlier rows of the
same segment exist. Those context rows are fed, not scored. A window-mode decoder needs its
window less one row of context, which makes the result exact; a stateful one gets
`CONTEXT_MS` of rows, its warm-up.

The stages differ only in what decodes the rows: the torch model's sequence form (train,
compress), the step graph in onnxruntime (export) and the runtime's StreamingDecoder (profile).
Each passes a `decode(x) -> y` to `score`, which plans the runs and computes the numbers, so
the same model on the same recording reports the same number at every stage (up to the float
error between engines that export verifies). This module loads no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cortexedge import metrics
from cortexedge.contract import Streaming
from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording

CONTEXT_MS = 2000.0  # stateful decoders: earlier rows fed before a run's first scored row
CLASS_KINDS = ("binary", "multilabel", "multiclass")


@dataclass(frozen=True)
class Run:
    """Rows `start:end` are decoded from the initial state; rows `first:end` are scored."""

    start: int
    first: int
    end: int


def context_rows(streaming: Streaming, bin_ms: float) -> int:
    """Rows of context before a run: the window less one (window mode), or CONTEXT_MS."""
    if streaming.mode == "window" and streaming.window:
        return streaming.window - 1
    return round(CONTEXT_MS / bin_ms)


def runs(rec: Recording, split: str, context: int) -> list[Run]:
    """The unbroken runs of `split`'s rows, each with up to `context` earlier rows of its
    segment in front."""
    rows = rec.rows(split)
    if rows.size == 0:
        raise CortexEdgeError(f"recording: the '{split}' split is empty; nothing to score")
    seg = rec.segment
    index = np.arange(len(seg))
    block_start = np.maximum.accumulate(np.where(np.r_[True, seg[1:] != seg[:-1]], index, 0))
    cut = np.flatnonzero((np.diff(rows) != 1) | (seg[rows[1:]] != seg[rows[:-1]])) + 1
    return [
        Run(max(int(part[0]) - context, int(block_start[part[0]])), int(part[0]), int(part[-1]) + 1)
        for part in np.split(rows, cut)
    ]


def target_kind(rec: Recording, task: str | None = None) -> str:
    """The kind of target a recording is trained on and scored as: regression, binary,
    multilabel or multiclass. `task` ("regression" or "classification") picks one when a
    recording has both y and labels."""
    task = task or rec.task
    task = "classification" if task in CLASS_KINDS else task  # a kind a run recorded
    if task not in ("regression", "classification"):
        raise CortexEdgeError(f"task: expected 'regression' or 'classification', got '{task}'")
    if task == "regression":
        if rec.y is None:
            raise CortexEdgeError("task: regression needs continuous targets y; recording has none")
        return "regression"
    if rec.labels is None:
        raise CortexEdgeError("task: classification needs labels; recording has none")
    if rec.labels.ndim == 2:
        return "multilabel"
    return "binary" if int(rec.labels.max()) <= 1 else "multiclass"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# target kind -> class probabilities from the outputs (logits) y [N, D] and labels [N(, K)]
PROBABILITIES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "binary": lambda y, labels: _sigmoid(y[:, 0]),
    "multilabel": lambda y, labels: _sigmoid(y[:, : labels.shape[1]]),
    "multiclass": lambda y, labels: _softmax(y),
}


def split_metrics(
    kind: str, y: np.ndarray, targets: np.ndarray | None = None, labels: np.ndarray | None = None
) -> dict:
    """The metrics of outputs `y` [N, D] against the scored rows' `targets` (regression) or
    `labels`: {"metric", "value"} plus r2/corr or the classification report."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if kind == "regression":
        if y.shape[1] < targets.shape[1]:
            raise CortexEdgeError(
                f"recording: {targets.shape[1]} targets, but the decoder has {y.shape[1]} "
                "outputs; score it on a recording of its own targets"
            )
        y = y[:, : targets.shape[1]]
        r2 = metrics.r2_score(targets, y)
        return {"metric": "r2", "value": r2, "r2": r2, "corr": metrics.correlation(targets, y)}
    wanted = labels.shape[1] if kind == "multilabel" else 1
    if y.shape[1] < wanted:
        raise CortexEdgeError(
            f"recording: {wanted} labels, but the decoder has {y.shape[1]} outputs; score it on "
            "a recording of its own labels"
        )
    report = metrics.classification_report(labels, PROBABILITIES[kind](y, labels))
    return {"metric": "accuracy", "value": report["accuracy"], **report,
            "majority_rate": metrics.majority_rate(labels)}  # fmt: skip


def fed_rows(plan: list[Run]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows fed in order, True where a run starts (reset the state), True where scored)."""
    fed = np.concatenate([np.arange(r.start, r.end) for r in plan])
    starts = np.concatenate([np.arange(r.start, r.end) == r.start for r in plan])
    scored = np.concatenate([np.arange(r.start, r.end) >= r.first for r in plan])
    return fed, starts, scored


def batches(plan: list[Run], batch: int) -> list[list[int]]:
    """Indices of the runs in batches of up to `batch`, runs of similar length together (each
    batch is padded to its longest run)."""
    order = sorted(range(len(plan)), key=lambda k: plan[k].end - plan[k].start)
    return [order[i : i + batch] for i in range(0, len(order), batch)]


def score(
    rec: Recording,
    split: str,
    kind: str,
    decode: Callable[[np.ndarray], np.ndarray],
    context: int,
    batch: int = 64,
) -> dict:
    """The split's score (module docstring). `decode(x [B, T, ...]) -> y [B, T, D]` streams
    B runs side by side from the initial state; runs shorter than T are zero-padded at their
    end, which a causal decoder cannot see. The result says which rows it scored."""
    plan = runs(rec, split, context)
    outputs: list = [None] * len(plan)
    for group in batches(plan, batch):
        longest = max(plan[k].end - plan[k].start for k in group)
        x = np.zeros((len(group), longest, *rec.x.shape[1:]), dtype=np.float32)
        for i, k in enumerate(group):
            x[i, : plan[k].end - plan[k].start] = rec.x[plan[k].start : plan[k].end]
        y = np.asarray(decode(x))
        if y.shape[:2] != x.shape[:2]:
            raise CortexEdgeError(
                f"scoring: the decoder gave outputs of shape {list(y.shape)} for inputs "
                f"{list(x.shape)}; expected one output per row"
            )
        for i, k in enumerate(group):
            r = plan[k]
            outputs[k] = y[i, r.first - r.start : r.end - r.start].reshape(r.end - r.first, -1)
    scored = np.concatenate([np.arange(r.first, r.end) for r in plan])
    pick = lambda a: None if a is None else a[scored]  # noqa: E731
    result = split_metrics(kind, np.concatenate(outputs), pick(rec.y), pick(rec.labels))
    fed = sum(r.end - r.start for r in plan)
    return {**result, "split": split, "rows": int(scored.size), "runs": len(plan),
            "context_rows": fed - int(scored.size)}  # fmt: skip
