"""Artifacts the battery tampers with, built once per session, and the battery's tally.

`pipeline` runs the real CLI once: a synthetic reaching recording, a one-epoch GRU run, its
decoder.onnx and its float C build. `int_build` is a W8A8 AEGRU's integer C build. Cases copy
them (cheap) before any edit. The terminal summary prints one line of figures, then one per
defect class, for the cases under tests/reliability only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.reliability.outcomes import TALLY, record

HERE = Path(__file__).parent
HAVE_CC = any(shutil.which(n) for n in filter(None, (os.environ.get("CC"), "cc", "gcc")))
needs_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc/gcc): no C build to test")


def invoke(args: list) -> str:
    """Run the CLI in process; the output, or AssertionError when it did not succeed."""
    from click.testing import CliRunner

    from cortexedge.cli.main import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory) -> SimpleNamespace:
    """recording -> run -> decoder.onnx (and, with a compiler, the C build folder)."""
    root = tmp_path_factory.mktemp("pipeline")
    rec, run = root / "rec.npz", root / "run"
    invoke(["data", "synth", "reaching", "--out", rec, "--channels", 96, "--minutes", 0.5])
    args = '{"hidden": 8, "layers": 1}'
    invoke(["train", "--data", rec, "--model", "gru", "--model-args", args, "--out", run,
            "--quick", "--epochs", 1])  # fmt: skip
    invoke(["export", run, "--data", rec, "--out", root / "decoder.onnx"])
    cbuild = None
    if HAVE_CC:
        cbuild = root / "cbuild"
        invoke(["export", run, "--data", rec, "--out", cbuild, "--target", "c"])
    return SimpleNamespace(root=root, recording=rec, run=run, onnx=root / "decoder.onnx",
                           cbuild=cbuild)  # fmt: skip


@pytest.fixture(scope="session")
def compressed(pipeline) -> Path:
    """The pipeline's run quantized to W8A8 (no fine-tuning): a compressed checkpoint."""
    out = pipeline.root / "w8"
    invoke(["compress", pipeline.run, "--data", pipeline.recording, "--out", out, "--bits", 8,
            "--finetune-epochs", 0])  # fmt: skip
    return out


@pytest.fixture(scope="session")
def int_build(tmp_path_factory) -> Path:
    """The folder of a W8A8 AEGRU's integer C build (whole counts 0..7, 10 channels)."""
    if not HAVE_CC:
        pytest.skip("no C compiler (cc/gcc): no C build to test")
    import numpy as np
    import torch

    from cortexedge.export.c.generate import export_c
    from cortexedge.train.models.aegru import AEGRU
    from tests.export.c_helpers import contract_onnx, ptq, window_batches

    tmp = tmp_path_factory.mktemp("cint")
    torch.manual_seed(6)
    model = AEGRU(10, hidden=8, enc_dim=8, bin_width=3, num_steps=3, training_parts=False)
    calib = np.random.default_rng(0).poisson(0.7, (600, 10)).astype(np.float32)
    ptq(model.eval(), window_batches(calib, 3, 3))
    onnx = contract_onnx(model, tmp / "q.onnx", 10)
    export_c(model, tmp / "c", onnx_path=onnx, max_count=7, verify_bins=300, reference_bins=100,
             cortex_m=False)  # fmt: skip
    return tmp / "c"


def copy_of(src: Path, dest_dir: Path) -> Path:
    """A copy of the file or folder `src` inside `dest_dir`."""
    dest = dest_dir / src.name
    if src.is_dir():
        shutil.copytree(src, dest)
    else:
        shutil.copy2(src, dest)
    return dest


def _ours(item) -> bool:
    return HERE in Path(str(item.path)).parents


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _ours(item) and report.failed:
        record(getattr(item.module, "GROUP", item.module.__name__), "failed")
    return report


def pytest_terminal_summary(terminalreporter) -> None:
    if not TALLY:
        return
    total = sum((c for c in TALLY.values()), start=type(next(iter(TALLY.values())))())
    tried = sum(total.values())
    write = terminalreporter.write_line
    write(f"reliability battery: {tried} inputs tried, {total['refused']} clean refusals, "
          f"{total['accepted']} accepted-equal, {total['failed']} failures")  # fmt: skip
    for group in sorted(TALLY):
        c = TALLY[group]
        write(f"  {group}: {sum(c.values())} tried, {c['refused']} refused, "
              f"{c['accepted']} accepted-equal, {c['failed']} failed")  # fmt: skip
