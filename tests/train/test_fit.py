"""fit(): any nn.Module trains through it; best-validation weights are kept; runs reproduce."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.train.causal import score_model
from cortexedge.train.fit import fit, poisson_jitter
from cortexedge.train.specs import align


def _split(T: int, seg: int) -> dict[str, np.ndarray]:
    n = T // seg
    ids = np.arange(T) // seg
    return {
        "train": np.flatnonzero(ids < 0.6 * n),
        "val": np.flatnonzero((ids >= 0.6 * n) & (ids < 0.8 * n)),
        "test": np.flatnonzero(ids >= 0.8 * n),
    }


# what every score reports besides its metrics (cortexedge.scoring)
SCORE_KEYS = {"metric", "value", "split", "rows", "runs", "context_rows"}


def linear_recording(T: int = 2000, C: int = 4, seed: int = 0) -> Recording:
    """Spike counts whose current row drives a 2-d velocity linearly (plus a little noise)."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(2.0, size=(T, C))
    y = (x - 2.0) @ rng.normal(size=(C, 2)) * 0.5 + 0.05 * rng.normal(size=(T, 2))
    seg = np.arange(T) // 100
    # 40 ms rows: the 400 ms default training window is 10 rows
    return Recording(x=x, bin_ms=40.0, y=y.astype(np.float32), segment=seg, split=_split(T, 100))


def binary_recording(T: int = 2000, C: int = 3, seed: int = 0) -> Recording:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(T, C)).astype(np.float32)
    labels = (x[:, 0] + 0.3 * rng.normal(size=T) > 0.4).astype(np.int64)
    seg = np.arange(T) // 100
    return Recording(
        x=x, bin_ms=33.0, modality="calcium", labels=labels, segment=seg, split=_split(T, 100)
    )


class PerStep(nn.Module):
    """A user's model: the same linear map at every step of the window ([B, L, C] -> [B, L, D])."""

    def __init__(self, c: int, d: int) -> None:
        super().__init__()
        self.lin = nn.Linear(c, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _model(c: int = 4, d: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return PerStep(c, d)


def test_user_model_trains_and_improves():
    rec = linear_recording()
    model = _model()
    before = score_model(model, rec, "test", "regression", window=10)
    res = fit(model, rec, epochs=6, batch_size=64, lr=5e-2, augment_poisson=0.0, progress=False)
    assert res.metrics["test"]["r2"] > 0.95 > before["r2"]
    # the default spec: sliding windows of 400 ms = 10 rows; the test split is scored on every
    # row (cortexedge.scoring): 4 test segments of 100 rows, each decoded from its start
    assert res.config["preprocessing"] == {"windowing": "sliding", "length": 10, "train_stride": 1}
    test = res.metrics["test"]
    assert (test["rows"], test["runs"], test["context_rows"]) == (400, 4, 0)


def test_run_folder_files_and_metrics_keys(tmp_path):
    rec = linear_recording()
    res = fit(_model(), rec, epochs=2, batch_size=64, progress=False, out=tmp_path / "run")
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert files == {"model.safetensors", "config.json", "metrics.json", "epochs.jsonl"}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert {"val", "test", "split", "task", "best_epoch", "seed"} <= set(metrics)
    assert set(metrics["test"]) == SCORE_KEYS | {"r2", "corr"}
    assert metrics["split"] == {"train": res.metrics["split"]["train"], "val": 400, "test": 400}
    lines = (tmp_path / "run" / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] is None and config["model_class"].endswith("PerStep")
    assert config["data_fingerprint"] == rec.fingerprint() and config["seed"] == 0


def test_a_failed_run_leaves_the_previous_run_folder_as_it_was(tmp_path):
    rec = linear_recording()
    fit(_model(), rec, epochs=2, batch_size=64, progress=False, out=tmp_path / "run")
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    calls = []

    def failing(out, target):  # fails in the second epoch, after one epoch was logged
        calls.append(1)
        if len(calls) > 30:
            raise RuntimeError("out of memory")
        return F.mse_loss(out, target)

    with pytest.raises(RuntimeError, match="out of memory"):
        fit(_model(seed=1), rec, epochs=3, batch_size=64, progress=False, loss=failing,
            out=tmp_path / "run")  # fmt: skip
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staged folder left


def test_classifier_metrics_and_chance_level(tmp_path):
    rec = binary_recording()
    torch.manual_seed(0)
    res = fit(PerStep(3, 1), rec, epochs=3, batch_size=64, lr=2e-2, progress=False)
    test = res.metrics["test"]
    assert set(test) == SCORE_KEYS | {"accuracy", "balanced_accuracy", "f1", "auc", "majority_rate"}
    assert res.metrics["monitor"] == "balanced_accuracy" and res.metrics["task"] == "binary"
    assert test["auc"] > 0.9 and test["accuracy"] > test["majority_rate"]


def test_multiclass_labels_train_with_cross_entropy():
    rng = np.random.default_rng(0)
    T = 1500
    labels = rng.integers(0, 3, size=T)
    x = np.eye(3, dtype=np.float32)[labels] * 2 + 0.5 * rng.normal(size=(T, 3)).astype(np.float32)
    rec = Recording(x=x, bin_ms=33.0, modality="calcium", labels=labels,
                    segment=np.arange(T) // 100, split=_split(T, 100))  # fmt: skip
    torch.manual_seed(0)
    res = fit(PerStep(3, 3), rec, epochs=3, batch_size=64, lr=2e-2, progress=False)
    assert res.metrics["task"] == "multiclass"
    assert res.metrics["test"]["accuracy"] > 0.9 > 0.5 > res.metrics["test"]["majority_rate"]


def test_same_seed_same_weights_different_seed_different():
    rec = linear_recording(T=1200)
    kw = dict(epochs=2, batch_size=64, progress=False)
    a = fit(_model(), rec, seed=3, **kw).model.state_dict()
    b = fit(_model(), rec, seed=3, **kw).model.state_dict()
    c = fit(_model(), rec, seed=4, **kw).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_early_stopping_keeps_the_best_validation_weights():
    # a loss that pushes the model AWAY from the targets: validation R² falls every epoch,
    # so the first epoch is the best and patience 2 stops the run after epoch 3
    rec = linear_recording(T=1200)
    res = fit(
        _model(),
        rec,
        epochs=20,
        patience=2,
        batch_size=64,
        lr=1e-2,
        progress=False,
        loss=lambda out, target: -F.mse_loss(out, target),
    )
    r2 = [row["val_r2"] for row in res.history]
    assert len(r2) == 3 and r2[0] > r2[1] > r2[2]
    assert res.best_epoch == 1
    assert res.metrics["val"]["r2"] == pytest.approx(r2[0], abs=1e-12)


def test_poisson_jitter_replaces_about_p_of_the_elements():
    x = torch.full((200, 50), 7.0)
    rng = np.random.default_rng(0)
    assert torch.equal(poisson_jitter(x, 0.0, rng), x)
    out = poisson_jitter(x, 0.5, rng)
    changed = (out != x).float().mean().item()
    # P(Poisson(7) == 7) ≈ 0.149, so about 0.5 · 0.851 of the elements change
    assert 0.40 < changed < 0.46
    assert torch.all(out == out.round()) and out.min() >= 0
    assert torch.equal(x, torch.full((200, 50), 7.0))  # the input is left untouched


def test_align_per_step_and_end_of_window_outputs():
    target = torch.zeros(5, 4, 2)
    out, t = align(torch.ones(5, 4, 2), target, "regression")
    assert out.shape == t.shape == (5, 4, 2)
    out, t = align(torch.ones(5, 2), target, "regression")
    assert t.shape == (5, 2)
    out, t = align(torch.ones(5, 4, 1), torch.zeros(5, 4), "binary")
    assert out.shape == (5, 4)
    with pytest.raises(CortexEdgeError, match=r"output of shape \[5, 3\] does not match"):
        align(torch.ones(5, 3), target, "regression")


def test_bad_inputs_raise_clear_errors():
    rec = linear_recording(T=1200)
    with pytest.raises(CortexEdgeError, match="monitor: 'auc' is not one of r2, corr"):
        fit(_model(), rec, epochs=1, progress=False, monitor="auc")
    with pytest.raises(CortexEdgeError, match="data: unknown key 'bin_width' for sliding"):
        fit(_model(), rec, epochs=1, progress=False, data={"bin_width": 4})
    with pytest.raises(
        CortexEdgeError, match="train.batch_size: expected a positive integer, got 0"
    ):
        fit(_model(), rec, epochs=1, progress=False, batch_size=0)
    with pytest.raises(CortexEdgeError, match="train.augment_poisson: expected a probability"):
        fit(_model(), rec, epochs=1, progress=False, augment_poisson=1.5)
    with pytest.raises(CortexEdgeError, match="task: classification needs labels"):
        fit(_model(), rec, epochs=1, progress=False, task="classification")
    no_val = Recording(
        x=rec.x, bin_ms=4.0, y=rec.y, segment=rec.segment, split={"train": rec.split["train"]}
    )
    with pytest.raises(CortexEdgeError, match="recording has no 'val' rows"):
        fit(_model(), no_val, epochs=1, progress=False)


def test_family_spec_rejects_the_wrong_modality():
    from cortexedge.train.models.registry import build_model

    model = build_model("aegru", in_channels=3, out_dim=1)
    with pytest.raises(CortexEdgeError, match="model 'aegru' trains on spikes recordings"):
        fit(model, binary_recording(), epochs=1, progress=False)


def _imaging(shape: tuple[int, ...], labels: np.ndarray, modality: str) -> Recording:
    rng = np.random.default_rng(0)
    T = len(labels)
    x = rng.normal(size=(T, *shape)).astype(np.float32)
    x[labels.reshape(T, -1)[:, 0] == 1] += 0.8  # a visible effect of the first label
    return Recording(
        x=x,
        bin_ms=33.0,
        modality=modality,
        labels=labels,
        segment=np.arange(T) // 100,
        split=_split(T, 100),
    )


@pytest.mark.parametrize(
    "name, kw, make, data, expected_pre",
    [
        ("aegru", {"in_channels": 4, "out_dim": 2, "bin_width": 3, "num_steps": 4},
         lambda: linear_recording(T=1200), None,
         {"windowing": "binned", "bin_width": 3, "num_steps": 4}),
        ("cnn_bilstm", {"in_channels": 6, "lookback": 12, "conv_channels": 4, "hidden": 4},
         lambda: _imaging((6,), (np.arange(1200)[:, None] // np.array([[7, 11]])) % 2, "calcium"),
         None, {"windowing": "sliding", "length": 12}),
        ("cnn_rnn", {"frame_shape": [8, 8], "conv_channels": [2, 4], "hidden": 4},
         lambda: _imaging((8, 8), (np.arange(1200) // 9) % 2, "widefield"), {"length": 5},
         {"windowing": "sliding", "length": 5}),
        ("roi_gru", {"in_channels": 5, "hidden": 4},
         lambda: _imaging((5,), (np.arange(1200) // 9) % 2, "calcium"), None,
         {"windowing": "sliding", "length": 31}),
    ],
)  # fmt: skip
def test_every_family_spec_trains(name, kw, make, data, expected_pre):
    from cortexedge.train.models.registry import build_model

    torch.manual_seed(0)
    res = fit(build_model(name, **kw), make(), epochs=1, progress=False, data=data)
    assert res.config["preprocessing"] == {**expected_pre, "train_stride": 1}
    assert res.config["family"] == name and len(res.history) == 1
    metric = "r2" if name == "aegru" else "balanced_accuracy"
    assert np.isfinite(res.metrics["test"][metric])


def test_aegru_window_must_match_the_model():
    from cortexedge.train.models.registry import build_model

    model = build_model("aegru", in_channels=4, out_dim=2, bin_width=3, num_steps=4)
    with pytest.raises(
        CortexEdgeError, match="data.bin_width=5 contradicts the model's bin_width=3"
    ):
        fit(model, linear_recording(T=1200), epochs=1, progress=False, data={"bin_width": 5})


def test_gru_trains_on_the_rows_it_streams():
    """GRU/LSTM decoders step one row at a time, so their training windows are raw rows."""
    from cortexedge.train.data.synth import generate
    from cortexedge.train.models.registry import build_model
    from cortexedge.train.specs import spec_for

    rec = generate("reaching", seed=0, channels=8, minutes=0.25)
    for family in ("gru", "lstm"):
        spec = spec_for(family)
        model = build_model(family, in_channels=8)
        w = spec.windows(rec, "train", **spec.data_for(model))
        end = int(w.ends[3])
        np.testing.assert_array_equal(w.x[3], rec.x[end - w.x.shape[1] + 1 : end + 1])
