"""`to_onnx`: a trained or compressed checkpoint (or any streaming nn.Module) -> one verified,
self-describing ONNX file.

Steps: load -> inference copy (training-only parts dropped) -> trace the step graph (QCDQ for
brevitas models) -> simplify and check -> verify against torch on >= 1,000 streamed bins ->
optionally wrap into the sequence graph and verify that too -> score on the test split ->
stamp the metadata contract -> write atomically. Any failure leaves no file behind.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from torch import nn

from cortexedge.atomic import refuse_overwriting
from cortexedge.contract import DecoderMetadata
from cortexedge.errors import CortexEdgeError
from cortexedge.export import finalize
from cortexedge.export.describe import Source, bit_widths, input_spec, metadata
from cortexedge.export.onnx_sequence import sequence_graph
from cortexedge.export.onnx_step import export_step
from cortexedge.export.streamable import inference_copy, state_specs
from cortexedge.export.tracing import check_opset
from cortexedge.export.verify import (
    MIN_BINS,
    Tolerance,
    Verification,
    session,
    verify_model,
    verify_sequence,
    verify_step,
)
from cortexedge.families import streaming_of
from cortexedge.recording import Recording
from cortexedge.train.progress import stage

if TYPE_CHECKING:
    import onnx

SEQUENCE_CHECK_LENGTH = 256  # window used to verify a sequence graph with a free time dim
SYNTHETIC_BINS = 4096

# modality -> seeded stand-in inputs [n, *shape] when no recording is given
SYNTHETIC = {
    "spikes": lambda rng, shape: rng.poisson(1.0, shape),
    "calcium": lambda rng, shape: rng.normal(0.0, 1.0, shape),
    "widefield": lambda rng, shape: rng.uniform(0.0, 1.0, shape),
}


@dataclass
class ExportReport:
    """What `to_onnx` wrote and measured."""

    path: Path
    graph: str  # "step" or "sequence"
    metadata: DecoderMetadata
    verification: Verification  # the step graph against torch
    sequence_check: Verification | None  # a sequence graph against the verified step graph
    dynamic_batch: bool
    bytes_written: int

    def summary(self) -> dict:
        """JSON-ready summary for the CLI and run reports."""
        meta = self.metadata
        return {
            "path": str(self.path),
            "graph": self.graph,
            "family": meta.model_family,
            "bytes_written": self.bytes_written,
            "dynamic_batch": self.dynamic_batch,
            "macs": meta.macs,
            "params": meta.params,
            "bytes": meta.bytes,
            "sparsity": meta.sparsity,
            "bits": meta.bits,
            "score": meta.score,
            "verification": self.verification.summary(),
            "sequence_check": self.sequence_check.summary() if self.sequence_check else None,
        }


def load_model(
    source: nn.Module | str | os.PathLike, trust_code: bool = False
) -> tuple[nn.Module, dict]:
    """(model, checkpoint config) from a module ({} config) or a plain/compressed checkpoint;
    `trust_code` lets a checkpoint's user class be imported."""
    if isinstance(source, nn.Module):
        return source, {}
    from cortexedge.compress.artifacts import load_compressed

    return load_compressed(source, trust_code=trust_code)


def _recording(recording: Recording | str | os.PathLike | None) -> Recording | None:
    if recording is None or isinstance(recording, Recording):
        return recording
    return Recording.load(recording)


def _check_inputs(source: Source, shape: tuple[int, ...], modality: str) -> tuple[np.ndarray, str]:
    """Rows to verify on: the recording's test split in time order, else seeded stand-ins."""
    rec = source.recording
    if rec is None:
        rng = np.random.default_rng(0)
        return SYNTHETIC[modality](rng, (SYNTHETIC_BINS, *shape)).astype(np.float32), "synthetic"
    return rec.x[rec.rows("test")].astype(np.float32), "test"


def _stamp_sequence(graph, meta: DecoderMetadata, length: int | None) -> DecoderMetadata:
    """Sequence graphs carry the same contract minus state tensors (they are inside the Scan);
    `extra.graph` says which kind of graph it is, `extra.sequence_length` its T (null: free).
    contract.attach checks step graphs only."""
    from cortexedge.contract import graph_sha256, to_props, write_props

    extra = {**meta.extra, "graph": "sequence", "sequence_length": length}
    meta = replace(meta, states=[], extra=extra, graph_sha256=graph_sha256(graph))
    write_props(graph, to_props(meta))
    return meta


def _source(model_or_checkpoint, rec: Recording | None, trust_code: bool) -> Source:
    from cortexedge.train.checkpoint import registered_name

    model, config = load_model(model_or_checkpoint, trust_code)
    family = config.get("model") or registered_name(model)
    return Source(inference_copy(model), family, config, rec)


def _verification(check: Verification, sequence: Verification | None) -> dict:
    """The contract's verification entry: the step graph against torch (plus, for a sequence
    graph, how far its Scan is from that verified step graph)."""
    out = {
        "max_abs_err": check.max_abs_err,
        "tolerance": check.tolerance,
        "bins": check.bins,
        "split": check.split,
        "rule": check.rule,
        "max_rel_err": check.max_rel_err,
        "max_err_steps": check.max_err_steps,
        "streams": check.streams,
        "boundary_bins": check.boundary_bins,
    }
    if sequence is not None:
        out["sequence_vs_step_max_rel_err"] = sequence.max_rel_err
    return out


def _refuse(check: Verification, hint: str = "") -> None:
    if not check.passed:
        raise CortexEdgeError(
            f"export verification failed: '{check.worst}' differs from {check.reference} by "
            f"{check.max_rel_err:.3g} of its scale (rule: {check.rule}){hint}; nothing written"
        )


def to_onnx(
    model_or_checkpoint: nn.Module | str | os.PathLike,
    path: str | os.PathLike,
    *,
    recording: Recording | str | os.PathLike | None = None,
    sequence: bool = False,
    sequence_length: int | None = None,
    opset: int = 17,
    input_shape: tuple[int, ...] | None = None,
    modality: str | None = None,
    bin_ms: float | None = None,
    verify_bins: int = MIN_BINS,
    simplify: bool = True,
    trust_code: bool = False,
    progress: bool = False,
) -> ExportReport:
    """Export a decoder to one ONNX file at `path` and return what was measured.

    - `model_or_checkpoint`: a streaming `nn.Module` (init_state/step) or a checkpoint folder
      (trained, or compressed by `cortexedge compress`).
    - `recording` (object or .npz path): verification streams its test split and the file
      records the test score; without one, verification uses seeded stand-in inputs.
    - `sequence`: write the sequence graph x [B, T, ...] -> y [B, T, D] instead of the step
      graph (`sequence_length` fixes T; default a free time dim).
    - `input_shape`, `modality` ("spikes", "calcium", "widefield"), `bin_ms`: only needed when
      neither the checkpoint nor the recording says.
    - `trust_code`: import the user class a checkpoint names (refused without it).
    - `progress`: name each step (tracing, verification, scoring) on stderr while it runs.
    Raises CortexEdgeError for bad inputs and for an export that fails verification.
    """
    from cortexedge.train.checkpoint import run_files

    out = finalize.check_out_path(path)
    refuse_overwriting(out, recording, model_or_checkpoint, *run_files(model_or_checkpoint))
    opset = check_opset(opset)
    if isinstance(verify_bins, bool) or not isinstance(verify_bins, int) or verify_bins < MIN_BINS:
        raise CortexEdgeError(f"verify_bins: must be an integer >= {MIN_BINS}, got {verify_bins!r}")
    rec = _recording(recording)
    source = _source(model_or_checkpoint, rec, trust_code)
    specs = state_specs(source.model)  # first: a module without init_state/step is told so
    shape, modality = source.input_shape(input_shape), source.modality(modality)
    bin_width = source.bin_ms(bin_ms)
    if rec is not None and rec.input_shape != shape:
        raise CortexEdgeError(
            f"recording: one bin has shape {list(rec.input_shape)}, the model reads {list(shape)}"
        )
    traced = f"{out.name}: tracing the step graph (opset {opset}) and verifying it against torch"
    with stage(progress, traced):
        step = _verified_step(source, specs, shape, modality, opset, verify_bins, simplify)
    graph, seq_check = step.graph, None
    if sequence:
        with stage(progress, f"{out.name}: building the sequence graph, checking it on the step"):
            graph, seq_check = _verified_sequence(step, sequence_length)
    scoring = "scoring the graph on the test split" if rec is not None else "describing the graph"
    with stage(progress, f"{out.name}: {scoring}"):
        meta = _contract(source, step, shape, modality, bin_width, seq_check)
    if sequence:
        meta = _stamp_sequence(graph, meta, sequence_length)
    else:
        from cortexedge.contract import attach

        meta = attach(graph, meta)
    data = finalize.serialize(graph)
    finalize.write(out, data)
    kind = "sequence" if sequence else "step"
    return ExportReport(out, kind, meta, step.check, seq_check, step.dynamic, len(data))


@dataclass
class _Step:
    """A finalized step graph with its session and its verification against torch."""

    graph: onnx.ModelProto
    session: object
    specs: tuple
    inputs: np.ndarray
    tol: Tolerance
    facts: dict
    check: Verification
    dynamic: bool
    bits: dict | None
    self_check: Verification | None  # torch step against the model's own sequence form


def _verified_step(
    source: Source, specs: tuple, shape, modality: str, opset: int, bins: int, simplify: bool
) -> _Step:
    """Trace, finalize and verify the step graph; refuses one that fails verification."""
    model = source.model
    bits = bit_widths(model)
    tol = Tolerance(bits["activations"] if bits else None)
    step, dynamic = export_step(model, specs, shape, opset, tol)
    step = finalize.finalize_graph(step, simplify_graph=simplify)
    sess = session(finalize.serialize(step))
    inputs, split = _check_inputs(source, shape, modality)
    self_check = verify_model(model, specs, inputs, tol, split)
    facts = dict(split=split, bins=bins, streams=2 if dynamic else 1)
    check = verify_step(model, sess, specs, inputs, tol, **facts)
    if self_check is not None and not self_check.passed:
        raise CortexEdgeError(
            f"export refused: {type(model).__name__}.step differs from {self_check.reference} "
            f"by max |Δy| {self_check.max_abs_err:.3g} ({self_check.max_rel_err:.3g} of its "
            f"scale; rule: {self_check.rule}); the ONNX graph against torch step: max |Δy| "
            f"{check.max_abs_err:.3g} ({check.max_rel_err:.3g}); nothing written"
        )
    _refuse(check)
    return _Step(step, sess, specs, inputs, tol, facts, check, dynamic, bits, self_check)


def _verified_sequence(step: _Step, length: int | None) -> tuple[onnx.ModelProto, Verification]:
    """The sequence graph of a verified step graph, checked against it."""
    graph = sequence_graph(step.graph, step.specs, length)
    graph = finalize.finalize_graph(graph, simplify_graph=False)
    seq_sess = session(finalize.serialize(graph))
    check = verify_sequence(seq_sess, step.session, step.specs, step.inputs,
                            length or SEQUENCE_CHECK_LENGTH, step.tol, **step.facts)  # fmt: skip
    _refuse(check)
    return graph, check


def _score(source: Source, step: _Step) -> dict:
    """The test score of the verified step graph (`export/score.py`)."""
    from cortexedge.export.score import score

    streaming = streaming_of(source.model)[0]
    return score(step.session, step.specs, source.recording, source.task(), streaming, step.dynamic)


def _contract(source: Source, step: _Step, shape, modality: str, bin_ms: float,
              seq_check: Verification | None) -> DecoderMetadata:  # fmt: skip
    """The metadata contract of a verified export, scored on the recording's test split."""
    rec = source.recording
    own = step.self_check
    extra = {
        "graph": "step",
        "dynamic_batch": step.dynamic,
        "step_vs_sequence": "not checked: the class has no forward or stream"
        if own is None
        else {"against": own.reference, "max_abs_err": own.max_abs_err, "bins": own.bins},
    }
    if rec is not None:
        extra["recording_fingerprint"] = rec.fingerprint()
    if source.config.get("data_fingerprint"):
        extra["trained_on_fingerprint"] = source.config["data_fingerprint"]
    return metadata(
        source,
        step_graph=step.graph,
        specs=step.specs,
        input=input_spec(source, shape, modality),
        bin_ms=bin_ms,
        bits=step.bits,
        score=None if rec is None else _score(source, step),
        verification=_verification(step.check, seq_check),
        extra=extra,
    )
