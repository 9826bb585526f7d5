"""Open the containers recordings arrive in, `.npz`, HDF5 (MATLAB v7.3 included) and MATLAB
v5 `.mat`, with one clear error each.

Readers ask for arrays by name; a corrupted or truncated file, a missing array or an array of
pickled Python objects (or a MATLAB struct or cell) becomes a `RecordingError` naming the file
kind or the array, never a traceback from zipfile, h5py or scipy. Nothing here is
format-specific. scipy is imported only to read a MATLAB v5 file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np

from cortexedge.errors import RecordingError

UNREADABLE = "not a readable .npz, HDF5 or MATLAB file (corrupted or truncated?)"
MAT5_MAGIC = b"MATLAB 5.0 MAT-file"  # the text header of MATLAB v5 to v7.2 files


def container_kind(path: Path) -> str:
    """ "hdf5", "npz" or "mat5" from the file's own bytes (not its name); raises if none."""
    if h5py.is_hdf5(path):
        return "hdf5"
    if zipfile.is_zipfile(path):
        return "npz"
    with open(path, "rb") as f:
        if f.read(len(MAT5_MAGIC)) == MAT5_MAGIC:
            return "mat5"
    raise RecordingError(UNREADABLE)


def _mat5_names(path: Path) -> set[str]:
    from scipy.io import whosmat

    try:
        return {name for name, _, _ in whosmat(path)}
    except Exception as e:  # scipy raises ValueError, TypeError, OSError... per corruption
        raise RecordingError(f"{UNREADABLE}: {type(e).__name__}: {e}") from None


def _mat5_arrays(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    try:
        arrays = loadmat(path, variable_names=names, mat_dtype=False)
    except Exception as e:  # as above
        raise RecordingError(f"{UNREADABLE}: {type(e).__name__}: {e}") from None
    for name in names:
        if arrays[name].dtype == object or arrays[name].dtype.names:
            raise RecordingError(f"{name}: a MATLAB struct or cell array, not a numeric array")
    return {name: arrays[name] for name in names}


def open_hdf5(path: Path) -> h5py.File:
    """Open an HDF5 file (MATLAB v7.3 and NWB included) read-only, or raise a RecordingError."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise RecordingError(f"not a readable HDF5 file (corrupted or truncated?): {e}") from None


def array_names(path: Path) -> set[str]:
    """Names of the arrays in an `.npz` or a MATLAB v5 file, or the root members of an HDF5 file."""
    kind = container_kind(path)
    if kind == "mat5":
        return _mat5_names(path)
    if kind == "hdf5":
        with open_hdf5(path) as f:
            return set(f.keys())
    try:
        with np.load(path, allow_pickle=False) as z:
            return set(z.files)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise RecordingError(UNREADABLE) from None


def has_arrays(path: Path, names: set[str], exact: bool = False) -> bool:
    """Detection helper: True when the file holds all `names` (exactly these if `exact`)."""
    try:
        found = array_names(path)
    except RecordingError:
        return False
    return found == names if exact else names <= found


def load_arrays(
    path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, np.ndarray]:
    """Read the named arrays (all of `required`, those of `optional` present) into memory."""
    kind = container_kind(path)
    if kind == "mat5":
        names = _mat5_names(path)
        _require(names, required)
        return _mat5_arrays(path, [n for n in (*required, *optional) if n in names])
    try:
        if kind == "hdf5":
            with open_hdf5(path) as f:
                return _pick(set(f.keys()), required, optional, lambda name: _hdf5_array(f, name))
        with np.load(path, allow_pickle=False) as z:
            return _pick(set(z.files), required, optional, lambda name: z[name])
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise RecordingError(f"{UNREADABLE}: {e}") from None


def _require(names: set[str], required) -> None:
    missing = [n for n in required if n not in names]
    if missing:
        raise RecordingError(
            f"missing array(s) {missing}; found {sorted(names)} (wrong format or schema?)"
        )


def _pick(names: set[str], required, optional, get) -> dict[str, np.ndarray]:
    _require(names, required)
    out = {}
    for name in (*required, *(n for n in optional if n in names)):
        try:
            out[name] = np.asarray(get(name))
        except RecordingError:
            raise
        except ValueError as e:  # e.g. np.load refusing an object array without pickle
            raise RecordingError(f"{name}: cannot be read ({e})") from None
    return out


def _hdf5_array(f: h5py.File, name: str) -> np.ndarray:
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise RecordingError(f"{name}: expected a dataset, found an HDF5 group")
    return obj[()]


def require_finite(name: str, arr: np.ndarray) -> None:
    """Raise naming the array and first bad row when `arr` holds NaN or inf."""
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        bad = int(np.argwhere(~np.isfinite(arr))[0][0])
        raise RecordingError(f"{name}: non-finite value (NaN or inf) at row {bad}")


def require_integer(name: str, arr: np.ndarray, shape: tuple[int, ...] | None = None) -> None:
    """Raise unless `arr` has an integer dtype (and the given shape)."""
    if not np.issubdtype(arr.dtype, np.integer):
        raise RecordingError(f"{name}: expected integers, got dtype {arr.dtype}")
    if shape is not None and arr.shape != shape:
        raise RecordingError(f"{name}: expected shape {shape}, got {arr.shape}")
