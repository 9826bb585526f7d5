"""Compressed checkpoints: safetensors + JSON, rebuilt without pickle.

A compressed checkpoint is a normal checkpoint folder (`model.safetensors`, `config.json`, see
`cortexedge.train.checkpoint`) whose config.json names the ORIGINAL model (registry name and
constructor config) and adds a `compression` entry: the recipe, the structured-pruning plan
with the example input shape it was traced with, the quantization spec, per-layer sparsity,
bit widths and quantizer scales. `compression.json` next to it holds the per-stage table.

Rebuilding = build the original model, replay the plan, swap in the quantized layers of the
spec, then load the tensors (float weights with their zeros, quantizer scale parameters).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from cortexedge.atomic import staged_folder
from cortexedge.compress.qat import full_state_dict, quantize
from cortexedge.compress.quant_gru import QuantSpec
from cortexedge.compress.recipe import CompressResult
from cortexedge.compress.structured import PlanStep, replay

CONFIG_KEY = "compression"


def save_compressed(
    result: CompressResult, out: str | os.PathLike, *, extra: dict | None = None
) -> Path:
    """Write the compressed model to the folder `out`: checkpoint files plus compression.json,
    staged and put in place whole (an earlier run's files go; the user's stay).

    `extra`: run facts to carry over from the source checkpoint (family, preprocessing, ...).
    """
    from cortexedge.train.checkpoint import COMPRESSION_FILE, not_ours, save_checkpoint, write_json

    out = Path(out)
    info = {
        "recipe": result.recipe.to_json(),
        "plan": [step.to_json() for step in result.plan],
        "example_shape": result.example_shape,
        "input_shape": result.input_shape,
        "quant": vars(result.recipe.quant_spec()) if result.recipe.bits else None,
        "sparsity": result.sparsity,
        "bits": {name: s["bits"] for name, s in result.scales.items()},
        "scales": result.scales,
    }
    extra = {k: v for k, v in (extra or {}).items() if k != CONFIG_KEY}
    with staged_folder(out, keep=not_ours) as stage:
        with full_state_dict():
            save_checkpoint(result.model, stage, extra={**extra, CONFIG_KEY: info})
        write_json(
            stage / COMPRESSION_FILE,
            {"recipe": result.recipe.to_json(), "stages": result.stages},
        )
    return out


def rebuild(model: nn.Module, info: dict) -> nn.Module:
    """Turn a freshly built original model into the compressed architecture, in place."""
    plan = [PlanStep.from_json(s) for s in info.get("plan") or []]
    if plan:
        replay(model.eval(), torch.zeros(info["example_shape"]), plan)
    if info.get("quant"):
        quantize(model, QuantSpec(**info["quant"]))
    return model


def load_compressed(
    folder: str | os.PathLike, model: nn.Module | None = None, *, trust_code: bool = False
) -> tuple[nn.Module, dict]:
    """Load a compressed (or a plain) checkpoint; returns (model in eval mode, config).

    Pass `model`, a fresh instance of the ORIGINAL architecture, for a class that is not in
    the registry; `trust_code` to import the user class the checkpoint names.
    """
    from cortexedge.train.checkpoint import build_from_config, load_checkpoint, read_sealed

    config, _ = read_sealed(folder)  # the seal holds before any class is built or imported
    info = config.get(CONFIG_KEY)
    if info is None:
        return load_checkpoint(folder, model, trust_code=trust_code)
    if model is None:
        model = build_from_config(config, folder, trust_code)
    rebuild(model, info)
    with full_state_dict():
        return load_checkpoint(folder, model, trust_code=trust_code)
