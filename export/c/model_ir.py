"""The layer IR of the integer C path: read once from a brevitas QAT decoder.

`read_structure(model)` finds the parts every supported decoder is made of and checks each
submodule's type against `LAYER_KINDS` (a table keyed by module type, read along the MRO), so
a model with a layer the generator cannot emit fails with one line naming that layer and type:

    box-sum front end (bin of `width` raw samples; AEGRU) -> input transform
    -> [encoder Linear -> BatchNorm -> clamp] -> GRU cells (each + optional LayerNorm) or
    LSTM cells
    -> Linear readout

Streaming: "stateful" carries each layer's hidden state; "window" (AEGRU's published mode)
reruns the GRU from zero over `num_steps` bins `lag` samples apart at every sample (see
cortexedge.runtime.int_reference for the chain cache that makes this cheap).
A class without a family reader (a user's) is read from what its `step` calls instead
(`declared_ir.read_declared`). The integer IR comes from `int_extract.int_model`. (The float path reads the exported step
graph instead: graph_ir.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cortexedge.compress.quant_gru import QuantGRU, QuantGRUCell, QuantLSTM, QuantLSTMCell
from cortexedge.errors import CortexEdgeError

# module type -> IR layer kind, looked up along the class's MRO, so a user's subclass (and
# brevitas's QuantLinear, an nn.Linear) is read as what it is; everything else cannot be emitted
LAYER_KINDS: dict[type, str] = {
    nn.Linear: "linear",
    nn.BatchNorm1d: "batchnorm",
    nn.GRUCell: "gru_cell",
    QuantGRUCell: "gru_cell",
    nn.GRU: "gru",
    QuantGRU: "gru",
    nn.LSTMCell: "lstm_cell",
    QuantLSTMCell: "lstm_cell",
    nn.LSTM: "lstm",
    QuantLSTM: "lstm",
    nn.LayerNorm: "layernorm",
    nn.Dropout: "dropout",
}
TRANSFORMS = ("none", "log1p", "log_softplus")


def layer_kind(module: nn.Module, name: str) -> str:
    """The IR kind of `module`, or a CortexEdgeError naming the layer and its op type."""
    kind = next((LAYER_KINDS[c] for c in type(module).__mro__ if c in LAYER_KINDS), None)
    if kind is None:
        known = ", ".join(sorted(t.__name__ for t in LAYER_KINDS))
        raise CortexEdgeError(
            f"C export: cannot emit layer '{name}' of type {type(module).__name__} "
            f"(the C generator emits {known})"
        )
    return kind


@dataclass(kw_only=True)
class Structure:
    """The parts of a supported decoder, checked; modules are the model's own (not copies)."""

    family: str
    channels: int
    width: int
    mode: str
    num_steps: int
    lag: int
    transform: str
    encoder: nn.Module | None
    norm: nn.Module | None
    clamp: float | None
    cells: list  # recurrent cells (nn.GRUCell, QuantGRUCell, QuantLSTMCell, a layer of nn.GRU)
    norms: list  # LayerNorm or None per cell
    readout: nn.Module
    quantized: bool
    front: tuple | None = None  # (a, b) [C]: the first layer reads bin·a + b (a class's own)
    state_parts: list | None = None  # per graph state: (part "h"/"c", C layers); None: by name


@dataclass
class _GRULayer:
    """One layer of an nn.GRU seen as a GRUCell (weight_ih, weight_hh, bias_ih, bias_hh)."""

    weight_ih: object
    weight_hh: object
    bias_ih: object
    bias_hh: object


def rnn_layers(rnn: nn.Module, name: str) -> list:
    """The layers of a GRU / LSTM stack `name` as cells (a refusal names what cannot stream)."""
    if getattr(rnn, "bidirectional", False):
        raise CortexEdgeError(
            f"C export: layer '{name}' is a bidirectional {type(rnn).__name__}, which cannot stream"
        )
    if hasattr(rnn, "cells"):  # QuantGRU / QuantLSTM: a stack of quantized cells
        return list(rnn.cells)
    if isinstance(rnn, nn.LSTM):
        raise CortexEdgeError(f"C export: layer '{name}' (a float LSTM) needs quantizing first")
    if not rnn.bias:
        raise CortexEdgeError(f"C export: layer '{name}' (GRU without biases) is not supported")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return [_GRULayer(*(getattr(rnn, f"{p}_l{k}") for p in names)) for k in range(rnn.num_layers)]


def is_quantized(model: nn.Module) -> bool:
    """Whether any layer of `model` carries a weight quantizer (a QAT model)."""
    return any(hasattr(m, "quant_weight") for m in model.modules())


def _read_aegru(model: nn.Module) -> Structure:
    from cortexedge.train.models.aegru import ENCODER_CLAMP

    for name in ("encoder", "norm", "dropout", "readout"):
        layer_kind(getattr(model, name), name)
    for i, (cell, norm) in enumerate(zip(model.cells, model.cell_norms, strict=True)):
        layer_kind(cell, f"cells.{i}")
        layer_kind(norm, f"cell_norms.{i}")
    window = model.mode == "window"
    return Structure(
        family="AEGRU", channels=model.in_channels, width=model.bin_width, mode=model.mode,
        num_steps=model.num_steps if window else 1, lag=model.bin_width,
        transform="log_softplus", encoder=model.encoder, norm=model.norm, clamp=ENCODER_CLAMP,
        cells=list(model.cells), norms=list(model.cell_norms), readout=model.readout,
        quantized=is_quantized(model),
    )  # fmt: skip


def _read_recurrent(model: nn.Module) -> Structure:
    if layer_kind(model.rnn, "rnn") not in ("gru", "lstm"):
        raise CortexEdgeError(
            f"C export: layer 'rnn' of type {type(model.rnn).__name__} is not a GRU or an LSTM"
        )
    layer_kind(model.readout, "readout")
    transform = model.config()["transform"]
    if transform not in TRANSFORMS:
        raise CortexEdgeError(f"C export: input transform '{transform}' cannot be emitted")
    cells = rnn_layers(model.rnn, "rnn")
    return Structure(
        family=type(model).__name__, channels=model.in_channels, width=1, mode="stateful",
        num_steps=1, lag=1, transform=transform, encoder=None, norm=None, clamp=None,
        cells=cells, norms=[None] * len(cells), readout=model.readout,
        quantized=is_quantized(model),
    )  # fmt: skip


# family (a row of cortexedge/families.py) -> reader of its parts
MODEL_READERS: dict[str, Callable[[nn.Module], Structure]] = {
    "aegru": _read_aegru,
    "gru": _read_recurrent,
    "lstm": _read_recurrent,
}


def read_structure(model: nn.Module) -> Structure:
    """The checked parts of an inference-mode decoder (training-only parts already removed)."""
    from cortexedge.train.checkpoint import registered_name

    reader = MODEL_READERS.get(registered_name(model) or "")
    if reader is None:  # a class of the user's: read from what its step calls
        from cortexedge.export.c.declared_ir import read_declared

        return read_declared(model)
    if getattr(model, "aux", None) is not None:
        raise CortexEdgeError("C export: pass the inference module (training-only parts attached)")
    return reader(model)
