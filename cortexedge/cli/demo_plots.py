"""The demo's own figures: the learning curve and accuracy against compute and model bytes."""

from __future__ import annotations

import os

# fit's history keys -> what a reader calls them
_LABELS = {
    "train_loss": "training loss",
    "val_r2": "validation R²",
    "val_score": "validation score",
    "val_accuracy": "validation accuracy",
}
_MARKERS = "osD^vP*X"


def _figure(ncols: int = 1, width: float = 7.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    from cortexedge.atomic import atomic_open

    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=110)


def learning_curve(history: list[dict], best_epoch: int | None, path: str | os.PathLike) -> None:
    """Training loss and validation score per epoch, with the epoch whose weights were kept."""
    fig = _figure()
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    lines = ax.plot(epochs, [h["train_loss"] for h in history], "o-", label=_LABELS["train_loss"])
    ax.set(xlabel="epoch", ylabel=_LABELS["train_loss"])
    score_key = next((k for k in ("val_r2", "val_accuracy", "val_score") if k in history[0]), None)
    if score_key:
        twin = ax.twinx()
        label = _LABELS[score_key]
        lines += twin.plot(epochs, [h[score_key] for h in history], "s-", color="C1", label=label)
        twin.set_ylabel(label)
    if best_epoch is not None:
        lines.append(
            ax.axvline(best_epoch, color="gray", ls=":", label=f"kept: epoch {best_epoch}")
        )
    # one legend above the axes, so it hides no point of either curve
    fig.legend(handles=lines, loc="outside upper center", ncols=len(lines), fontsize=8)
    _save(fig, path)


def r2_vs_macs(stages: list[dict], ridge_r2: float, published: dict, path) -> None:
    """Test R² against effective MACs per bin (left) and stored model bytes (right) for each
    compression stage. Stages are told apart by marker and named in the legend (labels on the
    points collide when stages share MACs). The demo's recording is synthetic, so the published
    AEGRU result (real data) is named with its source below the axes, never drawn on them."""
    fig = _figure(width=10.0)
    axes = fig.subplots(1, 2, sharey=True)
    keys = (("macs_effective", "effective MACs per bin"), ("bytes", "model bytes (stored)"))
    for ax, (key, label) in zip(axes, keys, strict=True):
        ax.plot([s[key] for s in stages], [s["r2"] for s in stages], "-", color="0.75", zorder=1)
        for i, s in enumerate(stages):
            ax.plot(s[key], s["r2"], _MARKERS[i % len(_MARKERS)], ms=8, color=f"C{i}",
                    label=f"{s['name']}: R² {s['r2']:.3f}, {s[key]:,.0f}", zorder=2)  # fmt: skip
        ax.axhline(ridge_r2, color="gray", ls="--", label=f"ridge baseline: R² {ridge_r2:.3f}")
        ax.set_xlabel(label)
        ax.set_xlim(0, max(s[key] for s in stages) * 1.1)
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("test R² (synthetic recording)")
    pub = published
    note = f"for reference, {pub['label']}: R² {pub['r2']:.3f} at {pub['macs_effective']:,}"
    fig.supxlabel(f"{note} effective MACs ({pub['source']})", fontsize=7, color="0.35")
    fig.suptitle("Accuracy against compute and size, stage by stage")
    _save(fig, path)
