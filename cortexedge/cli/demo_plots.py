"""The demo's own figures: the learning curve and R² against effective MACs per bin."""

from __future__ import annotations

import os


def _figure(nrows: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> None:
    from cortexedge.atomic import atomic_open

    with atomic_open(path) as f:
        fig.savefig(f, format="png", dpi=110)


def learning_curve(history: list[dict], path: str | os.PathLike) -> None:
    """Training loss and validation score per epoch (from fit's history)."""
    fig = _figure()
    ax = fig.subplots()
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    score_key = next((k for k in ("val_r2", "val_score") if k in history[0]), None)
    if score_key:
        twin = ax.twinx()
        twin.plot(epochs, [h[score_key] for h in history], "s-", color="C1", label=score_key)
        twin.set_ylabel(score_key)
        twin.legend(loc="lower right")
    ax.legend(loc="upper right")
    ax.set_title("AEGRU learning curve")
    _save(fig, path)


def r2_vs_macs(stages: list[dict], ridge_r2: float, published: dict, path) -> None:
    """Test R² against effective MACs per bin for each compression stage, with references."""
    fig = _figure()
    ax = fig.subplots()
    macs = [s["macs_effective"] for s in stages]
    ax.plot(macs, [s["r2"] for s in stages], "o-", label="this run (synthetic)")
    for s in stages:
        ax.annotate(
            s["name"],
            (s["macs_effective"], s["r2"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.axhline(ridge_r2, color="gray", ls="--", label=f"ridge baseline ({ridge_r2:.3f})")
    ax.plot(
        [published["macs_effective"]],
        [published["r2"]],
        "*",
        ms=12,
        color="C3",
        label=published["label"],
    )
    ax.set_xlabel("effective MACs per bin")
    ax.set_ylabel("test R²")
    ax.legend(fontsize=8)
    ax.set_title("Accuracy against compute across compression stages")
    _save(fig, path)
