"""Small decoders for the export tests: registered families at test sizes, seeded default
initialisation (trained-like magnitudes) and non-trivial BatchNorm statistics."""

from __future__ import annotations

import torch
from torch import nn

GRU_DATA = {"bin_width": 1, "num_steps": 8}  # GRU training windows: 8 rows, no binning


def build(name: str, kwargs: dict) -> nn.Module:
    """A registered decoder with seeded default weights and non-trivial BatchNorm statistics."""
    from cortexedge.train.models.registry import build_model

    torch.manual_seed(0)
    model = build_model(name, **kwargs)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


SMALL = {
    "aegru_window": ("aegru", dict(in_channels=16, hidden=24, enc_dim=8, bin_width=5, num_steps=3)),
    "aegru_stateful": (
        "aegru",
        dict(in_channels=16, hidden=24, enc_dim=8, bin_width=5, num_steps=3, mode="stateful"),
    ),
    "gru": ("gru", dict(in_channels=16, hidden=24, layers=2, transform="log1p")),
    "lstm": ("lstm", dict(in_channels=16, hidden=16)),
}
