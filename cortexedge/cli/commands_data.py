"""`cortexedge data`: make synthetic recordings, convert files to the recording format, inspect."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cortexedge.errors import CortexEdgeError


@click.group()
def data() -> None:
    """Make, convert and inspect recordings (.npz)."""


def _check_out(out: Path) -> None:
    if not out.parent.exists():
        raise CortexEdgeError(f"output folder does not exist: {out.parent}")


def _parse_options(options: tuple[str, ...]) -> dict:
    """KEY=VALUE pairs; values parse as JSON numbers/booleans when they can, else stay strings."""
    parsed = {}
    for opt in options:
        key, sep, value = opt.partition("=")
        if not sep or not key.isidentifier():
            raise CortexEdgeError(f"--option expects KEY=VALUE, got '{opt}'")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


@data.command()
@click.argument("kind", type=click.Choice(["reaching", "two-photon", "widefield"]))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output .npz.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--channels", type=int, default=None, help="Channels / neurons (reaching: 96|192).")
@click.option("--minutes", type=float, default=None, help="Recording length in minutes.")
def synth(kind: str, out: Path, seed: int, channels: int | None, minutes: float | None) -> None:
    """Generate a deterministic synthetic recording of KIND."""
    _check_out(out)
    from cortexedge.train.data.synth import generate

    kwargs = {k: v for k, v in (("channels", channels), ("minutes", minutes)) if v is not None}
    rec = generate(kind, seed=seed, **kwargs)
    rec.save(out)
    click.echo(f"wrote {out}: {json.dumps(rec.summary())}")


@data.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output .npz.")
@click.option(
    "--format",
    "fmt",
    default="auto",
    show_default=True,
    help="Reader: auto, or one of the names listed by `cortexedge data formats`.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Reader option, repeatable (e.g. bin_width=0.028, behaviour=hand_vel).",
)
def convert(file: Path, out: Path, fmt: str, options: tuple[str, ...]) -> None:
    """Convert FILE (NeuroBench .mat, real reaching .npz, calcium/widefield, NWB) to a recording."""
    _check_out(out)
    from cortexedge.train.data.readers import read

    rec = read(file, fmt=fmt, **_parse_options(options))
    rec.save(out)
    click.echo(f"wrote {out}: {json.dumps(rec.summary())}")


@data.command()
def formats() -> None:
    """List the readers `convert` knows."""
    from cortexedge.train.data.readers import READERS

    for name, reader in READERS.items():
        click.echo(f"{name:12s} {reader.description}")


@data.command()
@click.argument("file", type=click.Path(path_type=Path))
def info(file: Path) -> None:
    """Validate a recording and print its summary."""
    from cortexedge.recording import Recording

    click.echo(json.dumps(Recording.load(file).summary(), indent=2))
