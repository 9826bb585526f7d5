"""`cortexedge train`: fit a decoder of the family table, or a class of your own, on a recording.

`--model` is a family name or `file.py:Class` / `package.module:Class` (naming it is the opt-in
to import it; see `cortexedge.user_code`). The constructor's sizes come from the recording
(channels, outputs, frame shape) for the parameters it has; a TOML `--config` adds [model],
[train] and [data] settings and `--model-args` (JSON) adds constructor arguments over [model];
`--epochs` and `--seed` override the file. Closed-form families (ridge, kalman) are solved
instead of trained and write the same run folder. torch loads only when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cortexedge.cli.options import check_run_out, force_option
from cortexedge.errors import CortexEdgeError
from cortexedge.families import help_text

QUICK = {"epochs": 2, "train_stride": 8, "patience": 2}  # a smoke run, not a result


@click.command()
@click.option(
    "--data",
    "data_path",
    type=click.Path(path_type=Path),
    required=True,
    help="Recording (.npz) to train on.",
)
@click.option(
    "--model",
    "model_name",
    required=True,
    help=f"A family of the family table: {help_text()}; or your own class as file.py:Class "
    "or package.module:Class.",
)
@click.option(
    "--model-args",
    default=None,
    help="Constructor arguments as a JSON object, over [model] (e.g. '{\"hidden\": 64}').",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML file with [model], [train] and [data] tables.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder (created with its parents).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Override [train] epochs.")
@click.option("--seed", type=int, default=None, help="Override [train] seed.")
@click.option("--quick", is_flag=True, help="Smoke run: 2 epochs on every 8th training window.")
@force_option
def train(
    data_path: Path,
    model_name: str,
    model_args: str | None,
    config_path: Path | None,
    out: Path,
    epochs: int | None,
    seed: int | None,
    quick: bool,
    force: bool,
) -> None:
    """Train a decoder on a recording; writes the checkpoint, metrics.json and epochs.jsonl."""
    from cortexedge.families import FAMILIES
    from cortexedge.recording import Recording
    from cortexedge.train.config import RunConfig, load_config
    from cortexedge.user_code import is_code_ref, parse_ref, register_user_class

    check_run_out(out, force, data_path, config_path)
    cfg = load_config(config_path) if config_path is not None else RunConfig()
    cfg.model.update(_json_object(model_args))
    if is_code_ref(model_name):
        model_name = register_user_class(parse_ref(model_name))
    if model_name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise CortexEdgeError(f"unknown model '{model_name}' (known: {known}, or file.py:Class)")
    rec = Recording.load(data_path)
    settings = {**cfg.train, **(QUICK if quick else {})}
    settings.update({k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None})
    metrics = _fit(rec, model_name, cfg, settings, out)
    summary = {s: metrics[s] for s in ("val", "test") if s in metrics}
    click.echo(f"wrote {out}: {json.dumps(summary)}")


def _json_object(text: str | None) -> dict:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise CortexEdgeError(f"--model-args: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise CortexEdgeError(f"--model-args: expected a JSON object, got {text!r:.60}")
    return value


def _fit(rec, name: str, cfg, settings: dict, out: Path) -> dict:
    from cortexedge.scoring import target_kind
    from cortexedge.train.build import model_for
    from cortexedge.train.fit import fit

    kind = target_kind(rec, settings.get("task"))
    # the seed fixes the weights' initialisation too, not only the data order
    model = model_for(name, rec, kind, cfg.model, cfg.data, seed=settings.get("seed", 0))
    result = fit(model, rec, out=out, data=cfg.data, **settings)
    for key, record in (result.config.get("durations") or {}).items():
        if "note" in record:
            click.echo(f"note: {key}: {record['note']}", err=True)
    return result.metrics
