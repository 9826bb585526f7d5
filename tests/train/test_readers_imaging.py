"""Calcium and widefield readers: schema, segments, grouped and time-block splits, errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data import imaging
from cortexedge.train.data.readers import read


def calcium_arrays() -> dict[str, np.ndarray]:
    """12 frames of 3 cells at 10 Hz, three sessions of four frames, two trials per session."""
    return {
        "dff": np.arange(36, dtype=np.float32).reshape(12, 3) / 10,
        "labels": np.array([0, 1, 2, 0] * 3, dtype=np.int64),
        "fs_hz": np.array(10.0),
        "session": np.repeat([4, 5, 6], 4).astype(np.int32),
        "trial": np.array([0, 0, 1, 1] * 3, dtype=np.int32),
    }


def save_npz(tmp_path: Path, arrays: dict, name: str = "ca.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def save_h5(tmp_path: Path, arrays: dict, name: str = "wf.h5") -> Path:
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def test_calcium_segments_and_session_split(tmp_path: Path) -> None:
    a = calcium_arrays()
    rec = read(save_npz(tmp_path, a))
    assert rec.modality == "calcium" and rec.bin_ms == 100.0 and rec.task == "classification"
    np.testing.assert_array_equal(rec.x, a["dff"])
    np.testing.assert_array_equal(rec.labels, a["labels"])
    # a new segment at every trial or session change: rows 0-1, 2-3, 4-5, ...
    np.testing.assert_array_equal(rec.segment, np.repeat(np.arange(6), 2))
    # "auto" -> 3 sessions -> one whole session per set
    assert rec.meta["split"]["by"] == "session"
    sets = sorted(tuple(np.unique(a["session"][rows])) for rows in rec.split.values())
    assert sets == [(4,), (5,), (6,)]
    assert all(len(rows) == 4 for rows in rec.split.values())


def test_split_by_trial_nests_inside_session(tmp_path: Path) -> None:
    a = calcium_arrays()
    rec = imaging.read_calcium(save_npz(tmp_path, a), split_by="trial", seed=2)
    # 6 (session, trial) groups: round(0.2 * 6) = 1 val, 1 test, 4 train, two rows each
    assert [len(rec.split[k]) for k in ("train", "val", "test")] == [8, 2, 2]
    for rows in rec.split.values():
        pairs = {(a["session"][r], a["trial"][r]) for r in rows}
        assert len(pairs) * 2 == len(rows)  # whole (session, trial) groups only


def test_widefield_hdf5_time_blocks(tmp_path: Path) -> None:
    frames = np.arange(10 * 4 * 5, dtype=np.uint16).reshape(10, 4, 5)
    labels = np.array([[0, 1], [1, 1], [0, 0], [1, 0], [0, 1]] * 2, dtype=np.int8)
    path = save_h5(tmp_path, {"frames": frames, "labels": labels, "bin_ms": np.float64(50.0)})
    rec = read(path)
    assert rec.modality == "widefield" and rec.input_shape == (4, 5) and rec.bin_ms == 50.0
    np.testing.assert_array_equal(rec.x, frames)
    np.testing.assert_array_equal(rec.labels, labels)
    # no ids: blocks of round(0.6 * 10) = 6 train, 2 val, 2 test rows; segments end with them
    np.testing.assert_array_equal(rec.segment, [0] * 6 + [1] * 2 + [2] * 2)
    np.testing.assert_array_equal(rec.split["train"], np.arange(6))
    np.testing.assert_array_equal(rec.split["val"], [6, 7])
    np.testing.assert_array_equal(rec.split["test"], [8, 9])
    assert rec.meta["split"]["by"] == "time"


def test_round_trip(tmp_path: Path) -> None:
    rec = read(save_npz(tmp_path, calcium_arrays()))
    back = Recording.load(rec.save(tmp_path / "rec.npz"))
    np.testing.assert_array_equal(back.x, rec.x)
    np.testing.assert_array_equal(back.labels, rec.labels)
    np.testing.assert_array_equal(back.segment, rec.segment)
    for name in rec.split:
        np.testing.assert_array_equal(back.split[name], rec.split[name])
    assert back.meta == rec.meta and back.modality == "calcium"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": None}, r"missing array\(s\) \['labels'\]"),
        ({"frames": np.zeros((12, 2, 2))}, "file holds both 'dff' and 'frames'; keep one"),
        ({"dff": np.zeros(12)}, r"dff: expected \[T, N\], got shape \(12,\)"),
        ({"dff": np.zeros((12, 3), np.int16)}, "dff: expected float"),
        ({"labels": np.zeros(12)}, "labels: expected integers, got dtype float64"),
        ({"labels": np.zeros(11, np.int64)}, r"labels: expected \[T=12\]"),
        ({"fs_hz": None}, "timing: give exactly one of 'fs_hz' and 'bin_ms'"),
        ({"bin_ms": np.array(10.0)}, "timing: give exactly one of 'fs_hz' and 'bin_ms'"),
        ({"fs_hz": np.array(-1.0)}, "fs_hz: must be a positive number"),
        ({"session": np.zeros(5, np.int32)}, r"session: expected shape \(12,\)"),
    ],
)
def test_wrong_schema(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(RecordingError, match=message):
        read(save_npz(tmp_path, calcium_arrays() | changes), fmt="calcium")


def test_nan_in_dff(tmp_path: Path) -> None:
    a = calcium_arrays()
    a["dff"][4, 2] = np.nan
    with pytest.raises(
        RecordingError, match=r"ca\.npz: dff: non-finite value \(NaN or inf\) at row 4"
    ):
        read(save_npz(tmp_path, a))


def test_split_by_choices(tmp_path: Path) -> None:
    path = save_npz(tmp_path, calcium_arrays() | {"session": None})
    with pytest.raises(RecordingError, match="split_by='session': the file has no 'session' array"):
        imaging.read_calcium(path, split_by="session")
    with pytest.raises(CortexEdgeError, match="split_by: 'day' is not one of"):
        imaging.read_calcium(path, split_by="day")
    # only two trials without sessions: too few for three sets
    with pytest.raises(RecordingError, match=r"split: only 2 trial\(s\), too few"):
        imaging.read_calcium(path, split_by="trial")
    assert imaging.read_calcium(path).meta["split"]["by"] == "time"  # auto falls back


def test_truncated_hdf5(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).random((64, 16, 16))
    path = save_h5(tmp_path, {"frames": frames, "labels": np.zeros(64, int), "fs_hz": 20.0})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingError, match=r"wf\.h5: not a readable HDF5 file .*trunc"):
        read(path, fmt="widefield")
