"""Options several commands share, defined once."""

from __future__ import annotations

import click

trust_code_option = click.option(
    "--trust-code",
    is_flag=True,
    help="Import the decoder class a checkpoint names from your code (file.py:Class or "
    "module:Class); refused without this flag.",
)
