"""Ridge regression on lagged binned spike counts (a Wiener filter): the floor for every decoder.

Features of a row t are the box-summed counts of the `lags` bins of `bin_width` samples ending at
t (the same binned windows AEGRU reads, flattened [lag, channel], oldest lag first); the target
is the velocity at t. The weights are the closed-form ridge solution in numpy, with the
intercept left unpenalised (features and targets are centred). `alpha` is chosen on the
validation split from a grid scaled by the mean eigenvalue of the Gram matrix; one
eigendecomposition serves every alpha. The run folder has the same layout as a neural run:
`model.safetensors` (weight, bias), `config.json`, `metrics.json`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cortexedge.atomic import write_atomic
from cortexedge.errors import CheckpointError, CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.train.checkpoint import (
    WEIGHTS_FILE,
    package_versions,
    read_config,
    write_json,
)
from cortexedge.train.data.windows import aegru_windows
from cortexedge.train.fit import regression_metrics

RELATIVE_ALPHAS = np.logspace(-6, 1, 15)  # × mean eigenvalue of the centred Gram matrix


@dataclass
class Ridge:
    """A fitted lagged linear decoder: y = features @ weight + bias."""

    weight: np.ndarray  # [lags * C, D]
    bias: np.ndarray  # [D]
    lags: int
    bin_width: int
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Lagged features [N, lags*C] (or windows [N, lags, C]) -> velocity [N, D]."""
        return x.reshape(len(x), -1).astype(np.float64) @ self.weight + self.bias


@dataclass
class RidgeResult:
    """A ridge run: the decoder, its metrics and the validation R² of every alpha tried."""

    ridge: Ridge
    metrics: dict
    val_r2: dict[float, float] = field(default_factory=dict)
    out: Path | None = None


def lagged_features(
    rec: Recording, split: str, lags: int, bin_width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design matrix [N, lags*C] ([lag, channel], oldest lag first), targets [N, D] and the
    row of each window end, for one split."""
    w = aegru_windows(rec, split, bin_width, lags)
    x = w.x.reshape(len(w.x), -1).astype(np.float64)
    return x, w.y[:, -1].astype(np.float64), w.ends


def ridge_path(
    x: np.ndarray, y: np.ndarray, alphas: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed-form ridge (W, b) for each alpha: W = (XcᵀXc + αI)⁻¹ XcᵀYc, b = ȳ − x̄W.

    One eigendecomposition of XcᵀXc = V diag(s) Vᵀ gives W(α) = V diag(1/(s+α)) Vᵀ XcᵀYc.
    """
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    s, v = np.linalg.eigh(xc.T @ xc)
    s = np.clip(s, 0.0, None)
    proj = v.T @ (xc.T @ (y - my))
    out = []
    for alpha in alphas:
        w = v @ (proj / (s + alpha)[:, None])
        out.append((w, my - mx @ w))
    return out


def gram_scale(x: np.ndarray) -> float:
    """Mean eigenvalue of the centred Gram matrix (its trace / features): the alpha unit."""
    xc = x - x.mean(0)
    return float((xc * xc).sum() / x.shape[1])


def fit_ridge(
    recording: Recording,
    lags: int = 5,
    bin_width: int = 20,
    alpha: float | None = None,
    out: str | os.PathLike | None = None,
) -> RidgeResult:
    """Fit the lagged ridge decoder on train, choose alpha on val, report val and test.

    `alpha=None` tries `RELATIVE_ALPHAS` × the Gram scale and keeps the best validation R².
    """
    if recording.y is None:
        raise CortexEdgeError("ridge: the recording has no continuous targets y to regress")
    if alpha is not None and not alpha >= 0:
        raise CortexEdgeError(f"alpha: expected a non-negative number, got {alpha}")
    sets = {
        s: lagged_features(recording, s, lags, bin_width)[:2]
        for s in ("train", "val", "test")
        if len(recording.split.get(s, ()))
    }
    if "train" not in sets or "val" not in sets:
        raise CortexEdgeError("ridge: the recording needs train and val rows")
    (x, y), (xv, yv) = sets["train"], sets["val"]
    alphas = [alpha] if alpha is not None else list(gram_scale(x) * RELATIVE_ALPHAS)
    path = ridge_path(x, y, np.asarray(alphas))
    scores = [regression_metrics(yv, xv @ w + b)["r2"] for w, b in path]
    best = int(np.nanargmax(scores))
    ridge = Ridge(path[best][0], path[best][1], lags, bin_width, float(alphas[best]))
    metrics = {
        s: {**regression_metrics(ys, ridge.predict(xs)), "n": len(xs)}
        for s, (xs, ys) in sets.items()
        if s != "train"
    }
    metrics.update(
        split={s: len(xs) for s, (xs, _) in sets.items()}, task="regression", alpha=ridge.alpha
    )
    result = RidgeResult(ridge, metrics, dict(zip(map(float, alphas), scores, strict=True)))
    if out is not None:
        result.out = save_ridge(result, out, recording)
    return result


def save_ridge(result: RidgeResult, folder: str | os.PathLike, recording: Recording) -> Path:
    """Write the run folder: model.safetensors (weight, bias), config.json, metrics.json."""
    from safetensors.numpy import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    r = result.ridge
    tensors = {"weight": r.weight, "bias": r.bias}
    write_atomic(folder / WEIGHTS_FILE, save(tensors, metadata={"format": "np"}))
    config = {
        "format_version": 1,
        "model": "ridge",
        "model_config": {"lags": r.lags, "bin_width": r.bin_width, "alpha": r.alpha},
        "feature_layout": "[lag, channel], oldest lag first",
        "preprocessing": {"windowing": "binned", "bin_width": r.bin_width, "num_steps": r.lags},
        "data_fingerprint": recording.fingerprint(),
        "versions": package_versions(),
        "val_r2_by_alpha": {f"{a:.6g}": v for a, v in result.val_r2.items()},
    }
    write_json(folder / "config.json", config)
    write_json(folder / "metrics.json", result.metrics)
    return folder


def load_ridge(folder: str | os.PathLike) -> Ridge:
    """Read a ridge run folder back (safetensors, never pickle)."""
    from safetensors.numpy import load_file

    config = read_config(folder)
    if config.get("model") != "ridge":
        raise CheckpointError(f"{folder}: not a ridge run (model '{config.get('model')}')")
    path = Path(folder) / WEIGHTS_FILE
    try:
        tensors = load_file(path)
    except Exception as e:  # missing or damaged file: safetensors raises its own error types
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None
    cfg = config["model_config"]
    return Ridge(
        tensors["weight"],
        tensors["bias"],
        int(cfg["lags"]),
        int(cfg["bin_width"]),
        float(cfg["alpha"]),
    )
