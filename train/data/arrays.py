"""A lab's own file: arrays named by the user in a MATLAB (v5 or v7.3), `.npz` or HDF5 file.

Most lab files hold a neural array and a behaviour array under arbitrary names, time-first or
channels-first, counts stored as doubles, and no bin width. This reader takes the names, infers
the orientation from the axis that x and y share (MATLAB v7.3 files, read through HDF5, arrive
transposed), checks that spike input holds whole counts, and splits in time (contiguous blocks)
or by trial. What it read and assumed goes into the recording's `meta["read"]`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexedge.errors import RecordingError
from cortexedge.recording import SPLITS, Recording
from cortexedge.train.data.containers import load_arrays, require_finite
from cortexedge.train.data.group_split import check_ratios, split_by_group, split_by_time

CONTINUOUS_HINT = "pass --continuous to read x as a continuous input (modality 'calcium')"


def parse_split(spec: str) -> tuple[float, float, float]:
    """`time:0.7,0.15,0.15` -> (0.7, 0.15, 0.15); the three ratios must sum to 1."""
    kind, _, ratios = spec.partition(":")
    try:
        parts = tuple(float(r) for r in ratios.split(","))
    except ValueError:
        parts = ()
    if kind != "time" or len(parts) != 3 or abs(sum(parts) - 1) > 1e-6 or min(parts) < 0:
        raise RecordingError(
            f"split '{spec}': expected time:TRAIN,VAL,TEST with ratios summing to 1 "
            "(e.g. time:0.7,0.15,0.15), or --trials KEY to split by trial"
        )
    check_ratios(parts[0], parts[1])
    return parts


def _matrix(name: str, a: np.ndarray) -> np.ndarray:
    """A [n, k] view of a 1-D or 2-D array (MATLAB vectors arrive as [1, n] or [n, 1])."""
    a = np.asarray(a)
    if a.ndim == 1:
        return a[:, None]
    if a.ndim != 2:
        raise RecordingError(f"{name}: expected a vector or a matrix, got shape {a.shape}")
    return a


def orient(
    x: np.ndarray, y: np.ndarray, names: tuple[str, str]
) -> tuple[np.ndarray, np.ndarray, str]:
    """(x [T, C], y [T, D], how) with T the one axis length that x and y share."""
    x, y = _matrix(names[0], x), _matrix(names[1], y)
    shapes = f"{names[0]} {x.shape} and {names[1]} {y.shape}"
    xi = [i for i in (0, 1) if x.shape[i] in y.shape]
    if not xi:
        raise RecordingError(f"{shapes} share no axis length: they cannot be rows of the same bins")
    yj = [j for j in (0, 1) if y.shape[j] == x.shape[xi[0]]]
    if len(xi) > 1 or len(yj) > 1:
        raise RecordingError(
            f"{shapes}: more than one axis could be time; transpose one array so that only "
            "the time axes have the same length"
        )
    how = "time-first" if xi[0] == 0 else "channels-first (transposed)"
    return (x if xi[0] == 0 else x.T), (y if yj[0] == 0 else y.T), how


def check_counts(name: str, x: np.ndarray) -> None:
    """Raise unless x holds whole non-negative counts, naming the first value that is not."""
    bad = np.flatnonzero((x != np.round(x)).reshape(-1))
    if bad.size == 0:
        return
    row, col = np.unravel_index(bad[0], x.shape)
    positive = x[x > 0]
    scale = float(positive.min()) if positive.size else 1.0
    scaled = np.abs(x / scale - np.round(x / scale)).max() < 1e-6
    what = f"counts × {scale:g}?" if scaled else "firing rates or smoothed counts?"
    raise RecordingError(
        f"{name}: {x[row, col]:g} at row {row}, channel {col} is not a whole count ({what}); "
        f"{CONTINUOUS_HINT}"
    )


def _stored_bin_ms(arrays: dict, path: Path) -> float:
    if "bin_ms" not in arrays:
        raise RecordingError(f"{path.name} does not store its bin width: pass --bin-ms MS")
    value = np.asarray(arrays["bin_ms"]).reshape(-1)
    if value.size != 1 or not np.issubdtype(value.dtype, np.number):
        raise RecordingError(f"bin_ms in {path.name}: expected one number, got {value[:4]}")
    return float(value[0])


def _split(n: int, ratios, trials: np.ndarray | None, seed: int):
    """(segment ids, split) by contiguous time blocks, or by whole trials."""
    if trials is None:
        return split_by_time(n, ratios[0], ratios[1])
    trials = _matrix("trials", trials).reshape(-1)
    if len(trials) != n:
        raise RecordingError(f"trials: {len(trials)} ids for {n} time bins")
    split = split_by_group(trials, ratios[0], ratios[1], seed=seed, what="trial")
    return np.unique(trials, return_inverse=True)[1].astype(np.int64), split


def _with_test(xs, ys, tx, ty, ratios, names) -> tuple:
    """x/y split into train and val in time (in the ratio of their shares), the test arrays
    appended as the test set: (x, y, segment ids, split)."""
    if tx.shape[1] != xs.shape[1] or ty.shape[1] != ys.shape[1]:
        raise RecordingError(f"{names[2]}/{names[3]}: test arrays {tx.shape}/{ty.shape} do not "
                             f"match {names[0]}/{names[1]} {xs.shape}/{ys.shape}")  # fmt: skip
    n = len(xs)
    n_train = max(1, min(n - 1, round(n * ratios[0] / (ratios[0] + ratios[1]))))
    segment = np.repeat(np.arange(3, dtype=np.int64), [n_train, n - n_train, len(tx)])
    parts = {name: np.flatnonzero(segment == i) for i, name in enumerate(SPLITS)}
    return np.concatenate([xs, tx]), np.concatenate([ys, ty]), segment, parts


def detect(path: Path) -> bool:
    """Never: any file holds arrays, so this reader runs only when the user names them."""
    return False


def read(
    path: Path,
    *,
    x: str,
    y: str,
    bin_ms: float | None = None,
    test_x: str | None = None,
    test_y: str | None = None,
    split: str = "time:0.7,0.15,0.15",
    trials: str | None = None,
    continuous: bool = False,
    seed: int = 0,
) -> Recording:
    """Read arrays `x` (neural input) and `y` (continuous targets) from `path`; with `test_x`
    and `test_y`, those arrays are the test set and x/y are split into train and val."""
    if (test_x is None) != (test_y is None):
        raise RecordingError("--test-x and --test-y go together")
    optional = ("bin_ms",) + ((trials,) if trials else ())
    keys = (x, y, *((test_x, test_y) if test_x else ()))
    arrays = load_arrays(Path(path), keys, optional)
    if trials and trials not in arrays:
        raise RecordingError(f"trials: no array '{trials}' in {Path(path).name}")
    ms = float(bin_ms) if bin_ms is not None else _stored_bin_ms(arrays, Path(path))
    xs, ys, how = orient(arrays[x], arrays[y], (x, y))
    ratios = parse_split(split)
    if test_x:
        tx, ty, _ = orient(arrays[test_x], arrays[test_y], (test_x, test_y))
        xs, ys, segment, parts = _with_test(xs, ys, tx, ty, ratios, (x, y, test_x, test_y))
    else:
        segment, parts = _split(len(xs), ratios, arrays.get(trials) if trials else None, seed)
    for name, a in ((x, xs), (y, ys)):
        if not np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.complexfloating):
            raise RecordingError(f"{name}: dtype {a.dtype} is not a real number type")
        require_finite(name, a)
    if not continuous:
        check_counts(x, xs)
    read_info = {"file": Path(path).name, "x": x, "y": y, "orientation": how,
                 "bin_ms": "given" if bin_ms is not None else "stored in the file",
                 "split": "test arrays" if test_x else f"by trial ({trials})" if trials else split,
                 "input": "continuous" if continuous else "whole counts"}  # fmt: skip
    return Recording(
        x=xs.astype(np.float32),
        y=ys.astype(np.float32),
        bin_ms=ms,
        modality="calcium" if continuous else "spikes",
        segment=segment,
        split=parts,
        target_names=[f"{y}{k}" for k in range(ys.shape[1])],
        meta={"source": str(path), "read": read_info},
    )
