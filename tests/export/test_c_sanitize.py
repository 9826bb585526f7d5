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


REFUSAL_MAIN = r"""
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "decoder.h"
int main(void)
{
    decoder_state_t s, before;
    decoder_input_t bin[DECODER_CHANNELS];
    decoder_output_t out[DECODER_OUTPUTS], kept[DECODER_OUTPUTS];
    int k, t;
    decoder_init(&s);
    for (t = 0; t < 30; ++t) { /* some history first */
        for (k = 0; k < DECODER_CHANNELS; ++k) {
            bin[k] = (decoder_input_t)((t + k) % 3);
        }
        if (decoder_step(&s, bin, out) != 0) {
            return 10;
        }
    }
    memcpy(&before, &s, sizeof s);
    memcpy(kept, out, sizeof out);
    bin[5] = BAD;
    printf("%d %d %d\n", decoder_step(&s, bin, out), memcmp(&before, &s, sizeof s) == 0,
           memcmp(kept, out, sizeof out) == 0);
    return 0;
}
"""


@pytest.mark.parametrize(
    "numeric, bad",
    [("float", "NAN"), ("float", "INFINITY"), ("float", "-1.0f"), ("int", "8")],
)
def test_the_device_step_refuses_a_bad_value_and_changes_nothing(tmp_path, numeric, bad):
    # straight to the step, no runtime around it, under UBSan: NaN, inf and out-of-range values
    # are refused with 1 + their channel; the state and the outputs stay as they were
    from cortexedge.export.c.build import STRICT, host_compiler, run

    torch.manual_seed(5)
    model = AEGRU(12, hidden=8, enc_dim=8, bin_width=4, num_steps=3, training_parts=False).eval()
    if numeric == "int":
        x = np.random.default_rng(3).poisson(0.8, (600, 12)).astype(np.float32)
        ptq(model, window_batches(x, 4, 3))
        program = emit_int.emit(int_model(read_structure(model), max_count=7), "auto")
    else:
        program = float_program(load_decoder(contract_onnx(model, tmp_path / "f.onnx", 12)), "auto")
    for name, text in program.files().items():
        (tmp_path / name).write_text(text)
    (tmp_path / "main.c").write_text(REFUSAL_MAIN.replace("BAD", bad))
    run([host_compiler(), *STRICT, "-O1", "-fsanitize=undefined", "-fsanitize=float-cast-overflow",
         "-fno-sanitize-recover=all", "main.c", "decoder.c", "decoder_weights.c", "-o", "m",
         "-lm"], tmp_path, "build")  # fmt: skip
    assert run(["./m"], tmp_path, "run").split() == ["6", "1", "1"]
