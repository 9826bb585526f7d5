"""The reader registry: order, detection, the registry's own errors and the `data` CLI commands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cortexedge.errors import RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.readers import READERS, Reader, read


def calcium_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.npz"
    np.savez(path, dff=np.ones((9, 2), np.float32), labels=np.arange(9) % 2, bin_ms=33.0)
    return path


def test_registry_lists_every_reader_in_detection_order() -> None:
    assert list(READERS) == ["neurobench", "nwb", "imperial", "calcium", "widefield", "arrays"]
    for name, reader in READERS.items():
        assert isinstance(reader, Reader) and reader.name == name
        assert reader.description and callable(reader.detect) and callable(reader.read)


def test_detectors_never_raise_on_junk(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(np.random.default_rng(0).bytes(1000))
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    for reader in READERS.values():
        assert reader.detect(junk) is False and reader.detect(empty) is False


def test_auto_picks_the_reader_whose_arrays_match(tmp_path: Path) -> None:
    rec = read(calcium_file(tmp_path))
    assert rec.modality == "calcium" and rec.meta["source"] == "calcium_imaging"
    assert [r.name for r in READERS.values() if r.detect(calcium_file(tmp_path))] == ["calcium"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"recording not found: .*nope\.mat"):
        read(tmp_path / "nope.mat")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(
        RecordingError,
        match=r"unknown format 'matlab': expected auto or one of "
        r"\['neurobench', 'nwb', 'imperial'",
    ):
        read(calcium_file(tmp_path), fmt="matlab")


def test_unrecognised_and_unreadable_files(tmp_path: Path) -> None:
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(
        RecordingError,
        match=r"other\.npz: no reader recognises this file "
        r"\(top-level names \['weights'\]\)",
    ):
        read(other)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(
        RecordingError, match=r"junk\.npz: not a readable \.npz, HDF5 or MATLAB file"
    ):
        read(junk)


def test_explicit_format_overrides_detection(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"ca\.npz: missing array\(s\) \['spikes', 'hand_pos'"):
        read(calcium_file(tmp_path), fmt="imperial")


def test_cli_convert_and_formats(tmp_path: Path) -> None:
    from cortexedge.cli.main import cli

    runner = CliRunner()
    out = tmp_path / "rec.npz"
    result = runner.invoke(cli, ["data", "convert", str(calcium_file(tmp_path)), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert Recording.load(out).modality == "calcium"
    listed = runner.invoke(cli, ["data", "formats"])
    assert [line.split()[0] for line in listed.output.splitlines()] == list(READERS)
    again = runner.invoke(cli, ["data", "convert", str(calcium_file(tmp_path)), "--out", str(out)])
    assert again.exit_code == 2 and "exists; pass --force to replace it" in again.output
    bad = runner.invoke(cli, ["data", "convert", str(tmp_path / "x.mat"), "--out", str(out) + "2"])
    assert bad.exit_code == 2 and "recording not found" in bad.output
