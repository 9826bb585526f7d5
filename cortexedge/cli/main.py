"""Entry point of the `cortexedge` console script and the one place user errors become exit 2."""

from __future__ import annotations

import sys

import click

from cortexedge import __version__
from cortexedge.errors import CortexEdgeError

USER_ERROR_EXIT = 2


class _Group(click.Group):
    """A click group that turns user errors into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> None:
        # returns None: outside click's standalone mode `main` reads the result as the status
        try:
            super().invoke(ctx)
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


def _usage_line(e: click.UsageError) -> str:
    """A misspelt option or bad value as one line, naming where help is."""
    where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
    return f"error: {e.format_message()}{where}"


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of raising SystemExit."""
    try:  # click returns the status of an exit it caught itself (ctx.exit, --help)
        return cli.main(args=argv, prog_name="cortexedge", standalone_mode=False) or 0
    except click.exceptions.NoArgsIsHelpError as e:  # a bare group: its help, as click shows it
        e.show()
        return e.exit_code
    except click.UsageError as e:
        click.echo(_usage_line(e), err=True)
        return USER_ERROR_EXIT
    except click.ClickException as e:
        click.echo(f"error: {e.format_message()}", err=True)
        return e.exit_code
    except click.Abort:
        click.echo("interrupted", err=True)
        return 130
    except BrokenPipeError:  # output piped into `head`: what click's standalone mode does too
        sys.stdout = None
        return 1


if __name__ == "__main__":
    sys.exit(main())
