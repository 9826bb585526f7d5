"""The one score definition: which rows are fed and scored, by hand, and the number itself."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge import metrics, scoring
from cortexedge.contract import Streaming
from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording

# two segments of 10 rows; test rows 4..9 of segment 0 (after val rows 2..3) and all of segment 1
SEG = np.repeat([0, 1], 10)
SPLIT = {"train": np.arange(0, 2), "val": np.arange(2, 4),
         "test": np.r_[4:10, 10:20]}  # fmt: skip


def _rec(y: np.ndarray | None = None, labels: np.ndarray | None = None) -> Recording:
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(20, 2))
    if y is None and labels is None:
        y = rng.normal(size=(20, 1))
    return Recording(x=x, bin_ms=10.0, y=y, labels=labels, segment=SEG, split=SPLIT)


def test_runs_take_context_from_their_own_segment_only():
    rec = _rec()
    assert scoring.runs(rec, "test", 3) == [scoring.Run(1, 4, 10), scoring.Run(10, 10, 20)]
    assert scoring.runs(rec, "test", 0) == [scoring.Run(4, 4, 10), scoring.Run(10, 10, 20)]
    assert scoring.runs(rec, "test", 50)[0] == scoring.Run(0, 4, 10)  # no further than row 0


def test_context_is_the_window_less_one_or_the_warm_up():
    assert scoring.context_rows(Streaming("window", 8), 10.0) == 7
    assert scoring.context_rows(Streaming("stateful"), 10.0) == round(scoring.CONTEXT_MS / 10)


def _running_sum(x: np.ndarray) -> np.ndarray:
    """A causal decoder by hand: the running sum of the first channel from the run's start."""
    return np.cumsum(x[..., :1], axis=1)


def test_score_is_r2_over_every_scored_row_decoded_from_the_run_start():
    rec = _rec()
    result = scoring.score(rec, "test", "regression", _running_sum, context=3)
    x = rec.x[:, 0].astype(float)
    expected = np.r_[np.cumsum(x[1:10])[3:], np.cumsum(x[10:20])]  # run 1 fed from row 1
    assert result["value"] == pytest.approx(metrics.r2_score(rec.y[SPLIT["test"]], expected))
    assert (result["rows"], result["runs"], result["context_rows"]) == (16, 2, 3)
    # runs side by side, zero-padded at their end, give the number of runs one at a time
    one = scoring.score(rec, "test", "regression", _running_sum, context=3, batch=1)
    assert one["value"] == result["value"]


def test_outputs_short_of_the_targets_are_refused():
    rec = _rec(labels=np.stack([np.arange(20) % 2, np.arange(20) // 10], 1))
    with pytest.raises(CortexEdgeError, match="recording: 2 labels, but the decoder has 1 outputs"):
        scoring.score(rec, "test", "multilabel", _running_sum, context=0)
    with pytest.raises(CortexEdgeError, match="recording has no 'val' split"):
        scoring.runs(Recording(x=rec.x, bin_ms=10.0, y=np.zeros((20, 1)), segment=SEG,
                               split={"train": np.arange(20)}), "val", 0)  # fmt: skip


def test_classifier_accuracy_thresholds_the_logits():
    labels = (np.arange(20) % 3 == 0).astype(np.int64)
    rec = _rec(labels=labels)

    def decode(x: np.ndarray) -> np.ndarray:  # logit -1 on every row: every row is called 0
        return np.full((*x.shape[:2], 1), -1.0)

    result = scoring.score(rec, "test", "binary", decode, context=0)
    assert result["metric"] == "accuracy"
    assert result["value"] == pytest.approx(np.mean(labels[SPLIT["test"]] == 0))
