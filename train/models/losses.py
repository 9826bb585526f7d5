"""Training losses of the decoders: AEGRU's combined loss and the sigmoid focal loss.

`aegru_loss` follows the public AEGRU challenge code: Poisson NLL of the reconstructed rates
against the binned counts (torch's `full=True` adds the Stirling term
x·log x - x + ½·log(2πx) only where x > 1), the VAE KL term averaged over every element, and the
MSE of the label series. `focal_loss` is Lin et al. (2017): binary cross-entropy scaled by
(1 - p_t)^γ and weighted by α_t, for the binary / multi-label heads of the calcium decoders.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from cortexedge.errors import CortexEdgeError


def _same_shape(what: str, got: Tensor, expected: Tensor) -> None:
    if got.shape != expected.shape:
        raise CortexEdgeError(
            f"{what}: shape {list(got.shape)} does not match the target's {list(expected.shape)}"
        )


def aegru_loss(
    out: dict[str, Tensor],
    x_binned: Tensor,
    y: Tensor,
    w_rec: float = 1.0,
    w_kl: float = 0.0,
    w_mse: float = 10.0,
) -> tuple[Tensor, dict[str, float]]:
    """w_rec·PoissonNLL(rates, x) + w_kl·KL(N(mu, e^logvar) ‖ N(0, 1)) + w_mse·MSE(y_hat, y).

    `out` is `AEGRU.forward_train(x_binned)`; every term is a mean over its elements.
    Returns the total (for backward) and the three unweighted terms as floats (for logging).
    """
    _same_shape("aegru_loss rates", out["rates"], x_binned)
    _same_shape("aegru_loss y", out["y"], y)
    rec = F.poisson_nll_loss(out["rates"], x_binned, log_input=False, full=True)
    mu, logvar = out["mu"], out["logvar"]
    kl = -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp())
    mse = F.mse_loss(out["y"], y)
    total = w_rec * rec + w_kl * kl + w_mse * mse
    return total, {"rec": rec.item(), "kl": kl.item(), "mse": mse.item()}


def focal_loss(logits: Tensor, targets: Tensor, gamma: float = 2.0, alpha: float = 0.25) -> Tensor:
    """Mean sigmoid focal loss; targets in [0, 1] with the logits' shape; alpha < 0 disables α_t."""
    _same_shape("focal_loss logits", logits, targets)
    targets = targets.to(logits.dtype)
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.mean()
