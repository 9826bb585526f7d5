"""Magnitude (unstructured) pruning: L1 masks, the cubic schedule, held masks.

Which tensors are prunable is the `tensors` field of the layer table (`layers.LAYERS`): the
weights of Linear, Conv1d/2d, nn.GRU/nn.LSTM (every layer and direction) and
nn.GRUCell/nn.LSTMCell (quantized layers are built from QuantLinear, a Linear). Biases join
only with `include_bias=True`; norms never do. Masks are held with `torch.nn.utils.prune` (the layer
sees weight_orig * mask on every forward, so any optimizer keeps pruned entries at zero) and
made permanent with `make_permanent`, which leaves plain tensors with exact zeros. Per-layer
sparsity is reported by `footprint.layer_sparsity`.

The number of pruned entries is exact: round(sparsity * n) per layer ("layer" scope) or over
all prunable entries together ("global" scope), ties broken by position.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import prune

from cortexedge.compress.layers import layer_row
from cortexedge.compress.weights import current
from cortexedge.errors import CortexEdgeError

SCOPES = ("global", "layer")


def _names_of(module: nn.Module) -> list[str]:
    row = layer_row(module)
    return row.tensors(module) if row and row.tensors else []


def prunable(model: nn.Module, include_bias: bool = False) -> dict[str, tuple[nn.Module, str]]:
    """Prunable tensors by full name ("encoder.weight") -> (owning module, tensor name)."""
    out = {}
    for mname, module in model.named_modules():
        for tname in _names_of(module):
            if tname.startswith("bias") and not include_bias:
                continue
            out[f"{mname}.{tname}" if mname else tname] = (module, tname)
    return out


def _check_sparsity(sparsity: float) -> None:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise CortexEdgeError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if not 0.0 <= sparsity < 1.0:
        raise CortexEdgeError(f"sparsity must lie in [0, 1), got {sparsity}")


def _lowest_mask(values: Tensor, k: int) -> Tensor:
    """Boolean keep-mask of `values` with its k smallest |entries| (stable order) dropped."""
    keep = torch.ones(values.numel(), dtype=torch.bool)
    keep[torch.argsort(values.abs().reshape(-1), stable=True)[:k]] = False
    return keep.reshape(values.shape)


def magnitude_masks(
    model: nn.Module, sparsity: float, scope: str = "global", include_bias: bool = False
) -> dict[str, Tensor]:
    """L1 keep-masks pruning `sparsity` of the prunable entries, globally or per layer."""
    _check_sparsity(sparsity)
    if scope not in SCOPES:
        raise CortexEdgeError(f"scope must be one of {', '.join(SCOPES)}, got '{scope}'")
    targets = prunable(model, include_bias)
    if not targets:
        raise CortexEdgeError(
            f"model {type(model).__name__} has no prunable layer (Linear, Conv, GRU, LSTM)"
        )
    values = {name: current(m, t) for name, (m, t) in targets.items()}
    if scope == "layer":
        return {n: _lowest_mask(v, round(sparsity * v.numel())) for n, v in values.items()}
    flat = torch.cat([v.reshape(-1) for v in values.values()])
    keep = _lowest_mask(flat, round(sparsity * flat.numel()))
    masks, start = {}, 0
    for name, v in values.items():
        masks[name] = keep[start : start + v.numel()].reshape(v.shape)
        start += v.numel()
    emptied = [name for name, m in masks.items() if not m.any()]
    if emptied:  # one threshold for all layers can cut a small layer (e.g. a readout) entirely
        raise CortexEdgeError(
            f"global pruning at {sparsity:g} removes every weight of {', '.join(emptied)}; "
            "lower the sparsity or prune per layer (scope 'layer')"
        )
    return masks


def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """Hold the masks: the layers compute with weight * mask from now on (updates held masks)."""
    targets = prunable(model, include_bias=True)
    for name, mask in masks.items():
        module, tname = targets[name]
        if hasattr(module, f"{tname}_mask"):
            getattr(module, f"{tname}_mask").copy_(mask)
        else:
            prune.custom_from_mask(module, tname, mask.to(getattr(module, tname).dtype))


def prune_magnitude(
    model: nn.Module, sparsity: float, scope: str = "global", include_bias: bool = False
) -> dict[str, Tensor]:
    """One-shot magnitude pruning: compute the masks, hold them, return them."""
    masks = magnitude_masks(model, sparsity, scope, include_bias)
    apply_masks(model, masks)
    return masks


def hold_zeros(model: nn.Module, include_bias: bool = False) -> int:
    """Hold a mask on every prunable tensor that has zeros, so that fine-tuning (e.g. after the
    layers were swapped for quantized ones) keeps them at zero. Returns the entries held."""
    masks = {
        n: current(m, t) != 0
        for n, (m, t) in prunable(model, include_bias).items()
        if (current(m, t) == 0).any()
    }
    apply_masks(model, masks)
    return int(sum((~k).sum() for k in masks.values()))


def make_permanent(model: nn.Module) -> None:
    """Fold every held mask into its tensor (plain parameters with exact zeros, no hooks)."""
    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)


def cubic_sparsity(step: int, total_steps: int, target: float, initial: float = 0.0) -> float:
    """Zhu & Gupta's gradual schedule: s = target + (initial - target)(1 - step/total)^3,
    rising from `initial` at step 0 to `target` at `total_steps` (and held after)."""
    _check_sparsity(target)
    if total_steps <= 0:
        return target
    frac = min(max(step / total_steps, 0.0), 1.0)
    return target + (initial - target) * (1.0 - frac) ** 3
