"""Deterministic train/val/test splits for readers that never cut a trial or session in two.

`split_by_group` sends whole groups (trials, sessions) to one set, shuffled with a seed and
optionally stratified (e.g. by reach direction), so that no group's rows leak across sets.
`split_by_time` is the fallback for a recording without group ids: three contiguous blocks.
"""

from __future__ import annotations

import numpy as np

from cortexedge.errors import CortexEdgeError, RecordingError

SPLIT_NAMES = ("train", "val", "test")


def check_ratios(train_ratio: float, val_ratio: float) -> None:
    """Raise unless 0 < train_ratio, 0 <= val_ratio and train_ratio + val_ratio < 1."""
    if not (0 < train_ratio and 0 <= val_ratio and train_ratio + val_ratio < 1):
        raise CortexEdgeError(
            f"train_ratio={train_ratio}, val_ratio={val_ratio}: need train_ratio > 0, "
            "val_ratio >= 0 and train_ratio + val_ratio < 1 (the rest is test)"
        )


def _counts(n: int, train_ratio: float, val_ratio: float) -> tuple[int, int]:
    """(n_val, n_test) for n items: rounded, at least one each when its ratio is positive."""
    test_ratio = 1.0 - train_ratio - val_ratio
    n_val = max(1, round(val_ratio * n)) if val_ratio > 0 else 0
    n_test = max(1, round(test_ratio * n))
    return n_val, n_test


def split_by_group(
    groups: np.ndarray,
    train_ratio: float = 0.6,
    val_ratio: float = 0.2,
    seed: int = 0,
    strata: np.ndarray | None = None,
    what: str = "group",
) -> dict[str, np.ndarray]:
    """Row indices per set, assigning whole groups; within each stratum groups are shuffled.

    `groups` and `strata` are per-row ids; each group must lie in one stratum. Per stratum of
    n groups, round(val_ratio * n) go to val and round(test_ratio * n) to test (at least one
    each), the rest to train. `what` names the groups in error messages ("trial", "session").
    """
    check_ratios(train_ratio, val_ratio)
    groups = np.asarray(groups)
    strata = np.zeros(len(groups), dtype=np.int64) if strata is None else np.asarray(strata)
    pairs = np.unique(np.stack([groups, strata], axis=1), axis=0)
    if len(pairs) != len(np.unique(groups)):
        dup = pairs[np.flatnonzero(np.diff(pairs[:, 0]) == 0)[0], 0]
        raise RecordingError(f"{what} {dup}: its rows fall in more than one stratum")
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[np.ndarray]] = {name: [] for name in SPLIT_NAMES}
    for stratum in np.unique(pairs[:, 1]):
        ids = rng.permutation(pairs[pairs[:, 1] == stratum, 0])
        n_val, n_test = _counts(len(ids), train_ratio, val_ratio)
        n_train = len(ids) - n_val - n_test
        if n_train < 1:
            where = "" if len(np.unique(strata)) == 1 else f" in stratum {stratum}"
            raise RecordingError(
                f"split: only {len(ids)} {what}(s){where}, too few for train/val/test"
            )
        chosen["train"].append(ids[:n_train])
        chosen["val"].append(ids[n_train : n_train + n_val])
        chosen["test"].append(ids[n_train + n_val :])
    return {
        name: np.flatnonzero(np.isin(groups, np.concatenate(parts))).astype(np.int64)
        for name, parts in chosen.items()
    }


def split_by_time(
    n_rows: int, train_ratio: float = 0.6, val_ratio: float = 0.2
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(block id per row, split) for three contiguous blocks: train, then val, then test.

    The block ids serve as segment ids, so that no window spans two sets.
    """
    check_ratios(train_ratio, val_ratio)
    n_val, n_test = _counts(n_rows, train_ratio, val_ratio)
    n_train = n_rows - n_val - n_test
    if n_train < 1:
        raise RecordingError(f"split: only {n_rows} rows, too few for train/val/test")
    block = np.repeat(np.arange(3, dtype=np.int64), [n_train, n_val, n_test])
    return block, {name: np.flatnonzero(block == i) for i, name in enumerate(SPLIT_NAMES)}
