"""Recording: validation names the wrong field; save/load round-trips; bad files fail clearly."""

from __future__ import annotations

import numpy as np
import pytest

from cortexedge.errors import RecordingError
from cortexedge.recording import FORMAT_VERSION, Recording


def _rec(**kw) -> Recording:
    rng = np.random.default_rng(0)
    args = dict(
        x=rng.poisson(0.3, size=(50, 4)).astype(np.int16),
        y=rng.normal(size=(50, 2)).astype(np.float32),
        bin_ms=4.0,
        segment=np.repeat(np.arange(5), 10),
        split={"train": np.arange(30), "val": np.arange(30, 40), "test": np.arange(40, 50)},
        target_names=["vx", "vy"],
    )
    args.update(kw)
    return Recording(**args)


def test_round_trip_spikes(tmp_path):
    rec = _rec(meta={"source": "unit"})
    loaded = Recording.load(rec.save(tmp_path / "r.npz"))
    np.testing.assert_array_equal(loaded.x, rec.x)
    assert loaded.x.dtype == np.int16
    np.testing.assert_array_equal(loaded.y, rec.y)
    np.testing.assert_array_equal(loaded.segment, rec.segment)
    for k in ("train", "val", "test"):
        np.testing.assert_array_equal(loaded.split[k], rec.split[k])
    assert loaded.channel_names == ["ch0", "ch1", "ch2", "ch3"]
    assert loaded.target_names == ["vx", "vy"]
    assert loaded.meta == {"source": "unit"}
    assert loaded.bin_ms == 4.0
    assert loaded.fingerprint() == rec.fingerprint()


def test_round_trip_widefield_multilabel(tmp_path):
    x = np.random.default_rng(1).normal(size=(20, 8, 8)).astype(np.float32)
    rec = Recording(x=x, labels=np.arange(20) % 2, bin_ms=33.3, modality="widefield")
    loaded = Recording.load(rec.save(tmp_path / "w.npz"))
    np.testing.assert_array_equal(loaded.x, x)
    assert loaded.task == "classification"
    assert loaded.input_shape == (8, 8)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"x": np.full((50, 4), -1)}, "x: spike counts must be non-negative, row 0"),
        ({"y": np.full((50, 2), np.nan, dtype=np.float32)}, "y: non-finite value .* at row 0"),
        ({"y": np.zeros((49, 2), np.float32)}, r"y: expected \[T=50, D\]"),
        ({"x": np.zeros((0, 4))}, "x: recording is empty"),
        ({"bin_ms": 0.0}, "bin_ms: must be a positive number"),
        ({"modality": "eeg"}, "modality: 'eeg' is not one of"),
        ({"segment": np.zeros(50, dtype=float)}, "segment: expected integer"),
        ({"split": {"train": np.arange(30), "test": np.arange(20, 50)}}, "split.test: overlaps"),
        ({"split": {"train": np.array([0, 99])}}, r"split.train: index out of range \[0, 50\)"),
        ({"split": {"holdout": np.arange(3)}}, "split: unknown set"),
        ({"channel_names": ["a"]}, "channel_names: 1 names for 4 channels"),
        ({"y": None}, "y/labels: a recording needs"),
    ],
)
def test_validation_names_the_field(kw, match):
    with pytest.raises(RecordingError, match=match):
        _rec(**kw)


def test_nan_calcium_row_is_reported():
    x = np.zeros((10, 3), np.float32)
    x[7, 1] = np.inf
    with pytest.raises(RecordingError, match="x: non-finite value .* at row 7"):
        Recording(x=x, labels=np.zeros(10, int), bin_ms=33.3, modality="calcium")


def test_load_missing_file(tmp_path):
    with pytest.raises(RecordingError, match="recording not found"):
        Recording.load(tmp_path / "nope.npz")


def test_load_corrupted_and_truncated(tmp_path):
    good = _rec().save(tmp_path / "good.npz")
    raw = good.read_bytes()
    (tmp_path / "junk.npz").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    for name, why in (("junk.npz", "no zip header"), ("cut.npz", "not a readable .npz")):
        with pytest.raises(RecordingError, match=why):
            Recording.load(tmp_path / name)
    assert good.read_bytes() == raw


def test_load_wrong_schema_and_newer_version(tmp_path):
    np.savez(tmp_path / "other.npz", spikes=np.zeros((3, 3)))
    with pytest.raises(RecordingError, match="missing field 'format_version'"):
        Recording.load(tmp_path / "other.npz")
    path = _rec().save(tmp_path / "r.npz")
    with np.load(path) as z:
        data = dict(z)
    data["format_version"] = np.array(FORMAT_VERSION + 1)
    np.savez(tmp_path / "new.npz", **data)
    with pytest.raises(RecordingError, match="newer than this cortexedge"):
        Recording.load(tmp_path / "new.npz")


def test_load_reports_bad_values_with_path(tmp_path):
    path = _rec().save(tmp_path / "r.npz")
    with np.load(path) as z:
        data = dict(z)
    data["x"] = data["x"].astype(np.float32)
    data["x"][3, 0] = np.nan
    np.savez(tmp_path / "nan.npz", **data)
    with pytest.raises(RecordingError, match=r"nan.npz: x: non-finite value .* at row 3"):
        Recording.load(tmp_path / "nan.npz")


def test_save_into_missing_folder_leaves_nothing(tmp_path):
    with pytest.raises(RecordingError, match="output folder does not exist"):
        _rec().save(tmp_path / "missing" / "r.npz")
    assert list(tmp_path.iterdir()) == []


def _tampered(tmp_path, **changes) -> str:
    """Save a clean recording, replace fields (None deletes one), load it; the error text."""
    path = _rec().save(tmp_path / "r.npz")
    with np.load(path) as z:
        data = dict(z)
    for key, value in changes.items():
        data[key] = np.asarray(value)
    np.savez(tmp_path / "t.npz", **data)
    with pytest.raises(RecordingError) as err:
        Recording.load(tmp_path / "t.npz")
    return str(err.value)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"bin_ms": "4"}, "bin_ms: expected one number"),
        ({"bin_ms": [4.0, 4.0]}, "bin_ms: expected one number"),
        ({"bin_ms": True}, "bin_ms: expected one number"),
        ({"format_version": "abc"}, "format_version: expected one number"),
        ({"format_version": 0.5}, "format_version: expected a whole number"),
        ({"header": "[1, 2]"}, "header: expected a JSON object"),
        ({"header": "null"}, "header: expected a JSON object"),
        ({"header": ["{}", "{}"]}, "header: expected one JSON string"),
        ({"header": '{"channel_names": 5}'}, "header.channel_names: expected a list of strings"),
        ({"header": '{"meta": [1]}'}, "header.meta: expected a JSON object"),
        ({"header": '{"modality": 3}'}, "header.modality: expected a string"),
    ],
)
def test_tampered_fields_are_one_clear_error(tmp_path, changes, message):
    text = _tampered(tmp_path, **changes)
    assert "t.npz: " in text and message in text and "\n" not in text


def test_npy_named_npz_is_refused(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    (tmp_path / "a.npy").rename(tmp_path / "a.npz")
    with pytest.raises(RecordingError, match=r"a\.npz: a single \.npy array, not an \.npz"):
        Recording.load(tmp_path / "a.npz")
