"""Signal pieces shared by the synthetic generators: causal filtering, smooth noise, GCaMP kernel.

Numpy only; every random draw comes from the caller's generator so recordings stay
deterministic for a seed.
"""

from __future__ import annotations

import numpy as np


def causal_convolve(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """out[t] = sum_k kernel[k] * x[t-k] along axis 0 (FFT; zero before the start).

    `kernel` is [K] (shared) or [K, *x.shape[1:]] (one kernel per column).
    """
    n = len(x)
    size = 1 << int(np.ceil(np.log2(n + len(kernel))))
    k_spec = np.fft.rfft(kernel, size, axis=0)
    if kernel.ndim == 1 and x.ndim > 1:
        k_spec = k_spec.reshape(-1, *([1] * (x.ndim - 1)))
    return np.fft.irfft(np.fft.rfft(x, size, axis=0) * k_spec, size, axis=0)[:n]


def ou_noise(rng: np.random.Generator, n: int, k: int, tau: float, std: float) -> np.ndarray:
    """Ornstein-Uhlenbeck noise [n, k] with time constant `tau` rows and stationary std `std`."""
    a = np.exp(-1.0 / tau)
    white = rng.normal(0.0, std * np.sqrt(1 - a * a), size=(n, k))
    return causal_convolve(white, a ** np.arange(int(6 * tau) + 1))


def gcamp_kernel(fps: float, tau_rise: float, tau_decay: np.ndarray | float) -> np.ndarray:
    """Calcium response to one spike, peak 1: (1 - e^(-t/rise)) e^(-t/decay), t in seconds.

    A scalar `tau_decay` gives [K]; an array of N decays gives [K, N] (one kernel per neuron).
    """
    decay = np.atleast_1d(np.asarray(tau_decay, dtype=np.float64))
    t = np.arange(int(np.ceil(6 * decay.max() * fps)) + 1)[:, None] / fps
    kern = (1 - np.exp(-t / tau_rise)) * np.exp(-t / decay)
    kern /= kern.max(axis=0)
    return kern[:, 0] if np.ndim(tau_decay) == 0 else kern


def alternating_bouts(
    rng: np.random.Generator, n: int, off_rows: tuple[float, float], on_rows: tuple[float, float]
) -> np.ndarray:
    """A [n] 0/1 series of alternating off and on bouts with uniform random lengths (in rows)."""
    out = np.zeros(n, dtype=np.int64)
    t, on = int(rng.uniform(*off_rows) * rng.uniform(0.2, 1.0)), True
    while t < n:
        length = int(rng.uniform(*(on_rows if on else off_rows)))
        out[t : t + length] = int(on)
        t, on = t + max(length, 1), not on
    return out
