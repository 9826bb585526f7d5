"""Assemble the metadata contract of an export from the model, its checkpoint config, the
recording and what export measured. Every key and check is `cortexedge.contract`'s; every count
comes from the project's one definition of it:

- dense / effective MACs per bin: `cortexedge.compress.macs_torch` on the exported model, the
  NeuroBench count the compress stage reports (so a pruned model exports with the effective
  MACs its compression reported);
- parameters, bytes at stored precision (int8 weights count 1 byte) and connection sparsity:
  `cortexedge.compress.footprint` on the exported model, again the compress stage's numbers;
- bit widths: the brevitas quantizers (`cortexedge.compress.qat.quant_scales`).
The graph's own count (`cortexedge.runtime.graph_macs`, what the runtime's profiler reports for
the file) goes into `extra` as `graph_macs_dense` / `graph_macs_effective`, and the nodes that
count leaves out (ops the runtime's numpy engine does not implement) as `graph_macs_uncounted`,
[{"node", "op_type"}], when there are any. Float recurrent cells
are traced as ONNX GRU/LSTM ops (`export.tracing.SEQUENCE_OPS`), so both counts apply the same
rule to the same weights and agree (tests/export/test_macs_agree.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from torch import nn

from cortexedge import __version__
from cortexedge.contract import DecoderMetadata, InputSpec, OutputSpec, StateSpec
from cortexedge.errors import CortexEdgeError
from cortexedge.families import modality_of, streaming_of
from cortexedge.recording import Recording

CLASS_UNIT = "logit"
# recording modality -> the contract's input kind
INPUT_KINDS: dict[str, str] = {
    "spikes": "spike_counts",
    "calcium": "calcium",
    "widefield": "frames",
}


@dataclass
class Source:
    """What an export starts from: the inference model, its registry name, its checkpoint
    config (empty for a bare module) and the recording used to verify and score (or None)."""

    model: nn.Module
    family: str | None
    config: dict
    recording: Recording | None

    @property
    def recorded(self) -> dict:
        """The checkpoint's facts about its training recording (modality, shapes, names)."""
        return self.config.get("recording") or {}

    def modality(self, override: str | None) -> str:
        """Recording modality: given > recording > checkpoint > what the class declares."""
        rec = self.recording.modality if self.recording is not None else None
        modality = override or rec or self.recorded.get("modality")
        modality = modality or modality_of(self.model)
        if modality not in INPUT_KINDS:
            raise CortexEdgeError(
                f"modality: cannot tell what the model reads; pass modality= one of "
                f"{', '.join(INPUT_KINDS)} (or a recording)"
            )
        return modality

    def input_shape(self, override: tuple[int, ...] | None) -> tuple[int, ...]:
        """Shape of one bin: given > recording > checkpoint > the model's own size attributes."""
        if override is not None:
            return tuple(int(s) for s in override)
        if self.recording is not None:
            return self.recording.input_shape
        if self.recorded.get("input_shape"):
            return tuple(self.recorded["input_shape"])
        for attr, shape in (("in_channels", lambda v: (v,)), ("frame_shape", tuple)):
            if isinstance(getattr(self.model, attr, None), (int, tuple, list)):
                return tuple(int(s) for s in shape(getattr(self.model, attr)))
        raise CortexEdgeError("input_shape: cannot tell the size of one bin; pass input_shape=")

    def bin_ms(self, override: float | None) -> float:
        """Bin width in ms: given > recording > checkpoint."""
        rec = self.recording.bin_ms if self.recording is not None else None
        value = override or rec or self.recorded.get("bin_ms")
        if not value:
            raise CortexEdgeError("bin_ms: unknown bin width; pass bin_ms= (or a recording)")
        return float(value)

    def task(self) -> str:
        """Target kind: regression, binary, multilabel or multiclass."""
        if self.recording is not None:
            from cortexedge.scoring import target_kind

            return target_kind(self.recording, self.config.get("task"))
        return self.config.get("task") or "regression"


def input_spec(source: Source, shape: tuple[int, ...], modality: str) -> InputSpec:
    """One bin of input. Spike counts are >= 0 with no upper bound; other inputs expect the
    range seen in the recording (unbounded when there is none)."""
    kind = INPUT_KINDS[modality]
    if kind == "spike_counts":
        bounds: tuple[float | None, float | None] = (0.0, None)
    elif source.recording is not None:
        x = source.recording.x
        bounds = (float(np.min(x)), float(np.max(x)))
    else:
        bounds = (None, None)
    return InputSpec(shape=shape, kind=kind, dtype="float32", range=bounds)


def output_specs(source: Source, width: int) -> list[OutputSpec]:
    """Names and units of the `width` columns of y: the recording's target (or label) names
    when they fit, else y0, y1, ...; regression units from the recording, logits otherwise."""
    rec = source.recording
    task = source.task()
    names_from = "target_names" if task == "regression" else "label_names"
    names = getattr(rec, names_from, None) if rec is not None else None
    names = names or source.recorded.get(names_from)
    if not names or len(names) != width:
        names = [f"y{i}" for i in range(width)]
    unit = CLASS_UNIT
    if task == "regression":
        unit = str(rec.meta.get("y_units", "")) if rec is not None else ""
    return [OutputSpec(str(n), unit) for n in names]


def bit_widths(model: nn.Module) -> dict | None:
    """{"weights", "activations"}: the widest weight and activation quantizers, None if float."""
    from cortexedge.export.tracing import is_quantized

    if not is_quantized(model):
        return None
    from cortexedge.compress.qat import quant_scales

    scales = quant_scales(model)
    weights = [s["bits"] for k, s in scales.items() if k.endswith(".weight_quant")]
    acts = [s["bits"] for k, s in scales.items() if not k.endswith(".weight_quant")]
    return {"weights": max(weights), "activations": max(acts) if acts else None}


def metadata(
    source: Source,
    *,
    step_graph: onnx.ModelProto,
    specs: tuple[StateSpec, ...],
    input: InputSpec,
    bin_ms: float,
    bits: dict | None,
    score: dict | None,
    verification: dict,
    extra: dict,
) -> DecoderMetadata:
    """The contract for a step graph (the sequence graph describes itself by the same)."""
    from cortexedge.compress.footprint import footprint
    from cortexedge.compress.macs_torch import count_macs
    from cortexedge.runtime.graph_macs import count_graph

    macs = count_macs(source.model, input.shape)
    graph = count_graph(step_graph)
    width = next(v for v in step_graph.graph.output if v.name == "y")
    stored = footprint(source.model)
    extra = {**extra, "graph_macs_dense": graph.dense, "graph_macs_effective": graph.effective}
    streaming, declared = streaming_of(source.model)
    if not declared:
        extra["assumed"] = "streaming_mode 'stateful': the model's class declares none"
    if graph.uncounted:
        extra["graph_macs_uncounted"] = [asdict(u) for u in graph.uncounted]
    return DecoderMetadata(
        toolkit_version=__version__,
        model_family=source.family or type(source.model).__name__,
        bin_ms=bin_ms,
        input=input,
        outputs=output_specs(source, width.type.tensor_type.shape.dim[-1].dim_value),
        states=list(specs),
        streaming=streaming,
        macs={"dense": round(macs.dense), "effective": round(macs.effective)},
        params=stored["params"],
        bytes=stored["bytes"],
        sparsity=stored["sparsity"],
        bits=bits,
        score=score,
        verification=verification,
        extra=extra,
    )
