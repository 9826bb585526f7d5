"""C-target benchmark: AEGRU on the synthetic reaching recording, float and pruned + W8A8 C builds.

Steps (checkpoints are cached in --work, outside the repository, so a second run only
re-measures):
1. train the default AEGRU (C=96, window mode, hidden 32) on the default synthetic reaching
   recording; 2. compress it (50% global magnitude pruning, then W8A8 QAT, fine-tuned 30
   epochs and QAT 10 by default: 6 and 2 left the compressed model 0.016 R² below the float
   one on a fresh checkpoint, against the goal's 0.01);
3. export both to C (`export_c`: verified against onnxruntime, the integer build bit-exact with
   the numpy reference over 10,000 bins) with Cortex-M4 sizes and a qemu run;
4. measure: flash (weights + code) and RAM (state + measured stack) bytes, executed MACs per
   bin, R² of the C outputs on the test split against the float model's, host latency per bin
   through the runtime (`StreamingDecoder.step`, c backend vs onnxruntime; p50/p99 µs), qemu
   instructions per bin and a cycles estimate. Two more builds put the float and the compressed
   weights in a stateful-mode AEGRU (one GRU step per sample instead of five) for memory and
   latency only.
5. the float C path on every decoder family and the user-written decoders of tests/users
   (benchmarks/_c_families.py): error against onnxruntime over 10,000 bins, MACs, flash, RAM,
   Cortex-M4 instructions per bin and per MAC, host latency.
Prints the tables and writes benchmarks/results/c_target.json.

    .venv/bin/python benchmarks/c_target.py [--train-epochs 40] [--work DIR] [--part families]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _train(rec, work: Path, epochs: int):
    from cortexedge.train.checkpoint import load_checkpoint, save_checkpoint
    from cortexedge.train.fit import fit
    from cortexedge.train.models.aegru import AEGRU

    folder = work / "aegru"
    if (folder / "config.json").is_file():
        return load_checkpoint(folder)[0], folder
    model = AEGRU(rec.x.shape[1])
    res = fit(model, rec, epochs=epochs, train_stride=4, progress=False)
    save_checkpoint(res.model, folder)
    return res.model, folder


def _compress(model, rec, work: Path, epochs: int):
    from cortexedge.compress.artifacts import load_compressed, save_compressed
    from cortexedge.compress.recipe import Recipe, compress

    folder = work / f"aegru-c-ft{epochs}"  # a cache per recipe: other epochs, another model
    if (folder / "config.json").is_file():
        return load_compressed(folder)[0], folder
    recipe = Recipe(sparsity=0.5, bits=8, finetune_epochs=epochs, qat_epochs=max(1, epochs // 3))
    res = compress(model, rec, recipe, train_stride=8)
    save_compressed(res, folder)
    return res.model, folder


def _stateful_model(source, channels: int, quantized: bool):
    """`source`'s weights (float, or pruned + W8A8) in an AEGRU of stateful mode (one GRU step
    per sample instead of five): for memory and latency only, it was not trained to stream so."""
    from cortexedge.compress.qat import full_state_dict, quantize
    from cortexedge.compress.quant_gru import QuantSpec
    from cortexedge.train.models.aegru import AEGRU

    model = AEGRU(channels, mode="stateful", training_parts=False).eval()
    if quantized:
        quantize(model, QuantSpec())
        with full_state_dict():
            model.load_state_dict(source.state_dict())
    else:
        model.load_state_dict(source.inference_module().state_dict())
    return model.eval()


def _latency(path: Path, backend: str, rows: np.ndarray, warmup: int = 300) -> dict:
    """Per-bin wall time of StreamingDecoder.step (validation included), in µs."""
    from cortexedge.runtime import StreamingDecoder

    dec = StreamingDecoder(path, backend=backend)
    for row in rows[:warmup]:
        dec.step(row)
    times = np.empty(len(rows) - warmup)
    clock = time.perf_counter_ns
    for i, row in enumerate(rows[warmup:]):
        t0 = clock()
        dec.step(row)
        times[i] = clock() - t0
    run_t0 = time.perf_counter()
    StreamingDecoder(path, backend=backend).run(rows)
    per_bin_run = (time.perf_counter() - run_t0) / len(rows) * 1e6
    p50, p99 = np.percentile(times, [50, 99]) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "run_us_per_bin": per_bin_run}


def _c_outputs(folder: Path, rows: np.ndarray) -> tuple[np.ndarray, float]:
    """The C decoder's outputs on rows (one ctypes call for all of them) and the time per bin
    of that call in µs: the C code alone, without the per-step Python of the runtime."""
    from cortexedge.runtime.backends.c import CLibrary

    man = json.loads((folder / "decoder_c.json").read_text())
    lay = man["layout"]
    lib = CLibrary(folder / man["library"], man["numeric"], lay["outputs"], lay["channels"])
    t0 = time.perf_counter()
    raw = lib.run(lib.states(1), rows).astype(np.float64)
    per_bin = (time.perf_counter() - t0) / len(rows) * 1e6
    return (raw * np.asarray(man["output_scale"]) if man["numeric"] == "int" else raw), per_bin


def _row(name: str, man: dict, lat: dict, ort: dict, r2: float) -> dict:
    mem, arm, q = man["memory"], man["memory"].get("cortex_m4", {}), man.get("qemu", {})
    macs, insns = man["macs"], q.get("insns_per_step")
    effective = macs["executed"]["effective"]  # the executed MACs of a non-zero weight
    return {
        "build": name, "flash_weights_bytes": arm.get("weights_bytes", mem["weights_bytes"]),
        "flash_code_bytes": arm.get("code_bytes"), "state_bytes": mem["state_bytes"],
        "stack_bytes": q.get("stack_bytes"), "ram_bytes": mem.get("ram_bytes"),
        "executed_macs_per_bin": macs["executed_per_step"],
        "effective_executed_macs_per_bin": effective,
        "graph_macs_per_bin": macs["graph"], "r2_test": r2,
        "host_c": lat, "host_ort": ort, "qemu_insns_per_bin": insns,
        "qemu_insns_per_executed_mac": insns / macs["executed_per_step"] if insns else None,
        "qemu_insns_per_effective_mac": insns / effective if insns else None,
        "qemu_cycles_per_bin_estimate": q.get("cycles_per_step_estimate"),
        "verification": man["verification"], "storage": man["storage"]["matrices"],
    }  # fmt: skip


def _window_builds(args, rec, x: np.ndarray, y: np.ndarray, float_ckpt, int_ckpt) -> dict:
    """The float and the int8 pruned window-mode C builds: sizes, R² of the C outputs, latency."""
    from cortexedge.export.c.generate import export_c
    from cortexedge.metrics import r2_score

    builds = {}
    for name, ckpt, opts in (("float", float_ckpt, {}),
                             ("int8 pruned", int_ckpt, {"max_count": args.max_count,
                                                        "sparse": args.sparse,
                                                        "weights_budget": args.weights_budget,
                                                        "reference_bins": 10_000})):  # fmt: skip
        out = args.work / f"c-{name.split()[0]}"
        res = export_c(ckpt, out, recording=rec, verify_bins=10_000, qemu_bins=args.qemu_bins,
                       **opts)  # fmt: skip
        rows = np.minimum(x, args.max_count) if name != "float" else x
        y_c, compute_us = _c_outputs(out, rows)
        r2 = r2_score(y, y_c)
        path = out / "decoder.onnx"
        lat_rows = rows[: args.latency_bins]
        builds[name] = _row(name, res.manifest, _latency(path, "c", lat_rows),
                            _latency(path, "ort", lat_rows), float(r2))  # fmt: skip
        builds[name]["c_compute_us_per_bin"] = compute_us
    return builds


def _stateful_builds(args, rec, x: np.ndarray, model, qat) -> dict:
    """The same weights in a stateful-mode AEGRU (one GRU step per sample): sizes and latency."""
    from cortexedge.export.c.generate import export_c

    builds = {}
    for name, source, quantized in (("float", model, False), ("int8 pruned", qat, True)):
        out = args.work / f"c-{name.split()[0]}-stateful"
        int_opts = {"max_count": args.max_count, "sparse": args.sparse,
                    "weights_budget": args.weights_budget}  # fmt: skip
        res = export_c(_stateful_model(source, x.shape[1], quantized), out, recording=rec,
                       verify_bins=2000, qemu_bins=args.qemu_bins,
                       **(int_opts if quantized else {}))  # fmt: skip
        rows = np.minimum(x, args.max_count) if quantized else x
        path = out / "decoder.onnx"
        name = f"{name} stateful (latency only)"
        lat_rows = rows[: args.latency_bins]
        builds[name] = _row(name, res.manifest, _latency(path, "c", lat_rows),
                            _latency(path, "ort", lat_rows), None)  # fmt: skip
        builds[name]["c_compute_us_per_bin"] = _c_outputs(out, rows)[1]
    return builds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "cortexedge_c_target"
    )
    parser.add_argument("--train-epochs", type=int, default=40)
    parser.add_argument("--finetune-epochs", type=int, default=30)
    parser.add_argument("--latency-bins", type=int, default=5000)
    parser.add_argument("--qemu-bins", type=int, default=2000)
    parser.add_argument("--max-count", type=int, default=7)
    parser.add_argument("--part", choices=("all", "aegru", "families"), default="all")
    parser.add_argument("--sparse", default="auto", help="weight storage of the int8 builds")
    parser.add_argument("--weights-budget", type=int, default=None,
                        help="bytes of flash the int8 builds' constant data may take")  # fmt: skip
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    summary = {}
    if args.part in ("all", "families"):
        import _c_families

        from cortexedge.train.data.synth import generate

        rec = generate("reaching", seed=0)
        model, _ = _train(rec, args.work, args.train_epochs)
        stateful = _stateful_model(model, rec.x.shape[1], quantized=False)
        print(" | ".join(_c_families.HEAD))
        summary["families"] = _c_families.run(args.work, args.qemu_bins, args.latency_bins,
                                              rec, model.inference_module(), stateful,
                                              _latency)  # fmt: skip
    if args.part in ("all", "aegru"):
        summary.update(_aegru(args))
        _print(summary)
    RESULTS.mkdir(exist_ok=True)
    suffix = ("" if args.part == "all" else f"_{args.part}") + (
        "" if args.sparse == "auto" else f"_{args.sparse}")  # fmt: skip
    (RESULTS / f"c_target{suffix}.json").write_text(json.dumps(summary, indent=1))
    return summary


def _aegru(args) -> dict:
    """Steps 1-4: the trained AEGRU, float and pruned + W8A8, in window and stateful mode."""
    from cortexedge.metrics import r2_score
    from cortexedge.train.data.synth import generate

    rec = generate("reaching", seed=0)  # the default synthetic reaching recording (96 channels)
    model, float_ckpt = _train(rec, args.work, args.train_epochs)
    qat, int_ckpt = _compress(model, rec, args.work, args.finetune_epochs)
    test = rec.rows("test")
    x, y = rec.x[test].astype(np.float32), rec.y[test]
    import torch

    with torch.no_grad():
        r2_float = r2_score(y, model.eval().stream(torch.tensor(x)[None])[0].numpy())
        # the compressed model in torch (fake-quantized), on the inputs its C build sees
        clipped = torch.tensor(np.minimum(x, args.max_count))[None]
        r2_qat = r2_score(y, qat.eval().stream(clipped)[0].numpy())
    builds = {**_window_builds(args, rec, x, y, float_ckpt, int_ckpt),
              **_stateful_builds(args, rec, x, model, qat)}  # fmt: skip
    summary = {"recording": {"kind": "reaching", "channels": int(rec.x.shape[1]),
                             "test_bins": int(len(x))},
               "model": "AEGRU (window, 5 bins x 20 samples, hidden 32)",
               "r2_float_model": float(r2_float), "r2_compressed_model_torch": float(r2_qat),
               "builds": builds}  # fmt: skip
    return summary


def _fmt(v, spec: str = ",") -> str:
    return "—" if v is None else format(v, spec)


def _print(s: dict) -> None:
    print(
        f"float model R² (test): {s['r2_float_model']:.4f}; pruned + W8A8 in torch: "
        f"{s['r2_compressed_model_torch']:.4f}"
    )
    head = ("build", "flash W", "flash code", "state", "stack", "RAM", "MACs/bin (effective)",
            "R² C", "c p50/p99 µs", "C only µs", "ort p50/p99 µs", "M4 insns/bin",
            "per MAC (effective)")  # fmt: skip
    print(" | ".join(head))
    for b in s["builds"].values():
        c, o = b["host_c"], b["host_ort"]
        print(" | ".join([
            b["build"], _fmt(b["flash_weights_bytes"]), _fmt(b["flash_code_bytes"]),
            _fmt(b["state_bytes"]), _fmt(b["stack_bytes"]), _fmt(b["ram_bytes"]),
            f"{b['executed_macs_per_bin']:,} ({b['effective_executed_macs_per_bin']:,})",
            _fmt(b["r2_test"], ".4f"),
            f"{c['p50_us']:.2f}/{c['p99_us']:.2f}", f"{b['c_compute_us_per_bin']:.2f}",
            f"{o['p50_us']:.2f}/{o['p99_us']:.2f}",
            _fmt(b["qemu_insns_per_bin"], ",.0f"),
            f"{_fmt(b['qemu_insns_per_executed_mac'], '.1f')} "
            f"({_fmt(b['qemu_insns_per_effective_mac'], '.1f')})",
        ]))  # fmt: skip


if __name__ == "__main__":
    main()
