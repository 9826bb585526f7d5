"""Options several commands share, defined once."""

from __future__ import annotations

from pathlib import Path

import click

from cortexedge.atomic import refuse_overwriting
from cortexedge.errors import CortexEdgeError

trust_code_option = click.option(
    "--trust-code",
    is_flag=True,
    help="Import the decoder class a checkpoint names from your code (file.py:Class or "
    "module:Class); refused without this flag.",
)

force_option = click.option(
    "--force",
    is_flag=True,
    help="Replace the run in an existing --out folder: its run files go, your other files stay.",
)

replace_option = click.option(
    "--force", is_flag=True, help="Replace an existing --out file (refused without it)."
)
REPLACE_REFUSED = "; pass --force to replace it"  # why an existing file output is refused


def check_run_out(out: Path, force: bool, *inputs: Path | None) -> None:
    """Refuse a run folder `--out` that is a file, is or holds an input, or already holds
    files (unless `force`), before any work is done."""
    if out.exists() and not out.is_dir():
        raise CortexEdgeError(f"--out {out} exists and is not a folder")
    refuse_overwriting(out, *inputs, option="--out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CortexEdgeError(
            f"--out {out} already holds files; pass --force to replace the run in it, "
            "or choose a new folder"
        )
