"""Per-bin step latency of every way to run a decoder, one thread, against the compute floor.

For GRU decoders (`build_model("gru", in_channels=C, hidden=H, out_dim=2)`, H = 32..256,
C = 96, 192) and the AEGRU at C=96 in both streaming modes (window: the published 5 bins x 20
samples; stateful: one GRU step per sample on the box sum of the last 20 samples), each
exported by `to_onnx`, this times one bin at a time, after warm-up; every method of every
decoder is timed in one interleaved loop (blocks of 100 calls, taking turns), so the noisy,
shared machine's load hits all cells of the table alike:

- torch eager `model.step` (inference mode) and TorchScript (trace + freeze of a step wrapper);
- onnxruntime plain `sess.run` (a feed dict per call, states fed back);
- onnxruntime IOBinding: the runtime's "ort" backend through `StreamingDecoder.step` (bin
  validation included) and the bare backend `step` (no validation: the difference is the
  runtime's per-step overhead);
- the numpy reference backend and, when `cortexedge.runtime.backends.c` exists and a C build
  can be made, the generated C decoder, both through `StreamingDecoder.step`.

Weights are random (seeded) initialisations: latency does not depend on their values. Inputs
are Poisson(1) spike counts. Each row gives MACs per bin (the exported file's metadata),
p50/p99 per method, each p50 against torch eager and against the compute floor: MACs / the
single-thread MAC rate of a 1024^3 float32 numpy matmul measured in the same run.

Also timed: onnxruntime's floor per call (an Identity graph) and its cost per extra node
(chains of 1, 4 and 16 Relu nodes on [1, 64]), the numbers behind "every onnxruntime number is
call and node overhead" (see docs/onnxruntime-tuning.md).

Prints three tables and writes benchmarks/results/latency.json.
Run: .venv/bin/python benchmarks/latency.py [--quick] [--bins N]
"""

from __future__ import annotations

# isort: off
import _common as C  # first: it pins BLAS to one thread before numpy loads
# isort: on

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

EAGER = "torch eager"
ORDER = [EAGER, "TorchScript", "ORT run", "ORT IOBinding (decoder)", "ORT IOBinding (bare)",
         "numpy (decoder)", "C (decoder)"]  # fmt: skip


def model_grid(quick: bool) -> list[tuple[str, str, dict]]:
    """(label, registry name, kwargs) of every benchmarked decoder, smallest first."""
    channels, hiddens = ((96,), (32, 64)) if quick else ((96, 192), (32, 64, 128, 256))
    grid = [(f"GRU C={c} H={h}", "gru", dict(in_channels=c, hidden=h, out_dim=2))
            for c in channels for h in hiddens]  # fmt: skip
    grid.append(("AEGRU C=96 window", "aegru", dict(in_channels=96)))
    grid.append(("AEGRU C=96 stateful", "aegru", dict(in_channels=96, mode="stateful")))
    return grid


def trace_step(model, x, state):
    """TorchScript of `model.step`: torch.jit.trace of a wrapper module, then freeze."""
    import torch

    class StepWrapper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x, state):
            return self.model.step(x, state)

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TracerWarnings from the input checks
        return torch.jit.freeze(torch.jit.trace(StepWrapper().eval(), (x, state)))


class PlainOrt:
    """onnxruntime `sess.run` with a feed dict per call and the states fed back."""

    def __init__(self, path: Path, meta, initial: dict) -> None:
        import onnxruntime as ort

        from cortexedge.runtime.backends.ort import session_options

        self.sess = ort.InferenceSession(str(path), session_options(1),
                                         providers=["CPUExecutionProvider"])  # fmt: skip
        self.inputs = [s.input_name for s in meta.states]
        self.outputs = ["y", *(s.output_name for s in meta.states)]
        self.state = [initial[s.name] for s in meta.states]

    def __call__(self, x: np.ndarray) -> None:
        feeds = {"x": x}
        feeds.update(zip(self.inputs, self.state, strict=True))
        _, *self.state = self.sess.run(self.outputs, feeds)


def c_decoder(model, onnx_path: Path, folder: Path):
    """A StreamingDecoder on the generated C code, or (None, reason) when there is none."""
    from cortexedge.runtime.backends import BACKENDS

    if "c" not in BACKENDS:
        return None, "cortexedge.runtime.backends.c is not installed"
    try:
        from cortexedge.export.c.generate import export_c
        from cortexedge.runtime.decoder import StreamingDecoder

        export_c(model, folder, onnx_path=onnx_path, verify_bins=1000, reference_bins=100,
                 cortex_m=False)  # fmt: skip
        return StreamingDecoder(folder / "decoder.onnx", backend="c"), None
    except Exception as e:  # any build failure (no compiler, unsupported layer): skip, say why
        return None, f"C build failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}"


def methods_for(model, loaded, xs: np.ndarray, work: Path) -> tuple[dict, dict]:
    """(methods for time_interleaved, skipped method -> reason) of one exported decoder."""
    import torch

    from cortexedge.runtime.backends.ort import OrtBackend
    from cortexedge.runtime.decoder import StreamingDecoder

    path = loaded.path
    xt = torch.from_numpy(xs)
    rows_t = [xt[i : i + 1] for i in range(len(xs))]
    rows_np = list(xs[:, None])  # [1, C] views for the graph-level methods
    scripted = trace_step(model, rows_t[0], model.init_state(1))
    methods = {
        EAGER: (C.Stepper(model.step, model.init_state(1)), rows_t),
        "TorchScript": (C.Stepper(scripted, model.init_state(1)), rows_t),
        "ORT run": (PlainOrt(path, loaded.meta, loaded.initial_states(1)), rows_np),
        "ORT IOBinding (decoder)": (StreamingDecoder(path, backend="ort").step, xs),
        "ORT IOBinding (bare)": (OrtBackend(loaded, batch=1, threads=1).step, rows_np),
        "numpy (decoder)": (StreamingDecoder(path, backend="numpy").step, xs),
    }
    skipped = {}
    dec, reason = c_decoder(model, path, work / f"c_{path.stem}")
    if dec is None:
        skipped["C (decoder)"] = reason
    else:
        methods["C (decoder)"] = (dec.step, xs)
    return methods, skipped


def prepare(label: str, name: str, kwargs: dict, args, work: Path) -> dict:
    """Export one decoder and build its timed methods (facts for its row, methods, skips)."""
    path = work / f"{label.replace(' ', '_').replace('=', '')}.onnx"
    model, loaded = C.exported_decoder(name, kwargs, path)
    xs = C.poisson_bins(max(args.bins, 2000), (kwargs["in_channels"],), seed=1)
    methods, skipped = methods_for(model, loaded, xs, work)
    row = {"model": label, "registry": name, "config": model.config(), "macs": loaded.meta.macs,
           "params": loaded.meta.params, "skipped": skipped}  # fmt: skip
    return {"row": row, "methods": methods}


def summarise(row: dict, lat: dict[str, np.ndarray], rate: float) -> dict:
    """One table row: latency stats per method, ratios to torch eager and to the floor."""
    floor_us = row["macs"]["dense"] / rate * 1e6
    methods = {m: {"latency_us": C.stats(ns)} for m, ns in lat.items()}
    eager = methods[EAGER]["latency_us"]["p50"]
    for r in methods.values():
        r["p50_vs_eager"] = round(r["latency_us"]["p50"] / eager, 3)
        r["p50_vs_floor"] = round(r["latency_us"]["p50"] / floor_us, 1)
    overhead = (methods["ORT IOBinding (decoder)"]["latency_us"]["p50"]
                - methods["ORT IOBinding (bare)"]["latency_us"]["p50"])  # fmt: skip
    return {**row, "floor_us": round(floor_us, 4), "methods": methods,
            "decoder_step_overhead_us": round(overhead, 2)}  # fmt: skip


def print_tables(report: dict) -> None:
    """Latency (p50 / p99 µs) and ratio (p50 vs eager, p50 vs floor) tables."""
    head = C.machine_line(report["machine"])
    rate = report["mac_rate"]["macs_per_s"] / 1e9
    lat_rows, ratio_rows = [], []
    for row in report["models"]:
        cells, ratios = [], []
        for m in ORDER:
            r = row["methods"].get(m)
            if r is None:
                cells.append("skipped")
                ratios.append("-")
                continue
            cells.append(C.p50_p99(r["latency_us"]))
            ratios.append(f"{r['p50_vs_eager']:.2f}x | {r['p50_vs_floor']:.0f}x")
        base = [row["model"], f"{row['macs']['dense']:,.0f}", f"{row['floor_us']:.2f}"]
        lat_rows.append([*base, *cells, f"{row['decoder_step_overhead_us']:.1f}"])
        ratio_rows.append([row["model"], *ratios])
    columns = ["model", "MACs/bin", "floor µs", *ORDER, "decoder overhead µs"]
    C.print_table(f"Step latency p50 / p99 (µs) — {head}; floor at {rate:.1f} GMAC/s", columns,
                  lat_rows)  # fmt: skip
    C.print_table("p50 vs torch eager | p50 vs compute floor", ["model", *ORDER], ratio_rows)
    chain = report["per_node"]
    rows = [[k, C.p50_p99(v)] for k, v in chain["latency_us"].items()]
    rows.append(["slope: µs per extra node (p50)", f"{chain['us_per_node_p50']:.3f}"])
    title = "onnxruntime floor and per-node cost ([1, 64] float32)"
    C.print_table(title, ["graph", "p50 / p99 µs"], rows)
    for row in report["models"]:
        for m, why in row["skipped"].items():
            print(f"{row['model']}: {m} skipped: {why}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 decoders, 1,000 bins (~20 s)")
    ap.add_argument("--bins", type=int, default=None, help="timed bins per method")
    ap.add_argument("--warmup", type=int, default=300, help="untimed bins per method first")
    args = ap.parse_args()
    args.bins = args.bins or (1000 if args.quick else 5000)
    import torch

    torch.set_num_threads(1)
    started, info = time.time(), C.machine_info()
    rate = C.mac_rate(repeats=5 if args.quick else 10)
    with tempfile.TemporaryDirectory(prefix="ce-latency-") as tmp:
        prepared = [prepare(*m, args, Path(tmp)) for m in model_grid(args.quick)]
        every = {(p["row"]["model"], m): f for p in prepared for m, f in p["methods"].items()}
        print(f"timing {len(every)} methods, interleaved ...", flush=True)
        with torch.inference_mode():
            lat = C.time_interleaved(every, args.bins, args.warmup)
    models = [
        summarise(p["row"], {m: lat[(p["row"]["model"], m)] for m in p["methods"]},
                  rate["macs_per_s"])
        for p in prepared
    ]  # fmt: skip
    report = {
        "machine": C.finish(info, started),
        "mac_rate": rate,
        "settings": {"timed_bins": args.bins, "warmup_bins": args.warmup, "quick": args.quick,
                     "inputs": "Poisson(1) spike counts, float32", "weights": "random init, seed 0",
                     "torch_threads": 1, "ort_intra_op_threads": 1,
                     "timing": "per call (perf_counter_ns); all methods of all decoders "
                               "interleaved in blocks of 100 calls"},
        "models": models,
        "per_node": C.per_node_cost(args.bins, args.warmup),
    }  # fmt: skip
    print_tables(report)
    print(f"wrote {C.write_results('latency.json', report)}")


if __name__ == "__main__":
    main()
