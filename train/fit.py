"""The fit loop for any decoder: windows -> Adam + cosine schedule -> best-on-validation weights.

`fit` trains any `nn.Module` that maps a batch of windows to outputs. How the recording becomes
windows and which loss applies come from the model family's training spec (`specs.py`), or from
the `windows`/`loss` arguments. Seeds (torch, numpy, random) are fixed and recorded; spike
inputs get AEGRU's Poisson jitter; the weights with the best validation score (R², or balanced
accuracy for classifiers) are kept. With `out`, the run folder receives `epochs.jsonl` (one line
per epoch), `metrics.json` and the checkpoint (`checkpoint.py`), staged in a hidden folder next
to it and moved into place when the run is complete: a failed or killed run leaves `out` as it was.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from cortexedge import metrics as M
from cortexedge.atomic import publish_folder, staging_folder
from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.scoring import target_kind
from cortexedge.train.causal import score_model
from cortexedge.train.checkpoint import (
    EPOCHS_FILE,
    METRICS_FILE,
    not_ours,
    registered_name,
    save_checkpoint,
    write_json,
)
from cortexedge.train.data.windows import Windows
from cortexedge.train.models.registry import constructor_args
from cortexedge.train.progress import TrainProgress, stage
from cortexedge.train.specs import (
    TARGET_KINDS,
    LossFn,
    TrainingSpec,
    criterion_loss,
    spec_for,
    window_targets,
)

WindowsArg = Mapping[str, Windows] | Callable[[Recording, str, int], Windows]


@dataclass(frozen=True)
class Settings:
    """The optimisation settings of one run (recorded in the checkpoint's config.json)."""

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-3
    patience: int = 10
    seed: int = 0
    augment_poisson: float = 0.5
    grad_clip: float | None = 1.0
    train_stride: int = 1
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "train_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CortexEdgeError(f"train.{name}: expected a positive integer, got {value!r}")
        if not self.lr > 0:
            raise CortexEdgeError(f"train.lr: expected a positive number, got {self.lr!r}")
        if not 0 <= self.augment_poisson <= 1:
            got = self.augment_poisson
            raise CortexEdgeError(f"train.augment_poisson: expected a probability, got {got!r}")


@dataclass
class FitResult:
    """A finished run: the model (best-validation weights, eval mode) and what it scored."""

    model: nn.Module
    metrics: dict
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    out: Path | None = None
    config: dict = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    """Fix the seeds of random, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def poisson_jitter(x: Tensor, p: float, rng: np.random.Generator) -> Tensor:
    """AEGRU augmentation: each element is replaced by a Poisson(x) draw with probability p.

    Drawn with numpy, which is several times faster than torch.poisson on CPU.
    """
    a = x.numpy().copy()
    mask = rng.random(a.shape) < p
    a[mask] = rng.poisson(a[mask])
    return torch.from_numpy(a)


# ----------------------------------------------------------------------------- evaluation
_CLASSES = ("balanced_accuracy", "auc", "accuracy", "f1")
# target kind -> the validation metrics that may pick the best epoch (the first by default):
# classifiers default to balanced accuracy, as AUC ignores the decision threshold (it can peak
# while every row is still called negative) and plain accuracy rewards the majority class
MONITORS = {"regression": ("r2", "corr"), "binary": _CLASSES, "multilabel": _CLASSES,
            "multiclass": _CLASSES}  # fmt: skip


def regression_metrics(target: np.ndarray, pred: np.ndarray) -> dict:
    """R² (NeuroBench) and correlation of predictions (`cortexedge.scoring` scores splits)."""
    return {"r2": M.r2_score(target, pred), "corr": M.correlation(target, pred)}


@dataclass
class WindowSet:
    """One split's windows as tensors: inputs [N, L, ...] and per-step targets [N, L, ...]."""

    x: Tensor
    target: Tensor

    @classmethod
    def of(cls, w: Windows, kind: str) -> WindowSet:
        x = torch.from_numpy(np.ascontiguousarray(w.x, dtype=np.float32))
        target = torch.from_numpy(np.ascontiguousarray(window_targets(w, kind)))
        return cls(x, target.to(TARGET_KINDS[kind].dtype))

    def __len__(self) -> int:
        return len(self.x)


def _score(m: dict, monitor: str) -> float:
    value = m[monitor]
    return value if math.isfinite(value) else m.get("accuracy", -math.inf)


# ----------------------------------------------------------------------------- data
def _train_windows(
    rec: Recording, spec: TrainingSpec, windows: WindowsArg | None, data: dict, stride: int
) -> Windows:
    """The training windows (validation and test are scored on rows, `cortexedge.scoring`)."""
    for need in ("train", "val"):
        if not len(rec.split.get(need, ())):
            raise CortexEdgeError(f"recording has no '{need}' rows; fit needs train and val")
    if isinstance(windows, Mapping):
        return windows["train"]
    make = windows or (lambda r, s, st: spec.windows(r, s, st, **data))
    return make(rec, "train", stride)


# ----------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    recording: Recording,
    *,
    epochs: int = 50,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    patience: int = 10,
    seed: int = 0,
    augment_poisson: float = 0.5,
    grad_clip: float | None = 1.0,
    train_stride: int = 1,
    max_seconds: float | None = None,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    task: str | None = None,
    data: dict | None = None,
    windows: WindowsArg | None = None,
    loss: Callable[[Tensor, Tensor], Tensor] | None = None,
    family: str | None = None,
    monitor: str | None = None,
    threads: int | None = None,
) -> FitResult:
    """Train `model` on `recording`; return it with its best-validation weights and metrics.

    - `data`: windowing parameters over the spec's defaults (bin_width, num_steps / length);
      `train_stride`: keep every n-th training window (val and test use every window).
    - `windows`: ready windows per split, or a function (rec, split, stride) -> Windows.
    - `loss`: a criterion (output, target) -> loss that replaces the spec's loss.
    - `family`: the training spec (default: the model's registry name; others get the default).
    - `task`: "regression" or "classification" when the recording has both y and labels.
    - `monitor`: the validation metric that picks the best epoch (default r2, or
      balanced_accuracy for classifiers; auc, accuracy and f1 are the alternatives).
    - `augment_poisson`: Poisson-jitter probability, applied to spike recordings only.
    - `max_seconds`: stop after the first epoch that ends past this wall time.
    - `threads`: torch threads while training (default 1: these decoders are so small that a
      second thread costs more in synchronisation than it gains, several times more when
      other processes share the two cores).
    """
    t0 = time.perf_counter()
    settings = Settings(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                        patience=patience, seed=seed, grad_clip=grad_clip,
                        augment_poisson=augment_poisson if recording.modality == "spikes" else 0.0,
                        train_stride=train_stride, max_seconds=max_seconds)  # fmt: skip
    family = family or registered_name(model)
    plan = _plan(model, recording, family, task, monitor, data, windows, loss, train_stride)
    seed_everything(seed)
    out = Path(out) if out is not None else None
    stage = staging_folder(out) if out is not None else None
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads or 1)
    try:
        history, best_epoch = _fit_weights(model, recording, plan, settings, stage, progress, t0)
        results = {s: plan.score(model, recording, s) for s in plan.scored}
    except BaseException:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - t0
    metrics = {**results, **plan.facts(), "best_epoch": best_epoch, "epochs_run": len(history),
               "seconds": round(seconds, 3), "seed": seed}  # fmt: skip
    config = _run_config(recording, family, plan, settings, loss is not None)
    config["best_epoch"] = best_epoch
    if out is not None:
        _publish(model, stage, out, config, metrics)
    return FitResult(model.eval(), metrics, history, best_epoch, seconds, out, config)


@dataclass
class _Plan:
    """What a run trains on and how: target kind, monitored metric, training windows, the
    splits scored, the loss step."""

    kind: str
    monitor: str
    preprocessing: dict
    train: WindowSet | None
    scored: dict[str, int]  # the splits scored after training -> their rows
    step: _Step
    durations: dict  # the defaults given in ms, with the rows they became (config "durations")
    solve: Callable[[nn.Module, Recording], None] | None = None  # closed-form families

    def score(self, model: nn.Module, rec: Recording, split: str) -> dict:
        """A split's score by the one definition (`cortexedge.scoring`)."""
        # a sliding window's `length` is the window a model that does not stream is scored on
        return score_model(model, rec, split, self.kind, self.preprocessing.get("length"))

    def facts(self) -> dict:
        """What metrics.json records about the plan: training windows, scored rows per split."""
        train = len(self.train) if self.train is not None else -1
        return {"split": {"train": train, **self.scored}, "task": self.kind,
                "monitor": self.monitor}  # fmt: skip


def _plan(model, recording, family, task, monitor, data, windows, loss, train_stride) -> _Plan:
    """Check the family's spec against the recording and make the window sets and loss."""
    spec = spec_for(family)
    kind = target_kind(recording, task)
    spec.check(recording, kind, family)
    names = MONITORS[kind]
    monitor = monitor or names[0]
    if monitor not in names:
        raise CortexEdgeError(f"monitor: '{monitor}' is not one of {', '.join(names)} ({kind})")
    given = dict(data or {})
    data = spec.data_for(model, data, recording.bin_ms) if windows is None else {}
    windowing = spec.windowing if windows is None else "custom"
    preprocessing = {"windowing": windowing, **data, "train_stride": train_stride}
    kept = {**(constructor_args(model) or {}), **data}  # windowing and constructor values
    durations = {
        k: d for k, d in spec.durations_at(recording.bin_ms).items()
        if kept.get(k) == d["rows"] and k not in given
    }  # fmt: skip

    train = None  # a closed-form solver reads the recording, not windows
    if spec.solve is None:
        train = WindowSet.of(_train_windows(recording, spec, windows, data, train_stride), kind)
    scored = {s: len(recording.rows(s)) for s in ("val", "test") if len(recording.split.get(s, ()))}
    forward = spec.forward if loss is None else (lambda m, x: m(x))
    step = _Step(forward, spec.loss if loss is None else criterion_loss(loss), kind)
    return _Plan(kind, monitor, preprocessing, train, scored, step, durations, spec.solve)


def _publish(model: nn.Module, stage: Path, out: Path, config: dict, metrics: dict) -> None:
    """Write the checkpoint and metrics into the staged folder, then put it in place whole (an
    earlier run's files go; files the user put in `out` stay)."""
    try:
        save_checkpoint(model, stage, extra=config)
        write_json(stage / METRICS_FILE, metrics)
        publish_folder(stage, out, keep=not_ours)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _run_config(rec: Recording, family: str | None, plan: _Plan, s: Settings, custom: bool) -> dict:
    """What config.json records about a run besides the model: data, preprocessing, settings."""
    return {
        "family": family,
        "task": plan.kind,
        "preprocessing": plan.preprocessing,
        **({"durations": plan.durations} if plan.durations else {}),
        "data_fingerprint": rec.fingerprint(),
        "recording": {
            "modality": rec.modality,
            "input_shape": list(rec.input_shape),
            "bin_ms": rec.bin_ms,
            "target_names": rec.target_names,
            "label_names": rec.label_names,
        },
        "seed": s.seed,
        "train": {**asdict(s), "loss": "custom" if custom else "spec"},
    }


@dataclass(frozen=True)
class _Step:
    """The training forward pass and loss of a run."""

    forward: Callable[[nn.Module, Tensor], object]
    loss: LossFn
    kind: str

    def __call__(self, model: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, dict]:
        return self.loss(self.forward(model, x), x, target, self.kind)


def _fit_weights(
    model: nn.Module,
    recording: Recording,
    plan: _Plan,
    s: Settings,
    out: Path | None,
    progress: bool,
    t0: float,
) -> tuple[list[dict], int]:
    """Leave the fitted weights in `model`: the spec's closed-form solver when it has one (no
    epochs: empty history, best epoch 0), else the best-validation weights of the epoch loop."""
    if plan.solve is not None:
        with stage(progress, "solving in closed form"):
            plan.solve(model, recording)
        return [], 0
    validate = lambda m: plan.score(m, recording, "val")  # noqa: E731
    history, best_state, best_epoch = _train(model, plan, validate, s, out, progress, t0)
    model.load_state_dict(best_state)
    return history, best_epoch


def _train(
    model: nn.Module,
    plan: _Plan,
    validate: Callable[[nn.Module], dict],
    s: Settings,
    out: Path | None,
    progress: bool,
    t0: float,
) -> tuple[list[dict], dict[str, Tensor], int]:
    """The epoch loop; returns (per-epoch history, best state dict, best epoch)."""
    train, step, monitor = plan.train, plan.step, plan.monitor
    gen = torch.Generator().manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, s.epochs))
    history: list[dict] = []
    best_score, best_epoch = -math.inf, 0
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    with TrainProgress(progress, s.epochs, math.ceil(len(train) / s.batch_size), monitor) as bar:
        for epoch in range(1, s.epochs + 1):
            model.train()
            sums: dict[str, float] = {}
            for idx in torch.randperm(len(train), generator=gen).split(s.batch_size):
                if len(idx) < 2:  # a lone window breaks batch norm; it sits this epoch out
                    continue
                x, target = train.x[idx], train.target[idx]
                if s.augment_poisson > 0:
                    x = poisson_jitter(x, s.augment_poisson, rng)
                total, parts = step(model, x, target)
                opt.zero_grad(set_to_none=True)
                total.backward()
                if s.grad_clip:
                    nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
                opt.step()
                for k, v in {"loss": total.item(), **parts}.items():
                    sums[k] = sums.get(k, 0.0) + float(v) * len(idx)
                bar.batch(total.item())
            sched.step()
            val = validate(model)
            if _score(val, monitor) > best_score:
                best_score, best_epoch = _score(val, monitor), epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            row = {
                "epoch": epoch,
                **{f"train_{k}": v / len(train) for k, v in sums.items()},
                **{f"val_{k}": v for k, v in val.items() if k in MONITORS[step.kind]},
                "lr": opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t0, 3),
            }
            history.append(row)
            if out is not None:  # the staged run folder
                with open(out / EPOCHS_FILE, "a") as f:
                    f.write(json.dumps(row) + "\n")
            bar.epoch(epoch, val[monitor])
            late = s.max_seconds is not None and row["seconds"] > s.max_seconds
            if epoch - best_epoch >= s.patience or late:
                break
    return history, best_state, best_epoch
