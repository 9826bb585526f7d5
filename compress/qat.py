"""Quantization-aware fine-tuning with brevitas: swap float layers, calibrate, read scales.

`quantize(model, spec)` replaces, in place, every layer whose row of the layer table
(`layers.LAYERS`) has a `swap` by its brevitas counterpart holding a copy of the float weights
(`quant_swaps`): Linear and Conv1d/2d become QuantLinear / QuantConv with a quantized input, and
nn.GRU / nn.GRUCell / nn.LSTM / nn.LSTMCell become the cells of `quant_gru` (which export to
QCDQ ONNX). `calibrate` sets the activation scales from a few batches (brevitas's calibration
mode); fine-tuning is the project's `fit`. A quantized model is rebuilt without pickle from (the
float model, the QuantSpec in JSON, the state dict in safetensors): `quantize` on a fresh model,
then `load_state_dict` under `full_state_dict()`, which makes brevitas list every scale
parameter, calibrated or not.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import Tensor, nn

from cortexedge.compress.layers import layer_row
from cortexedge.compress.quant_gru import WEIGHT_BITS, QuantSpec
from cortexedge.compress.quant_swaps import Swap
from cortexedge.errors import CortexEdgeError

ACT_BITS = (8, 6, 4)


def check_spec(spec: QuantSpec) -> None:
    """Raise a CortexEdgeError for bit widths this toolkit does not support."""
    if spec.weight_bits not in WEIGHT_BITS:
        raise CortexEdgeError(
            f"bits: {spec.weight_bits}-bit weights are not supported (choose from "
            f"{', '.join(map(str, WEIGHT_BITS))})"
        )
    if spec.act_bits not in ACT_BITS:
        raise CortexEdgeError(
            f"act_bits: {spec.act_bits}-bit activations are not supported (choose from "
            f"{', '.join(map(str, ACT_BITS))})"
        )


def _swap_of(module: nn.Module) -> Swap | None:
    if hasattr(module, "quant_weight"):
        return None  # a brevitas layer: quantized already (its Linear/Conv row has a swap)
    row = layer_row(module)
    return row.swap if row else None


def quantize(model: nn.Module, spec: QuantSpec) -> list[str]:
    """Swap every layer whose row has a `swap` for its quantized copy, in place; returns their
    names.

    Raises CortexEdgeError when nothing can be quantized or the spec is unsupported.
    """
    check_spec(spec)
    names = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(n + ".") for n in names):
            continue
        swap = _swap_of(module)
        if swap is None:
            continue
        parent_name, _, child = name.rpartition(".")
        q = swap(module, spec).to(next(module.parameters()).device)
        setattr(model.get_submodule(parent_name), child, q)
        names.append(name)
    if not names:
        raise CortexEdgeError(
            f"model {type(model).__name__} has no quantizable layer (Linear, Conv, GRU, LSTM)"
        )
    return names


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable[Tensor], forward=None) -> None:
    """Set every activation scale from the statistics of `batches` (brevitas calibration)."""
    from brevitas.graph.calibrate import calibration_mode

    forward = forward or (lambda m, x: m(x))
    was_training = model.training
    model.eval()
    with calibration_mode(model):
        for x in batches:
            forward(model, x)
    model.train(was_training)


@contextlib.contextmanager
def full_state_dict() -> Iterator[None]:
    """brevitas lists uncalibrated scale parameters in state dicts inside this block, so a
    freshly quantized model and a calibrated one have the same keys."""
    from brevitas import config

    old = config._FULL_STATE_DICT
    config._FULL_STATE_DICT = True
    try:
        yield
    finally:
        config._FULL_STATE_DICT = old


def quantizers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """The enabled brevitas quantizers (proxies) a layer owns, by attribute name."""
    for attr in ("weight_quant", "input_quant", "act_quant"):
        proxy = getattr(module, attr, None)
        if proxy is not None and getattr(proxy, "is_quant_enabled", False):
            yield attr, proxy


@torch.no_grad()
def quant_scales(model: nn.Module) -> dict[str, dict]:
    """Scale(s) and bit width of every enabled quantizer, by "<layer>.<quantizer>" (for JSON)."""
    out = {}
    was_training = model.training
    model.eval()
    for name, module in model.named_modules():
        for attr, proxy in quantizers(module):
            if attr == "weight_quant":
                qt = module.quant_weight()
                scale, bits = qt.scale, qt.bit_width
            else:
                scale, bits = proxy.scale(), proxy.bit_width()
            out[f"{name}.{attr}"] = {
                "bits": int(bits),
                "scale": [float(s) for s in scale.detach().reshape(-1)],
            }
    model.train(was_training)
    return out
