"""`cortexedge data`: make synthetic recordings, convert files to the recording format, inspect."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cortexedge.atomic import check_file_out
from cortexedge.cli.options import REPLACE_REFUSED, replace_option
from cortexedge.errors import CortexEdgeError


@click.group()
def data() -> None:
    """Make, convert and inspect recordings (.npz)."""


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
@replace_option
def synth(
    kind: str, out: Path, seed: int, channels: int | None, minutes: float | None, force: bool
) -> None:
    """Generate a deterministic synthetic recording of KIND."""
    check_file_out(out, option="--out", exists=None if force else REPLACE_REFUSED)
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
@click.option(
    "--x", "x_key", metavar="KEY", help="Array of neural input (any file: .mat, .npz, .h5)."
)
@click.option("--y", "y_key", metavar="KEY", help="Array of continuous targets (with --x).")
@click.option("--bin-ms", type=float, default=None, help="Bin width in ms (with --x).")
@click.option("--test-x", metavar="KEY", help="Array of test input; x is then train + val.")
@click.option("--test-y", metavar="KEY", help="Array of test targets (with --test-x).")
@click.option(
    "--split",
    default=None,
    metavar="time:TRAIN,VAL,TEST",
    help="Contiguous time split (with --x) [default: time:0.7,0.15,0.15].",
)
@click.option("--trials", metavar="KEY", help="Array of trial ids: split by whole trials.")
@click.option("--continuous", is_flag=True, help="x is continuous (rates, ΔF/F), not counts.")
@replace_option
def convert(
    file: Path, out: Path, fmt: str, options: tuple[str, ...], force: bool, **named
) -> None:
    """Convert FILE (NeuroBench .mat, real reaching .npz, calcium/widefield, NWB, or any
    .mat/.npz/HDF5 file with its arrays named by --x and --y) to a recording."""
    check_file_out(out, file, option="--out", exists=None if force else REPLACE_REFUSED)
    from cortexedge.train.data.readers import read

    kwargs = _parse_options(options) | _named_arrays(named)
    if "x" in kwargs and fmt == "auto":
        fmt = "arrays"
    rec = read(file, fmt=fmt, **kwargs)
    rec.save(out)
    click.echo(f"read {file}: {json.dumps(rec.meta.get('read') or rec.meta.get('source'))}")
    click.echo(f"wrote {out}: {json.dumps(rec.summary())}")


def _named_arrays(named: dict) -> dict:
    """The --x/--y family of options as the arrays reader's keywords (only those given)."""
    keys = {"x_key": "x", "y_key": "y", "bin_ms": "bin_ms", "test_x": "test_x",
            "test_y": "test_y", "split": "split", "trials": "trials"}  # fmt: skip
    out = {keys[k]: v for k, v in named.items() if k in keys and v is not None}
    if named.get("continuous"):
        out["continuous"] = True
    if out and not {"x", "y"} <= set(out):
        raise CortexEdgeError("--x and --y name the input and target arrays; give both")
    return out


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
