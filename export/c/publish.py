"""A C build folder is one unit: built aside, then put in place whole, never file by file.

The build happens in a hidden sibling of the output folder and replaces it in one step
(`cortexedge.atomic.staged_folder`): at every instant the path holds the old build or the new
one, never a mix (a mix once ran an old library against a new graph). A folder holding anything
other than an earlier C build is refused: the export never overwrites or deletes files it did
not make.
"""

from __future__ import annotations

from pathlib import Path

from cortexedge.errors import CortexEdgeError


def check_out(out: Path, manifest: str) -> None:
    """Refuse an output path that is a file, or a folder that is neither empty nor an earlier
    C build (one holding `manifest`)."""
    if out.exists() and not out.is_dir():
        raise CortexEdgeError(f"output path is a file, expected a folder: {out}")
    if out.is_dir() and any(out.iterdir()) and not (out / manifest).is_file():
        raise CortexEdgeError(
            f"{out} holds files that are not a C build; choose a new or empty folder"
        )
