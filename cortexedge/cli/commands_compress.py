"""`cortexedge compress`: prune and quantize a trained decoder, fine-tuning between the stages.

Reads a run folder written by `cortexedge train`, runs the recipe of `cortexedge.compress` on
it and writes a new checkpoint folder with compression.json. The input folder is never written;
every option is checked before anything heavy is loaded. torch loads only when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cortexedge.cli.options import check_run_out, force_option, trust_code_option
from cortexedge.errors import CortexEdgeError

# config.json entries of the source run that describe the data and carry over to the output
CARRIED = ("family", "task", "preprocessing", "data_fingerprint", "recording", "seed", "train",
           "durations")  # fmt: skip


def _recording(run: Path, config: dict, data_path: Path | None):
    from cortexedge.recording import Recording

    path = data_path or config.get("data_path")
    if path is None:
        raise CortexEdgeError(f"{run}: the run does not name its recording; pass --data")
    rec = Recording.load(path)
    expected = config.get("data_fingerprint")
    if expected and rec.fingerprint() != expected:
        click.echo(f"warning: {path} is not the recording {run} was trained on", err=True)
    return rec


def _table(stages: list[dict]) -> str:
    key = "r2" if "r2" in stages[0] else "accuracy"
    rows = [f"{'stage':12s} {key:>9s} {'MACs dense':>11s} {'MACs eff':>10s} "
            f"{'params':>8s} {'sparsity':>8s} {'bytes':>9s}"]  # fmt: skip
    for s in stages:
        rows.append(
            f"{s['name']:12s} {s[key]:9.4f} {s['macs_dense']:11.0f} {s['macs_effective']:10.0f} "
            f"{s['params']:8d} {s['sparsity']:8.3f} {s['bytes']:9d}"
        )
    return "\n".join(rows)


@click.command()
@click.argument("run", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Output checkpoint folder (created; must differ from RUN).",
)
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Recording (.npz) to fine-tune and evaluate on.",
)
@click.option(
    "--sparsity",
    type=float,
    default=0.0,
    show_default=True,
    help="Magnitude pruning: fraction of weights set to zero, in [0, 1).",
)
@click.option(
    "--structured",
    type=float,
    default=0.0,
    show_default=True,
    help="Fraction of channels and recurrent hidden units removed, in [0, 1).",
)
@click.option("--bits", type=int, default=None, help="Weight bits for QAT (8, 4 or 3).")
@click.option("--act-bits", type=int, default=8, show_default=True, help="Activation bits.")
@click.option("--per-channel", is_flag=True, help="Per-output-channel weight scales.")
@click.option("--scope", default="global", show_default=True, help="global or layer.")
@click.option("--schedule", default="oneshot", show_default=True, help="oneshot or gradual.")
@click.option(
    "--importance",
    default="magnitude",
    show_default=True,
    help="Structured importance: magnitude or taylor.",
)
@click.option(
    "--finetune-epochs",
    type=int,
    default=10,
    show_default=True,
    help="Fine-tuning epochs after each stage.",
)
@click.option(
    "--qat-epochs",
    type=int,
    default=None,
    help="Fine-tuning epochs of the quantized model (default: --finetune-epochs).",
)
@click.option(
    "--lr", type=float, default=3e-4, show_default=True, help="Fine-tuning rate after pruning."
)
@click.option(
    "--qat-lr", type=float, default=1e-4, show_default=True, help="Fine-tuning rate of QAT."
)
@click.option(
    "--train-stride",
    type=int,
    default=None,
    help="Keep every n-th training window (default: the run's).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=None, help="torch threads (default: fit's).")
@trust_code_option
@force_option
def compress(
    run: Path, out: Path, data_path: Path | None, sparsity: float, structured: float,
    bits: int | None, act_bits: int, per_channel: bool, scope: str, schedule: str,
    importance: str, finetune_epochs: int, qat_epochs: int | None, lr: float, qat_lr: float,
    train_stride: int | None, seed: int, threads: int | None, trust_code: bool, force: bool,
) -> None:  # fmt: skip
    """Compress the decoder of run folder RUN into a new checkpoint folder."""
    from cortexedge.compress.recipe import Recipe

    recipe = Recipe(
        sparsity=sparsity, structured=structured, bits=bits, act_bits=act_bits,
        per_channel=per_channel, scope=scope, schedule=schedule, importance=importance,
        finetune_epochs=finetune_epochs, qat_epochs=qat_epochs, lr=lr, qat_lr=qat_lr, seed=seed,
    )  # fmt: skip
    recipe.validate()
    check_run_out(out, force, run, data_path)
    for name, value in (("--train-stride", train_stride), ("--threads", threads)):
        if value is not None and value < 1:
            raise CortexEdgeError(f"{name} must be >= 1, got {value}")

    from cortexedge.compress.artifacts import CONFIG_KEY, load_compressed, save_compressed
    from cortexedge.compress.recipe import compress as run_recipe
    from cortexedge.train.checkpoint import read_config

    config = read_config(run)
    if CONFIG_KEY in config:
        raise CortexEdgeError(f"{run} is already compressed; compress its source run instead")
    rec = _recording(run, config, data_path)
    model, _ = load_compressed(run, trust_code=trust_code)
    pre = dict(config.get("preprocessing") or {})
    stride = train_stride or int(pre.pop("train_stride", 1))
    windowing = {k: v for k, v in pre.items() if k not in ("windowing", "train_stride")}
    task = None if config.get("task") in (None, "regression") else "classification"
    result = run_recipe(
        model, rec, recipe, family=config.get("family"), data=windowing or None,
        task=task, train_stride=stride, progress=True,
        **({"threads": threads} if threads else {}),
    )  # fmt: skip
    extra = {k: config[k] for k in CARRIED if k in config}
    save_compressed(result, out, extra={**extra, "source": str(run)})
    click.echo(_table(result.stages))
    click.echo(f"wrote {out}: {json.dumps({'stages': len(result.stages)})}")
