"""Stage subcommands whose implementations have not landed yet: each says so in one line.

As each stage lands its command moves to its own `commands_<stage>.py`.
"""

from __future__ import annotations

import click

from cortexedge.errors import CortexEdgeError


def _pending(name: str, issue: int, summary: str) -> click.Command:
    @click.command(
        name=name,
        help=f"{summary} (not available in this version).",
        context_settings={"ignore_unknown_options": True},
    )
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def cmd(args: tuple[str, ...]) -> None:
        raise CortexEdgeError(
            f"'cortexedge {name}' is not available in this version yet (#{issue})"
        )

    return cmd


COMMANDS = [
    _pending("export", 5, "Export a decoder to ONNX or C"),
    _pending("demo", 8, "Run the end-to-end demo"),
]
