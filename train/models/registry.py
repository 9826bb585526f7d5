"""Decoder classes by name: what a checkpoint's JSON names and `build_model` rebuilds.

Every registered class exposes `config() -> dict` (its constructor kwargs, JSON-able), so a
checkpoint stores `(name, config)` next to the weights and `build_model(name, **config)` makes an
identical module. Users add their own class with `@register_model("name")`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from cortexedge.errors import CheckpointError, CortexEdgeError
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.cnn_bilstm import AttnCNNBiLSTM
from cortexedge.train.models.cnn_rnn import CNNRNN, ROIGRU
from cortexedge.train.models.rnn import GRUDecoder, LSTMDecoder

MODELS: dict[str, type[nn.Module]] = {
    "aegru": AEGRU,
    "gru": GRUDecoder,
    "lstm": LSTMDecoder,
    "cnn_bilstm": AttnCNNBiLSTM,
    "cnn_rnn": CNNRNN,
    "roi_gru": ROIGRU,
}


def register_model(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a user's decoder to MODELS under `name`."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if not callable(getattr(cls, "config", None)):
            raise CortexEdgeError(f"model class {cls.__name__} needs a config() method")
        if MODELS.get(name, cls) is not cls:
            raise CortexEdgeError(
                f"model name '{name}' is already registered to {MODELS[name].__name__}"
            )
        MODELS[name] = cls
        return cls

    return add


def build_model(name: str, **kwargs) -> nn.Module:
    """A new `MODELS[name](**kwargs)`; CheckpointError for an unknown name or a bad kwarg."""
    if name not in MODELS:
        raise CheckpointError(f"unknown model class '{name}' (known: {', '.join(sorted(MODELS))})")
    cls = MODELS[name]
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise CheckpointError(f"model '{name}': bad config: {err}") from None
    return cls(**kwargs)


def model_name(model: nn.Module) -> str:
    """The registered name of `model`'s class (what a checkpoint records)."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    raise CheckpointError(
        f"model class {type(model).__name__} is not registered (see register_model)"
    )
