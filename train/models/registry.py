"""Decoder classes of the family table: what a checkpoint's JSON names and `build_model` rebuilds.

A checkpoint stores `(name, constructor kwargs)` next to the weights, so that
`build_model(name, **kwargs)` makes an identical module: the kwargs are the class's
`config() -> dict` where it has one, else those `build_model` made the model with. The
built-in families and a user's class (`@register_model("name")`) are rows
of the one table in `cortexedge/families.py`; a class declares its streaming mode and modality
itself (see that module).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from cortexedge.errors import CheckpointError, CortexEdgeError
from cortexedge.families import FAMILIES, Family, register, streaming_of


def register_model(
    name: str, spec: object = None, summary: str = ""
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a user's decoder to the family table under `name`, with its
    TrainingSpec (`spec`, default: sliding windows and the task's criterion)."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        if not callable(getattr(cls, "config", None)):
            raise CortexEdgeError(f"model class {cls.__name__} needs a config() method")
        register(Family(name, cls, spec, summary))
        return cls

    return add


def build_model(name: str, **kwargs) -> nn.Module:
    """A new model of family `name`; CheckpointError for an unknown name or a bad kwarg."""
    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise CheckpointError(f"unknown model class '{name}' (known: {known})")
    cls = FAMILIES[name].model_class()
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as err:
        raise CheckpointError(f"model '{name}': bad config: {err}") from None
    model = cls(**kwargs)
    streaming_of(model)  # a bad declaration is refused when the model is made
    model._cortexedge_args = dict(kwargs)  # for a class without config() (a user's, often)
    return model


def constructor_args(model: nn.Module) -> dict | None:
    """The kwargs that rebuild `model`: its `config()`, else those `build_model` made it with,
    else None (a model built by hand from a class without config())."""
    if callable(getattr(model, "config", None)):
        return model.config()
    return getattr(model, "_cortexedge_args", None)


def model_name(model: nn.Module) -> str:
    """The family name of `model`'s class (what a checkpoint records)."""
    for name, family in FAMILIES.items():
        if type(model) is family.model_class():
            return name
    raise CheckpointError(
        f"model class {type(model).__name__} is not registered (see register_model)"
    )
