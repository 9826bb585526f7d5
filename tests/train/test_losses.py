"""Decoder losses against values computed by hand from their formulas (plain Python math)."""

import math

import pytest
import torch

from cortexedge.errors import CortexEdgeError
from cortexedge.train.models.losses import aegru_loss, focal_loss


def poisson_nll_full(rate: float, count: float) -> float:
    """-log Poisson(count; rate), torch's Stirling approximation of log(count!) for count > 1."""
    nll = rate - count * math.log(rate + 1e-8)
    if count > 1:
        nll += count * math.log(count) - count + 0.5 * math.log(2 * math.pi * count)
    return nll


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_aegru_loss_by_hand():
    rates = [0.5, 2.0, 1.0, 0.1]
    counts = [0.0, 2.0, 1.0, 3.0]
    mu, logvar = [0.5, -1.0], [0.2, -0.4]
    y_hat, y = [1.0, -2.0, 0.5], [0.0, -1.0, 1.5]
    out = {
        "rates": torch.tensor(rates).reshape(1, 2, 2),
        "mu": torch.tensor(mu).reshape(1, 1, 2),
        "logvar": torch.tensor(logvar).reshape(1, 1, 2),
        "y": torch.tensor(y_hat).reshape(1, 3, 1),
    }
    rec = sum(poisson_nll_full(r, c) for r, c in zip(rates, counts, strict=True)) / 4
    kl = sum(-0.5 * (1 + lv - m * m - math.exp(lv)) for m, lv in zip(mu, logvar, strict=True)) / 2
    mse = sum((a - b) ** 2 for a, b in zip(y_hat, y, strict=True)) / 3
    x_binned = torch.tensor(counts).reshape(1, 2, 2)
    target = torch.tensor(y).reshape(1, 3, 1)

    total, parts = aegru_loss(out, x_binned, target)
    assert parts == pytest.approx({"rec": rec, "kl": kl, "mse": mse}, rel=1e-6)
    assert total.item() == pytest.approx(1.0 * rec + 10.0 * mse, rel=1e-6)  # default w_kl = 0

    total, _ = aegru_loss(out, x_binned, target, w_rec=0.5, w_kl=2.0, w_mse=3.0)
    assert total.item() == pytest.approx(0.5 * rec + 2.0 * kl + 3.0 * mse, rel=1e-6)


def test_aegru_loss_backpropagates_to_every_input():
    out = {
        k: torch.full((1, 2, 2), 0.7, requires_grad=True) for k in ("rates", "mu", "logvar", "y")
    }
    total, _ = aegru_loss(out, torch.ones(1, 2, 2), torch.zeros(1, 2, 2), w_kl=1.0)
    total.backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in out.values())


def test_aegru_loss_rejects_mismatched_shapes():
    out = {k: torch.ones(1, 2, 3) for k in ("rates", "mu", "logvar")}
    out["y"] = torch.ones(1, 2, 2)
    with pytest.raises(
        CortexEdgeError,
        match=r"aegru_loss y: shape \[1, 2, 2\] does not match the target's \[1, 2\]",
    ):
        aegru_loss(out, torch.ones(1, 2, 3), torch.ones(1, 2))


def focal_by_hand(logits, targets, gamma, alpha):
    terms = []
    for z, t in zip(logits, targets, strict=True):
        p = sigmoid(z)
        ce = -(t * math.log(p) + (1 - t) * math.log(1 - p))
        p_t = p if t == 1 else 1 - p
        alpha_t = 1.0 if alpha < 0 else (alpha if t == 1 else 1 - alpha)
        terms.append(alpha_t * (1 - p_t) ** gamma * ce)
    return sum(terms) / len(terms)


def test_focal_loss_by_hand_multilabel():
    logits = [2.0, -1.0, 0.5, -3.0]  # [2 windows, left/right]
    targets = [1.0, 0.0, 0.0, 1.0]
    got = focal_loss(torch.tensor(logits).reshape(2, 2), torch.tensor(targets).reshape(2, 2))
    assert got.item() == pytest.approx(focal_by_hand(logits, targets, 2.0, 0.25), rel=1e-6)


def test_focal_loss_spot_value():
    # logit 0, target 1: p = 0.5, ce = log 2, (1 - p_t)^2 = 0.25, α_t = 0.25.
    assert focal_loss(torch.zeros(1), torch.ones(1)).item() == pytest.approx(
        0.25 * 0.25 * math.log(2), rel=1e-6
    )


def test_focal_loss_without_focus_or_alpha_is_binary_cross_entropy():
    logits, targets = [1.5, -0.5, 0.2], [1.0, 1.0, 0.0]
    bce = focal_by_hand(logits, targets, gamma=0.0, alpha=-1.0)
    got = focal_loss(torch.tensor(logits), torch.tensor(targets), gamma=0.0, alpha=-1.0)
    assert got.item() == pytest.approx(bce, rel=1e-6)
    assert bce == pytest.approx(
        (math.log(1 + math.exp(-1.5)) + math.log(1 + math.exp(0.5)) + math.log(1 + math.exp(0.2)))
        / 3,
        rel=1e-12,
    )


def test_focal_loss_rejects_mismatched_shapes():
    with pytest.raises(
        CortexEdgeError,
        match=r"focal_loss logits: shape \[4, 2\] does not match the target's \[4\]",
    ):
        focal_loss(torch.zeros(4, 2), torch.zeros(4))
