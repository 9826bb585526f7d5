"""The sweep's on-disk state: `results.jsonl` (one line per finished cell) and `cells/<key>/`.

A line is appended, flushed and fsynced as each cell finishes, so an interrupted sweep keeps
every finished cell. A cell's artifacts are built in a staging folder next to `cells/<key>/`
and renamed into place whole; a result counts as complete only when its line says "ok" and its
folder holds `result.json`. A rerun reads the last line of each key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cortexedge.atomic import clear_stages

RESULTS = "results.jsonl"
CELL_RESULT = "result.json"


def append(out: Path, row: dict) -> None:
    """Append one result line durably."""
    with open(out / RESULTS, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(out: Path) -> dict[str, dict]:
    """The last result line of each cell key (a torn last line, from a crash, is skipped)."""
    rows: dict[str, dict] = {}
    path = out / RESULTS
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        rows[row["key"]] = row
    return rows


def complete(out: Path) -> set[str]:
    """Keys whose result is present and complete: skipped by a rerun."""
    return {
        key
        for key, row in read(out).items()
        if row.get("status") == "ok" and (out / "cells" / key / CELL_RESULT).is_file()
    }


def clear_stale(out: Path) -> None:
    """Remove staging folders left by a killed run (nothing else is running on `out`)."""
    for sub in ("cells", "trained"):
        clear_stages(out / sub)
