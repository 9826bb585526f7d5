"""Reader for the real Imperial centre-out reaching recording (98 units, 20 ms bins, 800 trials).

File: `imperial_reaching_20ms.npz` with exactly `spikes` uint8 [T, 98], `hand_pos` float32
[T, 3] (mm), `direction` int8 [T] (1..8), `trial` int16 [T] and the scalar `bin_ms`.

- Targets: hand velocity (vx, vy) in m/s, the per-trial first difference of hand_pos x and y
  divided by the bin width. m/s rather than mm/s keeps targets near unit scale (std ~0.3), which
  a decoder's readout reaches quickly; in mm/s (std ~300) training stalls. Row r's velocity is
  (pos[r] - pos[r-1]) / bin, a backward difference, so the FIRST row of every trial has no
  velocity and is dropped (x, y, segment and split stay aligned; 800 rows fewer on the real file).
- Segments: the trial id. Split: whole trials, stratified by reach direction and shuffled with
  `seed` (default 60/20/20), so no trial spans two sets and every direction is in every set.
- Meta keeps the reach direction of each trial (`trial_direction`, 800 small ints).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexedge.errors import RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.containers import (
    has_arrays,
    load_arrays,
    require_finite,
    require_integer,
)
from cortexedge.train.data.group_split import split_by_group

ARRAYS = ("spikes", "hand_pos", "direction", "trial", "bin_ms")


def detect(path: Path) -> bool:
    """An `.npz` (or HDF5) holding exactly the five arrays of the Imperial recording."""
    return has_arrays(path, set(ARRAYS), exact=True)


def read(path: Path, train_ratio: float = 0.6, val_ratio: float = 0.2, seed: int = 0) -> Recording:
    """Read the recording with velocity targets and a trial-wise, direction-stratified split."""
    a = load_arrays(path, ARRAYS)
    spikes, pos, direction, trial = a["spikes"], a["hand_pos"], a["direction"], a["trial"]
    n = len(spikes)
    require_integer("spikes", spikes)
    if spikes.ndim != 2 or n < 2:
        raise RecordingError(f"spikes: expected [T, units], got shape {spikes.shape}")
    if pos.ndim != 2 or pos.shape[0] != n or pos.shape[1] < 2:
        raise RecordingError(f"hand_pos: expected [T={n}, 2 or 3], got shape {pos.shape}")
    require_finite("hand_pos", pos)
    require_integer("direction", direction, (n,))
    require_integer("trial", trial, (n,))
    if a["bin_ms"].shape != () or not a["bin_ms"] > 0:
        raise RecordingError(f"bin_ms: expected a positive scalar, got {a['bin_ms']!r}")
    bin_ms = float(a["bin_ms"])
    keep = ~_first_rows(trial, direction)  # the first row of a trial has no velocity
    step = np.diff(pos[:, :2].astype(np.float64), axis=0)
    velocity = (step / 1000.0 / (bin_ms / 1000.0))[keep[1:]].astype(np.float32)  # mm -> m
    segment = trial[keep].astype(np.int64)
    firsts = np.flatnonzero(np.r_[True, np.diff(segment) != 0])
    return Recording(
        x=spikes[keep],
        bin_ms=bin_ms,
        modality="spikes",
        y=velocity,
        segment=segment,
        split=split_by_group(segment, train_ratio, val_ratio, seed, direction[keep], "trial"),
        channel_names=[f"unit{i}" for i in range(spikes.shape[1])],
        target_names=["vx", "vy"],
        meta={
            "source": "imperial_reaching",
            "file": Path(path).name,
            "y_units": "m/s",
            "dropped": "first bin of each trial (no backward difference)",
            "split": {
                "by": "trial",
                "stratified_by": "direction",
                "seed": seed,
                "train_ratio": train_ratio,
                "val_ratio": val_ratio,
            },
            "trial_direction": {
                str(s): int(d)
                for s, d in zip(segment[firsts], direction[keep][firsts], strict=True)
            },
        },
    )


def _first_rows(trial: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Mask of each trial's first row, after checking that trials are contiguous runs with one
    reach direction each."""
    first = np.r_[True, trial[1:] != trial[:-1]]
    starts = np.flatnonzero(first)
    ids, runs = np.unique(trial[starts], return_counts=True)
    if (runs > 1).any():
        raise RecordingError(f"trial: rows of trial {ids[runs > 1][0]} are not contiguous")
    mixed = np.flatnonzero(direction != direction[starts][np.cumsum(first) - 1])
    if mixed.size:
        raise RecordingError(f"direction: changes inside trial {trial[mixed[0]]} (row {mixed[0]})")
    return first
