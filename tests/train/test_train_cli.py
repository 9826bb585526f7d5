"""`cortexedge train`: exit 2 with one line for every user mistake; a --quick run writes a run."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
from click.testing import CliRunner

from cortexedge.cli.commands_train import train
from cortexedge.cli.main import _Group
from cortexedge.recording import Recording


@click.group(cls=_Group)
def cli() -> None:
    """The real error boundary of the cortexedge group, around the train command."""


cli.add_command(train)


def _run(*args: str):
    return CliRunner().invoke(cli, ["train", *args])


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def _spikes(path, T: int = 3000, C: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.poisson(0.3, size=(T, C))
    y = np.stack([x[:, :3].sum(1), x[:, 3:].sum(1)], 1).astype(np.float32)
    seg = np.arange(T) // 300
    split = {
        "train": np.flatnonzero(seg < 6),
        "val": np.flatnonzero((seg >= 6) & (seg < 8)),
        "test": np.flatnonzero(seg >= 8),
    }
    return Recording(x=x, bin_ms=4.0, y=y, segment=seg, split=split).save(path)


@pytest.fixture
def rec_path(tmp_path):
    return _spikes(tmp_path / "rec.npz")


def test_missing_data_file(tmp_path):
    line = _error(
        _run("--data", str(tmp_path / "nope.npz"), "--model", "gru", "--out", str(tmp_path / "run"))
    )
    assert line == f"error: recording not found: {tmp_path / 'nope.npz'}"


def test_unknown_model(rec_path, tmp_path):
    line = _error(_run("--data", str(rec_path), "--model", "resnet", "--out", str(tmp_path / "r")))
    assert line.startswith("error: unknown model 'resnet' (known: aegru, cnn_bilstm, cnn_rnn")


def test_out_is_a_file(rec_path, tmp_path):
    out = tmp_path / "taken"
    out.write_text("keep")
    line = _error(_run("--data", str(rec_path), "--model", "gru", "--out", str(out)))
    assert line == f"error: --out {out} exists and is not a folder"
    assert out.read_text() == "keep"


def test_wrong_modality_for_the_model(tmp_path):
    T = 600
    rec = Recording(
        x=np.random.default_rng(0).normal(size=(T, 5)),
        bin_ms=33.0,
        modality="calcium",
        labels=np.zeros((T, 2), dtype=np.int64),
        split={"train": np.arange(300), "val": np.arange(300, T)},
    )
    path = rec.save(tmp_path / "ca.npz")
    line = _error(_run("--data", str(path), "--model", "aegru", "--out", str(tmp_path / "r")))
    assert "model 'aegru' trains on spikes recordings" in line and "got calcium" in line


def test_channel_count_that_does_not_match(rec_path, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[model]\nin_channels = 96\n")
    args = ("--data", str(rec_path), "--model", "gru", "--config", str(cfg))
    line = _error(_run(*args, "--out", str(tmp_path / "r")))
    assert line == "error: model.in_channels=96 does not match the recording (in_channels=6)"


def test_empty_recording(tmp_path):
    path = tmp_path / "empty.npz"
    header = json.dumps({"modality": "spikes"})
    np.savez(
        path,
        format_version=np.array(1),
        x=np.zeros((0, 4)),
        bin_ms=np.array(4.0),
        segment=np.zeros(0, dtype=np.int64),
        header=np.array(header),
        y=np.zeros((0, 2)),
    )
    line = _error(_run("--data", str(path), "--model", "gru", "--out", str(tmp_path / "r")))
    assert line.startswith("error: ") and "recording is empty" in line


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[trian]\nepochs = 1\n", "unknown key 'trian'"),
        ("[train]\nepoch = 1\n", "unknown key 'train.epoch'"),
        ("[train]\nepochs = 'ten'\n", "train.epochs must be int, got 'ten'"),
        ("[model]\nwidth = 3\n", "unknown key 'model.width' for GRUDecoder"),
        ("[data]\nlength = 3\n", "data: unknown key 'length' for binned windows"),
        ("[train\n", "not valid TOML"),
    ],
)
def test_bad_config_files(rec_path, tmp_path, toml, message):
    cfg = tmp_path / "run.toml"
    cfg.write_text(toml)
    args = ("--data", str(rec_path), "--model", "gru", "--config", str(cfg))
    assert message in _error(_run(*args, "--out", str(tmp_path / "r")))


def test_missing_config_file(rec_path, tmp_path):
    args = ("--data", str(rec_path), "--model", "gru", "--config", str(tmp_path / "no.toml"))
    line = _error(_run(*args, "--out", str(tmp_path / "r")))
    assert line == f"error: config file not found: {tmp_path / 'no.toml'}"


@pytest.mark.slow
def test_quick_run_writes_metrics_and_checkpoint(rec_path, tmp_path):
    cfg = tmp_path / "run.toml"
    cfg.write_text(
        "[model]\nhidden = 8\n[data]\nbin_width = 5\nnum_steps = 4\n[train]\nlr = 0.01\n"
    )
    out = tmp_path / "run"
    result = _run(
        "--data",
        str(rec_path),
        "--model",
        "gru",
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--quick",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["seed"] == 3
    assert {"r2", "corr", "rows", "context_rows"} <= set(metrics["test"])
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "gru" and config["model_config"]["hidden"] == 8
    assert config["model_config"]["in_channels"] == 6
    assert config["preprocessing"] == {
        "windowing": "binned",
        "bin_width": 5,
        "num_steps": 4,
        "train_stride": 8,
    }
    assert (out / "model.safetensors").is_file()
    # ridge through the same command writes the same layout; y is linear in the current row
    cfg.write_text("[model]\nbin_width = 1\nlags = 2\n")
    result = _run(
        "--data",
        str(rec_path),
        "--model",
        "ridge",
        "--config",
        str(cfg),
        "--out",
        str(tmp_path / "ridge"),
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads((tmp_path / "ridge" / "metrics.json").read_text())["test"]["r2"] > 0.999
    # the run folder exists now: a second run is refused unless --force, and nothing changes
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = ["--data", str(rec_path), "--model", "gru", "--out", str(out), "--quick"]
    line = _error(_run(*again))
    assert (
        line == f"error: --out {out} already holds files; pass --force to replace the run in "
        "it, or choose a new folder"
    )
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    forced = _run(*again, "--force", "--seed", "4")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads((out / "metrics.json").read_text())["seed"] == 4


def test_aegru_takes_its_window_from_data(rec_path, tmp_path):
    from cortexedge.train.build import model_for

    rec = Recording.load(rec_path)
    model = model_for("aegru", rec, "regression", data={"bin_width": 5, "num_steps": 3})
    assert (model.bin_width, model.num_steps, model.in_channels) == (5, 3, 6)


def test_the_same_seed_gives_the_same_weights(rec_path, tmp_path):
    from safetensors.torch import load_file

    weights = []
    for run, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        args = ["--data", str(rec_path), "--model", "gru", "--quick", "--seed", seed]
        result = _run(*args, "--out", str(tmp_path / run))
        assert result.exit_code == 0, result.stderr
        weights.append(load_file(tmp_path / run / "model.safetensors"))
    same = all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    differ = any((weights[0][k] != weights[2][k]).any() for k in weights[0])
    assert same and differ


def test_durations_are_ms_made_rows_and_a_rounding_is_stated_once(tmp_path):
    """AEGRU's 80 ms bins at 50 ms rows: 2 rows = 100 ms, recorded with the run and noted."""
    rec = Recording.load(_spikes(tmp_path / "r4.npz"))
    slow = Recording(x=rec.x, bin_ms=50.0, y=rec.y, segment=rec.segment, split=rec.split)
    slow.save(tmp_path / "r50.npz")
    out = tmp_path / "run"
    result = _run("--data", str(tmp_path / "r50.npz"), "--model", "aegru", "--quick", "--out",
                  str(out))  # fmt: skip
    assert result.exit_code == 0, result.stderr
    note = "note: bin_width: 80 ms is 1.6 rows at 50 ms bins; using 2 rows = 100 ms"
    assert result.stderr.count(note) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["model_config"]["bin_width"] == 2 and config["preprocessing"]["bin_width"] == 2
    expected = {"ms": 80.0, "rows": 2, "bin_ms": 50.0, "note": note[len("note: bin_width: ") :]}
    assert config["durations"]["bin_width"] == expected
