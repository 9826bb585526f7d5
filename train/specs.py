"""Training specs: how each model family turns a recording into batches, which loss it trains
with and how its outputs become predictions. Each row of the family table
(`cortexedge/families.py`) names its spec here; `spec_for` reads the row, never an if-chain.

A spec names a windowing function with its default parameters, the training forward pass, the
loss and the modalities the family reads. Models that are not registered (a user's own
`nn.Module`) get `DEFAULT_SPEC`: sliding windows, MSE for regression and BCE-with-logits (or
cross-entropy for class ids) for classification.

Every default that is a duration is a `Duration` in milliseconds (AEGRU's 80 ms bins, the
400 ms training windows of the recurrent decoders) and becomes rows with the recording's
`bin_ms` (`TrainingSpec.defaults_at`): at 20 ms an 80 ms bin is 4 rows, at 50 ms it cannot be
honoured and is 2 rows = 100 ms, a rounding recorded with the run and stated once.

Outputs and window targets are paired by shape (`align`): an output with a step axis
([B, L, ...]) is trained on every step of the label series, an output without one ([B, ...]) on
the window's last step. Validation and test are scored on rows, not windows: see
`cortexedge.scoring`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexedge.errors import CortexEdgeError
from cortexedge.recording import MODALITIES, Recording
from cortexedge.train.data.windows import Windows, aegru_windows, sliding_windows
from cortexedge.train.models.linear import solve_kalman, solve_ridge
from cortexedge.train.models.losses import aegru_loss, focal_loss

WindowFn = Callable[..., Windows]  # (rec, split, stride=..., **data) -> Windows
LossFn = Callable[[object, Tensor, Tensor, str], tuple[Tensor, dict[str, float]]]


# ----------------------------------------------------------------------------- target kinds
@dataclass(frozen=True)
class TargetKind:
    """How one kind of target is trained on (`cortexedge.scoring` scores it)."""

    criterion: Callable[[Tensor, Tensor], Tensor]  # (aligned output, aligned target) -> loss
    class_dim: int  # 1 when the output carries an extra trailing class axis
    dtype: torch.dtype  # dtype of the target tensor


def _cross_entropy(out: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))


TARGET_KINDS: dict[str, TargetKind] = {
    "regression": TargetKind(F.mse_loss, 0, torch.float32),
    "binary": TargetKind(F.binary_cross_entropy_with_logits, 0, torch.float32),
    "multilabel": TargetKind(F.binary_cross_entropy_with_logits, 0, torch.float32),
    "multiclass": TargetKind(_cross_entropy, 1, torch.long),
}


def window_targets(w: Windows, kind: str) -> np.ndarray:
    """The per-step targets of windows for a target kind: y [N, L, D] or labels [N, L(, K)]."""
    return w.y if kind == "regression" else w.labels


def align(out: Tensor, target: Tensor, kind: str) -> tuple[Tensor, Tensor]:
    """Pair an output with window targets [B, L, ...]: a per-step output uses every step, an
    end-of-window output the last one; a lone size-1 axis is dropped so the output matches the
    target."""
    extra = TARGET_KINDS[kind].class_dim
    per_step = out.dim() >= target.dim() + extra and out.shape[1] == target.shape[1]
    if not per_step:
        target = target[:, -1]
    if not extra and out.shape != target.shape and out.numel() == target.numel():
        out = out.reshape(target.shape)
    if out.shape[: target.dim()] != target.shape:
        raise CortexEdgeError(
            f"model output of shape {list(out.shape)} does not match the targets "
            f"{list(target.shape)} of the recording"
        )
    return out, target


# ----------------------------------------------------------------------------- losses
def standard_loss(out: Tensor, x: Tensor, target: Tensor, kind: str) -> tuple[Tensor, dict]:
    """The target kind's criterion on the aligned output (MSE, BCE-with-logits or CE)."""
    loss = TARGET_KINDS[kind].criterion(*align(out, target, kind))
    return loss, {}


def criterion_loss(criterion: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    """Wrap a user criterion `(output, target) -> loss` (e.g. nn.HuberLoss()) as a spec loss."""

    def loss(out: Tensor, x: Tensor, target: Tensor, kind: str) -> tuple[Tensor, dict]:
        return criterion(*align(out, target, kind)), {}

    return loss


# ----------------------------------------------------------------------------- durations
@dataclass(frozen=True)
class Duration:
    """A default given in milliseconds, made a whole number of rows (>= 1) at a bin width."""

    ms: float

    def rows(self, bin_ms: float) -> int:
        """The rows nearest to `ms` at `bin_ms` per row (at least one)."""
        return max(1, round(self.ms / bin_ms))

    def record(self, bin_ms: float) -> dict:
        """What a run records: the ms asked for, the rows it became and, when those rows are not
        exactly `ms`, a note saying so."""
        rows = self.rows(bin_ms)
        out = {"ms": self.ms, "rows": rows, "bin_ms": bin_ms}
        if abs(rows * bin_ms - self.ms) > 1e-6 * self.ms:
            out["note"] = (
                f"{self.ms:g} ms is {self.ms / bin_ms:.3g} rows at {bin_ms:g} ms bins; "
                f"using {rows} rows = {rows * bin_ms:g} ms"
            )
        return out


# ----------------------------------------------------------------------------- specs
def _sliding(rec: Recording, split: str, stride: int = 1, *, length: int) -> Windows:
    return sliding_windows(rec, split, length, stride)


def _binned(
    rec: Recording, split: str, stride: int = 1, *, bin_width: int, num_steps: int
) -> Windows:
    return aegru_windows(rec, split, bin_width, num_steps, stride)


# windowing name (recorded in checkpoints) -> function(rec, split, stride, **data) -> Windows
WINDOWINGS: dict[str, WindowFn] = {"sliding": _sliding, "binned": _binned}


def _call(model: nn.Module, x: Tensor) -> object:
    return model(x)


def _nothing(_: object) -> dict:
    return {}


def output_size(rec: Recording, kind: str) -> int:
    """Output units a decoder needs for a recording's targets (logits for class targets)."""
    sizes = {
        "regression": lambda: rec.y.shape[1],
        "binary": lambda: 1,
        "multilabel": lambda: rec.labels.shape[1],
        "multiclass": lambda: int(rec.labels.max()) + 1,
    }
    return int(sizes[kind]())


@dataclass(frozen=True)
class TrainingSpec:
    """How one model family is trained.

    - `windowing` names a WINDOWINGS entry, `data` holds its default parameters (a `Duration`
      for those that are durations) and `model_data(model)` the ones a built model fixes
      (e.g. AEGRU's bin_width, num_steps).
    - `forward(model, x)` is the training forward pass, `loss(out, x, target, kind)` its loss.
    - `modalities` and `kinds` are the recordings and target kinds the family can train on.
    - `build_kwargs(rec, kind)` gives the constructor sizes a recording implies (for the CLI).
    - `model_defaults`: constructor defaults that are durations (ridge's bin width), made rows
      at the recording's bin_ms when the family is built for a recording (`train/build.py`).
    - `solve(model, rec)`, for a family fitted in closed form (ridge, kalman), sets the weights
      from the recording; `fit` calls it instead of the epoch loop.
    """

    windowing: str
    data: dict = field(default_factory=dict)
    model_data: Callable[[nn.Module], dict] = _nothing
    forward: Callable[[nn.Module, Tensor], object] = _call
    loss: LossFn = standard_loss
    modalities: tuple[str, ...] = MODALITIES
    kinds: tuple[str, ...] = tuple(TARGET_KINDS)
    build_kwargs: Callable[[Recording, str], dict] = lambda rec, kind: {}
    model_defaults: dict = field(default_factory=dict)
    solve: Callable[[nn.Module, Recording], None] | None = None

    def check(self, rec: Recording, kind: str, family: str | None) -> None:
        """Raise CortexEdgeError unless this family trains on `rec`'s modality and target kind."""
        if rec.modality not in self.modalities or kind not in self.kinds:
            raise CortexEdgeError(
                f"model '{family}' trains on {'/'.join(self.modalities)} recordings with "
                f"{'/'.join(self.kinds)} targets, got {rec.modality} with {kind} targets"
            )

    def data_keys(self) -> tuple[str, ...]:
        """The windowing parameters this spec accepts (e.g. bin_width, num_steps)."""
        params = inspect.signature(WINDOWINGS[self.windowing]).parameters.values()
        return tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY)

    def defaults_at(self, bin_ms: float, table: str = "data") -> dict:
        """The default windowing parameters (or, `table="model"`, constructor defaults) in rows
        at `bin_ms` (durations converted)."""
        items = (self.data if table == "data" else self.model_defaults).items()
        return {k: v.rows(bin_ms) if isinstance(v, Duration) else v for k, v in items}

    def durations_at(self, bin_ms: float) -> dict:
        """{key: {"ms", "rows", "bin_ms"(, "note")}} for the defaults that are durations."""
        both = {**self.model_defaults, **self.data}
        return {k: v.record(bin_ms) for k, v in both.items() if isinstance(v, Duration)}

    def data_for(self, model: nn.Module, data: dict | None = None, bin_ms: float = 4.0) -> dict:
        """Windowing parameters in rows: the defaults at `bin_ms`, then what `model` fixes, then
        `data`.

        Raises CortexEdgeError for an unknown key or a value the model contradicts.
        """
        data = dict(data or {})
        for key in data:
            if key not in self.data_keys():
                raise CortexEdgeError(
                    f"data: unknown key '{key}' for {self.windowing} windows "
                    f"(known: {', '.join(self.data_keys())})"
                )
        fixed = self.model_data(model)
        for key, value in data.items():
            if key in fixed and fixed[key] != value:
                raise CortexEdgeError(
                    f"data.{key}={value} contradicts the model's {key}={fixed[key]}"
                )
        return {**self.defaults_at(bin_ms), **fixed, **data}

    def windows(self, rec: Recording, split: str, stride: int = 1, **data) -> Windows:
        """Windows of one split with this spec's windowing (`data` overrides the defaults)."""
        params = {**self.defaults_at(rec.bin_ms), **data}
        return WINDOWINGS[self.windowing](rec, split, stride, **params)


def _channels_out(rec: Recording, kind: str) -> dict:
    """The sizes a recording implies, for the constructors that take them."""
    return {"in_channels": rec.input_shape[0], "out_dim": output_size(rec, kind)}


TRAIN_WINDOW = Duration(400.0)  # recurrent decoders' training windows (truncated BPTT)
DEFAULT_SPEC = TrainingSpec(
    windowing="sliding", data={"length": TRAIN_WINDOW}, build_kwargs=_channels_out
)


def spec_for(family: str | None) -> TrainingSpec:
    """The training spec of a family's row in the family table, or the default spec for an
    unregistered model (or a row that names none)."""
    from cortexedge.families import FAMILIES

    row = FAMILIES.get(family or "")
    spec = row.training_spec() if row is not None else None
    return spec if spec is not None else DEFAULT_SPEC


# ----------------------------------------------------------------------------- our families
def _aegru_loss(out: dict, x: Tensor, target: Tensor, kind: str) -> tuple[Tensor, dict]:
    return aegru_loss(out, x, target)


FOCAL_ALPHA = 0.75  # weight of the positive (moving) class, the minority in these recordings


def _movement_focal_loss(out: Tensor, x: Tensor, target: Tensor, kind: str) -> tuple[Tensor, dict]:
    # the first columns are the movement logits (left, right); kinematics follow if any
    logits, target = align(out[:, : target.shape[-1]], target, kind)
    return focal_loss(logits, target, alpha=FOCAL_ALPHA), {}


# The specs of the family table's rows (cortexedge/families.py names them by import path).
AEGRU_SPEC = TrainingSpec(
    windowing="binned",
    data={"bin_width": Duration(80.0), "num_steps": 5},  # published: 5 bins of 80 ms
    model_data=lambda m: {"bin_width": m.bin_width, "num_steps": m.num_steps},
    forward=lambda m, x: m.forward_train(x),
    loss=_aegru_loss,
    modalities=("spikes",),
    kinds=("regression",),
    build_kwargs=_channels_out,
)
# GRU/LSTM decoders stream one row per step, so by default they train on windows of consecutive
# rows (no binning): what `step` sees when the exported decoder runs.
ROWS_SPEC = TrainingSpec(
    windowing="binned", data={"bin_width": 1, "num_steps": TRAIN_WINDOW}, build_kwargs=_channels_out
)
FRAME_MS = 1000.0 / 30.0  # the 30 Hz imaging the calcium and widefield defaults come from
ROI_GRU_SPEC = TrainingSpec(
    windowing="sliding",
    data={"length": Duration(31 * FRAME_MS)},  # Ajioka et al.: ±15 frames, here the 31 up to now
    modalities=("calcium",),
    build_kwargs=_channels_out,
)
CNN_BILSTM_SPEC = TrainingSpec(
    windowing="sliding",
    data={"length": 32},
    model_data=lambda m: {"length": m.lookback},
    loss=_movement_focal_loss,
    modalities=("calcium",),
    kinds=("multilabel",),
    build_kwargs=lambda rec, kind: {"in_channels": rec.input_shape[0]},
)
CNN_RNN_SPEC = TrainingSpec(
    windowing="sliding",
    data={"length": Duration(16 * FRAME_MS)},
    modalities=("widefield",),
    kinds=("binary", "multilabel"),
    build_kwargs=lambda rec, kind: {
        "frame_shape": list(rec.input_shape),
        "out_dim": output_size(rec, kind),
    },
)

# The linear families, fitted in closed form (train/models/linear.py) from the recording's rows:
# they train on no windows. Ridge reads `lags` (5) bins of 80 ms, 400 ms of history.
RIDGE_BIN = Duration(80.0)
_REGRESSION_ROWS = {"modalities": ("spikes", "calcium"), "kinds": ("regression",)}
RIDGE_SPEC = TrainingSpec(
    windowing="sliding",
    model_data=lambda m: {"length": m.streaming_window},
    build_kwargs=_channels_out,
    model_defaults={"bin_width": RIDGE_BIN},
    solve=solve_ridge,
    **_REGRESSION_ROWS,
)
KALMAN_SPEC = TrainingSpec(
    windowing="sliding",
    data={"length": TRAIN_WINDOW},  # windows only to calibrate quantization (compress)
    build_kwargs=_channels_out,
    solve=solve_kalman,
    **_REGRESSION_ROWS,
)
