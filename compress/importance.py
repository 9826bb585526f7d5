"""Importance of prunable channels and hidden units: group L2 magnitude or first-order Taylor.

A channel (or hidden unit) is scored over every weight it owns or feeds, across all layers of
its dependency group: the producing layer's rows, the norm's affine entries, the consumers'
columns. Where a layer holds a channel is described by `Span`s (see recurrent_pruners), which
the layer table gives per layer type (`layers.LAYERS`, fields `spans` and `pruner`) and
direction ("out": the layer produces the channel, "in": it reads it). Scores of all spans add up
(squares for "magnitude", |w·∂L/∂w| for "taylor"), so the magnitude score is the L2 norm of the
whole group; the ranking is all that matters.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from cortexedge.compress.layers import layer_row, pruner_for
from cortexedge.compress.recurrent_pruners import Span, output_units
from cortexedge.errors import CortexEdgeError


def _magnitude(param: nn.Parameter) -> Tensor:
    return param.detach() ** 2


def _taylor(param: nn.Parameter) -> Tensor:
    if param.grad is None:
        raise CortexEdgeError("taylor importance needs gradients: run a backward pass first")
    return (param.detach() * param.grad).abs()


# how -> per-entry statistic of a parameter; a unit's score sums it over the entries it owns
STATS: dict[str, Callable[[nn.Parameter], Tensor]] = {"magnitude": _magnitude, "taylor": _taylor}


def span_scores(module: nn.Module, spans: list[Span], units: list[int], how: str) -> Tensor:
    """Score of each of `units`: the sum over spans of the stat of every entry the unit occupies."""
    score = torch.zeros(len(units))
    if not units:
        return score
    for span in spans:
        param = getattr(module, span.name, None)
        if not isinstance(param, Tensor):
            continue
        stat = STATS[how](param).movedim(span.dim, 0)
        blocks = stat.shape[0] // span.period
        idx = span.offset + torch.tensor(units)[:, None] + span.period * torch.arange(blocks)
        score += stat[idx.reshape(-1)].reshape(len(units), -1).sum(1)
    return score


def channel_scores(module: nn.Module, side: str, channels: list[int], how: str) -> Tensor:
    """Scores of the module's output ("out") or input ("in") channels `channels`.

    Recurrent modules score output channels as hidden units of their output cells.
    """
    pruner = pruner_for(module)
    if pruner is not None:
        if side == "in":
            return span_scores(module, pruner.input_spans(module), channels, how)
        score = torch.zeros(len(channels))
        pos = {c: i for i, c in enumerate(channels)}
        H = module.hidden_size
        for d, (cell, units) in enumerate(output_units(pruner, module, channels).items()):
            part = span_scores(module, pruner.unit_spans(module, cell), units, how)
            score[[pos[u + d * H] for u in units]] = part
        return score
    row = layer_row(module)
    if row is None or row.spans is None:
        return torch.zeros(len(channels))
    return span_scores(module, row.spans(module, side), channels, how)


def unit_scores(module: nn.Module, cell: str, how: str) -> Tensor:
    """Scores of every hidden unit of one cell of a recurrent module (its own weights and the
    next layer's columns inside the module)."""
    pruner = pruner_for(module)
    units = list(range(module.hidden_size))
    return span_scores(module, pruner.unit_spans(module, cell), units, how)


def lowest(scores: Tensor, n: int) -> list[int]:
    """Indices of the `n` lowest scores (ties broken by position), sorted."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:n])
