"""Linear decoders (ridge, Kalman): closed-form solutions against independent numpy solves,
streaming against forward, and the run folder of `fit` as a normal checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.train.checkpoint import load_checkpoint
from cortexedge.train.data.windows import aegru_windows
from cortexedge.train.fit import fit
from cortexedge.train.models.linear import (
    RELATIVE_ALPHAS,
    fit_kalman,
    fit_ridge,
    gram_scale,
    ridge_path,
)
from cortexedge.train.models.registry import build_model
from cortexedge.train.specs import RIDGE_BIN

T, C, D = 1500, 4, 2
SPLIT = {"train": np.arange(0, 900), "val": np.arange(900, 1200), "test": np.arange(1200, T)}


def _padded_lags(x: np.ndarray, rows: np.ndarray, lags: int, bw: int) -> np.ndarray:
    """Features of `rows` (one run from its start) by hand: bin k of row t sums rows
    t-(lags-k)·bw+1 .. t-(lags-1-k)·bw, the rows before the run counting as zeros."""
    first, out = rows[0], []
    for t in rows:
        bins = []
        for k in range(lags):
            hi = t - (lags - 1 - k) * bw
            lo = max(hi - bw + 1, first)
            bins.append(x[lo : hi + 1].sum(0) if hi >= first else np.zeros(x.shape[1]))
        out.append(np.concatenate(bins))
    return np.array(out, dtype=np.float64)


def _lagged_recording(lags: int, bin_width: int, seed: int = 1) -> tuple[Recording, np.ndarray]:
    """Poisson counts whose targets are an exact lagged linear map of the binned counts (plus
    noise), and that map [lags·C, D]."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(3.0, size=(T, C))
    w_true = rng.normal(scale=0.1, size=(lags * C, D))  # outputs of order 1
    y = rng.normal(scale=0.02, size=(T, D))
    y += _padded_lags(x, np.arange(T), lags, bin_width) @ w_true + 1.5  # one run from row 0
    return Recording(x=x, bin_ms=4.0, y=y, split=SPLIT), w_true


def _augmented_lstsq(x: np.ndarray, y: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge with an unpenalised intercept as one least-squares problem: rows [X 1] over
    [sqrt(alpha)·I 0]; returns [W; b]."""
    n, f = x.shape
    top = np.hstack([x, np.ones((n, 1))])
    a = np.vstack([top, np.hstack([np.sqrt(alpha) * np.eye(f), np.zeros((f, 1))])])
    rhs = np.vstack([y, np.zeros((f, y.shape[1]))])
    return np.linalg.lstsq(a, rhs, rcond=None)[0]


def _stream(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    """`step` row by row from `init_state`, one stream."""
    state, out = model.init_state(1), []
    with torch.no_grad():
        for row in torch.tensor(x, dtype=torch.float32):
            y, state = model.step(row[None], state)
            out.append(y[0].numpy())
    return np.stack(out)


def _forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()


# ----------------------------------------------------------------------------- ridge
def test_ridge_path_matches_augmented_lstsq():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 5)) + 3.0, rng.normal(size=(60, 2))
    alphas = np.array([0.0, 0.5, 20.0])
    for alpha, (w, b) in zip(alphas, ridge_path(x, y, alphas), strict=True):
        sol = _augmented_lstsq(x, y, alpha)
        np.testing.assert_allclose(w, sol[:5], atol=1e-9)
        np.testing.assert_allclose(b, sol[5], atol=1e-9)


def test_ridge_features_are_the_binned_lags_oldest_first():
    rec, _ = _lagged_recording(lags=3, bin_width=2)
    model = build_model("ridge", in_channels=C, out_dim=D, lags=3, bin_width=2)
    win = aegru_windows(rec, "train", 2, 3)
    with torch.no_grad():
        feats = model.features(torch.tensor(rec.x, dtype=torch.float32)[None])[0].numpy()
    np.testing.assert_array_equal(feats[win.ends], win.x.reshape(len(win.x), -1))
    # before a full history the missing rows count as zeros: row 0 sees only itself
    assert feats[0].tolist() == [0.0] * (2 * C) + rec.x[0].tolist()


def test_ridge_solution_equals_lstsq_and_recovers_the_map():
    lags, bw = 2, 3
    rec, w_true = _lagged_recording(lags, bw)
    w, b, alpha = fit_ridge(rec, lags, bw)
    rows = rec.rows("train")  # one run from the recording's start: every row is fitted
    feats = _padded_lags(rec.x, rows, lags, bw)  # independent of the solver's features
    sol = _augmented_lstsq(feats, rec.y[rows], alpha)
    np.testing.assert_allclose(w, sol[:-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(b, sol[-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(w, w_true, atol=0.005)
    relative = alpha / gram_scale(feats)
    assert np.isclose(RELATIVE_ALPHAS, relative, rtol=1e-9).sum() == 1  # one of the grid


def test_fitted_ridge_holds_the_solution_in_its_linear_and_checkpoint(tmp_path):
    rec, _ = _lagged_recording(2, 3)
    model = build_model("ridge", in_channels=C, out_dim=D, lags=2, bin_width=3)
    res = fit(model, rec, progress=False, out=tmp_path / "ridge")
    assert res.metrics["test"]["r2"] > 0.99 and res.metrics["epochs_run"] == 0
    w, b, alpha = fit_ridge(rec, 2, 3)
    assert model.alpha == alpha and model.config()["alpha"] == alpha
    # the solve runs in float64; the Linear holds it in float32
    np.testing.assert_array_equal(model.readout.weight.detach().numpy(), w.T.astype(np.float32))
    np.testing.assert_array_equal(model.readout.bias.detach().numpy(), b.astype(np.float32))
    loaded, config = load_checkpoint(tmp_path / "ridge")
    assert loaded.config() == model.config() and config["model"] == "ridge"
    np.testing.assert_array_equal(_forward(loaded, rec.x[:50]), _forward(model, rec.x[:50]))
    metrics = json.loads((tmp_path / "ridge" / "metrics.json").read_text())
    assert metrics["split"]["val"] == len(SPLIT["val"])  # every row is scored
    assert metrics["test"]["context_rows"] == model.streaming_window - 1  # its window, no more


def test_ridge_given_alpha_is_kept_and_a_bad_one_refused():
    rec, _ = _lagged_recording(2, 3)
    model = build_model("ridge", in_channels=C, out_dim=D, lags=2, bin_width=3, alpha=3.0)
    fit(model, rec, progress=False)
    assert model.alpha == 3.0
    with pytest.raises(CortexEdgeError, match="alpha must be a number >= 0, got -1"):
        build_model("ridge", in_channels=C, alpha=-1.0)


def test_ridge_step_equals_forward():
    rec, _ = _lagged_recording(3, 4)
    model = build_model("ridge", in_channels=C, out_dim=D, lags=3, bin_width=4)
    fit(model, rec, progress=False)
    np.testing.assert_allclose(_stream(model, rec.x[:200]), _forward(model, rec.x[:200]),
                               atol=1e-6)  # fmt: skip
    assert model.streaming_mode == "window" and model.streaming_window == 12


@pytest.mark.parametrize("bin_ms, rows", [(4.0, 20), (20.0, 4), (50.0, 2)])
def test_ridge_bins_are_80_ms_at_the_recordings_bin_width(bin_ms, rows):
    from cortexedge.train.build import model_for

    rec, _ = _lagged_recording(3, 4)
    rec = Recording(x=rec.x, y=rec.y, bin_ms=bin_ms, segment=rec.segment, split=rec.split)
    model = model_for("ridge", rec)
    assert (model.bin_width, model.lags) == (rows, 5)
    assert RIDGE_BIN.rows(bin_ms) == rows and build_model("ridge", in_channels=C).bin_width == 20


# ----------------------------------------------------------------------------- kalman
def _kalman_recording(seed: int = 0) -> Recording:
    """Velocities from a stable AR(1) with observations linear in them plus noise, two segments."""
    rng = np.random.default_rng(seed)
    a_true = np.array([[0.95, 0.1], [-0.1, 0.95]])
    h_true = rng.normal(size=(C, D))
    v = np.zeros((T, D))
    for t in range(1, T):
        v[t] = a_true @ v[t - 1] + rng.normal(scale=0.3, size=D)
    z = v @ h_true.T + 2.0 + rng.normal(scale=0.5, size=(T, C))
    return Recording(x=z.astype(np.float32), bin_ms=4.0, y=v + 0.7, split=SPLIT,
                     segment=np.arange(T) // 450, modality="calcium")  # fmt: skip


def _numpy_kalman(z: np.ndarray, fitted: dict) -> np.ndarray:
    """A plain steady-state Kalman filter loop: predict with A, correct with K, on centred
    quantities; the estimate starts at 0 in the targets' units."""
    a, h, k, ym, zm = (fitted[n] for n in ("A", "H", "K", "y_mean", "z_mean"))
    x, out = -ym, []
    for row in z:
        prior = a @ x
        x = prior + k @ (row - zm - h @ prior)
        out.append(x + ym)
    return np.stack(out)


def _fitted_kalman(rec: Recording) -> tuple[torch.nn.Module, dict]:
    model = build_model("kalman", in_channels=C, out_dim=D)
    fit(model, rec, progress=False)
    return model, fit_kalman(rec)


def test_kalman_state_model_is_least_squares_within_segments():
    rec = _kalman_recording()
    fitted = fit_kalman(rec)
    y, z = rec.y - rec.y[:900].mean(0), rec.x - rec.x[:900].mean(0)
    pairs = np.r_[1:450, 451:900]  # no pair crosses the segment boundary at 450
    a = np.linalg.lstsq(y[pairs - 1], y[pairs], rcond=None)[0].T
    h = np.linalg.lstsq(y[:900], z[:900], rcond=None)[0].T
    np.testing.assert_allclose(fitted["A"], a, atol=1e-9)
    np.testing.assert_allclose(fitted["H"], h, atol=1e-9)
    res = z[:900] - y[:900] @ h.T
    np.testing.assert_allclose(fitted["Q"], res.T @ res / 900, atol=1e-9)


def test_kalman_gain_is_the_riccati_fixed_point():
    fitted = fit_kalman(_kalman_recording())
    a, w, h, q, k, p = (fitted[n] for n in ("A", "W", "H", "Q", "K", "P"))
    gain = p @ h.T @ np.linalg.inv(h @ p @ h.T + q)
    np.testing.assert_allclose(k, gain, atol=1e-8)
    np.testing.assert_allclose(a @ (np.eye(D) - gain @ h) @ p @ a.T + w, p, atol=1e-8)


def test_kalman_forward_equals_a_numpy_filter_and_step_equals_forward():
    rec = _kalman_recording()
    model, fitted = _fitted_kalman(rec)
    z = rec.x[1200:1500]
    np.testing.assert_allclose(_forward(model, z), _numpy_kalman(z, fitted), atol=1e-5)
    np.testing.assert_allclose(_stream(model, z), _forward(model, z), atol=1e-6)
    assert model.streaming_mode == "stateful"


def test_kalman_run_folder_is_a_normal_checkpoint(tmp_path):
    rec = _kalman_recording()
    model = build_model("kalman", in_channels=C, out_dim=D)
    res = fit(model, rec, progress=False, out=tmp_path / "kalman")
    assert res.metrics["test"]["r2"] > 0.5  # the observations carry the velocities
    loaded, _ = load_checkpoint(tmp_path / "kalman")
    z = rec.x[1200:1300]
    np.testing.assert_array_equal(_forward(loaded, z), _forward(model, z))
    config = json.loads((tmp_path / "kalman" / "config.json").read_text())
    assert config["model"] == "kalman" and config["preprocessing"]["windowing"] == "sliding"
