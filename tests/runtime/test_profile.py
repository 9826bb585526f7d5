"""The profiler, its reports and the `cortexedge profile` command; the runtime never loads torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from cortexedge.cli.commands_profile import profile as profile_command
from cortexedge.errors import CortexEdgeError
from cortexedge.metrics import r2_score
from cortexedge.recording import Recording
from cortexedge.runtime import StreamingDecoder, count_graph, load_decoder
from cortexedge.runtime.profile import latency_stats, profile, recording_stream, synthetic_stream
from cortexedge.runtime.report import print_summary, save_plot, write_json


def test_latency_stats_by_hand():
    stats = latency_stats(np.arange(1, 101) * 1000)  # 1..100 µs
    assert stats["p50"] == pytest.approx(50.5)
    assert stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01)
    assert stats["p999"] == pytest.approx(99.901)
    assert (stats["max"], stats["mean"]) == (100.0, 50.5)
    assert stats["jitter"] == pytest.approx(99.01 - 50.5)
    assert stats["std"] == pytest.approx(np.arange(1, 101).std())


def test_profile_summary_keys_and_numbers(gru_op):
    meta = load_decoder(gru_op.path).meta
    run = profile(gru_op.path, synthetic_stream(meta, 60), ("ort", "numpy"), warmup=10)
    s = run.summary
    counts = count_graph(load_decoder(gru_op.path).proto)
    assert s["macs"] == {"dense": counts.dense, "effective": counts.effective}
    assert s["footprint_bytes"] == counts.footprint_bytes
    assert s["r2"] is None  # synthetic bins have no targets
    assert (s["bins"], s["warmup_bins"]) == (60, 10)
    for name in ("ort", "numpy"):
        b = s["backends"][name]
        assert set(b["latency_us"]) >= {"p50", "p90", "p99", "p999", "max", "mean"}
        assert 0 <= b["deadline_misses"] <= 50 and b["bins_per_s"] > 0
        assert len(run.latencies_ns[name]) == 60
    assert s["backends"]["numpy"]["max_abs_diff_vs_first"] < 1e-5
    assert min(b["p50_vs_fastest"] for b in s["backends"].values()) == 1.0
    np.testing.assert_allclose(run.predictions, StreamingDecoder(gru_op.path).run(run.stream.bins))
    json.dumps(s)  # JSON-ready


def _recording(path, bin_ms=4.0, channels=12, targets=2):
    rng = np.random.default_rng(0)
    x = rng.poisson(1.0, size=(200, channels)).astype(np.float32)
    y = rng.normal(size=(200, targets)).astype(np.float32)
    split = {"train": np.arange(0, 50), "val": np.arange(100, 150),
             "test": np.r_[50:100, 150:200]}  # fmt: skip
    Recording(x=x, y=y, bin_ms=bin_ms, split=split).save(path)
    return path


def test_recording_stream_feeds_each_test_run_after_its_context(gru_op, tmp_path):
    """Test rows 50:100 and 150:200 of one segment; a stateful 4 ms decoder gets 2 s of context:
    run 1 is fed rows 0:100 (50 context), run 2 rows 0:200 (150 context), each from reset."""
    meta = load_decoder(gru_op.path).meta
    path = _recording(tmp_path / "r.npz")
    stream = recording_stream(path, meta, None)
    assert len(stream.bins) == 300 and np.flatnonzero(stream.resets).tolist() == [0, 100]
    assert np.flatnonzero(stream.scored).tolist() == [*range(50, 100), *range(250, 300)]
    run = profile(gru_op.path, stream, warmup=0)
    keep = stream.scored
    assert run.summary["scored_bins"] == 100
    assert run.summary["r2"] == pytest.approx(r2_score(stream.targets[keep], run.predictions[keep]))
    rec, fresh = Recording.load(path), StreamingDecoder(gru_op.path)
    ys = [fresh.step(row) for row in rec.x[:151]]  # row 150 decoded after rows 0..149
    np.testing.assert_allclose(run.predictions[250], ys[150], rtol=1e-5, atol=1e-6)
    assert len(recording_stream(path, meta, 30).bins) == 30


def test_recording_that_does_not_fit_is_refused(gru_op, tmp_path):
    meta = load_decoder(gru_op.path).meta
    with pytest.raises(CortexEdgeError, match="bins are 20 ms, the decoder was exported for 4 ms"):
        recording_stream(_recording(tmp_path / "a.npz", bin_ms=20.0), meta, None)
    with pytest.raises(CortexEdgeError, match=r"bins have shape \(5,\), the decoder expects"):
        recording_stream(_recording(tmp_path / "b.npz", channels=5), meta, None)
    with pytest.raises(CortexEdgeError, match="3 targets per bin, the decoder has 2 outputs"):
        recording_stream(_recording(tmp_path / "c.npz", targets=3), meta, None)


def test_realtime_pacing_reports_lateness(gru_op):
    meta = load_decoder(gru_op.path).meta
    run = profile(gru_op.path, synthetic_stream(meta, 12), realtime=True, warmup=2)
    assert set(run.summary["backends"]["ort"]["lateness_us"]) >= {"p50", "p99", "max"}
    with pytest.raises(CortexEdgeError, match=r"warmup: must be in \[0, 12\)"):
        profile(gru_op.path, synthetic_stream(meta, 12), warmup=12)


def test_reports_table_json_and_png(gru_op, tmp_path):
    from rich.console import Console

    meta = load_decoder(gru_op.path).meta
    stream = recording_stream(_recording(tmp_path / "r.npz"), meta, 100)  # context + 50 scored
    run = profile(gru_op.path, stream, ("ort", "numpy"), warmup=5)
    console = Console(record=True, width=120)
    print_summary(run.summary, console)
    text = console.export_text()
    assert "p99.9" in text and "numpy" in text and "r2:" in text
    write_json(run.summary, tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text())["macs"] == run.summary["macs"]
    save_plot(run, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trace_axes_name_the_unit_only_when_there_is_one():
    from cortexedge.runtime.report import axis_label

    assert axis_label({"name": "vx", "unit": "mm per 4 ms sample"}) == "vx (mm per 4 ms sample)"
    assert axis_label({"name": "vel0", "unit": ""}) == "vel0"  # a .mat converted without units
    assert axis_label({"name": "vel1", "unit": None}) == "vel1"


def test_cli_realtime_reports_lateness_in_table_and_json(gru_op, tmp_path):
    args = ["profile", str(gru_op.path), "--synthetic", "--bins", "30", "--realtime",
            "--json", str(tmp_path / "rt.json")]  # fmt: skip
    result = CliRunner().invoke(_cli(), args)  # 80 columns, as in a pipe: nothing is cropped
    assert result.exit_code == 0, result.output
    late = json.loads((tmp_path / "rt.json").read_text())["backends"]["ort"]["lateness_us"]
    assert {"p50", "p99", "max"} <= set(late) and late["max"] >= late["p99"] >= late["p50"]
    text = " ".join(result.output.split())  # rich wraps at the terminal width
    assert "lateness is how long after its due time" in text and "…" not in text
    row = re.search(r"ort \d+ [\d,]+ [\d.]+ [\d.]+x (\S+) (\S+) (\S+)", text)
    assert row.groups() == tuple(f"{late[k] / 1e3:.2f}" for k in ("p50", "p99", "max"))


def _cli():
    """A group of the real CLI's class (it turns CortexEdgeError into exit 2) holding profile."""
    from cortexedge.cli.main import cli

    group = type(cli)(name="cortexedge")
    group.add_command(profile_command)
    return group


def test_cli_writes_json_and_plot(gru_op, tmp_path):
    args = ["profile", str(gru_op.path), "--synthetic", "--bins", "40", "--backend", "all",
            "--json", str(tmp_path / "o.json"), "--plot", str(tmp_path / "o.png")]  # fmt: skip
    result = CliRunner().invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o.json").read_text())
    assert {"macs", "footprint_bytes", "r2", "backends"} <= set(summary)
    assert {"ort", "numpy"} <= set(summary["backends"])
    assert (tmp_path / "o.png").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.onnx"], "error: decoder file not found: missing.onnx"),
        (["{model}", "--data", "x.npz", "--synthetic"], "choose either --data or --synthetic"),
        (["{model}", "--backend", "gpu"], "--backend: 'gpu' is not available"),
        (["{model}", "--json", "/no/such/dir/o.json"], "output folder does not exist"),
        (["{model}", "--data", "nope.npz"], "recording not found: nope.npz"),
    ],
)
def test_cli_user_errors_exit_2(gru_op, args, message):
    args = [a.replace("{model}", str(gru_op.path)) for a in args]
    result = CliRunner().invoke(_cli(), ["profile", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_runtime_and_profile_command_never_import_torch(gru_op):
    code = (
        "import sys\n"
        "import cortexedge.runtime, cortexedge.runtime.profile, cortexedge.runtime.report\n"
        "from cortexedge.cli.commands_profile import profile\n"
        f"profile.main([{str(gru_op.path)!r}, '--bins', '20', '--backend', 'all'],"
        " standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('no torch')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "no torch" in done.stdout
