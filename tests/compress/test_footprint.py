"""Deployed bytes, parameters and sparsity of float, masked and quantized models, by hand."""

from __future__ import annotations

import torch
from torch import nn

from cortexedge.compress.footprint import deployed_arrays, footprint, layer_sparsity
from cortexedge.compress.magnitude import prune_magnitude
from cortexedge.compress.qat import calibrate, quantize
from cortexedge.compress.quant_gru import QuantSpec


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).eval()


def test_float_model_counts_params_and_buffers() -> None:
    # params: 12 + 3 (Linear) + 3 + 3 (BN affine) + 6 + 2 (Linear) = 29 floats;
    # buffers: BN running mean and var (6 floats) and num_batches_tracked (one int64)
    assert footprint(_model()) == {"params": 29, "bytes": 29 * 4 + 6 * 4 + 8, "sparsity": 0.0}


def test_held_masks_are_folded_in_and_not_stored() -> None:
    model = _model()
    prune_magnitude(model, 0.5)
    arrays = deployed_arrays(model)
    assert "0.weight" in arrays and not any(k.endswith(("_orig", "_mask")) for k in arrays)
    assert footprint(model) == {"params": 29, "bytes": 148, "sparsity": 0.5}
    report = layer_sparsity(model)
    assert sum(r["zeros"] for r in report.values()) == 9 and report["2.weight"]["total"] == 6


def test_quantized_weights_are_stored_as_int8_with_their_scales() -> None:
    model = _model()
    quantize(model, QuantSpec(8, 8))
    calibrate(model, [torch.randn(16, 4)])
    arrays = deployed_arrays(model)
    assert arrays["0.weight"][0].dtype == "int8" and arrays["0.weight"][1] == "weight_int"
    # int8 weights 12 + 6, float biases 3 + 2, BN 6 params + 6 buffers + int64 counter,
    # and per Linear a weight scale and an input scale
    expected = 18 + 5 * 4 + 6 * 4 + 6 * 4 + 8 + 2 * 2 * 4
    assert footprint(model) == {"params": 29, "bytes": expected, "sparsity": 0.0}
