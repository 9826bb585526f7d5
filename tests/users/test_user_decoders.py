"""Four decoders written the way users write them (files next to this test, plain torch), each
through the whole CLI: data convert (a channels-first MATLAB v5 file) -> train --model
file.py:Class -> compress (structured + magnitude + W8) -> export -> profile.

One number has one definition: the float model's test R² is the same at train and at the
compress stage before compression, and the compressed model's test R² is the same at compress,
export and profile (up to the float error export verifies). The ONNX stream of the trained
model equals the class's own forward.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cortexedge.cli.main import cli

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
DECODERS = ["norm_gru.py:NormGRU", "plain_lstm.py:PlainLSTM", "cell_stack.py:CellStack",
            "conv_gru.py:ConvGRU"]  # fmt: skip
C, D, T, BIN_MS = 12, 2, 2400, 20.0
# R² is the same number at every stage: the same engine agrees to float rounding, torch and
# onnxruntime to the verified tolerance (W8A8: a few quantization steps on some bins)
SAME_FLOAT, SAME_QUANT = 1e-5, 2e-3


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, f"{args[0]}: {result.output}"
    return result.output


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """Counts that encode a smooth 2-d velocity with a 60 ms lag, stored channels-first as a
    lab shares them, converted with a 70/15/15 time split."""
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    t = np.arange(T) * BIN_MS / 1e3
    vel = np.stack([np.sin(2 * np.pi * 0.4 * t), np.cos(2 * np.pi * 0.27 * t)], 1)
    lagged = np.roll(vel, -3, axis=0)  # neurons lead the movement by 3 bins
    rates = np.exp(0.3 + lagged @ rng.normal(scale=0.8, size=(D, C)))
    spikes = rng.poisson(rates).astype(np.float64)
    folder = tmp_path_factory.mktemp("user_data")
    savemat(folder / "lab.mat", {"spk": spikes.T, "vel": vel})  # channels-first, as labs do
    out = folder / "rec.npz"
    _run("data", "convert", str(folder / "lab.mat"), "--x", "spk", "--y", "vel",
         "--bin-ms", str(BIN_MS), "--out", str(out))  # fmt: skip
    return out


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("decoder", DECODERS)
def test_user_decoder_through_the_cli(decoder, recording, tmp_path):
    spec = f"{HERE / decoder}"
    run, small = tmp_path / "run", tmp_path / "small"
    _run("train", "--data", str(recording), "--model", spec, "--epochs", "2", "--out", str(run))
    recipe = ["--structured", "0.25", "--sparsity", "0.5", "--bits", "8", "--finetune-epochs", "0"]
    _run("compress", str(run), "--out", str(small), "--data", str(recording), "--trust-code",
         *recipe)  # fmt: skip
    _run("export", str(run), "--out", str(tmp_path / "float.onnx"), "--data", str(recording),
         "--trust-code")  # fmt: skip
    _run("export", str(small), "--out", str(tmp_path / "small.onnx"), "--data", str(recording),
         "--trust-code")  # fmt: skip
    _run("profile", str(tmp_path / "small.onnx"), "--data", str(recording), "--json",
         str(tmp_path / "profile.json"))  # fmt: skip

    trained = _json(run / "metrics.json")["test"]
    stages = _json(small / "compression.json")["stages"]
    exported = _onnx_score(tmp_path / "small.onnx")
    profiled = _json(tmp_path / "profile.json")
    assert trained["rows"] == exported["rows"] == profiled["scored_bins"] == 360
    assert stages[0]["r2"] == pytest.approx(trained["r2"], abs=SAME_FLOAT)
    assert _onnx_score(tmp_path / "float.onnx")["value"] == pytest.approx(trained["r2"], abs=1e-4)
    assert exported["value"] == pytest.approx(stages[-1]["r2"], abs=SAME_QUANT)
    assert profiled["r2"] == pytest.approx(exported["value"], abs=SAME_FLOAT)
    assert stages[-1]["macs_effective"] < stages[0]["macs_effective"]
    _stream_equals_forward(run, tmp_path / "float.onnx", recording)


def _onnx_score(path: Path) -> dict:
    from cortexedge.runtime import load_decoder

    return load_decoder(path).meta.score


def _stream_equals_forward(run: Path, onnx_path: Path, recording: Path) -> None:
    """The exported graph, streamed bin by bin in the runtime, equals the class's forward."""
    import torch

    from cortexedge.recording import Recording
    from cortexedge.runtime import StreamingDecoder
    from cortexedge.train.checkpoint import load_checkpoint

    model, _ = load_checkpoint(run, trust_code=True)
    x = Recording.load(recording).x[:300].astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)[None])[0].numpy()
    dec = StreamingDecoder(onnx_path)
    got = np.stack([dec.step(row) for row in x])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


MARKER_DECODER = """
from pathlib import Path
import torch
from torch import nn

Path(__file__).with_suffix(".imported").write_text("imported")  # proof that the file ran


class Marked(nn.Linear):
    def __init__(self, in_channels, out_dim):
        super().__init__(in_channels, out_dim)

    def init_state(self, batch):
        return (torch.zeros(batch, 1),)

    def step(self, x_t, state):  # a running mean of the input, as a stand-in state
        return self(x_t), (0.5 * state[0] + x_t.mean(-1, keepdim=True),)
"""


def test_a_checkpoint_of_user_code_is_refused_without_trust_code(recording, tmp_path):
    """Refused in one line naming the class and the flag, and the file is never run; with
    --trust-code it is (the marker file it writes when imported says so)."""
    import subprocess
    import sys

    source = tmp_path / "marked.py"
    source.write_text(MARKER_DECODER)
    marker = source.with_suffix(".imported")
    _run("train", "--data", str(recording), "--model", f"{source}:Marked", "--quick", "--out",
         str(tmp_path / "r"))  # fmt: skip
    marker.unlink()
    exe = str(Path(sys.executable).parent / "cortexedge")
    export = [exe, "export", str(tmp_path / "r"), "--out", str(tmp_path / "d.onnx")]
    refused = subprocess.run(export, capture_output=True, text=True)
    assert refused.returncode == 2 and not marker.exists() and not (tmp_path / "d.onnx").exists()
    assert refused.stderr.strip() == (
        f"error: {tmp_path / 'r'}: the checkpoint's model is user code {source.resolve()}:Marked; "
        "pass --trust-code (trust_code=True in Python) to import it"
    )
    trusted = subprocess.run([*export, "--trust-code"], capture_output=True, text=True)
    assert trusted.returncode == 0, trusted.stderr
    assert marker.exists() and (tmp_path / "d.onnx").is_file()


def test_a_user_conv_decoder_builds_in_c_from_its_graph(recording, tmp_path):
    # no reader of the class: the C comes from the exported graph (causal Conv1d buffer, GRU),
    # named after the class only (no path of this machine), at the recording's 20 ms period
    run, folder = tmp_path / "run", tmp_path / "c"
    _run("train", "--data", str(recording), "--model", f"{HERE / 'conv_gru.py:ConvGRU'}",
         "--epochs", "1", "--out", str(run))  # fmt: skip
    out = _run("export", str(run), "--target", "c", "--out", str(folder), "--data",
               str(recording), "--trust-code")  # fmt: skip
    assert "float path" in out
    header = (folder / "decoder.h").read_text()
    assert " * ConvGRU decoder, float path, stateful streaming." in header
    assert "Sample period: 20 ms" in header and str(HERE) not in header
    assert "int convgru_step(convgru_state_t *state" in header
    _run("profile", str(folder), "--data", str(recording), "--backend", "all", "--json",
         str(tmp_path / "p.json"))  # fmt: skip
    profiled = _json(tmp_path / "p.json")
    assert (
        profiled["c_build"]["macs_executed"]
        == _json(folder / "decoder_c.json")["macs"]["executed_per_step"]
    )
    assert profiled["backends"]["c"]["max_abs_diff_vs_first"] <= 1e-5
    assert profiled["r2"] == pytest.approx(_onnx_score(folder / "decoder.onnx")["value"], abs=1e-4)
