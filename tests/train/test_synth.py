"""Synthetic recordings: determinism, shapes, round trips, planted tuning, option errors."""

import inspect

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError
from cortexedge.metrics import r2_score
from cortexedge.recording import Recording
from cortexedge.train.data.synth import GENERATORS, LIMITS, default_recording, generate
from cortexedge.train.data.synth_widefield import AREAS, _area_maps
from cortexedge.train.data.windows import aegru_windows, box_sum

SMALL = {
    "reaching": {"minutes": 0.5},
    "two-photon": {"minutes": 0.5},
    "widefield": {"minutes": 0.5},
}


@pytest.fixture(scope="module")
def small() -> dict[str, Recording]:
    return {kind: generate(kind, seed=3, **opts) for kind, opts in SMALL.items()}


def _arrays(rec: Recording) -> dict[str, np.ndarray]:
    out = {"x": rec.x, "segment": rec.segment}
    out.update({f"split_{k}": v for k, v in rec.split.items()})
    out.update({k: v for k, v in (("y", rec.y), ("labels", rec.labels)) if v is not None})
    return out


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_same_seed_same_arrays_other_seed_differs(kind, small):
    again = _arrays(generate(kind, seed=3, **SMALL[kind]))
    for name, arr in _arrays(small[kind]).items():
        np.testing.assert_array_equal(arr, again[name], err_msg=name)
    other = generate(kind, seed=4, **SMALL[kind])
    assert other.x.shape == small[kind].x.shape
    assert not np.array_equal(other.x, small[kind].x)


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_save_load_round_trip(kind, small, tmp_path):
    rec = small[kind]
    back = Recording.load(rec.save(tmp_path / f"{kind}.npz"))
    for name, arr in _arrays(rec).items():
        loaded = _arrays(back)[name]
        assert loaded.dtype == arr.dtype, name
        np.testing.assert_array_equal(loaded, arr, err_msg=name)
    assert back.modality == rec.modality and back.bin_ms == rec.bin_ms
    assert back.label_names == rec.label_names and back.target_names == rec.target_names
    assert back.meta == rec.meta and back.fingerprint() == rec.fingerprint()


@pytest.mark.parametrize("kind", list(GENERATORS))
def test_split_keeps_segments_whole_and_covers_every_row(kind, small):
    rec = small[kind]
    owner = np.full(rec.n_bins, -1)
    for i, name in enumerate(("train", "val", "test")):
        assert len(rec.rows(name)) > 0
        owner[rec.rows(name)] = i
    assert (owner >= 0).all()
    for seg in np.unique(rec.segment):
        assert len(np.unique(owner[rec.segment == seg])) == 1, f"segment {seg} is split"


def test_reaching_shapes_rates_and_neurobench_split(small):
    rec = small["reaching"]
    assert rec.modality == "spikes" and rec.bin_ms == 4.0 and rec.n_bins == 7500
    assert rec.x.dtype == np.uint8 and rec.x.shape == (7500, 96)
    assert rec.y.dtype == np.float32 and rec.y.shape == (7500, 2)
    assert rec.target_names == ["vx", "vy"] and rec.labels is None
    assert (rec.x <= 1).mean() > 0.98  # mostly 0/1 per 4 ms, as in real data
    hz = rec.x.mean(axis=0) / 0.004
    assert 3 < hz.min() and hz.max() < 60
    # segments are consecutive ids; the first half trains, the next quarter validates
    assert np.all(np.diff(rec.segment) >= 0) and set(np.diff(rec.segment)) <= {0, 1}
    seg = {name: rec.segment[rec.rows(name)] for name in ("train", "val", "test")}
    n = rec.segment[-1] + 1
    assert seg["train"].max() == n // 2 - 1 and seg["val"].max() < seg["test"].min()
    # every target change is followed by a reach (peak speed well above rest jitter)
    full = np.unique(rec.segment)[:-1]
    peaks = [np.hypot(*rec.y[rec.segment == s].T).max() for s in full]
    assert min(peaks) > 0.5 and np.abs(rec.y).max() < 3


def test_reaching_192_channels():
    rec = generate("reaching", seed=0, channels=192, minutes=0.25)
    assert rec.x.shape == (3750, 192) and len(rec.channel_names) == 192


def test_reaching_units_are_tuned_to_their_preferred_direction():
    rec = generate("reaching", seed=0, minutes=2.0)
    kinds = np.array(rec.meta["unit_kinds"])
    pd = np.radians(rec.meta["preferred_direction_deg"])
    counts = box_sum(rec.x, 20, rec.segment)[:-25]  # 80 ms counts, leading velocity by 100 ms
    vel = rec.y[25:]
    fit = np.linalg.lstsq(np.c_[vel, np.ones(len(vel))], counts, rcond=None)[0]
    err = np.degrees(np.abs(np.angle(np.exp(1j * (np.arctan2(fit[1], fit[0]) - pd)))))
    assert np.median(err[kinds == "velocity"]) < 35  # recovered preferred directions
    assert np.median(err[kinds == "untuned"]) > 60  # chance is 90
    along = vel @ np.stack([np.cos(pd), np.sin(pd)])
    corr = np.array([np.corrcoef(counts[:, i], along[:, i])[0, 1] for i in range(96)])
    assert corr[kinds == "velocity"].mean() > 0.08
    assert abs(corr[kinds == "untuned"].mean()) < 0.03


def test_two_photon_shapes_and_multi_label_tuning(small):
    rec = small["two-photon"]
    assert rec.modality == "calcium" and rec.bin_ms == pytest.approx(1000 / 30)
    assert rec.x.dtype == np.float32 and rec.x.shape == (900, 150)
    assert rec.labels.shape == (900, 2) and set(np.unique(rec.labels)) == {0, 1}
    assert rec.label_names == ["left", "right"] and rec.y is None
    both = (rec.labels == 1).all(axis=1)
    assert both.any() and (rec.labels.sum(axis=1) == 1).any()  # multi-label, not one-hot
    rec = generate("two-photon", seed=0, minutes=3.0)
    kinds = np.array(rec.meta["neuron_kinds"])
    right = rec.labels[:, 1] == 1
    lift = rec.x[right].mean(axis=0) - rec.x[~right].mean(axis=0)  # ΔF/F during right moves
    assert lift[kinds == "contralateral"].mean() > 5 * abs(lift[kinds == "untuned"].mean())
    assert lift[kinds == "contralateral"].mean() > lift[kinds == "ipsilateral"].mean()
    assert (kinds == "untuned").mean() > 0.25


def test_widefield_shapes_mask_and_run_areas(small):
    rec = small["widefield"]
    assert rec.modality == "widefield" and rec.x.dtype == np.float32
    assert rec.x.shape == (900, 64, 64) and rec.input_shape == (64, 64)
    assert rec.labels.shape == (900,) and set(np.unique(rec.labels)) == {0, 1}
    assert rec.label_names == ["rest", "run"]
    areas, mask = _area_maps()
    assert (rec.x[:, ~mask] == 0).all() and 0.4 < mask.mean() < 0.8
    run = rec.labels == 1
    lift = {}  # run - rest ΔF/F in the core of each area, both hemispheres together
    for i, name in enumerate(list(AREAS) * 2):
        core = rec.x[:, areas[i] > 0.6].mean(axis=1)
        lift[name] = lift.get(name, 0.0) + core[run].mean() - core[~run].mean()
    top_two = sorted(lift, key=lift.get)[-2:]
    assert set(top_two) == {"S1-FL", "S1-HL"}


def test_generate_rejects_bad_kind_options_and_seed():
    with pytest.raises(CortexEdgeError, match=r"unknown synthetic kind 'eeg'; choose one of"):
        generate("eeg")
    with pytest.raises(CortexEdgeError, match=r"widefield: unknown option 'channels'"):
        generate("widefield", channels=16)
    with pytest.raises(
        CortexEdgeError, match="reaching: channels must be between 8 and 1024, got 0"
    ):
        generate("reaching", channels=0)
    with pytest.raises(CortexEdgeError, match="reaching: channels must be an integer, got 96.5"):
        generate("reaching", channels=96.5)
    with pytest.raises(CortexEdgeError, match="two-photon: minutes must be a number, got 'x'"):
        generate("two-photon", minutes="x")
    with pytest.raises(CortexEdgeError, match="widefield: minutes must be between 0.5 and 10"):
        generate("widefield", minutes=float("nan"))
    with pytest.raises(CortexEdgeError, match="seed must be a non-negative integer, got -1"):
        generate("reaching", seed=-1)


def test_limits_name_the_generator_options():
    for kind, gen in GENERATORS.items():
        params = set(inspect.signature(gen).parameters) - {"seed"}
        assert set(LIMITS[kind]) == params, kind


@pytest.mark.slow
def test_default_is_decodable_but_not_saturated():
    """The calibration the GRU-vs-ridge story rests on: a lagged ridge gets R² ≈ 0.55."""
    rec = default_recording()
    assert rec.x.shape == (135_000, 96) and rec.meta["source"] == "synthetic:reaching"
    win = {s: aegru_windows(rec, s, 20, 5, stride=2) for s in ("train", "test")}
    feats = {s: np.c_[w.x.reshape(len(w.x), -1), np.ones(len(w.x))] for s, w in win.items()}
    a = feats["train"]
    coef = np.linalg.solve(a.T @ a + 1e3 * np.eye(a.shape[1]), a.T @ win["train"].y[:, -1])
    r2 = r2_score(win["test"].y[:, -1], feats["test"] @ coef)
    assert 0.45 < r2 < 0.65
