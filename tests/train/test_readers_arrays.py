"""A lab's own file: MATLAB v5 / v7.3, .npz and HDF5 arrays by name, through `data convert`."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

from cortexedge.cli.main import main
from cortexedge.errors import RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.arrays import orient, read


def _counts(rows: int = 400, channels: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(1.5, size=(rows, channels)).astype(np.float64)  # counts stored as doubles
    y = x @ rng.normal(size=(channels, 2)) + rng.normal(scale=0.1, size=(rows, 2))
    return x, y


def _convert(capsys, *args) -> tuple[int, str, str]:
    code = main(["data", "convert", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_matlab_v5_channels_first_converts_time_first(tmp_path, capsys):
    x, y = _counts()
    mat = tmp_path / "lab.mat"
    scipy.io.savemat(mat, {"spk": x.T, "kin": y.T})  # channels-first, as many lab files are
    out = tmp_path / "lab.npz"
    code, stdout, err = _convert(
        capsys, mat, "--x", "spk", "--y", "kin", "--bin-ms", 20, "--out", out
    )
    assert code == 0, err
    rec = Recording.load(out)
    np.testing.assert_array_equal(rec.x, x.astype(np.float32))
    np.testing.assert_allclose(rec.y, y.astype(np.float32))
    assert rec.bin_ms == 20.0 and rec.modality == "spikes"
    # contiguous 70/15/15 blocks, in time order, and no window crosses a block
    assert {k: len(v) for k, v in rec.split.items()} == {"train": 280, "val": 60, "test": 60}
    assert rec.split["train"].max() < rec.split["val"].min() < rec.split["test"].min()
    assert len(np.unique(rec.segment)) == 3
    assert "channels-first" in stdout
    assert rec.summary()["read"]["orientation"] == "channels-first (transposed)"


def test_matlab_v73_through_hdf5_and_npz_by_key(tmp_path):
    x, y = _counts(rows=300)
    v73 = tmp_path / "lab73.mat"
    with h5py.File(v73, "w") as f:  # MATLAB v7.3 writes column-major: arrays arrive transposed
        f["neural"], f["behav"], f["bin_ms"] = x.T, y.T, np.array([[25.0]])
    npz = tmp_path / "lab.npz"
    np.savez(npz, neural=x, behav=y)
    for path, kwargs in ((v73, {}), (npz, {"bin_ms": 25.0})):
        rec = read(path, x="neural", y="behav", split="time:0.6,0.2,0.2", **kwargs)
        np.testing.assert_array_equal(rec.x, x.astype(np.float32))
        assert rec.bin_ms == 25.0 and len(rec.split["test"]) == 60


def test_the_shared_50ms_mat_converts(real_s1_mat_path, tmp_path, capsys):
    out = tmp_path / "s1.npz"
    code, _, err = _convert(capsys, real_s1_mat_path, "--x", "spikes", "--y", "vel",
                            "--bin-ms", 50, "--out", out)  # fmt: skip
    assert code == 0, err
    rec = Recording.load(out)
    assert rec.x.shape == (35129, 52) and rec.y.shape == (35129, 2) and rec.bin_ms == 50.0
    assert float(rec.x.max()) == 15.0 and np.array_equal(rec.x, np.round(rec.x))


def test_rates_are_refused_with_the_way_out(tmp_path, capsys):
    x, y = _counts()
    mat = tmp_path / "rates.mat"
    scipy.io.savemat(mat, {"rate": x / 0.02 + 0.37, "kin": y})
    code, _, err = _convert(capsys, mat, "--x", "rate", "--y", "kin", "--bin-ms", 20,
                            "--out", tmp_path / "r.npz")  # fmt: skip
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not a whole count (firing rates or smoothed counts?)" in err
    assert "--continuous" in err and not (tmp_path / "r.npz").exists()
    code, _, err = _convert(capsys, mat, "--x", "rate", "--y", "kin", "--bin-ms", 20,
                            "--continuous", "--out", tmp_path / "r.npz")  # fmt: skip
    assert code == 0, err
    assert Recording.load(tmp_path / "r.npz").modality == "calcium"


def test_scaled_counts_are_named():
    x, y = _counts()
    with pytest.raises(RecordingError, match=r"counts × 0\.25\?"):
        read_arrays_from(x * 0.25, y)


def read_arrays_from(x, y, **kwargs):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.npz"
        np.savez(path, x=x, y=y)
        return read(path, x="x", y="y", bin_ms=10.0, **kwargs)


def test_orientation_errors():
    with pytest.raises(RecordingError, match="more than one axis could be time"):
        orient(np.zeros((50, 50)), np.zeros((50, 2)), ("x", "y"))
    with pytest.raises(RecordingError, match="share no axis length"):
        orient(np.zeros((50, 8)), np.zeros((49, 2)), ("x", "y"))
    xs, ys, how = orient(np.zeros((8, 50)), np.zeros(50), ("x", "y"))  # a vector target
    assert xs.shape == (50, 8) and ys.shape == (50, 1) and how.startswith("channels-first")


def test_test_arrays_and_trials(tmp_path):
    x, y = _counts(rows=200)
    tx, ty = _counts(rows=50, seed=1)
    rec = read_arrays_from(np.concatenate([x, tx]), np.concatenate([y, ty]))
    assert sum(len(v) for v in rec.split.values()) == 250
    path = tmp_path / "t.npz"
    np.savez(path, x=x, y=y, tx=tx, ty=ty, trial=np.repeat(np.arange(20), 10))
    rec = read(path, x="x", y="y", test_x="tx", test_y="ty", bin_ms=10.0)
    np.testing.assert_array_equal(rec.x[rec.split["test"]], tx.astype(np.float32))
    assert len(rec.split["train"]) + len(rec.split["val"]) == 200
    rec = read(path, x="x", y="y", trials="trial", bin_ms=10.0)
    trial = np.repeat(np.arange(20), 10)
    sets = [set(trial[rec.split[k]]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--x", "spk", "--y", "kin"], "does not store its bin width: pass --bin-ms MS"),
        (["--x", "nope", "--y", "kin", "--bin-ms", "5"], "missing array(s) ['nope']"),
        (["--x", "spk", "--bin-ms", "5"], "--x and --y name the input and target arrays"),
        (
            ["--x", "spk", "--y", "kin", "--bin-ms", "5", "--split", "time:0.5,0.5"],
            "TRAIN,VAL,TEST",
        ),
        (["--x", "spk", "--y", "kin", "--bin-ms", "5", "--test-x", "spk"], "go together"),
    ],
)
def test_user_mistakes_are_one_line(tmp_path, capsys, args, message):
    x, y = _counts()
    mat = tmp_path / "lab.mat"
    scipy.io.savemat(mat, {"spk": x, "kin": y})
    before = mat.read_bytes()
    code, _, err = _convert(capsys, mat, *args, "--out", tmp_path / "o.npz")
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert mat.read_bytes() == before and not (tmp_path / "o.npz").exists()


def test_out_may_not_be_the_input(tmp_path, capsys):
    x, y = _counts()
    path = tmp_path / "lab.npz"
    np.savez(path, spk=x, kin=y)
    before = path.read_bytes()
    code, _, err = _convert(capsys, path, "--x", "spk", "--y", "kin", "--bin-ms", 5, "--out", path)
    assert code == 2 and "is the input" in err and path.read_bytes() == before


@pytest.mark.parametrize("keep, message", [(-100, "not a readable"), (300, "missing array")])
def test_truncated_mat_is_one_error(tmp_path, keep, message):
    x, y = _counts()
    mat = tmp_path / "lab.mat"
    scipy.io.savemat(mat, {"spk": x, "kin": y})
    mat.write_bytes(mat.read_bytes()[:keep])  # cut inside the last array, or after the first
    with pytest.raises(RecordingError, match=message):
        read(mat, x="spk", y="kin", bin_ms=5.0)
