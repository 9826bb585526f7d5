"""`cortexedge compress` on a trained run folder: output files, clear errors, input untouched."""

from __future__ import annotations

import hashlib
import json
import shutil

import click
import pytest
from click.testing import CliRunner

from cortexedge.cli.commands_compress import compress
from cortexedge.cli.main import _Group
from cortexedge.train.data.synth_reaching import reaching


@click.group(cls=_Group)
def cli() -> None:
    """The project's CLI group, holding the compress command."""


cli.add_command(compress)


def _digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny trained AEGRU run folder and its recording."""
    from cortexedge.train.fit import fit
    from cortexedge.train.models.aegru import AEGRU

    root = tmp_path_factory.mktemp("cli")
    rec = reaching(seed=1, channels=8, minutes=0.25)
    rec.save(root / "rec.npz")
    model = AEGRU(8, enc_dim=8, hidden=8)
    fit(model, rec, epochs=1, train_stride=16, progress=False, threads=1, out=root / "run")
    return root


@pytest.mark.slow
def test_compress_writes_a_compressed_checkpoint_and_leaves_the_run_alone(run) -> None:
    before = _digest(run / "run")
    args = ["compress", str(run / "run"), "--data", str(run / "rec.npz"), "--sparsity", "0.5",
            "--structured", "0.25", "--bits", "8", "--finetune-epochs", "1", "--train-stride",
            "16", "--threads", "1", "--out", str(run / "out")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "quantized" in result.output and "MACs dense" in result.output
    for step in ("structured pruning of 25% (magnitude)", "quantizing (W8A8) and calibrating",
                 "measuring the 50% magnitude-pruned model"):  # fmt: skip
        assert f"✓ {step}" in result.output  # progress, stage by stage, on stderr
    assert "Warning" not in result.output  # no third-party warning that says nothing to a user
    assert _digest(run / "run") == before
    assert {"model.safetensors", "config.json", "compression.json"} <= set(_digest(run / "out"))
    config = json.loads((run / "out" / "config.json").read_text())
    assert config["model"] == "aegru" and config["family"] == "aegru"
    assert config["model_config"]["training_parts"] is False
    assert config["preprocessing"]["num_steps"] == 5
    stages = json.loads((run / "out" / "compression.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["float", "structured", "magnitude", "quantized"]
    from cortexedge.compress.artifacts import load_compressed

    model, _ = load_compressed(run / "out")
    assert model.cells[0].hidden_size == 6 and model.encoder.out_features == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sparsity", "1.0"], r"sparsity must lie in \[0, 1\), got 1.0"),
        (["--structured", "-0.5"], r"structured must lie in \[0, 1\), got -0.5"),
        (["--bits", "5"], "bits: 5-bit weights are not supported"),
        (["--sparsity", "0.5", "--scope", "all"], "scope must be one of global, layer"),
        (["--bits", "8", "--train-stride", "0"], "--train-stride must be >= 1, got 0"),
    ],
)
def test_bad_options_fail_with_one_line_and_touch_nothing(run, extra, message) -> None:
    before = _digest(run / "run")
    args = ["compress", str(run / "run"), "--data", str(run / "rec.npz"), "--out",
            str(run / "bad"), *extra]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1
    assert __import__("re").search(message, result.output)
    assert _digest(run / "run") == before and not (run / "bad").exists()


def test_output_must_differ_from_the_run_and_the_run_must_exist(run, tmp_path) -> None:
    before = _digest(run / "run")
    same = CliRunner().invoke(cli, ["compress", str(run / "run"), "--bits", "8", "--out",
                                    str(run / "run")])  # fmt: skip
    assert same.exit_code == 2 and "is the input" in same.output
    missing = CliRunner().invoke(cli, ["compress", str(tmp_path / "nope"), "--bits", "8",
                                       "--out", str(tmp_path / "o")])  # fmt: skip
    assert missing.exit_code == 2 and "checkpoint folder not found" in missing.output
    no_data = CliRunner().invoke(cli, ["compress", str(run / "run"), "--bits", "8", "--out",
                                       str(tmp_path / "o")])  # fmt: skip
    assert no_data.exit_code == 2 and "pass --data" in no_data.output
    assert _digest(run / "run") == before


@pytest.mark.slow
def test_compress_into_another_run_needs_force_and_then_leaves_none_of_its_files(run, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(run / "run", other)
    (other / "notes.txt").write_text("my notes")
    before = _digest(other)
    args = ["compress", str(run / "run"), "--data", str(run / "rec.npz"), "--bits", "8",
            "--finetune-epochs", "0", "--qat-epochs", "1", "--train-stride", "16", "--threads",
            "1", "--out", str(other)]  # fmt: skip
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "already holds files; pass --force" in refused.output
    assert _digest(other) == before
    done = CliRunner().invoke(cli, [*args, "--force"])
    assert done.exit_code == 0, done.output
    # the other run's metrics and epoch log described another model: they are gone
    assert sorted(_digest(other)) == [
        "compression.json", "config.json", "model.safetensors", "notes.txt"
    ]  # fmt: skip
    assert (other / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other"]  # no staging folder left
