"""What one Ray worker runs: train a (recording, decoder, seed) run, or build one cell from it.

Both functions are plain (Ray wraps them in `runner.py`), take JSON-able arguments and return
JSON-able results, so the driver holds paths and numbers, never models or recordings. Each pins
torch to the threads its task declared. Outputs are staged and renamed into place whole.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from cortexedge.atomic import staged_folder, write_atomic
from cortexedge.sweep.results import CELL_RESULT


def pin_threads(threads: int) -> None:
    """Hold torch (and OpenMP, for libraries loaded later) to `threads` threads."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _user_class(decoder: str) -> bool:
    """Register a user decoder in this worker (a plan names one only when loaded with
    trust_code); whether `decoder` is one."""
    from cortexedge.user_code import is_code_ref, parse_ref, register_user_class

    if is_code_ref(decoder):
        register_user_class(parse_ref(decoder))
        return True
    return False


def train_run(recording: str, group: dict, folder: str, threads: int) -> str:
    """Fit decoder `group["decoder"]` once; returns the checkpoint folder (reused if present)."""
    final = Path(folder)
    if (final / "metrics.json").is_file():
        return str(final)
    pin_threads(threads)
    import cortexedge as ce
    from cortexedge.scoring import target_kind
    from cortexedge.train.build import model_for

    _user_class(group["decoder"])
    rec = ce.Recording.load(recording)
    settings = dict(group["train"])
    kind = target_kind(rec, settings.get("task"))
    model = model_for(group["decoder"], rec, kind, group["model"], group["data"], group["seed"])
    with staged_folder(final) as tmp:
        ce.fit(model, rec, out=tmp, data=group["data"], seed=group["seed"], progress=False,
               threads=threads, **settings)  # fmt: skip
    return str(final)


def _c_figures(c_export) -> dict:
    mem = c_export.manifest["memory"]
    arm = mem.get("cortex_m4") or {}
    q = c_export.manifest.get("qemu") or {}
    return {"c_flash_bytes": arm.get("flash_bytes"), "c_ram_bytes": mem.get("ram_bytes_bound"),
            "c_const_bytes": mem["weights_bytes"], "c_state_bytes": mem["state_bytes"],
            "qemu_insns_per_step": q.get("insns_per_step")}  # fmt: skip


def build_cell(cell: dict, trained: str, folder: str, threads: int) -> dict:
    """Compress the trained run with the cell's recipe, export ONNX (and C); returns metrics."""
    t0 = time.perf_counter()
    pin_threads(threads)
    import cortexedge as ce
    from cortexedge.cli.commands_compress import CARRIED
    from cortexedge.compress.artifacts import save_compressed
    from cortexedge.train.checkpoint import load_checkpoint

    rec = ce.Recording.load(cell["recording"])
    trust = _user_class(cell["decoder"])  # the plan names user code only when trusted
    model, config = load_checkpoint(trained, trust_code=trust)
    recipe = ce.Recipe(**cell["recipe"], seed=cell["seed"])
    train = cell["train"]
    with staged_folder(Path(folder)) as tmp:
        source = trained  # an empty recipe is the uncompressed baseline: export the run itself
        if recipe.sparsity or recipe.structured or recipe.bits is not None:
            stride = train.get("train_stride", 1)
            result = ce.compress(model, rec, recipe, family=cell["decoder"],
                                 data=cell["data"] or None, task=train.get("task"),
                                 train_stride=stride, threads=threads)  # fmt: skip
            extra = {k: config[k] for k in CARRIED if k in config}
            source = save_compressed(result, tmp / "checkpoint", extra={**extra, "source": trained})
        meta = ce.to_onnx(source, tmp / "decoder.onnx", recording=rec, trust_code=trust).metadata
        row = {"r2": meta.score["value"] if meta.score else None,
               "metric": meta.score["metric"] if meta.score else None,
               "macs_dense": meta.macs["dense"], "macs_effective": meta.macs["effective"],
               "params": meta.params, "bytes": meta.bytes, "sparsity": meta.sparsity}  # fmt: skip
        if cell["build"]["c"]:
            from cortexedge.export.c.generate import export_c

            qemu_bins = cell["build"]["qemu_bins"]
            c = export_c(source, tmp / "c", recording=rec, onnx_path=tmp / "decoder.onnx",
                         qemu_bins=qemu_bins, trust_code=trust)  # fmt: skip
            row.update(_c_figures(c))
        row["seconds"] = round(time.perf_counter() - t0, 3)
        write_atomic(tmp / CELL_RESULT, json.dumps(row, indent=2).encode())
    return row
