"""The weights a layer computes with: masked while a mask is held, quantized for brevitas layers.

Magnitude pruning, the footprint and the MAC counters all read weights this way, so that a held
mask (`torch.nn.utils.prune`'s weight_orig * mask) or a brevitas quantizer is always seen.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn


def current(module: nn.Module, tname: str) -> Tensor:
    """The tensor the layer computes with: weight_orig * mask while a mask is held."""
    if hasattr(module, f"{tname}_mask"):
        return getattr(module, f"{tname}_orig").detach() * getattr(module, f"{tname}_mask")
    return getattr(module, tname).detach()


def layer_weight(module: nn.Module, name: str = "weight") -> np.ndarray:
    """The weight a layer computes with, as numpy: quantized for brevitas layers."""
    if name == "weight" and hasattr(module, "quant_weight"):
        w = module.quant_weight().value
    else:
        w = current(module, name)
    return w.detach().cpu().numpy()
