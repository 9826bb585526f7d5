"""Test R² vs effective MACs vs model bytes of AEGRU over a compression grid (the Pareto sweep).

For each recording (the default synthetic reaching one, and the real Imperial reaching one when
/work/shared/data/real is present) a float AEGRU is trained once (cached in --work, see
`_compress_common.py`), then compressed from that float checkpoint at every grid point with a
short fine-tune:
- L1 magnitude pruning at each `sparsity` (one-shot, then `finetune` epochs), with one global
  threshold (AEGRU's published recipe) and with the same share per layer. Global pruning takes
  the 64 readout weights (the smallest: the LayerNorm before them sets their scale) far faster
  than the rest, 86-97% of them at 70%; at 80% it would take them all, which the library
  refuses (a constant output), so those points are listed as refused;
- structured pruning of `structured` of the encoder channels and GRU hidden units;
- QAT at each of `bits` (weights; activations at 8 bits) on the float model, and on the "good"
  pruned point: the sparsest one whose VALIDATION R² is within 0.01 of the float model fine-tuned
  alike (the float model gets the same MSE fine-tune, a stricter baseline than the float one).
Every point is measured on the test split: R², dense/effective MACs per bin (NeuroBench rules),
parameters, connection sparsity and bytes as stored (`compress.footprint`: 4-bit weights sit in
int8 containers; `bytes_packed` is what two 4-bit weights per byte would take).
Prints a table per recording, writes benchmarks/results/compression.json and a Pareto plot
benchmarks/results/compression_pareto.png (with lagged ridge and the published AEGRU point).

    .venv/bin/python benchmarks/compression.py [--quick] [--only synthetic,real] [--work DIR]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from _compress_common import float_aegru, float_finetuned
from train_baselines import REAL

RESULTS = Path(__file__).resolve().parent / "results"
SCOPES = ("global", "layer")
R2_TOLERANCE = 0.01  # validation R² a "good" pruned point may lose against the tuned float
PUBLISHED = {  # anchors.md §1, measured on real NeuroBench data (6 recordings, per 4 ms step)
    "r2_range": [0.698, 0.71],
    "macs_effective": 25316,
    "macs_dense": 54283,
    "mac_reduction": 0.414,
    "note": "published AEGRU (Wang et al. 2024), NeuroBench primate reaching, per 4 ms",
}


@dataclass(frozen=True)
class Grid:
    """The compression grid and epoch budget of one mode."""

    sparsity: tuple[float, ...]
    scopes: tuple[str, ...]  # magnitude pruning: one global threshold, or the same share per layer
    structured: tuple[float, ...]
    bits: tuple[int, ...]
    epochs: int  # float training
    finetune: int  # after each pruning
    qat: int  # quantization-aware fine-tuning


GRIDS = {
    "default": Grid((0.3, 0.5, 0.6, 0.7, 0.8, 0.9), SCOPES, (0.25, 0.5), (8, 4), 30, 5, 3),
    "quick": Grid((0.5, 0.8), SCOPES, (0.25,), (8,), 8, 2, 1),
}


@dataclass(frozen=True)
class Dataset:
    """How to load one recording and train / window / baseline AEGRU on it."""

    load: Callable[[], object]
    data: dict | None  # AEGRU windowing (None: the model's defaults, 5 bins of 20 samples)
    ridge: tuple[int, int]  # lagged ridge: lags, bin_width
    train_stride: int  # float training and fine-tuning
    macs_unit: str
    requires: Path | None = None


def _synthetic():
    from cortexedge.train.data.synth import default_recording

    return default_recording(seed=0)


def _real():
    from cortexedge.train.data.readers import read

    return read(REAL)


DATASETS = {
    "synthetic": Dataset(_synthetic, None, (5, 20), 4, "per 4 ms step (5 bins of 80 ms)"),
    "real": Dataset(
        _real, {"bin_width": 1, "num_steps": 8}, (8, 1), 1, "per 20 ms bin (8 bins)", REAL
    ),
}


def _packed_bytes(model, bits: int | None) -> int:
    """Stored bytes with quantized weights packed at `bits` bits (others as stored)."""
    from cortexedge.compress.footprint import deployed_arrays

    return sum(
        math.ceil(a.size * bits / 8) if kind == "weight_int" and bits else a.nbytes
        for a, kind in deployed_arrays(model).values()
    )


def _val_r2(model, ctx) -> float:
    from cortexedge.train.causal import score_model

    return score_model(model, ctx.recording, "val", ctx.kind)["r2"]


def _point(name: str, group: str, model, stage: dict, ctx, recipe: dict, seconds: float) -> dict:
    """One row: the stage's test measurements plus validation R², packed bytes and settings."""
    return {
        "name": name,
        "group": group,
        "recipe": recipe,
        **{k: stage[k] for k in ("r2", "macs_dense", "macs_effective", "params", "sparsity")},
        "val_r2": _val_r2(model, ctx),
        "bytes": stage["bytes"],
        "bytes_packed": _packed_bytes(model, recipe.get("bits")),
        "finetune_epochs": sum(run["epochs"] for run in stage["finetune"]),
        "seconds": round(seconds, 1),
    }


def pareto(points: list[dict], keys: tuple[str, ...] = ("macs_effective",)) -> list[str]:
    """Names of the points no other point beats: R² at least as high with every cost in `keys`
    at most as high, and one of them strictly better."""

    def beats(a: dict, b: dict) -> bool:
        no_worse = a["r2"] >= b["r2"] and all(a[k] <= b[k] for k in keys)
        return no_worse and (a["r2"] > b["r2"] or any(a[k] < b[k] for k in keys))

    return [p["name"] for p in points if not any(beats(q, p) for q in points)]


class _Run:
    """One recording's grid: the float AEGRU, its context, and every compressed point."""

    def __init__(self, ds: Dataset, grid: Grid, args) -> None:
        from cortexedge.compress.recipe import Data
        from cortexedge.train.specs import spec_for

        self.t0 = time.perf_counter()
        self.ds, self.grid, self.args = ds, grid, args
        self.rec = ds.load()
        self.run = {"epochs": grid.epochs, "train_stride": ds.train_stride, "seed": args.seed}
        self.model, self.config = float_aegru(
            self.rec, args.work, patience=8, threads=args.threads, data=ds.data, **self.run
        )
        self.train_seconds = time.perf_counter() - self.t0
        self.ctx = Data(
            self.rec, "aegru", "regression", spec_for("aegru").data_for(self.model, ds.data)
        )
        self.common = {"lr": args.lr, "qat_lr": args.lr, "seed": args.seed, "qat_epochs": grid.qat}
        self.fit_kw = {"family": "aegru", "data": ds.data, "train_stride": ds.train_stride}
        self.points: list[dict] = []
        self.pruned: dict[str, tuple[dict, object]] = {}
        self.refused: list[dict] = []

    def compressed(self, name: str, group: str, base, recipe, **held) -> tuple[dict, object]:
        """Compress `base`; `held`: knobs of a base that was itself compressed (its sparsity)."""
        from cortexedge.compress.recipe import compress

        t = time.perf_counter()
        res = compress(base, self.rec, recipe, threads=self.args.threads, **self.fit_kw)
        knobs = {k: getattr(recipe, k) for k in ("structured", "sparsity", "bits")} | held
        seconds = time.perf_counter() - t
        point = _point(name, group, res.model, res.stages[-1], self.ctx, knobs, seconds)
        print(f"  {name:22s} R² {point['r2']:.4f}  eff MACs {point['macs_effective']:8.0f}  "
              f"bytes {point['bytes']:6d}  {point['seconds']:5.1f} s", flush=True)  # fmt: skip
        return point, res

    def float_points(self) -> None:
        """The float model, and the float model fine-tuned like the compressed ones."""
        from cortexedge.compress.recipe import measure

        inference = self.model.inference_module().eval()
        measured = measure(inference, "float", self.ctx)
        self.points.append(_point("float", "float", inference, measured, self.ctx, {}, 0.0))
        t, ds, grid = time.perf_counter(), self.ds, self.grid
        tuned = float_finetuned(
            self.model, self.rec, epochs=grid.finetune, lr=self.args.lr, seed=self.args.seed,
            train_stride=ds.train_stride, threads=self.args.threads, data=ds.data,
        )  # fmt: skip
        self.points.append({**self.points[0], "name": "float fine-tuned",
                            "r2": tuned["test"]["r2"], "val_r2": tuned["val"]["r2"],
                            "finetune_epochs": grid.finetune,
                            "seconds": round(time.perf_counter() - t, 1)})  # fmt: skip

    def pruning(self) -> None:
        """Magnitude pruning at every scope and sparsity (refusals listed), then structured."""
        from cortexedge.compress.recipe import Recipe
        from cortexedge.errors import CortexEdgeError

        for scope in self.grid.scopes:
            for s in self.grid.sparsity:
                name = f"{scope} L1 {s:.0%}"
                recipe = Recipe(sparsity=s, scope=scope, finetune_epochs=self.grid.finetune,
                                **self.common)  # fmt: skip
                try:
                    point, res = self.compressed(name, f"{scope} L1", self.model, recipe)
                except CortexEdgeError as e:
                    self.refused.append({"name": name, "reason": str(e)})
                    print(f"  {name}: refused: {e}", flush=True)
                    continue
                point["recipe"]["scope"] = scope
                self.points.append(point)
                self.pruned[point["name"]] = (point, res.model)
        for s in self.grid.structured:
            recipe = Recipe(structured=s, finetune_epochs=self.grid.finetune, **self.common)
            self.points.append(self.compressed(f"structured {s:.0%}", "structured", self.model,
                                               recipe)[0])  # fmt: skip

    def chosen_pruned(self) -> tuple[dict, bool]:
        """The sparsest pruned point within R2_TOLERANCE of the fine-tuned float model on
        validation (else the best on validation), and whether one met the rule."""
        floor = self.points[1]["val_r2"] - R2_TOLERANCE
        candidates = [p for p, _ in self.pruned.values()]
        good = [p for p in candidates if p["val_r2"] >= floor]
        if good:
            return max(good, key=lambda p: (p["recipe"]["sparsity"], p["val_r2"])), True
        return max(candidates, key=lambda p: p["val_r2"]), False

    def quantized(self, chosen: dict) -> dict:
        """QAT at every bit width on the float model and on the chosen pruned one."""
        from cortexedge.compress.recipe import Recipe

        held = {k: chosen["recipe"][k] for k in ("sparsity", "scope")}
        for bits in self.grid.bits:
            recipe = Recipe(bits=bits, finetune_epochs=self.grid.qat, **self.common)
            self.points.append(self.compressed(f"W{bits}A8", "quantized", self.model, recipe)[0])
            base = self.pruned[chosen["name"]][1]
            name = f"{chosen['name']} + W{bits}A8"
            self.points.append(self.compressed(name, "pruned+quantized", base, recipe, **held)[0])
        return held


def run_dataset(ds: Dataset, grid: Grid, args) -> dict:
    """Train (or reload) the float AEGRU, compress it at every grid point, measure each one."""
    from cortexedge.train.fit import fit
    from cortexedge.train.models.registry import build_model

    r = _Run(ds, grid, args)
    lags, bin_width = ds.ridge
    sizes = {"in_channels": r.rec.input_shape[0], "out_dim": r.rec.y.shape[1]}
    linear = build_model("ridge", **sizes, lags=lags, bin_width=bin_width)
    ridge = fit(linear, r.rec, progress=False).metrics
    r.float_points()
    r.pruning()
    chosen, met = r.chosen_pruned()
    held = r.quantized(chosen)
    front = pareto(r.points)
    front3 = pareto(r.points, ("macs_effective", "bytes"))
    for p in r.points:
        p["pareto"], p["pareto_bytes"] = p["name"] in front, p["name"] in front3
    rule = (
        f"sparsest with val R² >= float fine-tuned val R² - {R2_TOLERANCE} (else the best val R²)"
    )
    return {
        "recording": r.rec.summary(),
        "refused": r.refused,
        "macs_unit": ds.macs_unit,
        "data": ds.data,
        "float_train": {
            **r.run,
            "patience": 8,
            "best_epoch": r.config.get("best_epoch"),
            "seconds": round(r.train_seconds, 1),
        },  # fmt: skip
        "ridge": {
            "lags": lags,
            "bin_width": bin_width,
            "test_r2": ridge["test"]["r2"],
            "val_r2": ridge["val"]["r2"],
        },  # fmt: skip
        "pruned_point": {"name": chosen["name"], **held, "met": met, "rule": rule},
        "points": r.points,
        "pareto": front,
        "pareto_with_bytes": front3,
        "seconds": round(time.perf_counter() - r.t0, 1),
    }


def print_table(name: str, result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    pts = result["points"]
    dense, base = pts[0]["macs_dense"], pts[0]["r2"]
    table = Table(title=f"AEGRU compression, {name} ({result['recording']['source']}); "
                  f"MACs {result['macs_unit']}")  # fmt: skip
    for col in ("point", "test R²", "ΔR² vs float", "val R²", "eff. MACs", "MAC cut",
                "params", "sparsity", "bytes", "packed", "Pareto", "FT ep", "s"):  # fmt: skip
        table.add_column(col, justify="left" if col == "point" else "right")
    for p in pts:
        front = "+".join(k for k, on in (("M", p["pareto"]), ("MB", p["pareto_bytes"])) if on)
        table.add_row(
            p["name"], f"{p['r2']:.4f}", f"{p['r2'] - base:+.4f}", f"{p['val_r2']:.4f}",
            f"{p['macs_effective']:,.0f}", f"{1 - p['macs_effective'] / dense:.1%}",
            f"{p['params']:,}", f"{p['sparsity']:.2f}", f"{p['bytes']:,}",
            f"{p['bytes_packed']:,}", front, str(p["finetune_epochs"]), f"{p['seconds']:.0f}",
        )  # fmt: skip
    Console(width=160).print(table)
    ridge, pp = result["ridge"], result["pruned_point"]
    print(
        f"  ridge (lags {ridge['lags']}, bin {ridge['bin_width']}): "
        f"test R² {ridge['test_r2']:.4f}; dense float MACs {dense:,.0f}"
    )
    print(f"  pruned point for QAT: {pp['name']} "
          f"({pp['rule']}{'' if pp['met'] else ': none met'})")  # fmt: skip
    print("  Pareto column: M = on the front of R² vs effective MACs, MB = of R² vs (MACs, bytes)")
    print(f"  Pareto (R² vs eff. MACs): {', '.join(result['pareto'])}")
    print(f"  Pareto (R² vs eff. MACs and bytes): {', '.join(result['pareto_with_bytes'])}")
    print(f"  {result['seconds']:.0f} s (float training {result['float_train']['seconds']:.0f} s)")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller grid, fewer epochs")
    parser.add_argument("--only", default="synthetic,real", help="recordings to run")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="/tmp/cortexedge-bench", help="float model cache")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch
    from compression_plot import plot_pareto

    from cortexedge.train.checkpoint import package_versions, write_json

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    grid = GRIDS["quick" if args.quick else "default"]
    report: dict = {
        "settings": {**vars(args), "out": str(args.out), "grid": asdict(grid)},
        "versions": package_versions(),
        "published": PUBLISHED,
        "datasets": {},
    }
    for name in args.only.split(","):
        ds = DATASETS[name]
        if ds.requires is not None and not ds.requires.is_file():
            report["datasets"][name] = {"skipped": f"recording absent: {ds.requires}"}
            print(f"{name}: skipped, recording absent: {ds.requires}")
            continue
        print(f"{name}:", flush=True)
        report["datasets"][name] = run_dataset(ds, grid, args)
        print_table(name, report["datasets"][name])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "compression.json", report)
    png = plot_pareto(report, args.out / "compression_pareto.png")
    print(f"wrote {args.out / 'compression.json'} and {png} in {report['seconds']:.0f} s")
    return report


if __name__ == "__main__":
    main()
