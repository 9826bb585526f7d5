"""AEGRU: the architecture against its equations, sizes, separable training parts, errors."""

import math

import pytest
import torch

from cortexedge.errors import CortexEdgeError
from cortexedge.train.models.aegru import AEGRU, box_sum
from cortexedge.train.models.registry import build_model


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def randomise_norms(model: AEGRU) -> None:
    """Non-trivial BatchNorm running statistics and affine parameters of every norm layer."""
    with torch.no_grad():
        model.norm.running_mean.uniform_(-0.5, 0.5)
        model.norm.running_var.uniform_(0.5, 2.0)
        for norm in [model.norm, *model.cell_norms]:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.3, 0.3)


def reference_forward(model: AEGRU, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode AEGRU written out from its equations (torch's GRUCell gate order r, z, n)."""
    feat = torch.log(torch.log1p(torch.exp(x)))
    bn = model.norm
    e = feat @ model.encoder.weight.T + model.encoder.bias
    mu = (e - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    inp_seq = mu.clamp(-10, 10)
    for cell, ln in zip(model.cells, model.cell_norms, strict=True):
        h = torch.zeros(x.shape[0], model.hidden)
        outs = []
        for t in range(x.shape[1]):
            gi = inp_seq[:, t] @ cell.weight_ih.T + cell.bias_ih
            gh = h @ cell.weight_hh.T + cell.bias_hh
            (i_r, i_z, i_n), (h_r, h_z, h_n) = gi.chunk(3, -1), gh.chunk(3, -1)
            r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            h = (1 - z) * torch.tanh(i_n + r * h_n) + z * h
            mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
            h = (h - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias
            outs.append(h)
        inp_seq = torch.stack(outs, dim=1)
    return inp_seq @ model.readout.weight.T + model.readout.bias


@pytest.mark.parametrize("layers", [1, 2])
def test_forward_matches_the_equations(layers):
    torch.manual_seed(0)
    model = AEGRU(6, enc_dim=4, hidden=5, layers=layers)
    randomise_norms(model)
    model.eval()
    x = torch.poisson(torch.full((3, 5, 6), 2.0))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference_forward(model, x), rtol=0, atol=1e-5)


def test_shapes():
    torch.manual_seed(0)
    model = AEGRU(6, out_dim=3, enc_dim=4, hidden=5, bin_width=2, num_steps=3)
    x = torch.poisson(torch.full((4, 3, 6), 2.0))
    assert model(x).shape == (4, 3, 3)
    out = model.forward_train(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "y": (4, 3, 3),
        "rates": (4, 3, 6),
        "mu": (4, 3, 4),
        "logvar": (4, 3, 4),
    }
    assert (out["rates"] > 0).all()
    assert model.eval().stream(torch.zeros(2, 11, 6)).shape == (2, 11, 3)


@pytest.mark.parametrize(
    ("channels", "hidden", "expected"),
    [(96, 32, 9_634), (192, 32, 12_706), (96, 64, 22_242)],
)
def test_inference_parameter_count(channels, hidden, expected):
    """Anchors' 9,634 (indy) and 12,706 (loco) are hit exactly with hidden=32, not 64."""
    e, d = 32, 2
    by_formula = (
        (channels * e + e)  # encoder Linear
        + 2 * e  # BatchNorm affine
        + 3 * hidden * (e + hidden)
        + 6 * hidden  # GRUCell
        + 2 * hidden  # LayerNorm
        + hidden * d
        + d  # readout
    )
    assert by_formula == expected
    model = AEGRU(channels, hidden=hidden)
    assert n_params(model.inference_module()) == expected
    aux = (channels * 128 + 128) + (128 * e + e) + (e * channels + channels)
    assert n_params(model) == expected + aux


def test_training_parts_are_separable():
    torch.manual_seed(0)
    model = AEGRU(6, enc_dim=4, hidden=5)
    randomise_norms(model)
    stripped = model.inference_module()
    assert model.aux is not None  # the original keeps its training parts
    assert any(k.startswith("aux.") for k in model.state_dict())
    assert not any(k.startswith("aux.") for k in stripped.state_dict())
    assert set(stripped.state_dict()) == {k for k in model.state_dict() if not k.startswith("aux.")}
    assert stripped.config() == {**model.config(), "training_parts": False}
    x = torch.poisson(torch.full((2, 5, 6), 2.0))
    model.eval(), stripped.eval()
    with torch.no_grad():
        torch.testing.assert_close(stripped(x), model(x), rtol=0, atol=0)
        torch.testing.assert_close(stripped.stream(x), model.stream(x), rtol=0, atol=0)
        assert torch.equal(model.forward_train(x)["y"], model(x))  # eval: z = mu
    rebuilt = build_model("aegru", **stripped.config())
    rebuilt.load_state_dict(stripped.state_dict(), strict=True)
    with pytest.raises(CortexEdgeError, match="forward_train needs the training parts"):
        stripped.forward_train(x)


def test_training_mode_samples_z_and_batch_normalises_mu():
    torch.manual_seed(0)
    model = AEGRU(6, enc_dim=4, hidden=5).train()
    x = torch.poisson(torch.full((64, 5, 6), 2.0))
    first, second = model.forward_train(x), model.forward_train(x)
    assert torch.equal(first["mu"], second["mu"])
    assert not torch.allclose(first["rates"], second["rates"])  # z = mu + ε·σ differs
    mu = first["mu"].flatten(0, 1)  # batch statistics over batch × steps; far below the clamp
    torch.testing.assert_close(mu.mean(0), torch.zeros(4), rtol=0, atol=1e-5)
    torch.testing.assert_close(mu.var(0, unbiased=False), torch.ones(4), rtol=0, atol=1e-3)


def test_encoder_output_is_clamped_to_ten():
    model = AEGRU(3, enc_dim=2, hidden=4).eval()
    with torch.no_grad():
        model.encoder.weight.copy_(torch.tensor([[100.0, 0, 0], [-100.0, 0, 0]]))
        model.encoder.bias.zero_()
        out = model.forward_train(torch.tensor([[[5.0, 0, 0], [0.0, 0, 0]]]))
    # log(softplus(5)) ≈ 1.61 -> ±161 before the clamp; log(softplus(0)) ≈ -0.37 -> ∓36.7
    assert out["mu"][0].tolist() == [[10.0, -10.0], [-10.0, 10.0]]


def test_box_sum_by_hand():
    x = torch.arange(1.0, 6.0).reshape(1, 5, 1)  # 1 2 3 4 5
    assert box_sum(x, 3)[0, :, 0].tolist() == [1.0, 3.0, 6.0, 9.0, 12.0]


def test_state_layout():
    window = AEGRU(6, hidden=5, bin_width=4, num_steps=3)
    assert window.state_names() == ("buffer",)
    assert [tuple(s.shape) for s in window.init_state(2)] == [(2, 12, 6)]
    stateful = AEGRU(6, hidden=5, layers=2, bin_width=4, mode="stateful")
    assert stateful.state_names() == ("buffer", "h0", "h1")
    assert [tuple(s.shape) for s in stateful.init_state(2)] == [(2, 3, 6), (2, 5), (2, 5)]


@pytest.mark.parametrize("layers", [1, 2])
def test_window_step_reads_out_the_last_bin_once(layers):
    """One raw sample in: the window re-binned, the stack rerun from zero over its bins (the
    equations), and the readout applied once, to the last bin's h, for every row of a batch."""
    torch.manual_seed(1)
    model = AEGRU(6, enc_dim=4, hidden=5, layers=layers, bin_width=2, num_steps=3)
    randomise_norms(model)
    model.eval()
    buffer = torch.poisson(torch.full((3, 6, 6), 1.5))
    x_t = torch.poisson(torch.full((3, 6), 1.5))
    calls = []
    model.readout.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape)))
    with torch.no_grad():
        y, (new,) = model.step(x_t, (buffer,))
    window = torch.cat([buffer[:, 1:], x_t[:, None]], dim=1)
    assert torch.equal(new, window)
    bins = window.reshape(3, 3, 2, 6).sum(2)
    torch.testing.assert_close(y, reference_forward(model, bins)[:, -1], rtol=0, atol=1e-5)
    assert calls == [(3, 5)]


def test_log_softplus_input_transform_at_zero():
    """Empty bins are not zero after the transform: log(log 2) feeds the encoder."""
    model = AEGRU(2, enc_dim=1, hidden=3).eval()
    with torch.no_grad():
        model.encoder.weight.fill_(1.0)
        model.encoder.bias.zero_()
        mu = model.forward_train(torch.zeros(1, 1, 2))["mu"]
    bn = model.norm  # fresh running stats: mean 0, var 1
    assert mu.item() == pytest.approx(2 * math.log(math.log(2)) / math.sqrt(1 + bn.eps), abs=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda m: m(torch.zeros(2, 5, 7)),
            r"AEGRU: x must have shape \[batch, steps, channels\] with channels=6, got \[2, 5, 7\]",
        ),
        (
            lambda m: m(torch.zeros(5, 6)),
            r"AEGRU: x must have shape \[batch, steps, channels\] with channels=6, got \[5, 6\]",
        ),
        (
            lambda m: m.stream(torch.zeros(1, 9, 4)),
            r"AEGRU: x must have shape \[batch, samples, channels\] with channels=6, "
            r"got \[1, 9, 4\]",
        ),
        (
            lambda m: m.step(torch.zeros(1, 1, 6), m.init_state(1)),
            r"AEGRU: x_t must have shape \[batch, channels\] with channels=6, got \[1, 1, 6\]",
        ),
    ],
)
def test_wrong_input_shape_is_a_clear_error(call, message):
    model = AEGRU(6, hidden=5).eval()
    with pytest.raises(CortexEdgeError, match=message):
        call(model)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "causal"}, r"AEGRU: mode must be one of window, stateful, got 'causal'"),
        ({"hidden": 0}, r"AEGRU: hidden must be an integer >= 1, got 0"),
        ({"bin_width": 2.5}, r"AEGRU: bin_width must be an integer >= 1, got 2.5"),
        ({"dropout": 1.0}, r"AEGRU: dropout must lie in \[0, 1\), got 1.0"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(CortexEdgeError, match=message):
        AEGRU(6, **kwargs)


def test_aegru_loss_trains_every_part():
    from cortexedge.train.models.losses import aegru_loss

    torch.manual_seed(0)
    model = AEGRU(6, enc_dim=4, hidden=5, bin_width=2, num_steps=3).train()
    x = torch.poisson(torch.full((8, 3, 6), 2.0))
    total, parts = aegru_loss(model.forward_train(x), x, torch.randn(8, 3, 2), w_kl=0.1)
    total.backward()
    assert set(parts) == {"rec", "kl", "mse"}
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []
