"""The compression recipe: structured pruning, magnitude pruning and QAT, fine-tuned in between.

`compress(model, recording, Recipe(...))` works on a copy of any `nn.Module` (training-only
parts dropped through `inference_module()` when the model has one) and runs the enabled stages
in this order, each followed by `finetune_epochs` of the project's `fit`:

1. "structured": remove `structured` of every channel group and recurrent hidden-unit set;
2. "magnitude": hold L1 masks at `sparsity`, one-shot, or gradually (cubic schedule over
   `prune_rounds` rounds that share the fine-tuning epochs; the masks change between rounds);
3. "quantized": swap in brevitas layers at `bits`, calibrate on training windows, fine-tune
   with the masks still held (for `qat_epochs`, default `finetune_epochs`: a quantized
   recurrent cell runs unrolled in Python and trains far slower than the float layers).

Masks become permanent at the end. Every stage is measured on the test split (R², or accuracy
for classifiers) with dense/effective MACs per bin, parameters, connection sparsity and bytes.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

import torch
from torch import Tensor, nn

from cortexedge.compress.footprint import footprint, layer_sparsity
from cortexedge.compress.macs_torch import count_macs
from cortexedge.compress.magnitude import (
    SCOPES,
    apply_masks,
    cubic_sparsity,
    hold_zeros,
    magnitude_masks,
    make_permanent,
)
from cortexedge.compress.qat import calibrate, check_spec, quant_scales, quantize
from cortexedge.compress.quant_gru import QuantSpec
from cortexedge.compress.structured import PlanStep, prune_structured
from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.train.progress import stage

SCHEDULES = ("oneshot", "gradual")
IMPORTANCES = ("magnitude", "taylor")


@dataclass
class Recipe:
    """What to compress and how (stored in the checkpoint's JSON)."""

    sparsity: float = 0.0
    structured: float = 0.0
    bits: int | None = None
    act_bits: int = 8
    per_channel: bool = False
    scope: str = "global"
    include_bias: bool = False
    schedule: str = "oneshot"
    prune_rounds: int = 4
    importance: str = "magnitude"
    finetune_epochs: int = 10
    qat_epochs: int | None = None  # fine-tuning epochs of the quantized model (default: as above)
    # Pruned models recover at 3e-4 (R² loss of 60% magnitude pruning 0.001-0.005 over three
    # seeds, 0.010-0.015 at 1e-4); QAT of 4-bit weights needs the gentler 1e-4 (0.028 at 3e-4 on
    # one seed). benchmarks/compression_targets.py --seed 0/1/2.
    lr: float = 3e-4
    qat_lr: float = 1e-4
    calib_batches: int = 8
    seed: int = 0

    def validate(self) -> None:
        """Raise a CortexEdgeError naming the first bad field."""
        for name in ("sparsity", "structured"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise CortexEdgeError(f"{name} must be a number in [0, 1), got {value!r}")
            if not 0.0 <= value < 1.0:
                raise CortexEdgeError(f"{name} must lie in [0, 1), got {value}")
        if self.bits is not None:
            check_spec(self.quant_spec())
        choices = {"scope": SCOPES, "schedule": SCHEDULES, "importance": IMPORTANCES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CortexEdgeError(
                    f"{name} must be one of {', '.join(allowed)}, got '{getattr(self, name)}'"
                )
        for name in ("finetune_epochs", "qat_epochs", "prune_rounds", "calib_batches"):
            value = getattr(self, name)
            if name == "qat_epochs" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CortexEdgeError(f"{name} must be an integer >= 0, got {value!r}")
        for name in ("lr", "qat_lr"):
            if not getattr(self, name) > 0:
                raise CortexEdgeError(f"{name} must be positive, got {getattr(self, name)}")

    def quant_spec(self) -> QuantSpec:
        return QuantSpec(self.bits or 8, self.act_bits, self.per_channel)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Recipe:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Data:
    """How the recipe reaches the data: the recording, the training family and its windows."""

    recording: Recording
    family: str | None
    kind: str
    windowing: dict
    fit_kwargs: dict = field(default_factory=dict)

    def windows(self, split: str):
        from cortexedge.train.specs import spec_for

        given = self.fit_kwargs.get("windows")
        if given is not None and not callable(given):
            return given[split]
        if callable(given):
            return given(self.recording, split, 1)
        return spec_for(self.family).windows(self.recording, split, 1, **self.windowing)

    def sample(self, split: str, n: int, batch: int) -> list[tuple[Tensor, Tensor]]:
        """Up to `n` batches of (input windows, targets) of a split, spread evenly over it."""
        from cortexedge.train.fit import WindowSet

        data = WindowSet.of(self.windows(split), self.kind)
        step = max(1, len(data) // max(1, n * batch))
        x, target = data.x[::step][: n * batch], data.target[::step][: n * batch]
        return [(x[i : i + batch], target[i : i + batch]) for i in range(0, len(x), batch)]


@dataclass
class CompressResult:
    """The compressed model (eval mode), what each stage measured and what rebuilds it."""

    model: nn.Module
    recipe: Recipe
    stages: list[dict]
    plan: list[PlanStep]
    example_shape: list[int]
    input_shape: list[int]
    sparsity: dict[str, dict]
    scales: dict[str, dict]
    pruned: nn.Module | None = None  # float model after pruning, before QAT (when both ran)


def _metrics(model: nn.Module, data: Data) -> dict:
    """The test score by the one definition (`cortexedge.scoring`), as train and export give it."""
    from cortexedge.train.causal import score_model

    return score_model(model, data.recording, "test", data.kind, data.windowing.get("length"))


def measure(model: nn.Module, name: str, data: Data, finetune: list[dict] | None = None) -> dict:
    """One entry of compression.json's `stages` (with the fine-tuning runs that preceded it)."""
    scores = _metrics(model, data)
    key = "r2" if data.kind == "regression" else "accuracy"
    macs = count_macs(model, tuple(data.recording.input_shape))
    return {
        "name": name,
        key: scores[key],
        "metrics": scores,
        "macs_dense": macs.dense,
        "macs_effective": macs.effective,
        **footprint(model),
        "finetune": finetune or [],
    }


def _finetune(
    model: nn.Module, data: Data, recipe: Recipe, epochs: int, loss, lr: float | None = None
) -> list[dict]:
    """Fine-tune with the project's `fit` at `lr` (default: the recipe's); returns a summary
    of the run (none for 0 epochs)."""
    if epochs <= 0:
        return []
    from cortexedge.train.fit import fit

    kwargs = {"progress": False, "patience": epochs + 1, **data.fit_kwargs}
    if loss is not None:
        kwargs.setdefault("loss", loss)
    run = fit(
        model, data.recording, epochs=epochs, lr=lr or recipe.lr, seed=recipe.seed,
        family=data.family, data=data.windowing or None, **kwargs,
    )  # fmt: skip
    return [{"epochs": len(run.history), "best_epoch": run.best_epoch, "seconds": run.seconds}]


def _taylor_grads(model: nn.Module, data: Data, batches: list[tuple[Tensor, Tensor]]) -> None:
    """Accumulate loss gradients on the weights, for Taylor importance."""
    from cortexedge.train.specs import standard_loss

    model.zero_grad()
    for x, target in batches:
        standard_loss(model(x), x, target, data.kind)[0].backward()


def _gradual(model: nn.Module, recipe: Recipe, data: Data, loss) -> list[dict]:
    """Raise the masks' sparsity along the cubic schedule over `prune_rounds` rounds that share
    the fine-tuning epochs; masks change between the rounds' `fit` calls."""
    rounds = max(1, min(recipe.prune_rounds, recipe.finetune_epochs))
    per_round = [recipe.finetune_epochs // rounds] * rounds
    per_round[-1] += recipe.finetune_epochs - sum(per_round)
    runs = []
    for r in range(1, rounds + 1):
        target = cubic_sparsity(r, rounds, recipe.sparsity)
        apply_masks(model, magnitude_masks(model, target, recipe.scope, recipe.include_bias))
        runs += [
            {**run, "sparsity": target}
            for run in _finetune(model, data, recipe, per_round[r - 1], loss)
        ]
    return runs


def compress(
    model: nn.Module,
    recording: Recording,
    recipe: Recipe,
    *,
    family: str | None = None,
    data: dict | None = None,
    task: str | None = None,
    progress: bool = False,
    **fit_kwargs,
) -> CompressResult:
    """Compress a copy of `model` with `recipe`, fine-tuning on `recording` between stages.

    - `family`: the training spec (windowing, loss) to use; default: the model's registry name,
      unregistered models get the default spec (sliding windows, the task's criterion).
    - `data`: windowing parameters (e.g. bin_width, num_steps); `task` as in `fit`.
    - `fit_kwargs`: passed to every `fit` call (batch_size, train_stride, weight_decay,
      augment_poisson, loss, windows, max_seconds, threads, ...). `windows` (ready windows
      per split) replaces the spec's windowing everywhere; `threads` also applies to the
      measurements and the calibration.
    The input model is not modified.
    """
    old_threads = torch.get_num_threads()
    if fit_kwargs.get("threads"):
        torch.set_num_threads(fit_kwargs["threads"])
    try:
        prepared, ctx, loss = _prepare(
            model, recording, recipe, family, data, task, progress, fit_kwargs
        )
        return _compress(prepared, ctx, recipe, loss)
    finally:
        torch.set_num_threads(old_threads)


def _compress(model: nn.Module, ctx: Data, recipe: Recipe, loss) -> CompressResult:
    """The stages of `compress` on the prepared copy, in order, each measured after its
    fine-tuning (`loss` None: the spec's)."""
    batches = ctx.sample("train", recipe.calib_batches or 1, 64)
    example = batches[0][0][:8]
    torch.manual_seed(recipe.seed)

    show = bool(ctx.fit_kwargs.get("progress"))
    with stage(show, "measuring the float model on the test split"):
        stages = [measure(model, "float", ctx)]
    plan: list[PlanStep] = []
    if recipe.structured:
        with stage(show, f"structured pruning of {recipe.structured:.0%} ({recipe.importance})"):
            plan = _structured_stage(model, recipe, ctx, batches, example)
        runs = _finetune(model, ctx, recipe, recipe.finetune_epochs, loss)
        with stage(show, "measuring the structured model"):
            stages.append(measure(model, "structured", ctx, runs))
    if recipe.sparsity:
        runs = _magnitude_stage(model, recipe, ctx, loss)
        with stage(show, f"measuring the {recipe.sparsity:.0%} magnitude-pruned model"):
            stages.append(measure(model, "magnitude", ctx, runs))
    pruned = None
    if recipe.bits:
        make_permanent(model)
        if plan or recipe.sparsity:
            pruned = copy.deepcopy(model).eval()
        stages.append(_quantized_stage(model, recipe, ctx, batches, loss))
    make_permanent(model)
    model.eval()
    return CompressResult(
        model=model,
        recipe=recipe,
        stages=stages,
        plan=plan,
        example_shape=list(example.shape),
        input_shape=list(ctx.recording.input_shape),
        sparsity=layer_sparsity(model),
        scales=quant_scales(model) if recipe.bits else {},
        pruned=pruned,
    )


def _prepare(
    model: nn.Module,
    recording: Recording,
    recipe: Recipe,
    family: str | None,
    data: dict | None,
    task: str | None,
    progress: bool,
    fit_kwargs: dict,
) -> tuple[nn.Module, Data, object]:
    """Check the recipe and the data, and return the model's eval-mode copy (training-only parts
    dropped), how to reach the data, and the fine-tuning loss (None: the spec's)."""
    from cortexedge.scoring import target_kind
    from cortexedge.train.checkpoint import registered_name
    from cortexedge.train.specs import TARGET_KINDS, spec_for

    recipe.validate()
    if not (recipe.sparsity or recipe.structured or recipe.bits):
        raise CortexEdgeError("recipe does nothing: set sparsity, structured or bits")
    family = family or registered_name(model)
    kind = target_kind(recording, task)
    spec = spec_for(family)
    spec.check(recording, kind, family)
    windowing = spec.data_for(model, data, recording.bin_ms) if "windows" not in fit_kwargs else {}
    model = copy.deepcopy(model)
    loss = None
    if callable(getattr(model, "inference_module", None)):
        model = model.inference_module()
        loss = TARGET_KINDS[kind].criterion  # the spec's loss may need the dropped parts
    model.eval()
    ctx = Data(recording, family, kind, windowing, {**fit_kwargs, "progress": progress})
    if task is not None:
        ctx.fit_kwargs["task"] = task
    return model, ctx, loss


def _structured_stage(
    model: nn.Module,
    recipe: Recipe,
    ctx: Data,
    batches: list[tuple[Tensor, Tensor]],
    example: Tensor,
) -> list[PlanStep]:
    """Remove `recipe.structured` of every channel group (scored on `batches` for Taylor)."""
    if recipe.importance == "taylor":
        _taylor_grads(model, ctx, batches)
    plan = prune_structured(model, example, recipe.structured, importance=recipe.importance)
    model.zero_grad(set_to_none=True)
    return plan


def _magnitude_stage(model: nn.Module, recipe: Recipe, ctx: Data, loss) -> list[dict]:
    """Hold the magnitude masks, one-shot or gradually, fine-tuning; returns the runs."""
    if recipe.schedule == "gradual":
        return _gradual(model, recipe, ctx, loss)
    masks = magnitude_masks(model, recipe.sparsity, recipe.scope, recipe.include_bias)
    apply_masks(model, masks)
    return _finetune(model, ctx, recipe, recipe.finetune_epochs, loss)


def _quantized_stage(
    model: nn.Module, recipe: Recipe, ctx: Data, batches: list[tuple[Tensor, Tensor]], loss
) -> dict:
    """Swap in quantized layers (zeros still held), calibrate on `batches`, fine-tune at
    `qat_lr`; returns the stage's measurement."""
    show = bool(ctx.fit_kwargs.get("progress"))
    spec = recipe.quant_spec()
    with stage(show, f"quantizing (W{spec.weight_bits}A{spec.act_bits}) and calibrating"):
        quantize(model, spec)
        hold_zeros(model, recipe.include_bias)
        calibrate(model, [x for x, _ in batches])
    qat_epochs = recipe.finetune_epochs if recipe.qat_epochs is None else recipe.qat_epochs
    runs = _finetune(model, ctx, recipe, qat_epochs, loss, recipe.qat_lr)
    with stage(show, "measuring the quantized model"):
        return measure(model, "quantized", ctx, runs)
