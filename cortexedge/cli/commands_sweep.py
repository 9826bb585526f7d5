"""`cortexedge sweep PLAN.toml --out DIR`: run a grid of train-compress-export cells on Ray;
`cortexedge sweep report DIR` re-prints its table and plot from the results.

`sweep PLAN ...` is shorthand for `sweep run PLAN ...`. Ray and torch load inside the commands,
so `cortexedge --help` stays light.
"""

from __future__ import annotations

from pathlib import Path

import click

from cortexedge.cli.options import trust_code_option


class _SweepGroup(click.Group):
    """A group whose default subcommand is `run`: `sweep PLAN` means `sweep run PLAN`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=_SweepGroup)
def sweep() -> None:
    """Sweep recordings x decoders x recipes x seeds on Ray.

    `cortexedge sweep PLAN.toml --out DIR` is short for `cortexedge sweep run ...`; see the
    README's Sweeps section for the plan file and docs/sweep-sizing.md for sizing.
    """


@sweep.command("run")
@click.argument("plan_path", metavar="PLAN", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Sweep folder.")
@click.option("--address", default=None, help="Join a running Ray cluster: auto or HOST:PORT.")
@click.option("--workers", type=int, default=None, help="Local CPUs to use (default: all).")
@click.option("--dry-run", is_flag=True, help="Print the grid and its size; run nothing.")
@click.option("--resume", is_flag=True, help="Skip complete cells (a plain rerun does too).")
@trust_code_option
def run_command(
    plan_path: Path, out: Path, address: str | None, workers: int | None, dry_run: bool,
    resume: bool, trust_code: bool,
) -> None:  # fmt: skip
    """Run the cells of PLAN not yet complete in --out, then print the table."""
    from cortexedge.sweep import load_plan, report, results, run

    plan = load_plan(plan_path, trust_code=trust_code)
    if dry_run:
        click.echo(plan.describe())
        done = len({c.key for c in plan.cells()} & results.complete(out))
        click.echo(f"{done} already complete in {out}")
        return
    rows = run(plan, out, address=address, workers=workers)
    click.echo(report(out))
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        click.echo(f"failed {r['recording']}/{r['decoder']}/{r['recipe']}/seed{r['seed']}: "
                   f"{r['error']}", err=True)  # fmt: skip
    click.echo(f"wrote {out}: {len(rows) - len(failed)} cells ok, {len(failed)} failed")


@sweep.command("report")
@click.argument("out", metavar="DIR", type=click.Path(path_type=Path))
def report_command(out: Path) -> None:
    """Re-print the table and rewrite pareto.png of sweep folder DIR, from its results."""
    from cortexedge.sweep import report

    click.echo(report(out))
    click.echo(f"wrote {out / 'table.txt'} and {out / 'pareto.png'}")
