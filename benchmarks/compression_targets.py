"""Compression targets, measured on AEGRU and the default synthetic reaching recording.

Trains (or reuses) a float AEGRU, then runs three recipes of `cortexedge.compress` and checks:

1. magnitude pruning: >= 50% fewer effective MACs per bin than the float dense model, with a
   test-R² loss <= 0.01 (published AEGRU: 41.4% fewer);
2. W8 weights on top of it: model bytes <= 30% of the float32 model;
3. structured pruning of 25% of the GRU hidden units and encoder channels: dense MACs equal to
   those of the smaller architecture built from scratch, R² loss <= 0.02 after fine-tuning;
4. W4A8 QAT: R² loss <= 0.02 against float.

Prints a table and writes benchmarks/results/compression_targets.json.
Run: .venv/bin/python benchmarks/compression_targets.py [--epochs 30 --train-stride 2 ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _compress_common import float_aegru, float_finetuned

RESULTS = Path(__file__).resolve().parent / "results" / "compression_targets.json"


def _recipes(args) -> dict:
    from cortexedge.compress.recipe import Recipe

    common = {"finetune_epochs": args.finetune_epochs, "qat_epochs": args.qat_epochs,
              "lr": args.lr, "qat_lr": args.qat_lr, "seed": args.seed}  # fmt: skip
    return {
        "magnitude_w8": Recipe(sparsity=args.sparsity, bits=8, **common),
        "structured": Recipe(structured=0.25, **common),
        "w4a8": Recipe(bits=4, act_bits=8, **common),
    }


def _smaller_dense_macs(model) -> float:
    """Dense MACs per bin of AEGRU built from scratch with 25% fewer channels and units."""
    from cortexedge.compress.macs_torch import count_macs
    from cortexedge.train.models.aegru import AEGRU

    cfg = model.config()
    small = AEGRU(**{**cfg, "enc_dim": cfg["enc_dim"] * 3 // 4, "hidden": cfg["hidden"] * 3 // 4})
    return count_macs(small.inference_module(), (cfg["in_channels"],)).dense


def _targets(runs: dict, model, tuned_r2: float) -> list[dict]:
    mw = {s["name"]: s for s in runs["magnitude_w8"]}
    st = {s["name"]: s for s in runs["structured"]}
    w4 = {s["name"]: s for s in runs["w4a8"]}
    base = mw["float"]
    fewer = 1 - mw["magnitude"]["macs_effective"] / base["macs_dense"]
    expected_dense = _smaller_dense_macs(model)
    rows = [
        ("effective MACs saved by magnitude pruning", fewer, ">= 0.50", fewer >= 0.5),
        ("R² loss, magnitude", base["r2"] - mw["magnitude"]["r2"], "<= 0.01",
         base["r2"] - mw["magnitude"]["r2"] <= 0.01),
        ("bytes W8 / float32", mw["quantized"]["bytes"] / base["bytes"], "<= 0.30",
         mw["quantized"]["bytes"] / base["bytes"] <= 0.30),
        ("R² loss, magnitude + W8", base["r2"] - mw["quantized"]["r2"], "(reported)", True),
        ("dense MACs structured / float", st["structured"]["macs_dense"] / base["macs_dense"],
         f"== {expected_dense / base['macs_dense']:.4f} (3/4-size AEGRU)",
         st["structured"]["macs_dense"] == expected_dense),
        ("R² loss, structured 25%", base["r2"] - st["structured"]["r2"], "<= 0.02",
         base["r2"] - st["structured"]["r2"] <= 0.02),
        ("R² loss, W4A8 QAT", base["r2"] - w4["quantized"]["r2"], "<= 0.02",
         base["r2"] - w4["quantized"]["r2"] <= 0.02),
    ]  # fmt: skip
    stricter = [("magnitude", mw["magnitude"]), ("magnitude + W8", mw["quantized"]),
                ("structured 25%", st["structured"]), ("W4A8 QAT", w4["quantized"])]  # fmt: skip
    rows += [
        (f"R² loss vs float fine-tuned, {name}", tuned_r2 - stage["r2"], "(reported)", True)
        for name, stage in stricter
    ]
    return [{"target": t, "value": v, "goal": g, "met": bool(ok)} for t, v, g, ok in rows]


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="float training epochs")
    parser.add_argument("--train-stride", type=int, default=2)
    parser.add_argument("--finetune-epochs", type=int, default=10)
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--sparsity", type=float, default=0.6)
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning rate after pruning")
    parser.add_argument("--qat-lr", type=float, default=1e-4, help="fine-tuning rate of QAT")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work", default="/tmp/cortexedge-bench", help="float model cache")
    return parser.parse_args(argv)


def _run_recipes(model, rec, args) -> tuple[dict, dict]:
    """Every recipe of `_recipes` from the float model: stages and seconds per recipe."""
    from cortexedge.compress.recipe import compress

    runs, seconds = {}, {}
    for name, recipe in _recipes(args).items():
        t = time.perf_counter()
        result = compress(
            model, rec, recipe, family="aegru", train_stride=args.train_stride,
            threads=args.threads,
        )  # fmt: skip
        runs[name], seconds[name] = result.stages, round(time.perf_counter() - t, 1)
        print(f"{name}: {seconds[name]} s")
        for s in result.stages:
            tuned = sum(run["seconds"] for run in s["finetune"])
            print(f"  {s['name']:11s} r2={s['r2']:.4f} dense={s['macs_dense']:8.0f} "
                  f"eff={s['macs_effective']:8.0f} params={s['params']:6d} "
                  f"sparsity={s['sparsity']:.3f} bytes={s['bytes']:6d} "
                  f"finetune={[r['epochs'] for r in s['finetune']]} ({tuned:.0f} s)")  # fmt: skip
    return runs, seconds


def main(argv: list[str] | None = None) -> dict:
    args = _args(argv)

    from cortexedge.train.checkpoint import write_json
    from cortexedge.train.data.synth import default_recording

    t0 = time.perf_counter()
    rec = default_recording()
    model, config = float_aegru(
        rec, args.work, epochs=args.epochs, train_stride=args.train_stride, seed=args.seed,
        threads=args.threads,
    )  # fmt: skip
    runs, seconds = _run_recipes(model, rec, args)
    tuned_r2 = float_finetuned(
        model, rec, epochs=args.finetune_epochs, lr=args.lr, seed=args.seed,
        train_stride=args.train_stride, threads=args.threads,
    )["test"]["r2"]  # fmt: skip
    print(f"float fine-tuned alike: r2={tuned_r2:.4f}")
    targets = _targets(runs, model, tuned_r2)
    print(f"\n{'target':50s} {'value':>8s}  goal")
    for row in targets:
        mark = "ok" if row["met"] else "MISSED"
        print(f"{row['target']:50s} {row['value']:8.4f}  {row['goal']}  {mark}")
    report = {
        "settings": vars(args),
        "float_train": {"best_epoch": config.get("best_epoch"), "seed": config.get("seed")},
        "runs": runs,
        "float_finetuned_r2": tuned_r2,
        "seconds": {**seconds, "total": round(time.perf_counter() - t0, 1)},
        "targets": targets,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, report)
    print(f"wrote {RESULTS}")
    return report


if __name__ == "__main__":
    main()
