"""The end-to-end demo: train an AEGRU, compress it, export it, stream it, and compare.

Everything runs on the embedded synthetic reaching recording, so it needs no download. Each
stage is the library's own API (the same calls a user makes), imported lazily: the demo is a
tour, not a second implementation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cortexedge.errors import CortexEdgeError


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of one demo run; `quick` trades accuracy for a run of under a minute."""

    minutes: float  # synthetic recording length
    epochs: int
    train_stride: int  # keep every n-th training window
    finetune_epochs: int
    qat_epochs: int
    profile_bins: int | None  # bins streamed per decoder (None: the whole test stream)
    finetune_lr: float = 1e-4
    sparsity: float = 0.6
    structured: float = 0.25
    bits: int = 8


FULL = DemoSettings(
    minutes=9.0,
    epochs=30,
    train_stride=4,
    finetune_epochs=8,
    qat_epochs=2,
    profile_bins=None,  # the whole test split: the stream R² is then the test R² itself
    finetune_lr=1e-3,
)
QUICK = DemoSettings(
    minutes=3.0,
    epochs=12,
    train_stride=4,
    finetune_epochs=2,
    qat_epochs=1,
    profile_bins=1000,
    finetune_lr=1e-3,
)
BACKENDS = ("ort", "numpy", "c")  # "c" where a C build exists (the quantized model)
MODELS = ("float", "pruned", "quantized")
# the published AEGRU point (anchors.md §1): mean R² 0.698, 25,316 effective MACs per 4 ms
PUBLISHED = {"r2": 0.698, "macs_effective": 25316, "label": "published AEGRU",
             "source": "NeuroBench primate reaching, not this synthetic recording"}  # fmt: skip


def _prepare_out(out: Path) -> Path:
    if not out.parent.exists():
        raise CortexEdgeError(f"output folder's parent does not exist: {out.parent}")
    if out.exists() and any(out.iterdir()) and not (out / "summary.json").exists():
        raise CortexEdgeError(f"{out} exists and is not a previous demo folder; choose another")
    out.mkdir(exist_ok=True)
    return out


def run_demo(out: Path, *, quick: bool = False, seed: int = 0, console=None) -> dict:
    """Run the whole pipeline into `out` and return the summary (also in summary.json)."""
    from rich.console import Console

    console = console or Console(width=max(Console().width, 150))
    cfg = QUICK if quick else FULL
    out = _prepare_out(Path(out))
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def stage(name: str):
        console.rule(f"[bold]{name}")
        timings[name] = time.perf_counter()

    def done(name: str):
        timings[name] = round(time.perf_counter() - timings[name], 2)

    stage("data")
    rec = _recording(out, cfg, seed)
    done("data")

    stage("train")
    trained, ridge = _train(out, rec, cfg, seed)
    done("train")

    stage("compress")
    comp = _compress(out, rec, trained.model, cfg, seed)
    done("compress")

    stage("export")
    exports, c_build = _export_all(out, console, rec, trained.model, comp)
    done("export")

    stage("stream")
    runs = _stream_all(out, console, cfg)
    done("stream")

    rows = _rows(comp.stages, exports, runs, rec.bin_ms)
    summary = {
        "settings": {**asdict(cfg), "quick": quick, "seed": seed},
        "recording": rec.summary(),
        "ridge_test_r2": ridge.metrics["test"]["r2"],
        "float_best_epoch": trained.best_epoch,
        "models": rows,
        "compression_stages": comp.stages,
        "c_build": c_build,
        "seconds": {**timings, "total": round(time.perf_counter() - t0, 2)},
        "out": str(out),
    }
    _plots(out, trained, comp.stages, ridge.metrics["test"]["r2"], runs["quantized"])
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    _print_table(console, summary)
    return summary


def _export_all(out: Path, console, rec, float_model, comp) -> tuple[dict, dict]:
    """The three ONNX files (each verified against torch) and the integer C build."""
    models = {"float": float_model, "pruned": comp.pruned, "quantized": comp.model}
    exports = {}
    for name, model in models.items():  # each names its steps as it goes
        exports[name] = _export(out, name, model, rec)
    c_build = _export_c(out, comp.model, rec)
    return exports, c_build


def _stream_all(out: Path, console, cfg: DemoSettings) -> dict:
    """Profile every exported decoder over the test bins (the quantized one on its C build)."""
    decoders = {name: out / f"{name}.onnx" for name in MODELS}
    decoders["quantized"] = out / "c" / "decoder.onnx"  # the same graph, next to its C build
    runs = {}
    for name, path in decoders.items():
        bins = "the test split" if cfg.profile_bins is None else f"{cfg.profile_bins:,} test bins"
        with console.status(f"streaming {bins} through {name}"):
            runs[name] = _profile(out, path, cfg)
    return runs


def _recording(out: Path, cfg: DemoSettings, seed: int):
    from cortexedge.train.data.synth import generate

    rec = generate("reaching", seed=seed, minutes=cfg.minutes)
    rec.save(out / "recording.npz")
    return rec


def _train(out: Path, rec, cfg: DemoSettings, seed: int):
    from cortexedge.train.fit import fit
    from cortexedge.train.models.registry import build_model

    sizes = {"in_channels": rec.input_shape[0], "out_dim": rec.y.shape[1]}
    ridge = fit(build_model("ridge", **sizes), rec, out=out / "ridge", progress=False)
    model = build_model("aegru", **sizes)
    trained = fit(
        model,
        rec,
        epochs=cfg.epochs,
        train_stride=cfg.train_stride,
        seed=seed,
        patience=8,
        out=out / "float",
        progress=True,
        threads=1,
    )
    return trained, ridge


def _compress(out: Path, rec, model, cfg: DemoSettings, seed: int):
    from cortexedge.compress.artifacts import save_compressed
    from cortexedge.compress.recipe import Recipe, compress

    recipe = Recipe(
        sparsity=cfg.sparsity,
        structured=cfg.structured,
        bits=cfg.bits,
        finetune_epochs=cfg.finetune_epochs,
        qat_epochs=cfg.qat_epochs,
        lr=cfg.finetune_lr,
        qat_lr=cfg.finetune_lr,  # the demo's short runs fine-tune both stages at one fast rate
        seed=seed,
    )
    comp = compress(model, rec, recipe, train_stride=cfg.train_stride, progress=True, threads=1)
    save_compressed(comp, out / "compressed", extra={"family": "aegru"})
    return comp


def _export(out: Path, name: str, model, rec):
    from cortexedge.export.api import to_onnx

    return to_onnx(model, out / f"{name}.onnx", recording=rec, progress=True)


def _export_c(out: Path, model, rec) -> dict:
    """The integer C build of the quantized model (what an implant would run)."""
    from cortexedge.export.c.generate import export_c, summary_lines

    res = export_c(model, out / "c", recording=rec, onnx_path=out / "quantized.onnx", progress=True)
    return {**res.summary(), "lines": summary_lines(res)}


def _profile(out: Path, path: Path, cfg: DemoSettings):
    from cortexedge.runtime.backends import available_for
    from cortexedge.runtime.model import load_decoder
    from cortexedge.runtime.profile import profile, recording_stream

    model = load_decoder(path)
    stream = recording_stream(out / "recording.npz", model.meta, cfg.profile_bins)
    return profile(path, stream, backends=available_for(model))


def _rows(stages: list[dict], exports: dict, runs: dict, bin_ms: float) -> list[dict]:
    """One row per deployed model: accuracy, MACs, size, latency per backend, headroom."""
    by_name = {s["name"]: s for s in stages}
    stage_of = {"float": "float", "pruned": "magnitude", "quantized": "quantized"}
    rows = []
    for name in MODELS:
        s = by_name[stage_of[name]]
        backends = runs[name].summary["backends"]
        rows.append(
            {
                "model": name,
                "test_r2": s["r2"],
                "stream_r2": runs[name].summary.get("r2"),
                "stream_scored_bins": runs[name].summary.get("scored_bins"),
                "macs_dense": s["macs_dense"],
                "macs_effective": s["macs_effective"],
                "params": s["params"],
                "bytes": s["bytes"],
                "onnx": exports[name].summary()["path"],
                "verification_max_abs_err": exports[name].verification.summary()["max_abs_err"],
                "latency_us": {b: backends[b]["latency_us"] for b in backends},
                "headroom": {b: bin_ms * 1e3 / backends[b]["latency_us"]["p99"] for b in backends},
            }
        )
    return rows


def _plots(out: Path, trained, stages: list[dict], ridge_r2: float, run) -> None:
    from cortexedge.cli.demo_plots import learning_curve, r2_vs_macs
    from cortexedge.runtime.report import save_plot

    learning_curve(trained.history, trained.best_epoch, out / "learning_curve.png")
    r2_vs_macs(stages, ridge_r2, PUBLISHED, out / "r2_vs_macs.png")
    save_plot(run, out / "stream_quantized.png")


def _p50_p99(lat: dict | None) -> str:
    return "—" if lat is None else f"{lat['p50']:.1f}/{lat['p99']:.1f}"


def _print_table(console, summary: dict) -> None:
    from rich.table import Table

    table = Table(
        title=f"AEGRU on synthetic reaching (ridge baseline R² {summary['ridge_test_r2']:.3f})"
    )
    for col in ("model", "test R²", "stream R²", "MACs dense", "MACs eff.", "params", "bytes"):
        table.add_column(col, justify="right")
    for b in BACKENDS:
        table.add_column(f"{b} p50/p99 µs", justify="right")
    table.add_column("headroom (ort p99)", justify="right")
    for r in summary["models"]:
        lat = [_p50_p99(r["latency_us"].get(b)) for b in BACKENDS]
        table.add_row(
            r["model"],
            f"{r['test_r2']:.3f}",
            f"{r['stream_r2']:.3f}",
            f"{r['macs_dense']:,.0f}",
            f"{r['macs_effective']:,.0f}",
            f"{r['params']:,}",
            f"{r['bytes']:,}",
            *lat,
            f"{r['headroom']['ort']:,.0f}×",
        )
    console.print(table)
    scored = summary["models"][0]["stream_scored_bins"]
    console.print(
        "test R²: every test row, each run decoded from the initial state after its context "
        "(cortexedge/scoring.py), in torch; stream R²: the same definition, the ONNX decoder fed "
        f"bin by bin by the runtime, over the first {scored:,} scored rows of that stream."
    )
    for line in summary["c_build"]["lines"]:
        console.print(f"C build: {line}")
    console.print(
        f"everything is in [bold]{summary['out']}[/] ({summary['seconds']['total']:.0f} s)"
    )
