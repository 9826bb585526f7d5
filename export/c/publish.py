"""A C build folder is one unit: built aside, then put in place whole, never file by file.

The build happens in a hidden sibling of the output folder; when it is complete it replaces
the output folder in one step. A new folder is one rename. An earlier C build is swapped with
the new one by `renameat2(RENAME_EXCHANGE)` (Linux), so at every instant the path holds the old
build or the new one, never a mix (a mix once ran an old library against a new graph). A folder
holding anything else is refused: the export never overwrites or deletes files it did not make.
Hidden build folders left by a killed export are removed by the next one.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import tempfile
from pathlib import Path

from cortexedge.atomic import fsync_dir
from cortexedge.errors import CortexEdgeError

PREFIX = ".c-export-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def check_out(out: Path, manifest: str) -> None:
    """Refuse an output path that is a file, or a folder that is neither empty nor an earlier
    C build (one holding `manifest`)."""
    if out.exists() and not out.is_dir():
        raise CortexEdgeError(f"output path is a file, expected a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not (out / manifest).is_file():
        raise CortexEdgeError(
            f"{out} holds files that are not a C build; choose a new or empty folder"
        )


def staging_folder(out: Path) -> Path:
    """A fresh hidden folder next to `out` to build in (stale ones of killed exports go)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f"{PREFIX}{out.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{out.name}-", dir=out.parent))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system cannot (then the caller falls back)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    done = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0
    return done


def publish(stage: Path, out: Path) -> None:
    """Put the complete build `stage` at `out` in one step (see the module docstring)."""
    for f in stage.rglob("*"):
        if f.is_file():
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(stage)
    if not out.exists():
        os.rename(stage, out)
    elif _exchange(stage, out):
        shutil.rmtree(stage)  # now holds the previous build
    else:  # no atomic exchange here: the old build is moved aside, briefly leaving no folder
        old = out.with_name(f"{PREFIX}{out.name}-old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
        os.rename(stage, out)
        shutil.rmtree(old)
    fsync_dir(out.parent)
