"""What export needs to know per model family, keyed by registry name (never an if-chain).

- `modality`: the recording modality the family reads when no recording or checkpoint says;
- `streaming`: the contract's streaming mode of a model instance (stateful, or a window of
  `window` bins that the graph looks at each step).
Unregistered (user) models get `DEFAULT`: stateful, modality from the recording or given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from cortexedge.contract import Streaming

# recording modality -> the contract's input kind
INPUT_KINDS: dict[str, str] = {
    "spikes": "spike_counts",
    "calcium": "calcium",
    "widefield": "frames",
}


def _stateful(model: nn.Module) -> Streaming:
    return Streaming("stateful")


def _aegru(model: nn.Module) -> Streaming:
    window = Streaming("window", model.num_steps * model.bin_width)
    return {"window": window, "stateful": Streaming("stateful")}[model.mode]


def _lookback(model: nn.Module) -> Streaming:
    return Streaming("window", model.lookback)


@dataclass(frozen=True)
class Family:
    """Per-family export facts (see the module docstring)."""

    modality: str | None
    streaming: Callable[[nn.Module], Streaming]


FAMILIES: dict[str, Family] = {
    "aegru": Family("spikes", _aegru),
    "gru": Family("spikes", _stateful),
    "lstm": Family("spikes", _stateful),
    "cnn_bilstm": Family("calcium", _lookback),
    "cnn_rnn": Family("widefield", _stateful),
    "roi_gru": Family("calcium", _stateful),
}
DEFAULT = Family(None, _stateful)


def family_of(name: str | None) -> Family:
    """The family entry of a registry name (DEFAULT for unregistered models)."""
    return FAMILIES.get(name or "", DEFAULT)
