"""Ridge baseline: closed form vs an independent least-squares solve, lags by hand, run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cortexedge.errors import CheckpointError, CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.train.ridge import fit_ridge, lagged_features, load_ridge, ridge_path


def test_closed_form_matches_augmented_lstsq():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5)) + 3.0
    y = rng.normal(size=(60, 2))
    alphas = np.array([0.0, 0.5, 20.0])
    for alpha, (w, b) in zip(alphas, ridge_path(x, y, alphas), strict=True):
        # independent solve: unpenalised intercept column, ridge rows sqrt(alpha)·I on W only
        a = np.hstack([x, np.ones((60, 1))])
        a = np.vstack([a, np.hstack([np.sqrt(alpha) * np.eye(5), np.zeros((5, 1))])])
        rhs = np.vstack([y, np.zeros((5, 2))])
        sol = np.linalg.lstsq(a, rhs, rcond=None)[0]
        np.testing.assert_allclose(w, sol[:5], atol=1e-9)
        np.testing.assert_allclose(b, sol[5], atol=1e-9)


def _recording(T: int = 40, C: int = 2, seg: int = 20) -> Recording:
    x = (np.arange(T * C).reshape(T, C) % 7).astype(np.int64)
    y = np.stack([np.arange(T), -np.arange(T)], 1).astype(np.float64)
    split = {
        "train": np.arange(0, T // 2),
        "val": np.arange(T // 2, 3 * T // 4),
        "test": np.arange(3 * T // 4, T),
    }
    return Recording(x=x, bin_ms=4.0, y=y, segment=np.arange(T) // seg, split=split)


def test_lag_construction_by_hand():
    rec = _recording()
    lags, bin_width = 3, 2
    feats, target, ends = lagged_features(rec, "train", lags, bin_width)
    # the first window ends at row 5: bins [0,1], [2,3], [4,5]; then every row to 19
    assert list(ends) == list(range(5, 20))
    for n, t in enumerate(ends):
        expected = []
        for lag in range(lags):  # oldest bin first, channels inside each bin
            last = t - (lags - 1 - lag) * bin_width
            expected += list(rec.x[last - bin_width + 1 : last + 1].sum(0))
        assert list(feats[n]) == expected
        assert list(target[n]) == list(rec.y[t])
    # the val split is rows 20..29, a new segment: its first window also ends 5 rows in
    assert list(lagged_features(rec, "val", lags, bin_width)[2]) == list(range(25, 30))


def test_recovers_a_lagged_linear_map(tmp_path):
    rng = np.random.default_rng(1)
    T, C, lags, bw = 3000, 3, 2, 4
    x = rng.poisson(3.0, size=(T, C))
    split = {"train": np.arange(0, 1800), "val": np.arange(1800, 2400), "test": np.arange(2400, T)}
    rec0 = Recording(x=x, bin_ms=4.0, y=np.zeros((T, 2)), split=split)
    w_true = rng.normal(size=(lags * C, 2))
    feats = {s: lagged_features(rec0, s, lags, bw) for s in ("train", "val", "test")}
    y = np.zeros((T, 2))
    for f, _, ends in feats.values():
        y[ends] = f @ w_true + 1.5
    rec = Recording(x=x, bin_ms=4.0, y=y, split=rec0.split)
    res = fit_ridge(rec, lags=lags, bin_width=bw, out=tmp_path / "ridge")
    assert res.metrics["test"]["r2"] > 0.999
    np.testing.assert_allclose(res.ridge.weight, w_true, atol=1e-2)
    assert res.ridge.alpha == min(res.val_r2)  # exact data: the weakest penalty wins
    assert set(res.val_r2) and max(res.val_r2.values()) == pytest.approx(res.metrics["val"]["r2"])
    # run folder in the checkpoint layout, and an exact round trip of the weights
    folder = tmp_path / "ridge"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["config.json", "metrics.json", "model.safetensors"]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["test"]["r2"] == pytest.approx(res.metrics["test"]["r2"])
    assert metrics["split"] == {"train": len(feats["train"][2]), "val": 593, "test": 593}
    loaded = load_ridge(folder)
    f_test = feats["test"][0]
    np.testing.assert_array_equal(loaded.predict(f_test), res.ridge.predict(f_test))
    config = json.loads((folder / "config.json").read_text())
    assert config["preprocessing"] == {"windowing": "binned", "bin_width": bw, "num_steps": lags}


def test_fixed_alpha_is_used_as_given():
    rec = _recording(T=200, seg=50)
    res = fit_ridge(rec, lags=2, bin_width=2, alpha=3.0)
    assert res.ridge.alpha == 3.0 and list(res.val_r2) == [3.0]


def test_bad_inputs():
    rec = _recording()
    with pytest.raises(CortexEdgeError, match="alpha: expected a non-negative number, got -1"):
        fit_ridge(rec, alpha=-1.0)
    labels_only = Recording(x=rec.x, bin_ms=4.0, labels=np.zeros(len(rec.x), dtype=np.int64))
    with pytest.raises(CortexEdgeError, match="ridge: the recording has no continuous targets"):
        fit_ridge(labels_only)


def test_load_ridge_rejects_other_folders(tmp_path):
    from cortexedge.train.checkpoint import save_checkpoint
    from cortexedge.train.models.registry import build_model

    folder = save_checkpoint(build_model("gru", in_channels=2), tmp_path / "gru")
    with pytest.raises(CheckpointError, match="not a ridge run"):
        load_ridge(folder)
