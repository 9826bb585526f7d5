"""Linear decoders (ridge, Kalman) through the neural path: ONNX export streamed by the runtime,
W8 quantization by compress, the C generator's answer, and `cortexedge train` then `export`."""

from __future__ import annotations

import json

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cortexedge.cli.commands_export import export
from cortexedge.cli.commands_train import train
from cortexedge.export.api import to_onnx
from cortexedge.recording import Recording
from cortexedge.runtime import StreamingDecoder
from cortexedge.train.fit import fit
from cortexedge.train.models.registry import build_model

T, C = 2400, 6
SIZES = {"ridge": dict(lags=3, bin_width=4), "kalman": {}}


@pytest.fixture(scope="module")
def recording() -> Recording:
    """Poisson counts whose targets are smoothed sums of channel groups, in 4 segments."""
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(T, C))
    kernel = np.ones(8) / 8
    drive = np.stack([x[:, :3].sum(1) - x[:, 3:].sum(1), x[:, 1:4].sum(1)], 1).astype(float)
    y = np.stack([np.convolve(d, kernel)[:T] for d in drive.T], 1)
    seg = np.arange(T) // 600
    split = {"train": np.flatnonzero(seg < 2), "val": np.flatnonzero(seg == 2),
             "test": np.flatnonzero(seg == 3)}  # fmt: skip
    return Recording(x=x, bin_ms=4.0, y=y, segment=seg, split=split)


@pytest.fixture(scope="module")
def fitted(recording) -> dict[str, torch.nn.Module]:
    """Ridge and Kalman decoders solved on the recording."""
    out = {}
    for name, kwargs in SIZES.items():
        model = build_model(name, in_channels=C, out_dim=2, **kwargs)
        fit(model, recording, progress=False)
        out[name] = model.eval()
    return out


def _torch_forward(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float32)[None])[0].numpy()


@pytest.mark.parametrize("name", list(SIZES))
@pytest.mark.parametrize("backend", ["ort", "numpy"])
def test_onnx_streams_like_torch(name, backend, fitted, recording, tmp_path):
    model = fitted[name]
    report = to_onnx(model, tmp_path / f"{name}.onnx", recording=recording)
    assert report.verification.passed and report.metadata.model_family == name
    assert report.metadata.streaming.mode == model.streaming_mode
    x = recording.x[recording.rows("test")].astype(np.float32)
    streamed = StreamingDecoder(tmp_path / f"{name}.onnx", backend=backend).run(x)
    np.testing.assert_allclose(streamed, _torch_forward(model, x), atol=1e-5)


def test_w8_ridge_compresses_and_exports(fitted, recording, tmp_path):
    from cortexedge.compress.artifacts import save_compressed
    from cortexedge.compress.recipe import Recipe, compress

    result = compress(fitted["ridge"], recording, Recipe(bits=8, finetune_epochs=0))
    assert [s["name"] for s in result.stages] == ["float", "quantized"]
    assert result.stages[-1]["r2"] > result.stages[0]["r2"] - 0.05  # 8 bits barely cost
    folder = save_compressed(result, tmp_path / "w8")
    report = to_onnx(folder, tmp_path / "w8.onnx", recording=recording)
    assert report.verification.passed and report.metadata.bits["weights"] == 8
    x = recording.x[recording.rows("test")].astype(np.float32)
    streamed = StreamingDecoder(tmp_path / "w8.onnx", backend="ort").run(x)
    np.testing.assert_allclose(streamed, _torch_forward(result.model, x), atol=1e-5)


@pytest.mark.parametrize("name", list(SIZES))
def test_linear_decoders_build_in_c_from_their_graph(name, fitted, recording, tmp_path):
    # no reader of their class: the C is the step graph's (lag buffer, Gemm; Kalman's state)
    from cortexedge.export.c.generate import export_c

    res = export_c(fitted[name], tmp_path / "c", recording=recording, cortex_m=False,
                   verify_bins=2000)  # fmt: skip
    assert res.manifest["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    x = recording.x[recording.rows("test")][:500].astype(np.float32)
    y_c = StreamingDecoder(tmp_path / "c" / "decoder.onnx", backend="c").run(x)
    np.testing.assert_allclose(y_c, _torch_forward(fitted[name], x), atol=1e-4)


@click.group()
def cli() -> None:
    """The train and export commands."""


cli.add_command(train)
cli.add_command(export)


@pytest.mark.parametrize("name", list(SIZES))
def test_cli_trains_a_checkpoint_that_exports(name, recording, tmp_path):
    data = recording.save(tmp_path / "rec.npz")
    cfg = tmp_path / "run.toml"
    cfg.write_text("[model]\n" + "".join(f"{k} = {v}\n" for k, v in SIZES[name].items()))
    run = tmp_path / "run"
    args = ["train", "--data", str(data), "--model", name, "--config", str(cfg), "--out", str(run)]
    trained = CliRunner().invoke(cli, args)
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 0 and metrics["test"]["r2"] > 0.3
    out = tmp_path / "decoder.onnx"
    exported = CliRunner().invoke(cli, ["export", str(run), "--out", str(out), "--data", str(data)])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout.startswith(f"wrote {out}")  # progress lines go to stderr
