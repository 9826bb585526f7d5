"""Hidden-unit pruners for recurrent layers: nn.GRU, nn.GRUCell, nn.LSTM, nn.LSTMCell.

torch-pruning 1.6 cannot prune these (its graph tracing breaks on unrolled RNNs and its LSTM
pruner indexes `weight_hh` wrongly). A hidden unit k of a cell with G gate blocks owns rows
{k, H+k, ..., (G-1)H+k} of `weight_ih`, `weight_hh` and both biases, and column k of `weight_hh`;
inside a stacked `nn.GRU`/`nn.LSTM` the next layer reads it in column k (forward direction) or
H+k (backward direction) of its `weight_ih`. Every such coupling is a `Span`, and one generic
routine removes the indices a set of spans names. Consumers of h outside the module (LayerNorm,
the readout, the next module) are sliced by the structured pruner's dependency graph.

A module's pruner is the `pruner` field of its row of the layer table (`layers.pruner_for`);
lookups follow the class's MRO so a subclass of nn.GRU is pruned as a GRU.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from cortexedge.errors import CortexEdgeError


@dataclass(frozen=True)
class Span:
    """Indices `offset + k + j*period` (j over the blocks) of parameter `name` along `dim`.

    With `period` = H this names unit k in every gate block of a stacked-gate weight.
    """

    name: str
    dim: int
    period: int
    offset: int = 0

    def indices(self, size: int, units: Iterable[int]) -> list[int]:
        """The positions along `dim` (of length `size`) that the given units occupy."""
        return [
            self.offset + k + j * self.period for j in range(size // self.period) for k in units
        ]


def remove(module: nn.Module, spans_units: list[tuple[Span, list[int]]]) -> None:
    """Delete, in place, the entries the spans name, all indices computed on the original shapes.

    Parameters are replaced by new `nn.Parameter`s (RNNBase refreshes its flat weights on set);
    gradients are sliced with them, so Taylor importance can score the next group.
    """
    drop: dict[tuple[str, int], set[int]] = {}
    for span, units in spans_units:
        param = getattr(module, span.name)
        drop.setdefault((span.name, span.dim), set()).update(
            span.indices(param.shape[span.dim], units)
        )
    for (name, dim), idx in drop.items():
        param = getattr(module, name)
        keep = torch.tensor([i for i in range(param.shape[dim]) if i not in idx], dtype=torch.long)
        new = nn.Parameter(param.data.index_select(dim, keep).contiguous(), param.requires_grad)
        if param.grad is not None:
            new.grad = param.grad.index_select(dim, keep).contiguous()
        setattr(module, name, new)


class CellPruner:
    """Pruner of a single cell (nn.GRUCell, nn.LSTMCell); gate blocks follow from the shapes."""

    def check(self, m: nn.Module) -> None:
        """Raise for configurations this pruner does not handle."""

    def cells(self, m: nn.Module) -> list[str]:
        """Parameter-name suffixes of the module's cells, layer-major then direction."""
        return [""]

    def directions(self, m: nn.Module) -> int:
        return 1

    def output_cells(self, m: nn.Module) -> list[str]:
        """The cells whose hidden units form the module's output, in output-channel order."""
        return self.cells(m)[-self.directions(m) :]

    def unit_spans(self, m: nn.Module, cell: str) -> list[Span]:
        """Everything one hidden unit of `cell` owns or feeds inside the module."""
        H = m.hidden_size
        own = [Span(f"weight_ih{cell}", 0, H), Span(f"weight_hh{cell}", 0, H)]
        own.append(Span(f"weight_hh{cell}", 1, H))
        if m.bias:
            own += [Span(f"bias_ih{cell}", 0, H), Span(f"bias_hh{cell}", 0, H)]
        return own + self._next_layer_spans(m, cell)

    def _next_layer_spans(self, m: nn.Module, cell: str) -> list[Span]:
        return []

    def input_spans(self, m: nn.Module) -> list[Span]:
        """The weights reading the module's input features (columns of layer 0's weight_ih)."""
        in_size = m.input_size
        return [Span(f"weight_ih{c}", 1, in_size) for c in self.cells(m)[: self.directions(m)]]

    def prune_units(self, m: nn.Module, units: dict[str, list[int]]) -> None:
        """Remove hidden units, `units[cell]` per cell; every cell must lose the same number
        (the module has one hidden_size)."""
        counts = {len(set(u)) for u in units.values()}
        if set(units) != set(self.cells(m)) or len(counts) != 1:
            raise ValueError(f"{type(m).__name__}: prune the same number of units in every cell")
        n = counts.pop()
        if n >= m.hidden_size:
            raise ValueError(f"{type(m).__name__}: cannot remove all {m.hidden_size} hidden units")
        remove(m, [(s, sorted(set(u))) for c, u in units.items() for s in self.unit_spans(m, c)])
        m.hidden_size -= n
        self._refresh(m)

    def prune_inputs(self, m: nn.Module, idxs: list[int]) -> None:
        """Remove input features `idxs` (columns of the first layer's weight_ih)."""
        remove(m, [(s, sorted(set(idxs))) for s in self.input_spans(m)])
        m.input_size -= len(set(idxs))
        self._refresh(m)

    def _refresh(self, m: nn.Module) -> None:
        pass


class RNNPruner(CellPruner):
    """Pruner of a stacked, optionally bidirectional nn.GRU or nn.LSTM."""

    def check(self, m: nn.Module) -> None:
        if getattr(m, "proj_size", 0):
            raise CortexEdgeError(f"{type(m).__name__} with proj_size is not supported for pruning")

    def directions(self, m: nn.Module) -> int:
        return 2 if m.bidirectional else 1

    def cells(self, m: nn.Module) -> list[str]:
        dirs = ["", "_reverse"][: self.directions(m)]
        return [f"_l{layer}{d}" for layer in range(m.num_layers) for d in dirs]

    def _next_layer_spans(self, m: nn.Module, cell: str) -> list[Span]:
        layer = int(cell[2:].split("_")[0])
        if layer + 1 >= m.num_layers:
            return []
        D, H = self.directions(m), m.hidden_size
        offset = H if cell.endswith("_reverse") else 0
        nxt = [f"_l{layer + 1}", f"_l{layer + 1}_reverse"][:D]
        return [Span(f"weight_ih{c}", 1, D * H, offset) for c in nxt]

    def _refresh(self, m: nn.Module) -> None:
        m._init_flat_weights()


def output_units(pruner: CellPruner, m: nn.Module, channels: list[int]) -> dict[str, list[int]]:
    """Split output-channel indices of the module ([fwd H | bwd H]) into units per output cell."""
    H = m.hidden_size
    return {
        cell: [c - d * H for c in channels if d * H <= c < (d + 1) * H]
        for d, cell in enumerate(pruner.output_cells(m))
    }
