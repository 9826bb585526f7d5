"""What a compressed model stores: its deployed tensors, parameter count, bytes and sparsity.

The deployed view of a model is its state dict as a device would hold it: held masks folded in
(weight_orig * mask, the mask dropped), quantized weights as int8 integers plus their scales,
activation scales as float32. Bytes, parameter count and connection sparsity are computed from
it with the project's one set of rules (`cortexedge.macs`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cortexedge import macs
from cortexedge.compress.magnitude import prunable
from cortexedge.compress.qat import quantizers
from cortexedge.compress.weights import current, layer_weight


def _scale_ids(model: nn.Module) -> set[int]:
    """ids of the tensors held by brevitas quantizers (their scale parameters)."""
    return {
        id(t) for m in model.modules() for _, proxy in quantizers(m) for t in proxy.parameters()
    }


@torch.no_grad()
def deployed_arrays(model: nn.Module) -> dict[str, tuple[np.ndarray, str]]:
    """State-dict name -> (array as stored on a device, kind: "param", "buffer",
    "weight_int" or "scale")."""
    quantized = {name: m for name, m in model.named_modules() if hasattr(m, "quant_weight")}
    params = {id(p) for p in model.parameters()}
    scales = _scale_ids(model)
    out: dict[str, tuple[np.ndarray, str]] = {}
    for key, t in model.state_dict(keep_vars=True).items():
        owner_name, _, name = key.rpartition(".")
        if name.endswith("_mask"):
            continue
        if owner_name in quantized and name in ("weight", "weight_orig"):
            qt = quantized[owner_name].quant_weight()
            out[f"{owner_name}.weight"] = (qt.int().numpy().astype(np.int8), "weight_int")
            out[f"{owner_name}.weight_scale"] = (qt.scale.numpy().astype(np.float32), "scale")
            continue
        kind = "scale" if id(t) in scales else ("param" if id(t) in params else "buffer")
        if name.endswith("_orig"):
            name = name[: -len("_orig")]
            key = f"{owner_name}.{name}" if owner_name else name
            t = current(model.get_submodule(owner_name), name)
        out[key] = (t.detach().cpu().numpy(), kind)
    return out


def layer_sparsity(model: nn.Module) -> dict[str, dict]:
    """Per prunable weight (deployed values): zeros, total and sparsity."""
    report = {}
    for name, (module, tname) in prunable(model).items():
        w = layer_weight(module, tname)
        zeros = int(w.size - np.count_nonzero(w))
        report[name] = {"zeros": zeros, "total": int(w.size), "sparsity": zeros / w.size}
    return report


def footprint(model: nn.Module) -> dict:
    """params (weights, biases, norms; not scales or buffers), bytes (everything stored, at
    stored precision) and connection sparsity (zero weights / all prunable weights)."""
    arrays = deployed_arrays(model)
    weights = [layer_weight(m, t) for m, t in prunable(model).values()]
    return {
        "params": macs.n_params(a for a, k in arrays.values() if k in ("param", "weight_int")),
        "bytes": macs.count_bytes(a for a, _ in arrays.values()),
        "sparsity": macs.sparsity(weights),
    }
