"""Shared helpers of the C-export tests: small models, PTQ, contract graphs.

`contract_onnx` writes a step graph stamped with the metadata contract without `to_onnx`'s
torch-side verification (which streams a brevitas model for a minute): the C tests verify the
generated code against onnxruntime themselves. `real_rows` reads the real recording or skips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cortexedge.contract import DecoderMetadata, InputSpec, OutputSpec, Streaming, attach

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
REAL_FILE = REAL / "imperial_reaching_20ms.npz"


def real_rows(n: int) -> np.ndarray:
    """The first n rows (20 ms bins, 98 units, counts 0..7) of the real recording, or skip."""
    if not REAL_FILE.is_file():
        pytest.skip(f"real recording not found at {REAL_FILE}")
    from cortexedge.train.data.readers import read

    rec = read(str(REAL_FILE))
    return rec.x[:n].astype(np.float32)


def real_recording(which: str, request) -> tuple:
    """(Recording, largest count) of a real recording: "npz" (20 ms) or "mat" (50 ms MATLAB);
    the fixtures skip with a reason when the file is absent."""
    if which == "npz":
        from cortexedge.train.data.readers import read

        rec = read(str(request.getfixturevalue("real_reaching_path")))
    else:
        from cortexedge.train.data.arrays import read

        rec = read(request.getfixturevalue("real_s1_mat_path"), x="spikes", y="vel", bin_ms=50.0)
    return rec, int(rec.x.max())


def prune_half(model: torch.nn.Module) -> None:
    """Zero the smaller half of every weight matrix (magnitude pruning, per matrix)."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                cut = p.abs().flatten().kthvalue(p.numel() // 2).values
                p.mul_(p.abs() > cut)


def ptq(model: torch.nn.Module, calib: torch.Tensor, weight_bits: int = 8) -> torch.nn.Module:
    """Quantize in place with the compress stage (brevitas, W{bits}A8) and calibrate."""
    from cortexedge.compress.qat import calibrate, quantize
    from cortexedge.compress.quant_gru import QuantSpec

    quantize(model, QuantSpec(weight_bits=weight_bits))
    calibrate(model, [calib])
    return model.eval()


def window_batches(x: np.ndarray, width: int, steps: int, rows: int = 600) -> torch.Tensor:
    """AEGRU training-style windows [N, steps, C] of box-summed bins, for calibration."""
    from cortexedge.train.models.aegru import box_sum

    bins = box_sum(torch.tensor(x[None, :rows]), width)[0]
    span = width * steps
    ends = np.arange(span, len(bins), width)
    return torch.stack([bins[e - span + width - 1 : e : width][:steps] for e in ends])


def contract_onnx(model: torch.nn.Module, path: Path, channels: int) -> Path:
    """Export model.step as a contract-stamped step graph (QCDQ for quantized models)."""
    from cortexedge.export.finalize import finalize_graph, serialize
    from cortexedge.export.onnx_step import export_step
    from cortexedge.export.streamable import state_specs
    from cortexedge.export.tracing import is_quantized
    from cortexedge.export.verify import Tolerance

    model = model.eval()
    specs = state_specs(model)
    quant = is_quantized(model)
    graph, _ = export_step(model, specs, (channels,), 17, Tolerance(8 if quant else None))
    graph = finalize_graph(graph)
    window = getattr(model, "mode", "stateful") == "window"
    meta = DecoderMetadata(
        toolkit_version="", model_family=type(model).__name__, bin_ms=4.0,
        input=InputSpec((channels,), "spike_counts", "float32", (0.0, None)),
        outputs=[OutputSpec("vx"), OutputSpec("vy")], states=list(specs),
        streaming=Streaming("window", model.num_steps * model.bin_width) if window else Streaming(),
        macs={"dense": 1, "effective": 1}, params=1, bytes=1, sparsity=0.0,
        bits={"weights": 8, "activations": 8} if quant else None, score=None,
        verification={"max_abs_err": 0.0, "tolerance": 1.0, "bins": 1},
    )  # fmt: skip
    attach(graph, meta)
    path.write_bytes(serialize(graph))
    return path
