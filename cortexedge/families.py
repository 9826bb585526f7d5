"""The family table: one row per decoder family, read by every stage (CLI, fit, export, C).

A row names the family's class and its training spec (how it is windowed, its loss, the
recordings it trains on) by import path, so that this table, and `cortexedge --help` that lists
it, load no torch. What a model instance streams like and what it reads are not in the row:
every class declares them itself, ours exactly as a user's would, and `streaming_of` and
`modality_of` read the declaration:

- `modality` (class attribute): "spikes", "calcium" or "widefield". Default: none, the
  recording (or the caller) says.
- `streaming_mode`: "stateful" (the graph carries a recurrent state from bin to bin) or
  "window" (each step looks at the last `streaming_window` bins, held in the state).
  Default: "stateful", which the export records as assumed.

A user's class joins the table with `cortexedge.train.models.registry.register_model`, the
same `register` call the built-in rows go through.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any

from cortexedge.contract import Streaming
from cortexedge.errors import CortexEdgeError

MODALITIES = ("spikes", "calcium", "widefield")
DEFAULT_STREAMING = "stateful"


@dataclass(frozen=True)
class Family:
    """One decoder family. `model` and `spec` are a class / TrainingSpec or their import paths
    ("module:name", resolved on first use); `spec` None means the default training spec.
    `source` is a user class's code record (`cortexedge.user_code`), written into its
    checkpoints so that loading one asks for the opt-in."""

    name: str
    model: Any
    spec: Any = None
    summary: str = ""
    source: dict | None = None

    def model_class(self) -> type:
        """The decoder class (imported on first use)."""
        return resolve(self.model)

    def training_spec(self) -> Any:
        """The family's TrainingSpec, or None for the default spec."""
        return None if self.spec is None else resolve(self.spec)


def resolve(ref: Any) -> Any:
    """An object from its import path "module:name" (anything else is returned as it is)."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(import_module(module), name)


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add a row; a name may be registered again only to the same class."""
    known = FAMILIES.get(family.name)
    if known is not None and resolve(known.model) is not resolve(family.model):
        raise CortexEdgeError(
            f"model name '{family.name}' is already registered to {known.model_class().__name__}"
        )
    FAMILIES[family.name] = family
    return family


def streaming_of(model: Any) -> tuple[Streaming, bool]:
    """(how `model` streams, whether its class declared it) from `streaming_mode` and
    `streaming_window`; an undeclared model is taken as stateful."""
    mode = getattr(model, "streaming_mode", None)
    if mode is None:
        return Streaming(DEFAULT_STREAMING), False
    if mode == "stateful":
        return Streaming("stateful"), True
    window = getattr(model, "streaming_window", None)
    if mode != "window" or not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise CortexEdgeError(
            f"{type(model).__name__}: streaming_mode must be 'stateful', or 'window' with "
            f"streaming_window a whole number of bins >= 1 (got {mode!r}, {window!r})"
        )
    return Streaming("window", window), True


def modality_of(model: Any) -> str | None:
    """The modality a model's class declares, or None."""
    modality = getattr(model, "modality", None)
    if modality is not None and modality not in MODALITIES:
        raise CortexEdgeError(
            f"{type(model).__name__}: modality {modality!r} is not one of {', '.join(MODALITIES)}"
        )
    return modality


def help_text() -> str:
    """The families for the CLI's --model help (no torch is loaded)."""
    return "; ".join(f"{f.name} ({f.summary})" if f.summary else f.name for f in FAMILIES.values())


_MODELS = "cortexedge.train.models"
_SPECS = "cortexedge.train.specs"
for _row in (
    Family("aegru", f"{_MODELS}.aegru:AEGRU", f"{_SPECS}:AEGRU_SPEC", "BioCAS 2024 AEGRU"),
    Family("gru", f"{_MODELS}.rnn:GRUDecoder", f"{_SPECS}:ROWS_SPEC", "GRU decoder"),
    Family("lstm", f"{_MODELS}.rnn:LSTMDecoder", f"{_SPECS}:ROWS_SPEC", "LSTM decoder"),
    Family(
        "cnn_bilstm",
        f"{_MODELS}.cnn_bilstm:AttnCNNBiLSTM",
        f"{_SPECS}:CNN_BILSTM_SPEC",
        "attention CNN-BiLSTM, calcium",
    ),  # fmt: skip
    Family("cnn_rnn", f"{_MODELS}.cnn_rnn:CNNRNN", f"{_SPECS}:CNN_RNN_SPEC", "widefield CNN-RNN"),
    Family("roi_gru", f"{_MODELS}.cnn_rnn:ROIGRU", f"{_SPECS}:ROI_GRU_SPEC", "ROI-trace GRU"),
    Family(
        "ridge", f"{_MODELS}.linear:RidgeDecoder", f"{_SPECS}:RIDGE_SPEC", "lagged Wiener filter"
    ),
    Family(
        "kalman",
        f"{_MODELS}.linear:KalmanFilterDecoder",
        f"{_SPECS}:KALMAN_SPEC",
        "steady-state Kalman filter",
    ),
):
    register(_row)
