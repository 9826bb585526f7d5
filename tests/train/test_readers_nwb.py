"""NWB reader on tiny files written with pynwb; the missing-extra error needs no pynwb."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data import nwb
from cortexedge.train.data.readers import read

STAMPS = 0.1 * np.arange(13)  # 0.0 .. 1.2 s -> twelve 100 ms bins
UNITS = ([0.05, 0.06, 0.31, 1.19], [0.15, 1.25, -0.1])
TRIALS = ((0.0, 0.3), (0.3, 0.6), (0.6, 0.9), (1.0, 1.2))


def write_nwb(path: Path, trials=(), units=UNITS, position=None, extra_series=()) -> Path:
    """Units with the given spike times and a Position SpatialSeries x = t^2, y = -t."""
    pynwb = pytest.importorskip("pynwb")
    from pynwb.behavior import Position

    f = pynwb.NWBFile("test", "id0", datetime(2024, 1, 1, tzinfo=UTC))
    for times in units:
        f.add_unit(spike_times=list(times))
    for start, stop in trials:
        f.add_trial(start_time=start, stop_time=stop)
    data = np.stack([STAMPS**2, -STAMPS], axis=1) if position is None else position
    behavior = f.create_processing_module("behavior", "behaviour")
    pos = Position(name="Position")
    pos.create_spatial_series(
        name="position", data=data, timestamps=STAMPS, reference_frame="origin", unit="m"
    )
    behavior.add(pos)
    for name in extra_series:
        behavior.add(pynwb.TimeSeries(name=name, data=np.ones(13), timestamps=STAMPS, unit="a"))
    with pynwb.NWBHDF5IO(str(path), "w") as io:
        io.write(f)
    return path


def test_counts_and_velocity_without_trials(tmp_path: Path) -> None:
    rec = read(write_nwb(tmp_path / "a.nwb"), bin_ms=100.0)
    assert rec.meta["source"] == "nwb" and rec.bin_ms == 100.0 and rec.x.shape == (12, 2)
    counts = np.zeros((12, 2), dtype=int)
    counts[0, 0], counts[3, 0], counts[11, 0] = 2, 1, 1  # 0.05 0.06 | 0.31 | 1.19
    counts[1, 1] = 1  # 0.15; 1.25 and -0.1 fall outside the bins
    np.testing.assert_array_equal(rec.x, counts)
    # gradient of t^2 on a 0.1 s grid is 2t inside, 0.1 and 2.3 at the ends; interpolated at
    # the bin centres 0.05 .. 1.15 it is 2c inside, 0.15 first and 2.25 last. y = -t -> -1.
    vx = [0.15, 0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.5, 1.7, 1.9, 2.1, 2.25]
    np.testing.assert_allclose(rec.y[:, 0], vx, rtol=1e-5)
    np.testing.assert_allclose(rec.y[:, 1], -1.0, rtol=1e-6)
    assert rec.target_names == ["vx", "vy"] and rec.meta["y_units"] == "m/s"
    # no trials: blocks of round(0.6 * 12) = 8 train, 2 val, 2 test bins
    np.testing.assert_array_equal(rec.segment, [0] * 8 + [1] * 2 + [2] * 2)
    np.testing.assert_array_equal(rec.split["test"], [10, 11])


def test_trials_give_segments_and_split(tmp_path: Path) -> None:
    rec = read(write_nwb(tmp_path / "t.nwb", trials=TRIALS), bin_ms=100.0)
    # bin centres 0.05..0.25 -> trial 0, ..., 0.95 lies between trials and is dropped
    np.testing.assert_array_equal(rec.segment, [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3])
    assert rec.x[:, 0].tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    trial_sets = [set(rec.segment[rows].tolist()) for rows in rec.split.values()]
    assert sorted(len(s) for s in trial_sets) == [1, 1, 2]  # 4 trials: 2 train, 1 val, 1 test
    assert set.union(*trial_sets) == {0, 1, 2, 3}
    back = Recording.load(rec.save(tmp_path / "rec.npz"))
    np.testing.assert_array_equal(back.x, rec.x)
    np.testing.assert_array_equal(back.y, rec.y)
    assert back.meta == rec.meta


def test_choosing_the_behaviour_series(tmp_path: Path) -> None:
    path = write_nwb(tmp_path / "v.nwb", extra_series=("hand_vel",))
    rec = read(path, bin_ms=100.0)  # the only "vel" series wins and is used as is
    assert rec.meta["behaviour"] == "hand_vel" and rec.target_names == ["hand_vel_x"]
    np.testing.assert_array_equal(rec.y, np.ones((12, 1), np.float32))
    path = write_nwb(tmp_path / "two.nwb", extra_series=("a_vel", "b_vel"))
    with pytest.raises(
        RecordingError, match=r"cannot choose among behaviour series \['a_vel', 'b_vel', "
    ):
        read(path)
    assert nwb.read(path, behaviour="position").meta["behaviour"] == "position"
    with pytest.raises(RecordingError, match="behaviour 'speed' not found"):
        nwb.read(path, behaviour="speed")


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"no units table"):
        read(write_nwb(tmp_path / "u.nwb", units=()))
    bad = np.stack([STAMPS, STAMPS], axis=1)
    bad[5, 0] = np.nan
    with pytest.raises(RecordingError, match=r"position: non-finite value \(NaN or inf\) at row 5"):
        read(write_nwb(tmp_path / "n.nwb", position=bad))
    path = write_nwb(tmp_path / "c.nwb")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingError, match=r"c\.nwb: not a readable HDF5 file"):
        read(path, fmt="nwb")
    with pytest.raises(CortexEdgeError, match="bin_ms: must be a positive number"):
        nwb.read(write_nwb(tmp_path / "b.nwb"), bin_ms=0)


def test_missing_extra_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynwb", None)  # import pynwb now raises ImportError
    path = tmp_path / "x.nwb"
    path.write_bytes(b"")
    with pytest.raises(CortexEdgeError, match=r"optional extra: pip install 'cortexedge\[nwb\]'"):
        nwb.read(path)
