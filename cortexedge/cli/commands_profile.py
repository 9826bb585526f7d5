"""`cortexedge profile`: stream an exported decoder bin by bin and report what it costs.

Imports only the torch-free runtime (numpy + onnxruntime), lazily, inside the command.
"""

from __future__ import annotations

from pathlib import Path

import click

from cortexedge.atomic import check_file_out
from cortexedge.errors import CortexEdgeError


@click.command("profile")
@click.argument("decoder", type=click.Path(path_type=Path))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Recording (.npz): its test split is fed bin by bin.",
)
@click.option(
    "--synthetic",
    is_flag=True,
    help="Feed Poisson bins of the decoder's input shape (the default without --data).",
)
@click.option(
    "--bins",
    "n_bins",
    type=click.IntRange(min=1),
    default=None,
    help="Number of bins [default: 2000 synthetic, the whole test split for --data].",
)
@click.option(
    "--backend",
    default="ort",
    show_default=True,
    help="ort, numpy, c, or 'all' for every available backend side by side.",
)
@click.option("--realtime", is_flag=True, help="Pace bins at their real rate and report lateness.")
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=None,
    help="Bins excluded from the latency statistics [default: min(100, bins/10)].",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Intra-op threads per backend.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --synthetic bins.")
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path),
    default=None,
    help="Write the summary as JSON.",
)
@click.option(
    "--plot",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a PNG: latency histogram, predicted vs true trajectories.",
)
def profile(
    decoder: Path,
    data: Path | None,
    synthetic: bool,
    n_bins: int | None,
    backend: str,
    realtime: bool,
    warmup: int | None,
    threads: int,
    seed: int,
    json_out: Path | None,
    plot: Path | None,
) -> None:
    """Stream DECODER (.onnx, or a C build's folder) bin by bin: latency, deadlines, MACs,
    footprint, accuracy, and the C build's flash, RAM and MACs when there is one."""
    from cortexedge.runtime import profile as prof
    from cortexedge.runtime import report
    from cortexedge.runtime.backends import BACKENDS, available_for
    from cortexedge.runtime.model import load_decoder

    if data is not None and synthetic:
        raise CortexEdgeError("choose either --data or --synthetic, not both")
    for option, out in (("--json", json_out), ("--plot", plot)):
        if out is not None:
            theirs = out.is_file() and not report.written_by_profile(out)
            check_file_out(out, decoder, data, option=option, exists=" and is not a file "
                           "profile wrote; choose another path" if theirs else None)  # fmt: skip
    if backend != "all" and backend not in BACKENDS:
        raise CortexEdgeError(
            f"--backend: '{backend}' is not available (choose from {sorted(BACKENDS)} or all)"
        )
    if decoder.is_dir() and (decoder / "decoder.onnx").is_file():  # a C build's folder
        decoder = decoder / "decoder.onnx"
    model = load_decoder(decoder)
    meta = model.meta
    backends = available_for(model) if backend == "all" else (backend,)
    left_out = {  # "all" says which backends this file cannot run, and why
        name: getattr(BACKENDS[name], "missing", "not available for this file")
        for name in BACKENDS if backend == "all" and name not in backends
    }  # fmt: skip
    if data is not None:
        stream = prof.recording_stream(data, meta, n_bins)
    else:
        stream = prof.synthetic_stream(meta, n_bins or 2000, seed)
    run = prof.profile(decoder, stream, backends, realtime=realtime, warmup=warmup,
                       threads=threads)  # fmt: skip
    run.summary["backends_left_out"] = left_out
    report.print_summary(run.summary)
    if json_out is not None:
        report.write_json(run.summary, json_out)
        click.echo(f"wrote {json_out}")
    if plot is not None:
        report.save_plot(run, plot)
        click.echo(f"wrote {plot}")
