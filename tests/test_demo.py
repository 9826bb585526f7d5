"""`cortexedge demo --quick`: the whole pipeline writes every artifact and a coherent summary."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cortexedge.cli.demo import MODELS, QUICK


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "run"
    r = subprocess.run(
        [sys.executable, "-m", "cortexedge", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return out, r.stdout


@pytest.mark.slow
def test_demo_writes_every_artifact(demo_out):
    out, stdout = demo_out
    for name in (
        "recording.npz",
        "summary.json",
        "learning_curve.png",
        "r2_vs_macs.png",
        "stream_quantized.png",
        "float/model.safetensors",
        "float/metrics.json",
        "compressed/compression.json",
        "ridge/metrics.json",
        "c/decoder.c",
        "c/decoder_weights.c",
        "c/decoder.h",
        "c/README.md",
    ):
        assert (out / name).is_file(), name
    for name in MODELS:
        assert (out / f"{name}.onnx").stat().st_size > 1000
    assert f"everything is in {out}" in stdout.replace("\n", "")


@pytest.mark.slow
def test_demo_summary_is_coherent(demo_out):
    out, _ = demo_out
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["quick"] is True
    assert s["settings"]["epochs"] == QUICK.epochs
    rows = {r["model"]: r for r in s["models"]}
    assert list(rows) == list(MODELS)
    # structured pruning shrinks dense MACs; magnitude pruning shrinks effective MACs further
    assert rows["pruned"]["macs_dense"] < rows["float"]["macs_dense"]
    assert rows["pruned"]["macs_effective"] < 0.5 * rows["float"]["macs_effective"]
    assert rows["quantized"]["bytes"] < 0.3 * rows["float"]["bytes"]
    # the quantized model also runs as generated C (integer path) through the runtime
    assert set(rows["quantized"]["latency_us"]) == {"ort", "numpy", "c"}
    assert s["c_build"]["numeric"] == "int"
    assert s["c_build"]["verification"]["bit_exact_bins"] >= 1000
    for r in rows.values():
        assert {"ort", "numpy"} <= set(r["latency_us"])
        assert r["latency_us"]["ort"]["p50"] <= r["latency_us"]["ort"]["p99"]
        # headroom = the bin's deadline over the p99 latency (values, not a timing assertion)
        assert r["headroom"]["ort"] == pytest.approx(4000.0 / r["latency_us"]["ort"]["p99"])
    # the runtime scored the streamed bins itself (cold start included, so not the window R²)
    assert all(-10 < r["stream_r2"] < 1 for r in rows.values())


def test_demo_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    r = subprocess.run(
        [sys.executable, "-m", "cortexedge", "demo", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "is not a previous demo folder" in r.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"
