"""`export_c`: a trained (float) or QAT-compressed decoder -> a verified C folder.

Writes, into `out_dir`: decoder.h (API), decoder.c (step function), decoder_weights.c (const
arrays, flash), README.md (API, memory figures, build), decoder.onnx (the graph the C code
implements, with the metadata contract), decoder_c.json (the manifest the runtime's "c" backend
reads), decoder_host.c + libdecoder.so (host shim and host build), and on the integer path
decoder_int.npz (the integer model the numpy reference runs).

Order: read the layer IR (unsupported layers fail here, naming the layer) -> emit C -> export
or copy the ONNX graph -> host build -> verification (float: onnxruntime within 1e-5; integer:
bit-exact with the numpy reference, within the stated bound of the QCDQ graph) -> Cortex-M4
sizes and, optionally, a run under qemu whose outputs must equal the host build's. Everything
is built in a temporary folder inside `out_dir` and moved into place only when all checks pass.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch import nn

from cortexedge import __version__
from cortexedge.atomic import refuse_overwriting, staged_folder
from cortexedge.errors import CortexEdgeError
from cortexedge.export.c import build, emit_int, qemu, verify_c, window_chain
from cortexedge.export.c.graph_emit import emit_graph
from cortexedge.export.c.graph_ir import read_graph
from cortexedge.export.c.graph_ops import C_OPS
from cortexedge.export.c.header_doc import document
from cortexedge.export.c.int_extract import int_model
from cortexedge.export.c.model_ir import read_structure
from cortexedge.export.c.publish import check_out
from cortexedge.export.c.readme import readme
from cortexedge.export.c.sparse import POLICIES
from cortexedge.export.c.symbols import check_prefix, default_prefix, prefixed
from cortexedge.recording import Recording
from cortexedge.runtime.backends.c import CLibrary, host_isa, host_python
from cortexedge.runtime.backends.c_manifest import MANIFEST, MANIFEST_VERSION, sealed
from cortexedge.runtime.graph_macs import count_graph
from cortexedge.runtime.model import LoadedModel, load_decoder
from cortexedge.train.progress import stage

NUMERIC = ("auto", "float", "int")
LIBRARY = "libdecoder.so"


@dataclass
class CExport:
    """What export_c wrote and measured (the manifest holds every figure)."""

    folder: Path
    manifest: dict

    def summary(self) -> dict:
        m = self.manifest
        return {"folder": str(self.folder), "numeric": m["numeric"], "memory": m["memory"],
                "macs": m["macs"], "verification": m["verification"],
                "storage": m["storage"], "qemu": m.get("qemu")}  # fmt: skip


def summary_lines(res: CExport) -> list[str]:
    """What the `cortexedge export --target c` command prints."""
    m = res.manifest
    mem, ver, arm = m["memory"], m["verification"], m["memory"].get("cortex_m4") or {}
    formats = ", ".join(f"{x['matrix']} {x['format']}" for x in m["storage"]["matrices"])
    lines = [
        f"wrote {res.folder}/ (decoder.h, decoder.c, decoder_weights.c, README.md; "
        f"{m['numeric']} path; storage: {formats})",
        f"verified on {ver['bins']:,} bins ({m['verified_on']}): max |C - onnxruntime| "
        f"{ver['max_abs_err_vs_onnx']:.3g}"
        + (f"; bit-exact with the integer reference on {ver['bit_exact_bins']:,}"
           if ver.get("bit_exact_bins") else ""),
        f"constant data {mem['weights_bytes']:,} B, state {mem['state_bytes']:,} B, "
        f"MACs/step {m['macs']['executed_per_step']:,}"
        + (f" (the graph's {m['macs']['executed']['graph_dense']:,}: its window of "
           f"{chain['bins']} bins is computed as a chain)"
           if (chain := m["layout"].get("window_chain")) else ""),
    ]  # fmt: skip
    if arm:
        lines.append(f"Cortex-M4: flash {arm['flash_bytes']:,} B (code {arm['code_bytes']:,}), "
                     f"RAM <= {mem['ram_bytes_bound']:,} B (state + stack bound)")  # fmt: skip
    if m.get("qemu"):
        q = m["qemu"]
        per_mac = q["insns_per_step"] / max(m["macs"]["executed_per_step"], 1)
        per_eff = q["insns_per_step"] / max(m["macs"]["executed"]["effective"], 1)
        lines.append(f"qemu {q['board']} ({q['bins']:,} bins): {q['insns_per_step']:,.0f} "
                     f"instructions/bin ({per_mac:.1f} per executed MAC, {per_eff:.1f} per "
                     f"effective MAC), stack {q['stack_bytes']:,} B, "
                     f"RAM {mem['ram_bytes']:,} B")  # fmt: skip
    return lines


def state_map(
    meta_states, layers: int, channels: int, parts: str = "h", declared: list | None = None
) -> list[dict]:
    """How each graph state tensor maps onto the C state: raw-sample history or hidden state.
    `parts`: the hidden parts of a layer ("h"; "hc" for an LSTM); a hidden entry's `layers`
    are the indices the host shim reads (part p of layer l: p · layers + l). `declared`: per
    state, (part, layers) as a class's step passes them (else read from the state names)."""
    if declared is not None:
        return [{"name": s.name, "kind": "hidden",
                 "layers": [parts.index(part) * layers + i for i in idx]}
                for s, (part, idx) in zip(meta_states, declared, strict=True)]  # fmt: skip
    out = []
    for s in meta_states:
        hidden = re.fullmatch(rf"([{parts}])(\d*)", s.name)
        if len(s.shape) == 3 and s.shape[-1] == channels and s.batch_axis == 0:
            out.append({"name": s.name, "kind": "history", "rows": int(s.shape[1])})
        elif hidden:
            idx = [int(hidden.group(2))] if hidden.group(2) else list(range(layers))
            base = parts.index(hidden.group(1)) * layers
            out.append({"name": s.name, "kind": "hidden", "layers": [base + i for i in idx]})
        else:
            raise CortexEdgeError(f"C export: cannot map the graph state '{s.name}' to the C state")
    return out


def _check_options(numeric: str, sparse: str, quantized: bool) -> str:
    if numeric not in NUMERIC:
        raise CortexEdgeError(f"numeric: must be one of {', '.join(NUMERIC)}, got {numeric!r}")
    if sparse not in POLICIES:
        raise CortexEdgeError(f"sparse: must be one of {', '.join(POLICIES)}, got {sparse!r}")
    resolved = ("int" if quantized else "float") if numeric == "auto" else numeric
    if (resolved == "int") != quantized:
        what = "a quantized (QAT) model" if resolved == "int" else "a float model"
        raise CortexEdgeError(f"numeric={resolved!r} needs {what}; this model is the other kind")
    return resolved


def _check_budget(budget: int | None, sparse: str, numeric: str) -> None:
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise CortexEdgeError(
            f"weights_budget: must be a whole number of bytes >= 1, got {budget!r}"
        )
    if numeric != "int":
        raise CortexEdgeError("weights_budget: applies to the integer path (a quantized model)")
    if sparse != "auto":
        raise CortexEdgeError(
            f"weights_budget: chooses the storage itself, so sparse must be 'auto', not {sparse!r}"
        )


def _onnx(source, onnx_path, dest: Path, recording, onnx_options: dict, progress: bool) -> None:
    """The build's decoder.onnx: the given export (its contract checked) or a new one."""
    if onnx_path is not None:
        with stage(progress, f"checking {Path(onnx_path).name} and taking it as {dest.name}"):
            load_decoder(onnx_path)  # validates the file and its contract
            shutil.copyfile(onnx_path, dest)
        return
    from cortexedge.export.api import to_onnx

    to_onnx(source, dest, recording=recording, progress=progress, **onnx_options)


def export_c(
    model_or_checkpoint: nn.Module | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    numeric: str = "auto",
    sparse: str = "auto",
    weights_budget: int | None = None,
    max_count: int = 255,
    recording: Recording | str | os.PathLike | None = None,
    onnx_path: str | os.PathLike | None = None,
    verify_bins: int = 10_000,
    reference_bins: int = 2_000,
    cortex_m: bool = True,
    qemu_bins: int = 0,
    progress: bool = False,
    trust_code: bool = False,
    name: str | None = None,
    **onnx_options,
) -> CExport:
    """Generate, build and verify the C decoder of a model in `out_dir`.

    - `numeric`: "float", "int" (needs a QAT model) or "auto" (from the model);
    - `sparse`: weight storage policy per matrix ("auto", "dense", "sparse", "mask", "size");
    - `weights_budget`: integer path, bytes of constant data (flash) the build may take: the
      storage per matrix of the fewest estimated Cortex-M4 instructions that fits (with
      `sparse="auto"`); refused when even the smallest storage does not fit;
    - `max_count`: integer path, the largest raw count per sample the C code keeps (a larger
      count is refused like any bad bin; fewer bits per stored sample save RAM);
    - `onnx_path`: an already exported graph of the same model (else `to_onnx` runs, with
      `recording` and `onnx_options`);
    - `verify_bins` rows are compared with onnxruntime, the first `reference_bins` with the
      integer reference; `cortex_m`: cross-compile for sizes when arm-none-eabi-gcc exists;
      `qemu_bins` > 0 also runs that many rows under qemu-system-arm;
    - `progress`: show each step (export, builds, verification, emulator) on stderr;
    - `trust_code`: import the user class a checkpoint names (refused without it);
    - `name`: the prefix of every external symbol, type and macro (default: from the model's
      name), so that several decoders link into one program.
    """
    from cortexedge.export.api import load_model
    from cortexedge.export.streamable import inference_copy
    from cortexedge.export.tracing import is_quantized
    from cortexedge.train.checkpoint import run_files

    out = Path(out_dir).absolute()  # the builds run in other working folders
    check_out(out, MANIFEST)
    refuse_overwriting(out, recording, onnx_path, model_or_checkpoint,
                       *run_files(model_or_checkpoint))  # fmt: skip
    if name is not None:
        check_prefix(name)
    rec = Recording.load(recording) if isinstance(recording, (str, os.PathLike)) else recording
    model, _ = load_model(model_or_checkpoint, trust_code)
    onnx_options = {**onnx_options, "trust_code": trust_code}
    resolved = _check_options(numeric, sparse, is_quantized(model))
    _check_budget(weights_budget, sparse, resolved)
    imodel = program = None
    if resolved == "int":  # a layer it cannot read, or a budget too small, fails before export
        structure = read_structure(inference_copy(model))
        imodel = int_model(structure, max_count)
        program = emit_int.emit(imodel, sparse, weights_budget)
        program.declared_states = structure.state_parts
    policy = sparse if weights_budget is None else f"{sparse}, weights within {weights_budget:,} B"
    with staged_folder(out) as work:
        _onnx(model_or_checkpoint, onnx_path, work / "decoder.onnx", rec, onnx_options, progress)
        if imodel is not None:
            _declare_counts(work / "decoder.onnx", max_count)
        loaded = load_decoder(work / "decoder.onnx")
        if program is None:  # the float path reads the exported graph
            program = float_program(loaded, sparse)
        prefix = name or default_prefix(loaded.meta.model_family)
        manifest = _build(program, imodel, loaded, work, rec, verify_bins, reference_bins,
                          cortex_m, qemu_bins, policy, progress, prefix)  # fmt: skip
    return CExport(out, manifest)


def _declare_counts(path: Path, max_count: int) -> None:
    """State in the folder's copy of the graph that the integer build takes counts up to
    `max_count`: every runtime backend then refuses a larger one, as the C step does."""
    import onnx

    from cortexedge.contract import attach, check_seal, from_props

    proto = onnx.load(path)
    meta = from_props(check_seal(proto))
    lo, hi = meta.input.range
    top = float(max_count) if hi is None else min(float(hi), float(max_count))
    attach(proto, replace(meta, input=replace(meta.input, range=(lo or 0.0, top))))
    path.write_bytes(proto.SerializeToString())


def float_program(loaded: LoadedModel, policy: str):
    """The float C program of an exported step graph (any op the C emitters hold)."""
    meta = loaded.meta
    graph = read_graph(loaded, C_OPS)
    doc = [f"float decoder of {meta.model_family}: {graph.x.size} inputs -> "
           f"{graph.y.size} outputs, {meta.streaming.mode} mode"]  # fmt: skip
    counts = count_graph(loaded.proto)  # the graph's own count, not what a file claims
    chain = window_chain.find(graph, loaded, {op.node: op.dense for op in counts.ops})
    return emit_graph(graph, policy, meta.streaming.mode, counts.dense, doc, chain)


def _build(program, imodel, loaded: LoadedModel, work: Path, rec, verify_bins, reference_bins,
           cortex_m, qemu_bins, policy, show, prefix: str) -> dict:  # fmt: skip
    lay, meta = program.layout, loaded.meta
    if meta.input.channels != lay.channels or len(meta.outputs) != lay.outputs:
        raise CortexEdgeError(
            f"decoder.onnx reads {list(meta.input.shape)} and writes {len(meta.outputs)} outputs; "
            f"the C decoder {lay.channels} and {lay.outputs}"
        )
    files = prefixed(program.files(), prefix)
    for name, text in files.items():
        (work / name).write_text(text)
    if imodel is not None:
        (work / "decoder_int.npz").write_bytes(imodel.to_bytes())
    man = {
        "format_version": MANIFEST_VERSION, "toolkit_version": __version__,
        "family": meta.model_family, "prefix": prefix, "numeric": lay.numeric,
        "graph_sha256": meta.graph_sha256,
        "library": LIBRARY, "host_isa": host_isa(), "max_count": lay.max_count,
        "output_scale": None if imodel is None else [float(s) for s in imodel.out_scale],
        "layout": program.describe or {k: getattr(lay, k) for k in ("channels", "outputs",
                   "hidden", "layers", "enc_dim", "width", "mode", "num_steps", "lag",
                   "sample_bits")},
        "states": program.states or state_map(meta.states, lay.layers, lay.channels,
                                              "h" if lay.state_cols == lay.hidden else "hc",
                                              program.declared_states),
        "storage": {"policy": policy, "matrices": [m.report() for m in program.matrices]},
        "macs": {"executed_per_step": program.macs["total"], "executed": program.macs,
                 "graph": meta.macs},
        "memory": {"weights_bytes": program.weight_bytes},
    }  # fmt: skip
    with stage(show, f"compiling the {lay.numeric} C decoder for this machine"):
        lib = CLibrary(build.host_library(work, LIBRARY), lay.numeric, lay.outputs, lay.channels)
    man["host_python"] = host_python() if lib.has_python else None  # for its Python entry
    man["memory"]["state_bytes"] = lib.state_size
    top = lay.max_count if imodel is not None else None
    rows, split = verify_c.input_rows(rec, lay.channels, verify_bins, top)
    with stage(show, f"verifying the C outputs over {len(rows):,} bins"):
        check = (
            verify_c.verify_int(lib, imodel, work / "decoder.onnx", rows, reference_bins)
            if imodel is not None else verify_c.verify_float(lib, work / "decoder.onnx", rows)
        )  # fmt: skip
    man["verification"], man["verified_on"] = check.summary(), split
    if cortex_m and _have("arm-none-eabi-gcc", "arm-none-eabi-size"):
        with stage(show, "cross-compiling for the Cortex-M4 (sizes, stack bound)"):
            arm = build.arm_objects(work)
        arm.pop("sections")
        man["memory"]["cortex_m4"] = arm
        man["memory"]["state_bytes"] = arm["state_bytes"]
        man["memory"]["ram_bytes_bound"] = arm["state_bytes"] + arm["stack_bound_bytes"]
    if qemu_bins > 0 and _have("arm-none-eabi-gcc", qemu.QEMU):
        with stage(show, f"running {qemu_bins:,} bins under qemu-system-arm"):
            man["qemu"] = _run_qemu(work, lib, rows[:qemu_bins], lay)
        man["memory"]["ram_bytes"] = man["qemu"]["state_bytes"] + man["qemu"]["stack_bytes"]
    (work / "decoder.h").write_text(document(files["decoder.h"], meta, man))  # measured now
    built = [LIBRARY, "decoder.onnx", *files, *(["decoder_int.npz"] if imodel else [])]
    man = sealed(man, work, built)
    (work / MANIFEST).write_text(json.dumps(man, indent=1))
    (work / "README.md").write_text(readme(man))
    shutil.rmtree(work / "arm", ignore_errors=True)
    return man


def _have(*tools: str) -> bool:
    return all(shutil.which(t) for t in tools)


def _run_qemu(work: Path, lib: CLibrary, rows: np.ndarray, lay) -> dict:
    """Run under qemu and compare with the host build: integer outputs must be identical; float
    outputs within verify_c.FLOAT_TOL (newlib's expf/logf/tanhf round differently from glibc's)."""
    in_dtype = np.uint8 if lay.numeric == "int" else np.float32
    result = qemu.run_harness(work, rows, in_dtype, lib.raw_dtype, lay.outputs)
    device, host = result.pop("outputs"), lib.run(lib.states(1), rows)
    diff = float(np.abs(device.astype(np.float64) - host).max(initial=0.0))
    tol = 0.0 if lay.numeric == "int" else verify_c.FLOAT_TOL * max(1.0, float(np.abs(host).max()))
    if device.shape != host.shape or diff > tol:
        raise CortexEdgeError(
            f"the Cortex-M4 build (qemu) differs from the host build by {diff:.3g} (> {tol:.3g})"
        )
    shutil.rmtree(work / "qemu", ignore_errors=True)
    return {**result, "bins": len(rows), "max_abs_diff_to_host": diff}
