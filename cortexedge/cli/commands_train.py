"""`cortexedge train`: fit a decoder of the family table on a recording.

The model's constructor sizes come from the recording (channels, outputs, frame shape) through
its training spec; a TOML `--config` adds [model], [train] and [data] settings; `--epochs` and
`--seed` override the file. Closed-form families (ridge, kalman) are solved instead of trained,
and write the same run folder. torch loads only when the command runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from cortexedge.errors import CortexEdgeError
from cortexedge.families import help_text

QUICK = {"epochs": 2, "train_stride": 8, "patience": 2}  # a smoke run, not a result


def _build(name: str, rec, cfg, kind: str):
    """Build model `name` for `rec`: sizes from the recording, then [model], then [data]."""
    import inspect

    from cortexedge.families import FAMILIES
    from cortexedge.train.config import check_model_keys
    from cortexedge.train.models.registry import build_model
    from cortexedge.train.specs import spec_for

    cls = FAMILIES[name].model_class()
    spec = spec_for(name)
    spec.check(rec, kind, name)
    check_model_keys(cfg, cls)
    implied = spec.build_kwargs(rec, kind)
    for key, value in cfg.model.items():
        if key in implied and implied[key] != value:
            raise CortexEdgeError(
                f"model.{key}={value} does not match the recording ({key}={implied[key]})"
            )
    params = inspect.signature(cls).parameters
    # windowing parameters the model also takes (AEGRU's bin_width, num_steps) go to both
    shared = {k: v for k, v in cfg.data.items() if k in params}
    return build_model(name, **{**implied, **shared, **cfg.model})


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
    help=f"A family of the family table: {help_text()}.",
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
@click.option(
    "--force", is_flag=True, help="Replace the run in an existing --out folder (its files only)."
)
def train(
    data_path: Path,
    model_name: str,
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

    if out.exists() and not out.is_dir():
        raise CortexEdgeError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise CortexEdgeError(
            f"--out {out} already holds files; pass --force to replace the run in it, "
            "or choose a new folder"
        )
    if model_name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise CortexEdgeError(f"unknown model '{model_name}' (known: {known})")
    cfg = load_config(config_path) if config_path is not None else RunConfig()
    rec = Recording.load(data_path)
    settings = {**cfg.train, **(QUICK if quick else {})}
    settings.update({k: v for k, v in (("epochs", epochs), ("seed", seed)) if v is not None})
    metrics = _fit(rec, model_name, cfg, settings, out)
    summary = {s: metrics[s] for s in ("val", "test") if s in metrics}
    click.echo(f"wrote {out}: {json.dumps(summary)}")


def _fit(rec, name: str, cfg, settings: dict, out: Path) -> dict:
    from cortexedge.train.fit import fit, seed_everything
    from cortexedge.train.specs import target_kind

    seed_everything(settings.get("seed", 0))  # the weights' initialisation too, not only the data
    model = _build(name, rec, cfg, target_kind(rec, settings.get("task")))
    return fit(model, rec, out=out, data=cfg.data, **settings).metrics
