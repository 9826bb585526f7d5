"""Float C path: the generated decoder through the runtime's c backend against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cortexedge.export.c.generate import export_c
from cortexedge.runtime import StreamingDecoder
from cortexedge.train.models.aegru import AEGRU
from cortexedge.train.models.rnn import GRUDecoder
from tests.export.c_helpers import contract_onnx, prune_half, real_rows


def exported(tmp_path, model, channels: int, **kw):
    onnx = contract_onnx(model, tmp_path / "f.onnx", channels)
    return export_c(model, tmp_path / "c", onnx_path=onnx, cortex_m=False, **kw)


@pytest.mark.slow
def test_pruned_aegru_matches_onnxruntime_on_10000_real_bins(tmp_path):
    x = real_rows(10_000)
    torch.manual_seed(0)
    model = AEGRU(98, hidden=32, bin_width=4, num_steps=5, training_parts=False).eval()
    prune_half(model)
    res = exported(tmp_path, model, 98, verify_bins=1000)
    assert {m["format"] for m in res.manifest["storage"]["matrices"]} == {"csr"}
    path = tmp_path / "c" / "decoder.onnx"
    y_c = StreamingDecoder(path, backend="c").run(x)
    y_o = StreamingDecoder(path, backend="ort").run(x)
    assert np.abs(y_c - y_o).max() <= 1e-5
    with torch.no_grad():
        y_t = model.stream(torch.tensor(x[:300])[None])[0].numpy()
    assert np.abs(y_c[:300] - y_t).max() <= 1e-5


def test_stateful_models_match_onnxruntime_step_by_step(tmp_path):
    torch.manual_seed(1)
    model = AEGRU(12, hidden=8, enc_dim=8, layers=2, bin_width=3, mode="stateful",
                  training_parts=False).eval()  # fmt: skip
    res = exported(tmp_path, model, 12, verify_bins=500)
    assert res.manifest["verification"]["max_abs_err_vs_onnx"] <= 1e-5
    x = np.random.default_rng(0).poisson(1.0, (200, 12)).astype(np.float32)
    c = StreamingDecoder(tmp_path / "c" / "decoder.onnx", backend="c")
    o = StreamingDecoder(tmp_path / "c" / "decoder.onnx", backend="ort")
    got = np.stack([c.step(row) for row in x])
    np.testing.assert_allclose(got, o.run(x), atol=1e-5)
    for name, value in o.state.items():  # the C state, read back in the graph's layout
        np.testing.assert_allclose(c.state[name], value, atol=1e-5, err_msg=name)


def test_gru_decoder_state_written_back_resumes_the_stream(tmp_path):
    torch.manual_seed(2)
    model = GRUDecoder(10, hidden=8, layers=2, transform="log_softplus").eval()
    exported(tmp_path, model, 10, verify_bins=300)
    path = tmp_path / "c" / "decoder.onnx"
    x = np.random.default_rng(1).poisson(2.0, (120, 10)).astype(np.float32)
    a = StreamingDecoder(path, backend="c")
    a.run(x[:60])
    saved = a.state
    assert saved["h"].shape == (2, 1, 8)
    tail = a.run(x[60:])
    b = StreamingDecoder(path, backend="c")
    b.state = saved
    np.testing.assert_array_equal(b.run(x[60:]), tail)
    o = StreamingDecoder(path, backend="ort")
    o.state = saved
    np.testing.assert_allclose(o.run(x[60:]), tail, atol=1e-5)


def test_softplus_and_log_agree_with_onnxruntime_on_any_counts(tmp_path):
    # the input transform as the graph holds it (Softplus, Log) on spike counts is one table for
    # whole counts below 256 (the runtime's kernels, float32) and the C expressions otherwise:
    # whole, fractional and large counts, within the float tolerance of onnxruntime
    from cortexedge.export.c.graph_tables import TABLE_SIZE

    torch.manual_seed(3)
    model = GRUDecoder(10, hidden=8, transform="log_softplus").eval()
    exported(tmp_path, model, 10, verify_bins=300)
    source = (tmp_path / "c" / "decoder.c").read_text()
    (line,) = [ln for ln in source.splitlines() if "_table[(int)v]" in ln]
    assert f"v < {TABLE_SIZE}.0f" in line and "logf(softplus_f(v))" in line
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.poisson(2.0, (100, 10)), rng.gamma(2.0, 1.5, (100, 10)),
                        rng.integers(250, 400, (100, 10))]).astype(np.float32)  # fmt: skip
    path = tmp_path / "c" / "decoder.onnx"
    y_c = StreamingDecoder(path, backend="c").run(x)
    y_o = StreamingDecoder(path, backend="ort").run(x)
    np.testing.assert_allclose(y_c, y_o, atol=1e-5 * max(1.0, float(np.abs(y_o).max())))


def test_exp_sigmoid_tanh_helpers_are_within_their_stated_bounds(tmp_path):
    # the generated C helpers themselves, compiled with the host flags and run on a grid; NaN
    # goes through them as NaN (no float-to-integer conversion of it: defined behaviour)
    from cortexedge.export.c.build import STRICT, host_compiler, host_flags, run
    from cortexedge.export.c.float_math import HELPERS

    helpers = "".join(HELPERS[k][0] for k in ("inline", "exp_poly", "sigmoid_f", "tanh_f"))
    main = (
        "#include <math.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <string.h>\n"
        + helpers
        + """
int main(void)
{
    int i;
    float nan = NAN;
    printf("%d %d %d\\n", isnan(exp_poly(nan)), isnan(sigmoid_f(nan)), isnan(tanh_f(nan)));
    for (i = 0; i <= 35000; ++i) {
        float x = -87.0f + (float)i * 0.005f;
        printf("%.9g %.9g %.9g\\n", exp_poly(x), sigmoid_f(x / 4.0f), tanh_f(x / 4.0f));
    }
    return 0;
}
"""
    )
    (tmp_path / "h.c").write_text(main)
    run([host_compiler(), *STRICT, *host_flags(), "-fsanitize=undefined",
         "-fsanitize=float-cast-overflow", "-fno-sanitize-recover=all", "h.c", "-o", "h",
         "-lm"], tmp_path, "build")  # fmt: skip
    lines = run(["./h"], tmp_path, "run").split("\n", 1)
    assert lines[0].split() == ["1", "1", "1"]
    out = np.array(lines[1].split(), dtype=np.float64).reshape(-1, 3)
    x = (np.float32(-87.0) + np.arange(35001, dtype=np.float32) * np.float32(0.005)).astype(
        np.float64
    )
    assert np.abs(out[:, 0] / np.exp(x) - 1).max() < 1e-7
    assert np.abs(out[:, 1] - 1 / (1 + np.exp(-x / 4))).max() < 1e-7
    assert np.abs(out[:, 2] - np.tanh(x / 4)).max() < 1e-7
