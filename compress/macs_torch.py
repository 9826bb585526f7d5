"""Torch-side MAC walker: dense and effective MACs per time bin of a torch model.

The counting rules live once, in `cortexedge.macs` (numpy only), and a layer's counter of one
call is in its row of the layer table (`layers.LAYERS`, fields `macs` and `count`); this file
measures how often each layer runs per bin. It runs the model for ONE bin on a batch of one with
a forward hook on every counted layer: through `step` from `init_state` when the model streams
(so AEGRU's window mode, which reruns num_steps GRU steps every bin, is counted num_steps
times), else through `forward` on a window of `window` bins, divided by `window`. A layer inside
a counted layer (the QuantLinear gates of a QuantGRUCell) is not counted again. Effective counts
read the weights the layer computes with: masked weights while a mask is held, quantized weights
for brevitas layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from cortexedge.compress.layers import LayerRow, layer_row


def _rule_of(module: nn.Module) -> LayerRow | None:
    """The module's layer-table row when it has a MAC counter, else None."""
    row = layer_row(module)
    return row if row and row.count else None


@dataclass
class LayerMacs:
    """One counted layer per bin: calls, applications (rows for a Linear, time steps for a
    recurrent layer: the per-bin multiplicity) and the MACs of all of them."""

    name: str
    kind: str
    calls: float
    runs: float
    dense: float
    effective: float


@dataclass
class MacCount:
    """Dense and effective MACs per bin, with the per-layer breakdown."""

    dense: float
    effective: float
    layers: list[LayerMacs]

    def to_json(self) -> dict:
        return {"dense": self.dense, "effective": self.effective,
                "layers": [asdict(layer) for layer in self.layers]}  # fmt: skip


def counted_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Layers with a MAC rule, outermost only (a counted layer's children are not counted)."""
    out: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if _rule_of(m) is None or any(name.startswith(p + ".") for p in out if p):
            continue
        out[name] = m
        if name == "":
            break
    return out


def _run_one_bin(model: nn.Module, input_shape: tuple[int, ...], window: int) -> int:
    """Run the model for one bin (or `window` bins); returns the number of bins run."""
    weight = next(model.parameters())
    if hasattr(model, "step") and hasattr(model, "init_state"):
        x = weight.new_zeros(1, *input_shape)
        model.step(x, model.init_state(1))
        return 1
    model(weight.new_zeros(1, window, *input_shape))
    return window


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...], window: int = 1) -> MacCount:
    """Dense and effective MACs per bin of `model` (see the module docstring).

    `input_shape` is one bin of input, e.g. (C,) or (H, W); `window` the number of bins fed to
    `forward` for models without `step`.
    """
    layers = counted_layers(model)
    totals = {name: [0, 0, 0, 0] for name in layers}  # calls, dense, effective, runs

    def hook(name: str, count: Callable):
        def record(m: nn.Module, inputs: tuple, output) -> None:
            for i, v in enumerate((1, *count(m, inputs[0]))):
                totals[name][i] += v

        return record

    handles = [m.register_forward_hook(hook(n, _rule_of(m).count)) for n, m in layers.items()]
    was_training = model.training
    try:
        bins = _run_one_bin(model.eval(), tuple(input_shape), window)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    rows = [
        LayerMacs(name, _rule_of(layers[name]).macs, c / bins, r / bins, d / bins, e / bins)
        for name, (c, d, e, r) in totals.items()
        if c
    ]
    return MacCount(sum(r.dense for r in rows), sum(r.effective for r in rows), rows)
