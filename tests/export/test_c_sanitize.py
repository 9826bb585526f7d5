"""The generated code under AddressSanitizer and UBSan: no out-of-bounds access, no undefined
behaviour (signed overflow, bad shifts), same outputs as the normal host build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexedge.export.c import build, emit_int
from cortexedge.export.c.generate import float_program
from cortexedge.export.c.int_extract import int_model
from cortexedge.export.c.model_ir import read_structure
from cortexedge.runtime.backends.c import CLibrary
from cortexedge.runtime.model import load_decoder
from cortexedge.train.models.aegru import AEGRU
from tests.export.c_helpers import contract_onnx, prune_half, ptq, window_batches

pytestmark = pytest.mark.skipif(
    not build.sanitizers_available(),
    reason="the host C compiler cannot build and run -fsanitize=address,undefined programs",
)


@pytest.mark.parametrize("numeric", ["int", "float"])
@pytest.mark.parametrize("mode", ["window", "stateful"])
def test_host_run_is_clean_under_asan_and_ubsan(tmp_path, numeric, mode):
    torch.manual_seed(5)
    model = AEGRU(12, hidden=8, enc_dim=8, bin_width=4, num_steps=3, mode=mode,
                  training_parts=False).eval()  # fmt: skip
    prune_half(model)
    x = np.random.default_rng(3).poisson(0.8, (600, 12)).astype(np.float32)
    if numeric == "int":
        calib = window_batches(x, 4, 3)
        ptq(model, calib if mode == "window" else calib.reshape(1, -1, 12))
        program = emit_int.emit(int_model(read_structure(model), max_count=7), "auto")
        x = np.minimum(x, 7)
    else:
        onnx = contract_onnx(model, tmp_path / "f.onnx", 12)
        program = float_program(load_decoder(onnx), "sparse")
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    lib = CLibrary(build.host_library(tmp_path), numeric, 2, 12)
    sanitized = build.sanitized_run(tmp_path, x, lib.raw_dtype)
    assert np.array_equal(sanitized, lib.run(lib.states(1), x))
