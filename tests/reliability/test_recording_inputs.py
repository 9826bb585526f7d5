"""Class 5, recordings: every field of a `.npz` recording given a wrong type, shape, value
or encoding, files that are not recordings at all, and broken inputs to `data convert`.

`Recording.load` and the commands that read a recording (`data info`, `train --data`) must
refuse each in one line and change no file; the same recording saved another way (other
compression, field order, extra fields) must load equal to the clean one.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.outcomes import accepted, refused, refused_cli

GROUP = "5 recordings"
HEADER_CASES = {
    "list": "[]", "null": "null", "number": "5", "not_json": "{", "string": '"x"',
    "channel_names_5": {"channel_names": ["a"] * 5}, "channel_names_ints": {"channel_names": [1]},
    "target_names_3": {"target_names": ["a", "b", "c"]}, "meta_list": {"meta": [1]},
    "modality_number": {"modality": 3}, "modality_unknown": {"modality": "eeg"},
    "widefield_of_2d": {"modality": "widefield"},
}  # fmt: skip


def _fields(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _header(value: str | dict, fields: dict) -> dict:
    """The header replaced by `value` (text) or updated with it (a dict)."""
    if isinstance(value, str):
        return {"header": np.array(value)}
    return {"header": np.array(json.dumps({**json.loads(str(fields["header"])), **value}))}


def _dropped(key: str, fields: dict) -> dict:
    return {key: None}


def _rows(v: np.ndarray, row: int, value: float) -> np.ndarray:
    out = v.astype(float)
    out[row] = value
    return out


CASES = {  # name -> the fields changed from the clean ones (None drops a field)
    "bin_ms_string": lambda f: {"bin_ms": np.array("20")},
    "bin_ms_vector": lambda f: {"bin_ms": np.ones(2)},
    "bin_ms_zero": lambda f: {"bin_ms": np.array(0.0)},
    "bin_ms_negative": lambda f: {"bin_ms": np.array(-4.0)},
    "bin_ms_nan": lambda f: {"bin_ms": np.array(np.nan)},
    "bin_ms_inf": lambda f: {"bin_ms": np.array(np.inf)},
    "bin_ms_bool": lambda f: {"bin_ms": np.array(True)},
    "version_string": lambda f: {"format_version": np.array("1")},
    "version_vector": lambda f: {"format_version": np.ones(2, int)},
    "version_future": lambda f: {"format_version": np.array(999)},
    "version_zero": lambda f: {"format_version": np.array(0)},
    "version_fraction": lambda f: {"format_version": np.array(1.5)},
    "header_vector": lambda f: {"header": np.array(["{}", "{}"])},
    "header_bytes": lambda f: {"header": np.array(b"{}")},
    "x_nan": lambda f: {"x": _rows(f["x"], 3, np.nan)},
    "x_inf": lambda f: {"x": _rows(f["x"], 3, np.inf)},
    "x_negative_counts": lambda f: {"x": f["x"].astype(np.int64) - 1},
    "x_1d": lambda f: {"x": f["x"][:, 0]},
    "x_4d": lambda f: {"x": f["x"][:, :, None, None]},
    "x_empty": lambda f: {"x": f["x"][:0]},
    "x_strings": lambda f: {"x": f["x"].astype(str)},
    "x_complex": lambda f: {"x": f["x"].astype(complex)},
    "x_bool": lambda f: {"x": f["x"] > 0},
    "y_short": lambda f: {"y": f["y"][:-1]},
    "y_1d": lambda f: {"y": f["y"][:, 0]},
    "y_int": lambda f: {"y": f["y"].astype(np.int64)},
    "y_nan": lambda f: {"y": _rows(f["y"], 5, np.nan)},
    "no_targets_or_labels": lambda f: {"y": None},
    "segment_short": lambda f: {"segment": f["segment"][:-1]},
    "segment_float": lambda f: {"segment": f["segment"].astype(float)},
    "split_out_of_range": lambda f: {"split_val": np.append(f["split_val"], len(f["x"]))},
    "split_negative": lambda f: {"split_val": np.append(f["split_val"], -1)},
    "split_overlap": lambda f: {"split_val": np.append(f["split_val"], f["split_train"][0])},
    "split_float": lambda f: {"split_val": f["split_val"].astype(float)},
    "split_2d": lambda f: {"split_val": f["split_val"][:, None]},
    **{f"no_{k}": partial(_dropped, k)
       for k in ("format_version", "x", "bin_ms", "segment", "header")},
    **{f"header_{k}": partial(_header, v) for k, v in HEADER_CASES.items()},
}  # fmt: skip


def _write(path: Path, fields: dict, compress: bool = True) -> Path:
    kept = {k: v for k, v in fields.items() if v is not None}
    (np.savez_compressed if compress else np.savez)(path, **kept)
    return path


@pytest.fixture(scope="module")
def clean(pipeline) -> dict:
    return _fields(pipeline.recording)


def _both_refuse(path: Path, tmp_path: Path, match: str | None = None) -> None:
    """The library and both commands refuse `path`, naming it (and `match`, when given)."""
    from cortexedge.recording import Recording

    match = f"(?=.*{re.escape(path.name)})" + (f"(?=.*{match})" if match else "")
    refused(GROUP, lambda: Recording.load(path), match, watch=(path,))
    refused_cli(GROUP, ["data", "info", path], match, watch=(path,))
    out = tmp_path / "run"
    refused_cli(GROUP, ["train", "--data", path, "--model", "gru", "--out", out, "--quick"],
                match, watch=(path, out))  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_broken_field_is_refused(clean, tmp_path, case):
    path = _write(tmp_path / f"{case}.npz", {**clean, **CASES[case](clean)})
    _both_refuse(path, tmp_path)


def _object_npz(path: Path) -> Path:
    """An .npz whose `x` is a pickled object array: loading must not unpickle it."""
    buf = io.BytesIO()
    np.save(buf, np.array([{"boom": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", buf.getvalue())
    return path


NOT_A_RECORDING = {"npy_named_npz": "a single .npy array", "truncated": "not a readable .npz",
                   "empty": "no zip header", "text": "no zip header", "pickled": "allow_pickle",
                   "folder": "not found", "missing": "not found"}  # fmt: skip


@pytest.mark.parametrize("kind", NOT_A_RECORDING)
def test_a_file_that_is_not_a_recording_is_refused(pipeline, tmp_path, kind):
    path = tmp_path / "r.npz"
    raw = pipeline.recording.read_bytes()
    if kind == "npy_named_npz":
        np.save(tmp_path / "r.npy", np.ones((4, 4)))
        (tmp_path / "r.npy").rename(path)
    elif kind in ("truncated", "empty", "text"):
        path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"",
                          "text": b"bin_ms,20\n1,2,3\n"}[kind])  # fmt: skip
    elif kind == "pickled":
        _object_npz(path)
    elif kind == "folder":
        path.mkdir()
    _both_refuse(path, tmp_path, NOT_A_RECORDING[kind])


@pytest.mark.parametrize("how", ("uncompressed", "reversed_fields", "extra_field",
                                 "header_reordered", "int32_counts"))  # fmt: skip
def test_the_same_recording_saved_another_way_loads_equal(pipeline, clean, tmp_path, how):
    from cortexedge.recording import Recording

    fields = dict(clean)
    if how == "reversed_fields":
        fields = dict(reversed(list(fields.items())))
    elif how == "extra_field":
        fields["notes"] = np.array("recorded on a Tuesday")
    elif how == "header_reordered":
        header = json.loads(str(fields["header"]))
        fields["header"] = np.array(json.dumps(dict(reversed(list(header.items()))), indent=3))
    elif how == "int32_counts":
        fields["x"] = fields["x"].astype(np.int32)
    path = _write(tmp_path / "r.npz", fields, compress=how != "uncompressed")
    want, got = Recording.load(pipeline.recording), Recording.load(path)
    assert got.fingerprint() == want.fingerprint() or how == "int32_counts"
    accepted(GROUP, got.x.astype(want.x.dtype), want.x)
    np.testing.assert_array_equal(got.y, want.y)
    assert got.bin_ms == want.bin_ms and got.split.keys() == want.split.keys()


MAT_DAMAGE = ("truncated", "empty", "text", "no_such_key", "x_nan", "y_short", "bin_ms_zero")


@pytest.mark.parametrize("damage", MAT_DAMAGE)
def test_a_broken_mat_file_is_refused_by_convert(tmp_path, damage):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    x, y = rng.poisson(1.0, (200, 6)).astype(float), rng.normal(size=(200, 2))
    path, bin_ms = tmp_path / "s.mat", 50.0
    if damage == "x_nan":
        x[7, 2] = np.nan
    elif damage == "y_short":
        y = y[:-3]
    elif damage == "bin_ms_zero":
        bin_ms = 0.0
    savemat(path, {"spikes": x, "vel": y})
    raw = path.read_bytes()
    if damage in ("truncated", "empty", "text"):
        path.write_bytes({"truncated": raw[: len(raw) // 2], "empty": b"",
                          "text": b"MATLAB 5.0 MAT-file? no\n"}[damage])  # fmt: skip
    key = "nope" if damage == "no_such_key" else "spikes"
    out = tmp_path / "r.npz"
    refused_cli(GROUP, ["data", "convert", path, "--out", out, "--x", key, "--y", "vel",
                        "--bin-ms", bin_ms], watch=(path, out))  # fmt: skip
