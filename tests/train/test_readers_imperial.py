"""Imperial reaching reader: a hand-built file with literal velocities, errors and real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cortexedge.errors import RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data import imperial
from cortexedge.train.data.readers import read

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
REAL_FILE = REAL / "imperial_reaching_20ms.npz"


def make_arrays() -> dict[str, np.ndarray]:
    """10 trials (ids 11..20), 3 rows each; trials 11..15 reach direction 1, 16..20 direction 2."""
    trial = np.repeat(np.arange(11, 21), 3).astype(np.int16)
    n = len(trial)
    pos = np.zeros((n, 3), dtype=np.float32)
    pos[:3] = [[0.0, 1.0, 9.0], [0.1, 1.0, 9.0], [0.3, 0.8, 9.0]]  # trial 11
    pos[3:] = np.arange(3 * (n - 3), dtype=np.float32).reshape(n - 3, 3)
    return {
        "spikes": (np.arange(n * 4) % 5).astype(np.uint8).reshape(n, 4),
        "hand_pos": pos,
        "direction": np.where(trial <= 15, 1, 2).astype(np.int8),
        "trial": trial,
        "bin_ms": np.array(20, dtype=np.int16),
    }


def save(tmp_path: Path, name: str = "reach.npz", **changes) -> Path:
    arrays = make_arrays() | changes
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_velocity_rows_and_segments(tmp_path: Path) -> None:
    a = make_arrays()
    rec = read(save(tmp_path))
    assert rec.meta["source"] == "imperial_reaching" and rec.bin_ms == 20.0
    assert rec.x.shape == (20, 4) and rec.y.shape == (20, 2)  # 30 rows minus 10 first rows
    # trial 11: x 0 -> 0.1 -> 0.3 and y 1 -> 1 -> 0.8 mm over 20 ms bins, in m/s
    np.testing.assert_allclose(rec.y[:2], [[0.005, 0.0], [0.010, -0.010]], rtol=1e-5, atol=1e-7)
    # later trials: x and y both step by 3 mm per row -> 0.15 m/s
    np.testing.assert_allclose(rec.y[2:], 0.150, rtol=1e-6)
    np.testing.assert_array_equal(rec.x[:2], a["spikes"][1:3])  # first row of the trial dropped
    np.testing.assert_array_equal(rec.segment, np.repeat(np.arange(11, 21), 2))
    assert rec.meta["trial_direction"] == {str(k): 1 if k <= 15 else 2 for k in range(11, 21)}


def test_split_whole_trials_stratified_and_seeded(tmp_path: Path) -> None:
    rec = read(save(tmp_path))
    trials = {name: set(rec.segment[rows]) for name, rows in rec.split.items()}
    assert not (trials["train"] & trials["val"] or trials["train"] & trials["test"])
    assert not trials["val"] & trials["test"]
    # 5 trials per direction: round(0.2 * 5) = 1 val, 1 test, 3 train in each direction
    for name, count in (("train", 3), ("val", 1), ("test", 1)):
        assert sum(t <= 15 for t in trials[name]) == count
        assert sum(t > 15 for t in trials[name]) == count
    again = imperial.read(save(tmp_path, "again.npz"), seed=0)
    for name in rec.split:
        np.testing.assert_array_equal(rec.split[name], again.split[name])
    other = [imperial.read(save(tmp_path), seed=s).split["test"] for s in range(1, 6)]
    assert any(not np.array_equal(o, rec.split["test"]) for o in other)


def test_round_trip(tmp_path: Path) -> None:
    rec = read(save(tmp_path))
    back = Recording.load(rec.save(tmp_path / "rec.npz"))
    np.testing.assert_array_equal(back.x, rec.x)
    np.testing.assert_array_equal(back.y, rec.y)
    np.testing.assert_array_equal(back.segment, rec.segment)
    for name in rec.split:
        np.testing.assert_array_equal(back.split[name], rec.split[name])
    assert back.meta == rec.meta


def test_detection_needs_exactly_the_five_arrays(tmp_path: Path) -> None:
    assert imperial.detect(save(tmp_path))
    assert not imperial.detect(save(tmp_path, "extra.npz", extra=np.zeros(3)))
    assert not imperial.detect(save(tmp_path, "less.npz", direction=None))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"direction": None}, r"missing array\(s\) \['direction'\]"),
        (
            {"trial": np.r_[np.repeat(np.arange(11, 21), 3)[:-1], 11].astype(np.int16)},
            "trial: rows of trial 11 are not contiguous",
        ),
        (
            {"direction": np.r_[np.ones(4), 2 * np.ones(26)].astype(np.int8)},
            r"direction: changes inside trial 12 \(row 4\)",
        ),
        ({"spikes": np.zeros((30, 4), np.float32)}, "spikes: expected integers"),
        ({"bin_ms": np.array(0)}, "bin_ms: expected a positive scalar"),
    ],
)
def test_wrong_schema(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        read(save(tmp_path, **changes), fmt="imperial")


def test_nan_in_hand_pos(tmp_path: Path) -> None:
    pos = make_arrays()["hand_pos"]
    pos[7, 1] = np.nan
    with pytest.raises(RecordingError, match=r"hand_pos: non-finite value \(NaN or inf\) at row 7"):
        read(save(tmp_path, hand_pos=pos))


def test_truncated_and_corrupted(tmp_path: Path) -> None:
    path = save(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        RecordingError, match=r"reach\.npz: not a readable \.npz, HDF5 or MATLAB file"
    ):
        read(path, fmt="imperial")
    path.write_bytes(np.random.default_rng(1).bytes(2000))
    with pytest.raises(RecordingError, match=r"not a readable \.npz, HDF5 or MATLAB file"):
        read(path)


@pytest.fixture(scope="module")
def real() -> tuple[Recording, dict[str, np.ndarray]]:
    if not REAL_FILE.is_file():
        pytest.skip(f"real data absent: {REAL_FILE}")
    with np.load(REAL_FILE) as z:
        raw = {k: z[k] for k in z.files}
    return read(REAL_FILE), raw


def test_real_shapes_and_split(real) -> None:
    rec, raw = real
    n_trials = len(np.unique(raw["trial"]))
    assert n_trials == 800
    assert rec.x.shape == (18203 - 800, 98) and rec.y.shape == (18203 - 800, 2)
    assert rec.x.dtype == np.uint8 and rec.bin_ms == 20.0
    trial_sets = {name: set(rec.segment[rows].tolist()) for name, rows in rec.split.items()}
    assert sum(len(s) for s in trial_sets.values()) == 800  # every trial in exactly one set
    assert len(set.union(*trial_sets.values())) == 800
    assert [len(trial_sets[k]) for k in ("train", "val", "test")] == [480, 160, 160]
    directions = rec.meta["trial_direction"]
    for name, count in (("train", 60), ("val", 20), ("test", 20)):
        per_dir = np.bincount([directions[str(t)] for t in trial_sets[name]], minlength=9)[1:]
        np.testing.assert_array_equal(per_dir, count)


def test_real_velocity_of_one_trial(real) -> None:
    rec, raw = real
    rows = np.flatnonzero(raw["trial"] == 37)
    pos = raw["hand_pos"][rows].astype(np.float64)
    expected = (
        np.array(
            [
                [(pos[i, 0] - pos[i - 1, 0]) / 0.020, (pos[i, 1] - pos[i - 1, 1]) / 0.020]
                for i in range(1, len(rows))
            ]
        )
        / 1000.0
    )  # mm/s -> m/s
    mine = rec.segment == 37
    np.testing.assert_allclose(rec.y[mine], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(rec.x[mine], raw["spikes"][rows[1:]])
