"""The Pareto plot of benchmarks/compression.py: test R² vs effective MACs, one panel per recording.

Points are coloured by stored bytes and shaped by compression kind; the R²-vs-MACs Pareto front
is drawn as a step line, lagged ridge as a horizontal line, and the published AEGRU result
(measured on real NeuroBench data, per 4 ms step) as a reference bar on the panels of real
recordings; a synthetic panel names it with its source instead. Points far below the ridge
line (collapsed models) sit on the bottom edge with their R² written out, so that they do not
squash the interesting range.
"""

from __future__ import annotations

import io
from pathlib import Path

MARKERS = {
    "float": "o",
    "global L1": "s",
    "layer L1": "P",
    "structured": "D",
    "quantized": "^",
    "pruned+quantized": "v",
}
BELOW_REFERENCE = 0.05  # the y axis starts this far below the ridge line / published bar


def _label(p: dict) -> str:
    """Short point label (the marker already says which kind of compression it is)."""
    r = p["recipe"]
    if p["group"] == "float":
        return "float ft" if p["finetune_epochs"] else "float"
    if p["group"] == "structured":
        return f"st {r['structured']:.0%}"
    if p["group"] == "pruned+quantized":
        return f"+W{r['bits']}"  # the pruned point it starts from is named in the title
    return f"W{r['bits']}" if p["group"] == "quantized" else f"{r['sparsity']:.0%}"


def _offset(p: dict) -> tuple[int, int, str]:
    """Label offset (points) and alignment: points that share MACs get opposite sides."""
    r, group = p["recipe"], p["group"]
    if group == "float":
        return (6, 5 if p["finetune_epochs"] else -6, "left")
    if group == "pruned+quantized":  # beside a crowd of pruned points: away, with a leader line
        return (-15, 18, "right") if r["bits"] == 8 else (15, -22, "left")
    left = (-7, 0, "right")
    sides = {"global L1": (-7, -3, "right"), "quantized": left, "structured": left}
    return sides.get(group, (7, -3, "left"))


def _panel(ax, name: str, result: dict, published: dict, norm, cmap) -> None:
    """Draw one recording's points, front, ridge line and the published reference."""
    pts, ridge = result["points"], result["ridge"]["test_r2"]
    lo, hi = published["r2_range"]
    real = name != "synthetic"
    bottom = min(ridge, lo if real else ridge) - BELOW_REFERENCE
    ys = {p["name"]: max(p["r2"], bottom) for p in pts}
    for group, marker in MARKERS.items():
        mine = [p for p in pts if p["group"] == group]
        ax.scatter(
            [p["macs_effective"] for p in mine], [ys[p["name"]] for p in mine],
            c=[p["bytes"] for p in mine], cmap=cmap, norm=norm, marker=marker, s=70,
            edgecolors="black", linewidths=0.6, zorder=3, clip_on=False,
        )  # fmt: skip
    front = sorted((p for p in pts if p["pareto"]), key=lambda p: p["macs_effective"])
    ax.step(
        [p["macs_effective"] for p in front], [ys[p["name"]] for p in front], where="post",
        color="tab:red", lw=1.2, label="Pareto front (R² vs MACs)", zorder=2,
    )  # fmt: skip
    for p in (p for p in pts if p["r2"] >= bottom):
        dx, dy, align = _offset(p)
        line = {"arrowstyle": "-", "lw": 0.5, "color": "0.4"} if abs(dy) > 10 else None
        ax.annotate(_label(p), (p["macs_effective"], p["r2"]), xytext=(dx, dy), ha=align,
                    va="center", textcoords="offset points", fontsize=7, zorder=4,
                    arrowprops=line)  # fmt: skip
    low = [f"{p['group']} {_label(p)}: {p['r2']:.2f}" for p in pts if p["r2"] < bottom]
    if low:
        ax.text(0.99, 0.02, "on the bottom edge, R² below the axis:\n" + "\n".join(low),
                transform=ax.transAxes, ha="right", va="bottom", fontsize=7,
                bbox={"facecolor": "white", "edgecolor": "0.7"})  # fmt: skip
    ax.axhline(ridge, color="gray", ls="--", lw=1, label="lagged ridge (same windows)")
    ax.annotate(f"ridge {ridge:.3f}", (0, ridge), xytext=(3, 3), textcoords="offset points",
                fontsize=7, color="gray")  # fmt: skip
    what = (f"published AEGRU: R² {lo}–{hi}, {published['macs_effective'] / 1000:.1f}k MACs per "
            f"4 ms, {published['mac_reduction']:.1%} cut (real NeuroBench data)")  # fmt: skip
    if real:
        ax.errorbar(published["macs_effective"], (lo + hi) / 2, yerr=(hi - lo) / 2, fmt="*",
                    ms=13, color="tab:green", capsize=4, zorder=5, label=what)  # fmt: skip
    else:
        ax.text(0.01, 0.99, f"not on this axis: {what}", transform=ax.transAxes, ha="left",
                va="top", fontsize=7, color="0.35")  # fmt: skip
    rec = result["recording"]
    base = result["pruned_point"]["name"]
    ax.set_title(f"{name}: {rec['source']}, C={rec['input_shape'][0]}, {rec['bin_ms']:g} ms bins;"
                 f" +W8/+W4 = QAT on {base}", fontsize=10)  # fmt: skip
    ax.set_xlabel(f"effective MACs {result['macs_unit']}")
    ax.set_ylabel("test R²")
    top = max([hi if real else ridge, *(p["r2"] for p in pts)])
    ax.set_ylim(bottom, top + 0.03)
    ax.set_xlim(0, max(p["macs_dense"] for p in pts) * 1.12)
    ax.grid(alpha=0.3)


def plot_pareto(report: dict, path: Path) -> Path:
    """Write the Pareto PNG for every recording that ran (atomically); returns `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.lines import Line2D

    from cortexedge.atomic import write_atomic

    ran = {n: r for n, r in report["datasets"].items() if "points" in r}
    sizes = [p["bytes"] for r in ran.values() for p in r["points"]] or [0, 1]
    norm, cmap = Normalize(min(sizes), max(sizes)), plt.get_cmap("viridis")
    n = max(1, len(ran))
    fig, axes = plt.subplots(1, n, figsize=(7.5 * n + 2, 7.5), squeeze=False, layout="constrained")
    for ax, (name, result) in zip(axes[0], ran.items(), strict=False):
        _panel(ax, name, result, report["published"], norm, cmap)
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes[0], label="model bytes (as stored)")
    handles, labels = {}, {}
    for ax in axes[0]:  # the published bar is in the real panels only
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    labels = list(handles) + list(MARKERS)
    handles = list(handles.values()) + [
        Line2D([], [], ls="", marker=m, mfc="white", mec="black", ms=8) for m in MARKERS.values()
    ]
    fig.legend(handles, labels, loc="outside lower center", ncol=3 if n == 1 else 5, fontsize=8,
               frameon=False)  # fmt: skip
    fig.suptitle("AEGRU compression: test R² vs effective MACs per model output\ncolour: bytes; "
                 "labels: sparsity or bits")  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130)
    plt.close(fig)
    return write_atomic(path, buf.getvalue())
