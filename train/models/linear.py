"""Linear decoders fitted in closed form, streaming like the neural ones.

- `RidgeDecoder`: the lagged Wiener filter, the floor for every decoder. The features of row t
  are the box sums of the `lags` bins of `bin_width` rows ending at t, flattened [lag, channel],
  oldest lag first (the bins AEGRU reads); y_t = W·features + b. Window mode: the state is the
  buffer of the last lags·bin_width rows, zeros before the start.
- `KalmanFilterDecoder`: the steady-state velocity Kalman filter (Wu et al. 2006). State model
  x_t = A x_{t-1} + w, observation z_t = H x_t + q (x the targets, z the input rows, both
  centred); with the steady-state gain K the filter is the fixed recurrence
  x̂_t = (I − K H) A x̂_{t-1} + K (z_t − z̄). Stateful: the state is the estimate itself, in the
  targets' units (x̂ + ȳ), so both means fold into the input layer's bias and the state starts
  at zero like every other decoder's.

Both hold their weights in `nn.Linear` layers, so compression, export and the C generator see
ordinary Linear layers. They are not trained by SGD: their training specs (`train/specs.py`)
name `solve_ridge` / `solve_kalman`, which `fit` calls instead of the epoch loop (numpy,
float64). Ridge leaves the intercept unpenalised and picks alpha on the validation split from a
grid scaled by the mean eigenvalue of the Gram matrix; one eigendecomposition serves every alpha.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cortexedge import scoring
from cortexedge.errors import CortexEdgeError
from cortexedge.metrics import r2_score
from cortexedge.recording import Recording
from cortexedge.train.models.aegru import box_sum
from cortexedge.train.models.inputs import check_input, check_sizes

RELATIVE_ALPHAS = np.logspace(-6, 1, 15)  # × mean eigenvalue of the centred Gram matrix
RICCATI_TOL = 1e-13  # relative change of the covariance that ends the Riccati iteration
RICCATI_MAX_STEPS = 100_000


# ----------------------------------------------------------------------------- ridge
def ridge_path(
    x: np.ndarray, y: np.ndarray, alphas: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed-form ridge (W, b) for each alpha: W = (XcᵀXc + αI)⁻¹ XcᵀYc, b = ȳ − x̄W.

    One eigendecomposition of XcᵀXc = V diag(s) Vᵀ gives W(α) = V diag(1/(s+α)) Vᵀ XcᵀYc.
    """
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    s, v = np.linalg.eigh(xc.T @ xc)
    s = np.clip(s, 0.0, None)
    proj = v.T @ (xc.T @ (y - my))
    out = []
    for alpha in alphas:
        w = v @ (proj / (s + alpha)[:, None])
        out.append((w, my - mx @ w))
    return out


def gram_scale(x: np.ndarray) -> float:
    """Mean eigenvalue of the centred Gram matrix (its trace / features): the alpha unit."""
    xc = x - x.mean(0)
    return float((xc * xc).sum() / x.shape[1])


class RidgeDecoder(nn.Module):
    """Lagged Wiener filter: a Linear readout of the last `lags` box-summed bins of `bin_width`
    rows. `alpha` None is chosen on the validation split when fitted (then recorded here)."""

    streaming_mode = "window"

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 2,
        lags: int = 5,  # 5 bins × 80 ms = 400 ms of history
        bin_width: int = 20,  # rows per bin: 80 ms at 4 ms rows (specs.RIDGE_BIN, in ms)
        alpha: float | None = None,
    ) -> None:
        super().__init__()
        check_sizes(
            "RidgeDecoder", in_channels=in_channels, out_dim=out_dim, lags=lags, bin_width=bin_width
        )
        if alpha is not None and not alpha >= 0:
            raise CortexEdgeError(f"RidgeDecoder: alpha must be a number >= 0, got {alpha!r}")
        self.in_channels, self.out_dim = in_channels, out_dim
        self.lags, self.bin_width = lags, bin_width
        self.alpha = None if alpha is None else float(alpha)
        self.readout = nn.Linear(lags * in_channels, out_dim)

    @property
    def streaming_window(self) -> int:
        """Rows a step reads: `lags` bins of `bin_width` rows."""
        return self.lags * self.bin_width

    def config(self) -> dict:
        """Constructor kwargs (JSON-able): `build_model("ridge", **config)` rebuilds the model."""
        return {
            "in_channels": self.in_channels,
            "out_dim": self.out_dim,
            "lags": self.lags,
            "bin_width": self.bin_width,
            "alpha": self.alpha,
        }

    def window_features(self, window: Tensor) -> Tensor:
        """The last `streaming_window` rows [B, lags·bin_width, C] -> features [B, lags·C]."""
        bins = window.reshape(-1, self.lags, self.bin_width, self.in_channels).sum(2)
        return bins.flatten(1)

    def features(self, x: Tensor) -> Tensor:
        """Rows x [B, T, C] -> the features of every row [B, T, lags·C], zeros before the start."""
        rows = x.shape[1]
        bins = F.pad(box_sum(x, self.bin_width), (0, 0, self.streaming_window - self.bin_width, 0))
        lagged = [bins[:, k * self.bin_width : k * self.bin_width + rows] for k in range(self.lags)]
        return torch.cat(lagged, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """Rows x [B, T, C] -> y [B, T, D]; y_t reads rows t-window+1..t (causal)."""
        check_input(x, "RidgeDecoder", "x", ("batch", "rows", "channels"), (self.in_channels,))
        return self.readout(self.features(x))

    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors: the buffer of the last rows."""
        return ("buffer",)

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """Zero buffer [B, lags·bin_width, C]."""
        return (self.readout.weight.new_zeros(batch, self.streaming_window, self.in_channels),)

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One row x_t [B, C] -> (y_t [B, D], the buffer with x_t in place of its oldest row)."""
        check_input(x_t, "RidgeDecoder", "x_t", ("batch", "channels"), (self.in_channels,))
        buffer = torch.cat([state[0][:, 1:], x_t.unsqueeze(1)], dim=1)
        return self.readout(self.window_features(buffer)), (buffer,)


def lagged_features(
    recording: Recording, split: str, lags: int, bin_width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 features [N, lags·C] (the model's layout) and targets [N, D] of every row of a
    split, as the decoder streams them (`RidgeDecoder.features`): zeros stand for the rows
    before a run's start, so short trials are fitted as they are decoded. Validation and test
    rows take the context rows of the one score definition (`cortexedge.scoring`); training
    runs start from zeros, reading no row of another split."""
    probe = RidgeDecoder(recording.input_shape[0], 1, lags, bin_width)
    context = probe.streaming_window - 1 if split != "train" else 0
    xs, ys = [], []
    for run in scoring.runs(recording, split, context):
        x = torch.from_numpy(recording.x[run.start : run.end].astype(np.float64))[None]
        with torch.no_grad():
            xs.append(probe.features(x)[0, run.first - run.start :].numpy())
        ys.append(recording.y[run.first : run.end].astype(np.float64))
    return np.concatenate(xs), np.concatenate(ys)


def fit_ridge(
    recording: Recording, lags: int, bin_width: int, alpha: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """The float64 ridge solution (W [lags·C, D], b [D], alpha) on the train split; alpha None
    is the `RELATIVE_ALPHAS` × Gram-scale value with the best validation R²."""
    x, y = lagged_features(recording, "train", lags, bin_width)
    xv, yv = lagged_features(recording, "val", lags, bin_width)
    alphas = np.array([alpha]) if alpha is not None else gram_scale(x) * RELATIVE_ALPHAS
    path = ridge_path(x, y, alphas)
    best = int(np.nanargmax([r2_score(yv, xv @ w + b) for w, b in path]))
    return path[best][0], path[best][1], float(alphas[best])


def solve_ridge(model: RidgeDecoder, recording: Recording) -> None:
    """Set the readout to `fit_ridge` on the recording (features in float64, every train row)."""
    w, b, model.alpha = fit_ridge(recording, model.lags, model.bin_width, model.alpha)
    with torch.no_grad():
        model.readout.weight.copy_(torch.from_numpy(w.T))
        model.readout.bias.copy_(torch.from_numpy(b))


# ----------------------------------------------------------------------------- kalman
class KalmanFilterDecoder(nn.Module):
    """Steady-state velocity Kalman filter: estimate_t = transition(estimate_{t-1}) + gain(z_t),
    with transition = (I − K H) A and gain = K (bias (I − transition) ȳ − K z̄)."""

    streaming_mode = "stateful"

    def __init__(self, in_channels: int, out_dim: int = 2) -> None:
        super().__init__()
        check_sizes("KalmanFilterDecoder", in_channels=in_channels, out_dim=out_dim)
        self.in_channels, self.out_dim = in_channels, out_dim
        self.transition = nn.Linear(out_dim, out_dim, bias=False)
        self.gain = nn.Linear(in_channels, out_dim)

    def config(self) -> dict:
        """Constructor kwargs (JSON-able): `build_model("kalman", **config)` rebuilds the model."""
        return {"in_channels": self.in_channels, "out_dim": self.out_dim}

    def forward(self, x: Tensor) -> Tensor:
        """Rows x [B, T, C] -> estimates y [B, T, D], the recurrence run from zero."""
        check_input(
            x, "KalmanFilterDecoder", "x", ("batch", "rows", "channels"), (self.in_channels,)
        )
        drive = self.gain(x)
        estimate = drive.new_zeros(x.shape[0], self.out_dim)
        out = []
        for t in range(x.shape[1]):
            estimate = self.transition(estimate) + drive[:, t]
            out.append(estimate)
        return torch.stack(out, dim=1)

    def state_names(self) -> tuple[str, ...]:
        """Names of the state tensors: the current estimate."""
        return ("estimate",)

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """Zero estimate [B, D]."""
        return (self.gain.weight.new_zeros(batch, self.out_dim),)

    def step(self, x_t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """One row x_t [B, C] -> (estimate_t [B, D], (estimate_t,))."""
        check_input(x_t, "KalmanFilterDecoder", "x_t", ("batch", "channels"), (self.in_channels,))
        estimate = self.transition(state[0]) + self.gain(x_t)
        return estimate, (estimate,)


def _train_runs(recording: Recording) -> list[np.ndarray]:
    """The train rows as runs of consecutive rows inside one segment (`scoring.runs`)."""
    return [np.arange(r.first, r.end) for r in scoring.runs(recording, "train", 0)]


def kalman_model(x: list[np.ndarray], z: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Least-squares A, W (from consecutive states) and H, Q (states -> observations) of runs
    of states x [T_i, D] and observations z [T_i, C], with the means ȳ (x) and z̄ (z)."""
    xs, zs = np.concatenate(x), np.concatenate(z)
    mx, mz = xs.mean(0), zs.mean(0)
    before = np.concatenate([r[:-1] for r in x]) - mx
    after = np.concatenate([r[1:] for r in x]) - mx
    if len(before) < 2:
        raise CortexEdgeError("kalman: the train split has no two consecutive rows to fit A on")
    a = np.linalg.lstsq(before, after, rcond=None)[0].T
    h = np.linalg.lstsq(xs - mx, zs - mz, rcond=None)[0].T
    w_res, q_res = after - before @ a.T, (zs - mz) - (xs - mx) @ h.T
    return {
        "A": a,
        "W": w_res.T @ w_res / len(w_res),
        "H": h,
        "Q": q_res.T @ q_res / len(q_res),
        "y_mean": mx,
        "z_mean": mz,
    }


def steady_state_gain(
    a: np.ndarray, w: np.ndarray, h: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(K, P): the discrete Riccati recursion P ← A (I − K H) P Aᵀ + W, K = P Hᵀ (H P Hᵀ + Q)⁻¹
    (P the predicted covariance) iterated from P = W until P stops changing.

    The update runs in information form, (I − K H) P = (P⁻¹ + Hᵀ Q⁺ H)⁻¹, so every step inverts
    only D×D matrices; Q⁺ (pseudo-inverse) ignores channels that never vary."""
    info = h.T @ np.linalg.pinv(q, hermitian=True)
    fisher = info @ h
    p = w
    for _ in range(RICCATI_MAX_STEPS):
        post = np.linalg.inv(np.linalg.inv(p) + fisher)
        new = a @ post @ a.T + w
        done = np.abs(new - p).max() <= RICCATI_TOL * np.abs(new).max()
        p = (new + new.T) / 2
        if done:
            post = np.linalg.inv(np.linalg.inv(p) + fisher)
            return post @ info, p
    raise CortexEdgeError(
        f"kalman: the Riccati recursion did not converge in {RICCATI_MAX_STEPS} steps "
        "(is the fitted state model unstable?)"
    )


def fit_kalman(recording: Recording) -> dict[str, np.ndarray]:
    """The float64 state model (`kalman_model`) of the train split's runs of consecutive rows,
    with its steady-state gain K and predicted covariance P."""
    runs = _train_runs(recording)
    fitted = kalman_model(
        [recording.y[r].astype(np.float64) for r in runs],
        [recording.x[r].reshape(len(r), -1).astype(np.float64) for r in runs],
    )
    fitted["K"], fitted["P"] = steady_state_gain(fitted["A"], fitted["W"], fitted["H"], fitted["Q"])
    return fitted


def solve_kalman(model: KalmanFilterDecoder, recording: Recording) -> None:
    """Set the filter's two layers from `fit_kalman` (fitted on whole runs of rows)."""
    f = fit_kalman(recording)
    transition = (np.eye(len(f["K"])) - f["K"] @ f["H"]) @ f["A"]
    bias = (np.eye(len(f["K"])) - transition) @ f["y_mean"] - f["K"] @ f["z_mean"]
    with torch.no_grad():
        model.transition.weight.copy_(torch.from_numpy(transition))
        model.gain.weight.copy_(torch.from_numpy(f["K"]))
        model.gain.bias.copy_(torch.from_numpy(bias))
