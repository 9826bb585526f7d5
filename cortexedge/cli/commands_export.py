"""`cortexedge export`: a run folder (trained or compressed checkpoint) -> a deployable decoder.

Targets are a registry (`TARGETS`: name -> function writing the artifact and returning the lines
to print); "onnx" is built in, other targets (C sources) add an entry. The stage is imported
inside the function, so `cortexedge --help` stays torch-free and fast.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import click

from cortexedge.cli.options import trust_code_option
from cortexedge.errors import CortexEdgeError


def _onnx(run_dir: Path, out: Path, options: dict) -> list[str]:
    """Write one verified ONNX file; returns the summary lines."""
    from cortexedge.export.api import to_onnx

    report = to_onnx(
        run_dir,
        out,
        recording=options["data"],
        sequence=options["sequence"],
        sequence_length=options["sequence_length"],
        opset=options["opset"],
        trust_code=options["trust_code"],
        progress=True,
    )
    meta, check = report.metadata, report.verification
    steps = f" = {check.max_err_steps:.3g} quantization steps" if check.max_err_steps else ""
    if check.boundary_bins:
        steps += f" ({check.boundary_bins} rounding-boundary bins)"
    lines = [
        f"wrote {report.path} ({report.bytes_written:,} bytes, {report.graph} graph, "
        f"opset {options['opset']}, batch {'dynamic' if report.dynamic_batch else 1})",
        f"verified on {check.bins:,} bins x {check.streams} streams ({check.split}): max error "
        f"{check.max_abs_err:.3g}{steps}, tolerance {check.tolerance:.3g} [{check.rule}]",
        f"MACs/bin dense {meta.macs['dense']:,} effective {meta.macs['effective']:,}; "
        f"{meta.params:,} params, {meta.bytes:,} bytes, sparsity {meta.sparsity:.3f}"
        + (f", W{meta.bits['weights']}A{meta.bits['activations']}" if meta.bits else ""),
    ]
    if report.sequence_check is not None:
        lines.append(
            f"sequence graph vs that step graph: max error "
            f"{report.sequence_check.max_rel_err:.3g} of the output scale"
        )
    if meta.score is not None:
        score = meta.score
        lines.append(f"{score['metric']} on {score['split']} split: {score['value']:.4f}")
    else:
        lines.append("no --data: verified on synthetic inputs, no score recorded")
    return lines


def _c(run_dir: Path, out: Path, options: dict) -> list[str]:
    """Generate, build and verify the C decoder in the folder `out`; returns the summary lines."""
    from cortexedge.export.c.generate import export_c, summary_lines

    built = export_c(
        run_dir, out, recording=options["data"], progress=True, trust_code=options["trust_code"],
        name=options["name"], qemu_bins=QEMU_BINS if options["qemu"] else 0,
        sparse=options["sparse"] or "auto", weights_budget=options["weights_budget"],
    )  # fmt: skip
    return summary_lines(built)


QEMU_BINS = 2000  # rows `--qemu` runs on the emulated Cortex-M4 (about 10 s for an AEGRU)
C_ONLY = ("name", "qemu", "sparse", "weights_budget")  # options that only the c target reads


# target name -> writer(run_dir, out, options) -> lines to print
TARGETS: dict[str, Callable[[Path, Path, dict], list[str]]] = {"onnx": _onnx, "c": _c}


@click.command("export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output file (onnx) or folder (c).",
)
@click.option(
    "--target",
    type=click.Choice(sorted(TARGETS)),
    default="onnx",
    show_default=True,
    help="What to write.",
)
@click.option("--sequence", is_flag=True, help="Write the sequence graph (x [B, T, ...]).")
@click.option("--sequence-length", type=int, default=None, help="Fix T of the sequence graph.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset (17-20).")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    default=None,
    help="Recording (.npz) whose test split verifies the export and scores it.",
)
@click.option("--name", default=None, help="c: prefix of every C symbol (default: the model's).")
@click.option("--qemu", is_flag=True, help="c: run the Cortex-M4 build under qemu-system-arm.")
@click.option(
    "--sparse",
    default=None,
    help="c: weight storage, auto (fewest M4 instructions), size (fewest bytes), dense, "
    "sparse (CSR) or mask (int8 bit mask).",
)
@click.option(
    "--weights-budget",
    type=click.IntRange(min=1),
    default=None,
    metavar="BYTES",
    help="c, integer path: the fewest M4 instructions whose constant data fits BYTES of flash.",
)
@trust_code_option
def export(
    run_dir: Path,
    out: Path,
    target: str,
    sequence: bool,
    sequence_length: int | None,
    opset: int,
    data: Path | None,
    name: str | None,
    qemu: bool,
    sparse: str | None,
    weights_budget: int | None,
    trust_code: bool,
) -> None:
    """Export the checkpoint in RUN_DIR, verified against torch on >= 1,000 streamed bins."""
    options = dict(sequence=sequence, sequence_length=sequence_length, opset=opset, data=data,
                   trust_code=trust_code, name=name, qemu=qemu, sparse=sparse,
                   weights_budget=weights_budget)  # fmt: skip
    given = [f"--{k.replace('_', '-')}" for k in C_ONLY if options[k] not in (None, False)]
    if given and target != "c":
        raise CortexEdgeError(f"{', '.join(given)} only apply to --target c")
    if qemu:
        import shutil

        missing = [t for t in ("arm-none-eabi-gcc", "qemu-system-arm") if not shutil.which(t)]
        if missing:
            raise CortexEdgeError(
                f"--qemu needs {' and '.join(missing)} (Debian: gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi qemu-system-arm)"
            )
    for line in TARGETS[target](run_dir, out, options):
        click.echo(line)
