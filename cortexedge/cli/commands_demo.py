"""`cortexedge demo`: the whole pipeline on the embedded synthetic recording."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo-out"),
    show_default=True,
    help="Folder for every artifact (created).",
)
@click.option("--quick", is_flag=True, help="Small sizes: under a minute (used by the tests).")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, quick: bool, seed: int) -> None:
    """Train, compress, export and stream an AEGRU; print one comparison table."""
    from cortexedge.cli.demo import run_demo

    run_demo(out, quick=quick, seed=seed)
