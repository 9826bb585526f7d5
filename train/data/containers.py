"""Open the two containers recordings arrive in, `.npz` and HDF5, with one clear error each.

Readers ask for arrays by name; a corrupted or truncated file, a missing array or an array of
pickled Python objects becomes a `RecordingError` naming the file kind or the array, never a
traceback from zipfile or h5py. Nothing here is format-specific.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import h5py
import numpy as np

from cortexedge.errors import RecordingError

UNREADABLE = "not a readable .npz or HDF5 file (corrupted or truncated?)"


def container_kind(path: Path) -> str:
    """ "hdf5" or "npz" from the file's own bytes (not its name); raises if it is neither."""
    if h5py.is_hdf5(path):
        return "hdf5"
    if zipfile.is_zipfile(path):
        return "npz"
    raise RecordingError(UNREADABLE)


def open_hdf5(path: Path) -> h5py.File:
    """Open an HDF5 file (MATLAB v7.3 and NWB included) read-only, or raise a RecordingError."""
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise RecordingError(f"not a readable HDF5 file (corrupted or truncated?): {e}") from None


def array_names(path: Path) -> set[str]:
    """Names of the arrays in an `.npz`, or of the root members of an HDF5 file."""
    if container_kind(path) == "hdf5":
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
    try:
        if kind == "hdf5":
            with open_hdf5(path) as f:
                return _pick(set(f.keys()), required, optional, lambda name: _hdf5_array(f, name))
        with np.load(path, allow_pickle=False) as z:
            return _pick(set(z.files), required, optional, lambda name: z[name])
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise RecordingError(f"{UNREADABLE}: {e}") from None


def _pick(names: set[str], required, optional, get) -> dict[str, np.ndarray]:
    missing = [n for n in required if n not in names]
    if missing:
        raise RecordingError(
            f"missing array(s) {missing}; found {sorted(names)} (wrong format or schema?)"
        )
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
