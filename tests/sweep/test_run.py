"""Sweeps on a shared local Ray: a full 2 x 2 x 2 grid, a rerun, a failing cell."""

from __future__ import annotations

import json
import shutil
import statistics

import pytest

from cortexedge.sweep import report, results, run
from tests.sweep.conftest import USER_LSTM, write_plan

pytestmark = pytest.mark.slow


DECODERS = ("gru", USER_LSTM)  # a family and a user's class from its file


@pytest.fixture(scope="module")
def swept(local_ray, recording_dir, tmp_path_factory):
    """A 2 decoders x 2 recipes x 2 seeds sweep, run once for the module."""
    folder = tmp_path_factory.mktemp("sweep-full")
    shutil.copy(recording_dir / "rec.npz", folder)
    out = folder / "out"
    rows = run(write_plan(folder, decoders=DECODERS), out, progress=False, trust_code=True)
    return folder, out, rows


def test_full_grid_completes_with_table_and_plot(swept):
    _, out, rows = swept
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows), rows
    assert {(r["decoder"], r["recipe"], r["seed"]) for r in rows} == {
        (d, p, s) for d in DECODERS for p in ("dense", "s50") for s in (0, 1)
    }
    for r in rows:
        cell = out / "cells" / r["key"]
        assert json.loads((cell / results.CELL_RESULT).read_text())["r2"] == r["r2"]
        assert (cell / "decoder.onnx").stat().st_size > 0
        assert r["macs_effective"] <= r["macs_dense"]
    s50 = [r for r in rows if r["recipe"] == "s50"]
    assert all(r["macs_effective"] < r["macs_dense"] and r["sparsity"] > 0.3 for r in s50)
    # one training run per (decoder, seed), shared by both recipes
    assert len(list((out / "trained").iterdir())) == 4
    text = report(out)
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.txt").read_text().strip() == text.strip()
    gru_dense = [r["r2"] for r in rows if (r["decoder"], r["recipe"]) == ("gru", "dense")]
    mean, sd = statistics.fmean(gru_dense), statistics.stdev(gru_dense)
    line = next(x for x in text.splitlines() if "gru" in x and "dense" in x)
    assert f"{mean:.4f}±{sd:.4f}" in line


def test_rerun_computes_nothing(swept):
    folder, out, rows = swept
    before = (out / results.RESULTS).read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "cells").iterdir()}
    again = run(write_plan(folder, decoders=DECODERS), out, progress=False, trust_code=True)
    assert again == rows
    assert (out / results.RESULTS).read_text() == before
    assert {p: p.stat().st_mtime_ns for p in (out / "cells").iterdir()} == stamps


def test_failing_cells_are_recorded_and_others_complete(local_ray, recording_dir, tmp_path):
    shutil.copy(recording_dir / "rec.npz", tmp_path)
    plan = write_plan(tmp_path, seeds=(0,), lstm_hidden=0)  # lstm cannot be built
    rows = run(plan, tmp_path / "out", progress=False)
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] == "failed"]
    assert sorted(r["decoder"] for r in ok) == ["gru", "gru"]
    assert sorted(r["decoder"] for r in failed) == ["lstm", "lstm"]
    assert all("hidden must be an integer >= 1, got 0" in r["error"] for r in failed)
    assert all("\n" not in r["error"] for r in failed)
    assert results.complete(tmp_path / "out") == {r["key"] for r in ok}
