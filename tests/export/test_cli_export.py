"""`cortexedge export RUN_DIR --out FILE [--data REC] [--sequence] [--opset N]`."""

from __future__ import annotations

import json
import re
import shutil

import onnx
import pytest
from click.testing import CliRunner

from cortexedge.cli.commands_export import TARGETS, export
from cortexedge.cli.main import _Group
from tests.export.small_models import SMALL, build


@pytest.fixture
def cli():
    """A CLI group holding the export command, with the project's user-error boundary."""
    return _Group(commands={"export": export})


@pytest.fixture
def run_dir(tmp_path, reaching):
    from cortexedge.train.checkpoint import save_checkpoint

    rec = {"modality": "spikes", "input_shape": [16], "bin_ms": reaching.bin_ms}
    return save_checkpoint(build(*SMALL["gru"]), tmp_path / "run", extra={"recording": rec})


def test_export_with_data(cli, run_dir, reaching, tmp_path):
    data = reaching.save(tmp_path / "rec.npz")
    out = tmp_path / "decoder.onnx"
    result = CliRunner().invoke(
        cli, ["export", str(run_dir), "--out", str(out), "--data", str(data)]
    )
    assert result.exit_code == 0, result.output
    # progress on stderr, a line per step once it is done (wrapped at the terminal's width),
    # then the report on stdout
    progress, report = result.output.split("wrote ", 1)
    steps = (
        r"✓ decoder\.onnx: tracing the step graph \(opset 17\) and verifying it against torch"
        r" \(\d+\.\d s\) ✓ decoder\.onnx: scoring the graph on the test split \(\d+\.\d s\)"
    )
    assert re.fullmatch(steps, " ".join(progress.split())), progress
    lines = ("wrote " + report).splitlines()
    assert lines[0].startswith(f"wrote {out}") and "step graph, opset 17" in lines[0]
    assert lines[1].startswith("verified on 1,000 bins x 2 streams (test): max error")
    assert lines[3].startswith("r2 on test split: ")
    assert onnx.load(out).graph.input[0].name == "x"


def test_export_sequence_without_data(cli, run_dir, tmp_path):
    out = tmp_path / "seq.onnx"
    args = ["export", str(run_dir), "--out", str(out), "--sequence", "--opset", "18"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "sequence graph, opset 18" in result.output
    words = " ".join(result.output.split())  # progress lines wrap at the terminal's width
    assert "✓ seq.onnx: building the sequence graph, checking it on the step (" in words
    assert "✓ seq.onnx: describing the graph (" in words
    assert "no --data: verified on synthetic inputs" in result.output
    assert onnx.load(out).opset_import[0].version == 18


def test_user_errors_exit_2_with_one_line(cli, run_dir, tmp_path):
    out = tmp_path / "nope" / "d.onnx"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: output folder does not exist: {out.parent}"
    result = CliRunner().invoke(
        cli, ["export", str(tmp_path / "none"), "--out", str(tmp_path / "d.onnx")]
    )
    assert result.exit_code == 2 and "checkpoint folder not found" in result.output


def test_targets_registry_names_the_choices():
    assert set(TARGETS) >= {"onnx"}
    target = next(p for p in export.params if p.name == "target")
    assert list(target.type.choices) == sorted(TARGETS)


@pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="arm-none-eabi-gcc or qemu-system-arm not installed",
)
def test_c_target_with_a_prefix_runs_under_qemu_and_prints_instructions_per_bin(
    cli, run_dir, tmp_path
):
    out = tmp_path / "fw"
    args = ["export", str(run_dir), "--out", str(out), "--target", "c", "--name", "arm_gru",
            "--qemu"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    man = json.loads((out / "decoder_c.json").read_text())
    assert man["prefix"] == "arm_gru" and man["qemu"]["bins"] == 2000
    insns = man["qemu"]["insns_per_step"]
    per_mac = insns / man["macs"]["executed_per_step"]
    per_eff = insns / man["macs"]["executed"]["effective"]
    said = f"instructions/bin ({per_mac:.1f} per executed MAC, {per_eff:.1f} per effective MAC)"
    assert said in " ".join(result.output.split())
    assert f"{insns:,.0f} instructions/bin" in result.output
    assert "int arm_gru_step(arm_gru_state_t *state" in (out / "decoder.h").read_text()


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
    reason="arm-none-eabi-gcc or qemu-system-arm not installed",
)
def test_a_compressed_lstm_checkpoint_builds_integer_c_for_the_cortex_m4(cli, reaching, tmp_path):
    """What a user runs after `cortexedge compress`: the pruned W8A8 LSTM checkpoint folder
    becomes integer C, bit-exact with the integer reference, and runs under qemu."""
    from cortexedge.compress.artifacts import save_compressed
    from cortexedge.compress.recipe import Recipe, compress
    from tests.export.small_models import GRU_DATA

    recipe = Recipe(sparsity=0.5, bits=8, finetune_epochs=0, calib_batches=2)
    result = compress(build(*SMALL["lstm"]), reaching, recipe, data=GRU_DATA)
    folder = save_compressed(result, tmp_path / "lstm-w8")
    out = tmp_path / "fw"
    args = ["export", str(folder), "--out", str(out), "--target", "c", "--qemu",
            "--data", str(reaching.save(tmp_path / "rec.npz"))]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    man = json.loads((out / "decoder_c.json").read_text())
    assert man["numeric"] == "int" and man["layout"]["layers"] == 1
    assert [s["name"] for s in man["states"]] == ["h", "c"]
    check = man["verification"]  # the first 2,000 verified bins against the reference
    assert check["bit_exact_bins"] == min(check["bins"], 2000) and check["r2_vs_onnx"] > 0.99
    assert man["qemu"]["max_abs_diff_to_host"] == 0.0  # the device computes the same integers
    assert f"{man['qemu']['insns_per_step']:,.0f} instructions/bin" in res.output
    header = (out / "decoder.h").read_text()
    assert "int8_t h[1][32]; /* hidden state per layer (h, then c) */" in header


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--name", "x"], "error: --name only apply to --target c"),
        (["--qemu", "--name", "y"], "error: --name, --qemu only apply to --target c"),
        (["--target", "c", "--name", "9lives"], "error: name: '9lives' is not a C identifier"),
        (["--sparse", "size"], "error: --sparse only apply to --target c"),
        (["--target", "c", "--sparse", "bsr"], "error: sparse: must be one of auto, dense"),
        (["--weights-budget", "9000"], "error: --weights-budget only apply to --target c"),
        (
            ["--target", "c", "--weights-budget", "9000"],
            "error: weights_budget: applies to the integer path (a quantized model)",
        ),
    ],
)
def test_c_options_are_checked_in_one_line(cli, run_dir, tmp_path, extra, message):
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2 and result.output.startswith(message), result.output
    assert not (tmp_path / "o").exists()
