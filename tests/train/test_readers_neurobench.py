"""NeuroBench primate reaching reader on hand-built O'Doherty-schema (MATLAB v7.3 / HDF5) files.

Every expected array below is worked out by hand from NeuroBench 2.3's rules, with spike times
kept well inside their 4 ms bins. With edges e[m] = t[0] - bin_width + 4 ms * m and the +1
shift, row j of a bin_width = 4 ms recording marks a spike in [t[j-2], t[j-1]).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data import neurobench
from cortexedge.train.data.readers import read

T8 = 1.0 + 0.004 * np.arange(8)
CURSOR = np.array([[0, 1, 3, 6, 10, 10, 10, 12], [5, 5, 5, 4, 2, 0, 0, 0]], dtype=np.float64)
TARGET = np.array([[1, 1, 1, 2, 2, 2, 2, 3], [0, 0, 0, 0, 0, 5, 5, 5]], dtype=np.float64)


def write_odoherty(path: Path, spikes, t=T8, cursor=CURSOR, target=TARGET, skip=()) -> Path:
    """Write a MATLAB v7.3-like file: `spikes[unit][channel]` is a list of times or None (empty).

    As h5py shows real files: spikes [n_units, n_channels] references, t [1, T], positions
    [2, T]; an empty cell is MATLAB's uint64 dimension pair with the `MATLAB_empty` attribute.
    """
    with h5py.File(path, "w") as f:
        refs_group = f.create_group("#refs#")
        refs = np.empty((len(spikes), len(spikes[0])), dtype=object)
        for u, row in enumerate(spikes):
            for c, times in enumerate(row):
                if times is None:
                    ds = refs_group.create_dataset(f"u{u}c{c}", data=np.zeros(2, np.uint64))
                    ds.attrs["MATLAB_empty"] = np.uint8(1)
                else:
                    ds = refs_group.create_dataset(f"u{u}c{c}", data=np.asarray([times], float))
                refs[u, c] = ds.ref
        arrays = {"spikes": refs, "t": np.asarray(t)[None, :], "cursor_pos": cursor}
        arrays["target_pos"] = target
        for name, data in arrays.items():
            if name in skip:
                continue
            dtype = h5py.ref_dtype if name == "spikes" else None
            f.create_dataset(name, data=data, dtype=dtype)
    return path


# two units x three channels; see the module docstring for the row rule
SPIKES = [
    [[1.002], [0.9975, 1.0225], [0.990, 1.0141, 1.0142]],
    [[1.003, 1.0105], None, [1.0299]],
]
X_EXPECTED = np.array(
    [[0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 1, 0]]
)


@pytest.fixture
def mat(tmp_path: Path) -> Path:
    return write_odoherty(tmp_path / "indy_test.mat", SPIKES)


def test_presence_or_over_units_and_shift(mat: Path) -> None:
    rec = read(mat)
    # ch0: unit 0 and unit 1 both spike in [t0, t1) -> one presence in row 2 (OR, not 2);
    # unit 1's 1.0105 in [t2, t3) -> row 4. ch1: 0.9975 in [t0 - 4 ms, t0) -> row 1 and
    # 1.0225 in [t5, t6) -> row 7; the empty cell adds nothing. ch2: 0.990 is before the first
    # edge, two spikes in [t3, t4) -> one presence in row 5, 1.0299 is past the last edge.
    np.testing.assert_array_equal(rec.x, X_EXPECTED)
    assert np.issubdtype(rec.x.dtype, np.integer)
    assert rec.bin_ms == 4.0 and rec.modality == "spikes"
    assert rec.meta["source"] == "neurobench_primate_reaching"
    assert rec.meta["file"] == "indy_test.mat"
    assert (rec.meta["bin_width"], rec.meta["train_ratio"], rec.meta["split_num"]) == (
        0.004,
        0.5,
        1,
    )


def test_box_filter_sums_presence(tmp_path: Path) -> None:
    # bin_width 12 ms -> 3 samples; edges e[m] = t[m - 3], presence[m] = spike in [t[m-4], t[m-3])
    # 0.9925 -> presence[2]; 1.0005 and 1.0015 -> presence[4] (once); 1.0085 -> presence[6];
    # 1.0205 -> presence[9]. presence = 0 0 1 0 1 0 1 0 0 1; x[j] = presence[j:j+3].sum()
    path = write_odoherty(tmp_path / "box.mat", [[[0.9925, 1.0005, 1.0015, 1.0085, 1.0205]]])
    rec = neurobench.read(path, bin_width=0.012)
    np.testing.assert_array_equal(rec.x[:, 0], [1, 1, 2, 1, 2, 1, 1, 1])
    assert rec.x.shape == (8, 1) and rec.meta["bin_width"] == 0.012


def test_velocity_is_unit_spacing_gradient(mat: Path) -> None:
    rec = read(mat)
    vx = [1.0, 1.5, 2.5, 3.5, 2.0, 0.0, 1.0, 2.0]  # one-sided at the ends, central inside
    vy = [0.0, 0.0, -0.5, -1.5, -2.0, -1.0, 0.0, 0.0]
    np.testing.assert_array_equal(rec.y, np.array([vx, vy], dtype=np.float32).T)
    assert rec.y.dtype == np.float32 and rec.target_names == ["vx", "vy"]


def test_velocity_matches_torch_gradient_bitwise(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    t = 5.0 + 0.004 * np.arange(50)
    cursor = np.cumsum(rng.normal(0, 3.3, (2, 50)), axis=1)
    path = write_odoherty(tmp_path / "g.mat", [[[5.01]]], t, cursor, np.zeros((2, 50)))
    ref = torch.gradient(torch.from_numpy(cursor).float(), dim=1)[0].numpy().T
    np.testing.assert_array_equal(read(path).y, ref)


def test_segments_start_at_the_last_sample_before_a_target_change(mat: Path) -> None:
    # target changes between samples 2|3, 4|5 and 6|7 -> new segments start at 2, 4 and 6
    rec = read(mat)
    np.testing.assert_array_equal(rec.segment, [0, 0, 1, 1, 2, 2, 3, 3])
    # 4 segments, train_ratio 0.5: floor(2) train, floor(2 / 2) = 1 val, 1 test
    np.testing.assert_array_equal(rec.split["train"], [0, 1, 2, 3])
    np.testing.assert_array_equal(rec.split["val"], [4, 5])
    np.testing.assert_array_equal(rec.split["test"], [6, 7])


def test_change_between_first_samples_makes_an_empty_segment() -> None:
    target = np.array([[0, 1, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(neurobench.segment_ids(target), [1, 1, 1, 1])


def test_split_chunks_and_leftover() -> None:
    segment = np.array([0, 1, 1, 2, 3, 3, 4])  # 5 segments in 2 chunks of int(5 / 2) = 2
    split = neurobench.neurobench_split(segment, train_ratio=0.5, split_num=2)
    # per chunk floor(0.5 * 2) = 1 train, floor(1 / 2) = 0 val, 1 test; segment 4 is left out
    np.testing.assert_array_equal(split["train"], [0, 3])
    np.testing.assert_array_equal(split["val"], [])
    np.testing.assert_array_equal(split["test"], [1, 2, 4, 5])


def test_split_seven_segments() -> None:
    split = neurobench.neurobench_split(np.arange(7), train_ratio=0.5, split_num=1)
    # floor(3.5) = 3 train, floor(4 / 2) = 2 val, 2 test
    assert [list(split[k]) for k in ("train", "val", "test")] == [[0, 1, 2], [3, 4], [5, 6]]


def test_matlab_empty_cell_adds_no_spike_at_time_zero(tmp_path: Path) -> None:
    # t starts at 0: NeuroBench would histogram the empty cell's [0, 0] into row 2
    t = 0.004 * np.arange(8)
    path = write_odoherty(tmp_path / "z.mat", [[None, [0.0105]]], t)
    np.testing.assert_array_equal(read(path).x, [[0, 0]] * 4 + [[0, 1]] + [[0, 0]] * 3)


def test_round_trip(mat: Path, tmp_path: Path) -> None:
    rec = read(mat)
    back = Recording.load(rec.save(tmp_path / "rec.npz"))
    np.testing.assert_array_equal(back.x, rec.x)
    np.testing.assert_array_equal(back.y, rec.y)
    np.testing.assert_array_equal(back.segment, rec.segment)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(back.split[name], rec.split[name])
    assert back.meta == rec.meta and back.target_names == rec.target_names


def test_corrupted_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.mat"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(RecordingError, match=r"bad\.mat: not a readable HDF5 file"):
        read(path, fmt="neurobench")


def test_truncated_file(mat: Path) -> None:
    data = mat.read_bytes()
    mat.write_bytes(data[: len(data) // 2])
    with pytest.raises(RecordingError, match=r"indy_test\.mat: not a readable HDF5 file .*trunc"):
        read(mat)


def test_missing_dataset(tmp_path: Path) -> None:
    path = write_odoherty(tmp_path / "m.mat", SPIKES, skip=("target_pos",))
    with pytest.raises(RecordingError, match=r"m\.mat: missing dataset 'target_pos'"):
        read(path, fmt="neurobench")
    with pytest.raises(RecordingError, match="no reader recognises this file"):
        read(path)


def test_nan_in_cursor(tmp_path: Path) -> None:
    cursor = CURSOR.copy()
    cursor[1, 3] = np.nan
    path = write_odoherty(tmp_path / "n.mat", SPIKES, cursor=cursor)
    with pytest.raises(
        RecordingError, match=r"cursor_pos: non-finite value \(NaN or inf\) at row 3"
    ):
        read(path)


def test_nan_spike_time(tmp_path: Path) -> None:
    path = write_odoherty(tmp_path / "s.mat", [[[1.002], [np.nan]]])
    with pytest.raises(RecordingError, match=r"spikes \(unit 0, channel 1\): non-finite spike"):
        read(path)


def test_wrong_shapes_and_spacing(tmp_path: Path) -> None:
    path = write_odoherty(tmp_path / "w.mat", SPIKES, cursor=CURSOR.T.copy())
    with pytest.raises(RecordingError, match=r"cursor_pos: expected numeric \[2, T=8\]"):
        read(path)
    path = write_odoherty(tmp_path / "r.mat", SPIKES, t=1.0 + 0.008 * np.arange(8))
    with pytest.raises(RecordingError, match="t: samples must be 4 ms apart"):
        read(path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bin_width": 0.002}, "bin_width: must be at least"),
        ({"train_ratio": 1.5}, r"train_ratio: must be in \[0, 1\]"),
        ({"split_num": 0}, "split_num: must be a positive integer"),
        ({"split_num": 9}, "split_num: 9 chunks for only 4 segments"),
    ],
)
def test_bad_parameters(mat: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(CortexEdgeError, match=message):
        neurobench.read(mat, **kwargs)
