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
    # the input transform as the graph holds it (Softplus, Log): whole, fractional and large
    # counts, within the float tolerance of onnxruntime
    torch.manual_seed(3)
    model = GRUDecoder(10, hidden=8, transform="log_softplus").eval()
    exported(tmp_path, model, 10, verify_bins=300)
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.poisson(2.0, (100, 10)), rng.gamma(2.0, 1.5, (100, 10)),
                        rng.integers(250, 400, (100, 10))]).astype(np.float32)  # fmt: skip
    path = tmp_path / "c" / "decoder.onnx"
    y_c = StreamingDecoder(path, backend="c").run(x)
    y_o = StreamingDecoder(path, backend="ort").run(x)
    np.testing.assert_allclose(y_c, y_o, atol=1e-5 * max(1.0, float(np.abs(y_o).max())))
