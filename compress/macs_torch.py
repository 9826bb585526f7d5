"""Torch-side MAC walker: dense and effective MACs per time bin of a torch model.

The counting rules live once, in `cortexedge.macs` (numpy only); this file only maps torch
layers to them (`LAYER_RULES`, keyed by layer type) and measures how often each layer runs per
bin. It runs the model for ONE bin on a batch of one with a forward hook on every counted layer:
through `step` from `init_state` when the model streams (so AEGRU's window mode, which reruns
num_steps GRU steps every bin, is counted num_steps times), else through `forward` on a window
of `window` bins, divided by `window`. A layer inside a counted layer (the QuantLinear gates of
a QuantGRUCell) is not counted again. Effective counts read the weights the layer computes with:
masked weights while a mask is held, quantized weights for brevitas layers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from cortexedge import macs
from cortexedge.compress.magnitude import current
from cortexedge.compress.quant_gru import QuantGRUCell, QuantLSTMCell

Count = tuple[int, int, int]  # dense, effective, applications (rows or time steps) in the call


def layer_weight(module: nn.Module, name: str = "weight") -> np.ndarray:
    """The weight a layer computes with, as numpy: quantized for brevitas layers."""
    if name == "weight" and hasattr(module, "quant_weight"):
        w = module.quant_weight().value
    else:
        w = current(module, name)
    return w.detach().cpu().numpy()


def _linear(m: nn.Linear, x: Tensor) -> Count:
    rows = x.numel() // m.in_features
    return (*macs.RULES["linear"](layer_weight(m), positions=rows), rows)


def _conv(m: _ConvNd, x: Tensor) -> Count:
    nd = len(m.kernel_size)
    spatial = list(x.shape[-nd:])
    rev = m._reversed_padding_repeated_twice  # [last_begin, last_end, ..., first_begin, ...]
    begins = [rev[2 * (nd - 1 - a)] for a in range(nd)]
    ends = [rev[2 * (nd - 1 - a) + 1] for a in range(nd)]
    pads = begins + ends
    if m.padding_mode != "zeros":  # padded with copies of real input: every tap reads data
        spatial = [s + b + e for s, b, e in zip(spatial, begins, ends, strict=True)]
        pads = [0] * (2 * nd)
    count = macs.RULES["conv"](layer_weight(m), spatial, list(m.stride), pads, list(m.dilation))
    return (*count, 1)


def _cell(kind: str) -> Callable[[nn.Module, Tensor], Count]:
    def count(m: nn.Module, x: Tensor) -> Count:
        return (*macs.RULES[kind](layer_weight(m, "weight_ih"), layer_weight(m, "weight_hh")), 1)

    return count


def _quant_cell(kind: str) -> Callable[[nn.Module, Tensor], Count]:
    def count(m: nn.Module, x: Tensor) -> Count:
        return (*macs.RULES[kind](layer_weight(m.ih), layer_weight(m.hh)), 1)

    return count


def _rnn(kind: str) -> Callable[[nn.RNNBase, Tensor], Count]:
    def count(m: nn.RNNBase, x: Tensor) -> Count:
        steps = x.numel() // m.input_size
        dirs = ["", "_reverse"][: 2 if m.bidirectional else 1]
        total = np.zeros(2, dtype=np.int64)
        for layer in range(m.num_layers):
            for d in dirs:
                suffix = f"_l{layer}{d}"
                w_ih, w_hh = (
                    layer_weight(m, "weight_ih" + suffix),
                    layer_weight(m, "weight_hh" + suffix),
                )
                total += np.array(macs.RULES[kind](w_ih, w_hh)) * steps
        return int(total[0]), int(total[1]), steps

    return count


# layer type -> (rule kind reported, counter of one call given the call's first input)
LAYER_RULES: dict[type[nn.Module], tuple[str, Callable[[nn.Module, Tensor], Count]]] = {
    nn.Linear: ("linear", _linear),
    _ConvNd: ("conv", _conv),
    nn.GRUCell: ("gru", _cell("gru")),
    nn.LSTMCell: ("lstm", _cell("lstm")),
    nn.GRU: ("gru", _rnn("gru")),
    nn.LSTM: ("lstm", _rnn("lstm")),
    QuantGRUCell: ("gru", _quant_cell("gru")),
    QuantLSTMCell: ("lstm", _quant_cell("lstm")),
}


def _rule_of(module: nn.Module):
    return next((LAYER_RULES[c] for c in type(module).__mro__ if c in LAYER_RULES), None)


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

    handles = [m.register_forward_hook(hook(n, _rule_of(m)[1])) for n, m in layers.items()]
    was_training = model.training
    try:
        bins = _run_one_bin(model.eval(), tuple(input_shape), window)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    rows = [
        LayerMacs(name, _rule_of(layers[name])[0], c / bins, r / bins, d / bins, e / bins)
        for name, (c, d, e, r) in totals.items()
        if c
    ]
    return MacCount(sum(r.dense for r in rows), sum(r.effective for r in rows), rows)
