"""Where an integer C build's Cortex-M4 instructions go: qemu counts with one part removed.

Each row rebuilds a copy of the build's decoder.c with one part made trivial (the recurrent
mat-vec rows, the activation tables, the LayerNorm, the requantizing heads) and runs the same
bins under qemu-system-arm; what the part costs is the baseline's count minus that copy's.
The outputs of the copies are wrong by design and only their instruction counts are read. The
folder is the int8 window build `benchmarks/c_target.py --part aegru` leaves in its work folder.
Writes benchmarks/results/c_target_breakdown.json.

    .venv/bin/python benchmarks/c_target_breakdown.py [--folder DIR] [--bins 400]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT = Path(tempfile.gettempdir()) / "cortexedge_c_target" / "c-int8"

ROWS3_EMPTY = "    (void)u; (void)x; a3[0] = a3[1] = a3[2] = 0; return;\n"  # a unit's 3 gate rows


def _rows3(matrix: str) -> tuple[str, str]:
    return (
        rf"static void rows3_{matrix}\(int u, const int8_t \*x, int32_t \*a3\)\n\{{\n",
        ROWS3_EMPTY,
    )


# part -> [(the opening of a function the generator emits, the statement that empties it)]
PARTS = {
    "recurrent mat-vec rows (c0_hh)": [_rows3("c0_hh")],
    "input mat-vec rows (encoder, c0_ih)": [
        (
            r"static int32_t row_enc\(int r, const int8_t \*x\)\n\{\n",
            "    (void)r; (void)x; return 0;\n",
        ),
        _rows3("c0_ih"),
    ],
    "activation tables": [
        (
            r"static inline int32_t act\(const act_t \*t, int32_t p\)\n\{\n",
            "    return t->qmin + (p > 0);\n",
        )
    ],
    "LayerNorm": [
        (
            r"static void layer_norm\(int32_t \*h, int n, int64_t eps\)\n\{\n",
            "    (void)h; (void)n; (void)eps; return;\n",
        )
    ],
    "state and output heads": [
        (
            r"static void c0_(?:state|out)\(const int32_t \*x, int8_t \*dst\)\n\{\n",
            "    (void)x; (void)dst; return;\n",
        )
    ],
}


def _count(build: Path, source: str, rows: np.ndarray, work: Path) -> float:
    """M4 instructions per bin of `build` with its decoder.c replaced by `source`."""
    from cortexedge.export.c.qemu import run_harness

    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(build, work, ignore=shutil.ignore_patterns("qemu"))
    (work / "decoder.c").write_text(source)
    return run_harness(work, rows, np.uint8, np.int32, 2)["insns_per_step"]


def _refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT)
    parser.add_argument("--bins", type=int, default=400)
    args = parser.parse_args(argv)
    if not (args.folder / "decoder_c.json").is_file():
        _refuse(f"{args.folder}: no C build; run benchmarks/c_target.py --part aegru")
    man = json.loads((args.folder / "decoder_c.json").read_text())
    if man["numeric"] != "int":
        _refuse(f"{args.folder}: not an integer C build")
    lay, source = man["layout"], (args.folder / "decoder.c").read_text()
    rows = np.random.default_rng(0).poisson(0.6, (args.bins, lay["channels"]))
    rows = rows.clip(0, man["max_count"]).astype(np.uint8)
    with tempfile.TemporaryDirectory() as tmp:
        base = _count(args.folder, source, rows, Path(tmp) / "base")
        parts = {}
        for name, edits in PARTS.items():
            changed, found = source, 0
            for opening, empty in edits:
                changed, n = re.subn(f"({opening})", lambda m, e=empty: m.group(1) + e, changed)
                found += n
            if found:  # a part the build does not hold (no encoder, no LayerNorm) is left out
                parts[name] = base - _count(args.folder, changed, rows, Path(tmp) / "part")
    macs = man["macs"]["executed"]
    return {"folder": str(args.folder), "bins": args.bins, "insns_per_bin": base,
            "executed_macs": macs["total"], "effective_macs": macs["effective"],
            "per_matrix_macs": macs["per_matrix"], "parts": parts}  # fmt: skip


def _print(r: dict) -> None:
    base = r["insns_per_bin"]
    print(f"{r['folder']}: {base:,.0f} M4 instructions per bin ({r['bins']} bins), "
          f"{r['executed_macs']:,} MACs executed, {r['effective_macs']:,} effective")  # fmt: skip
    print("part | instructions per bin | share")
    for name, cost in r["parts"].items():
        print(f"{name} | {cost:,.0f} | {cost / base:.0%}")
    rest = base - sum(r["parts"].values())
    print(f"everything else (input front, gate arithmetic, readout, loops) | "
          f"{rest:,.0f} | {rest / base:.0%}")  # fmt: skip


if __name__ == "__main__":
    result = main()
    _print(result)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "c_target_breakdown.json").write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / 'c_target_breakdown.json'}")
