"""Entry point of the `cortexedge` console script and the one place user errors become exit 2."""

from __future__ import annotations

import sys

import click

from cortexedge import __version__
from cortexedge.errors import CortexEdgeError

USER_ERROR_EXIT = 2


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except CortexEdgeError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(USER_ERROR_EXIT)
        except FileNotFoundError as e:
            click.echo(f"error: file not found: {e.filename or e}", err=True)
            ctx.exit(USER_ERROR_EXIT)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cortexedge")
def cli() -> None:
    """cortexedge: train, compress, export and stream-run neural decoders."""


def _register() -> None:
    from cortexedge.cli import (
        commands_compress,
        commands_data,
        commands_demo,
        commands_export,
        commands_profile,
        commands_sweep,
        commands_train,
    )

    cli.add_command(commands_data.data)
    cli.add_command(commands_train.train)
    cli.add_command(commands_compress.compress)
    cli.add_command(commands_export.export)
    cli.add_command(commands_profile.profile)
    cli.add_command(commands_demo.demo)
    cli.add_command(commands_sweep.sweep)


_register()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="cortexedge", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else USER_ERROR_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
