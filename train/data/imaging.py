"""Readers for two-photon calcium traces and widefield frame stacks with behaviour labels.

Schema: one `.npz`, or an HDF5 file (.h5/.hdf5) with these datasets at its root.

| name | dtype, shape | meaning |
|---|---|---|
| `dff` | float [T, N] | ΔF/F per neuron (reader `calcium`) |
| `frames` | float or int [T, H, W] | frame stack (reader `widefield`) |
| `labels` | int [T] or [T, K] | behaviour class id per frame, or multi-label 0/1 |
| `fs_hz` or `bin_ms` | scalar | frame rate, or frame period in ms (exactly one) |
| `mouse`, `session`, `trial` | int [T], optional | ids; a new segment starts wherever one changes |

Split (`split_by`): whole groups go to one set, shuffled with `seed` (default 60/20/20). Groups
nest: a session is (mouse, session), a trial (mouse, session, trial). "auto" splits by session
when there are at least 3, else by trial when at least 3, else into contiguous time blocks
("time"), whose boundaries also end segments so that no window spans two sets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.containers import (
    has_arrays,
    load_arrays,
    require_finite,
    require_integer,
)
from cortexedge.train.data.group_split import split_by_group, split_by_time

DATA = {"calcium": ("dff", 2, "[T, N]"), "widefield": ("frames", 3, "[T, H, W]")}
IDS = ("mouse", "session", "trial")
SPLIT_BY = ("auto", *IDS, "time")
MIN_GROUPS = 3  # one each for train, val and test


def detect_calcium(path: Path) -> bool:
    """An `.npz`/HDF5 file with `dff` and `labels`."""
    return has_arrays(path, {"dff", "labels"})


def detect_widefield(path: Path) -> bool:
    """An `.npz`/HDF5 file with `frames` and `labels`."""
    return has_arrays(path, {"frames", "labels"})


def read_calcium(path: Path, **kwargs) -> Recording:
    """Two-photon ΔF/F traces; keyword arguments as for `read_imaging`."""
    return read_imaging(path, "calcium", **kwargs)


def read_widefield(path: Path, **kwargs) -> Recording:
    """Widefield frame stack; keyword arguments as for `read_imaging`."""
    return read_imaging(path, "widefield", **kwargs)


def read_imaging(
    path: Path,
    modality: str,
    split_by: str = "auto",
    train_ratio: float = 0.6,
    val_ratio: float = 0.2,
    seed: int = 0,
) -> Recording:
    """Read `dff` (calcium) or `frames` (widefield) with labels, segments and a grouped split."""
    key, ndim, shape = DATA[modality]
    others = tuple(k for k, *_ in DATA.values() if k != key)
    a = load_arrays(path, (key, "labels"), ("fs_hz", "bin_ms", *IDS, *others))
    if any(k in a for k in others):
        raise RecordingError(f"file holds both '{key}' and '{others[0]}'; keep one")
    x, labels = a[key], a["labels"]
    if x.ndim != ndim or len(x) == 0:
        raise RecordingError(f"{key}: expected {shape}, got shape {x.shape}")
    if modality == "calcium" and not np.issubdtype(x.dtype, np.floating):
        raise RecordingError(f"dff: expected float ΔF/F, got dtype {x.dtype}")
    require_finite(key, x)
    n = len(x)
    require_integer("labels", labels)
    if labels.ndim not in (1, 2) or len(labels) != n:
        raise RecordingError(f"labels: expected [T={n}] or [T={n}, K], got shape {labels.shape}")
    ids = {name: a[name] for name in IDS if name in a}
    for name, arr in ids.items():
        require_integer(name, arr, (n,))
    level = _split_level(split_by, ids)
    if level == "time":
        block, split = split_by_time(n, train_ratio, val_ratio)
        segment = _runs([*ids.values(), block])
    else:
        split = split_by_group(_groups(level, ids), train_ratio, val_ratio, seed, what=level)
        segment = _runs(list(ids.values()))
    return Recording(
        x=x,
        bin_ms=_bin_ms(a),
        modality=modality,
        labels=labels,
        segment=segment,
        split=split,
        channel_names=[f"cell{i}" for i in range(x.shape[1])] if modality == "calcium" else None,
        meta={
            "source": f"{modality}_imaging",
            "file": Path(path).name,
            "split": {
                "by": level,
                "seed": seed,
                "train_ratio": train_ratio,
                "val_ratio": val_ratio,
            },
        },
    )


def _bin_ms(a: dict[str, np.ndarray]) -> float:
    """Frame period in ms from exactly one of `fs_hz` and `bin_ms`."""
    given = [k for k in ("fs_hz", "bin_ms") if k in a]
    if len(given) != 1:
        raise RecordingError("timing: give exactly one of 'fs_hz' and 'bin_ms'")
    value = a[given[0]]
    if value.shape != () or not np.issubdtype(value.dtype, np.number):
        raise RecordingError(f"{given[0]}: expected a number, got {value.dtype} {value.shape}")
    if not (np.isfinite(value) and value > 0):
        raise RecordingError(f"{given[0]}: must be a positive number, got {value}")
    return 1000.0 / float(value) if given[0] == "fs_hz" else float(value)


def _groups(level: str, ids: dict[str, np.ndarray]) -> np.ndarray:
    """Per-row group id at `level`: one per distinct (mouse, session, trial) prefix present."""
    columns = [ids[k] for k in IDS[: IDS.index(level) + 1] if k in ids]
    return np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].ravel()


def _split_level(split_by: str, ids: dict[str, np.ndarray]) -> str:
    """Resolve `split_by` ("auto" included) to "mouse", "session", "trial" or "time"."""
    if split_by not in SPLIT_BY:
        raise CortexEdgeError(f"split_by: '{split_by}' is not one of {SPLIT_BY}")
    if split_by == "auto":
        for level in ("session", "trial"):
            if level in ids and len(np.unique(_groups(level, ids))) >= MIN_GROUPS:
                return level
        return "time"
    if split_by != "time" and split_by not in ids:
        raise RecordingError(f"split_by='{split_by}': the file has no '{split_by}' array")
    return split_by


def _runs(columns: list[np.ndarray]) -> np.ndarray:
    """Segment ids: 0, then +1 at every row where any (non-empty list of) column changes."""
    changed = np.zeros(len(columns[0]) - 1, dtype=bool)
    for col in columns:
        changed |= col[1:] != col[:-1]
    return np.r_[0, np.cumsum(changed)].astype(np.int64)
