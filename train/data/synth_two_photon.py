"""Synthetic two-photon calcium imaging of mouse M1 during left/right forelimb movements.

One imaging field in the left hemisphere at 30 frames/s. Each trial (a segment) holds movement
bouts of the left forelimb, the right forelimb, both or neither, so the labels are multi-label
[T, 2] ("left", "right"). Neurons spike (Poisson) with rates tuned to the contralateral (right)
limb, the ipsilateral (left) limb, either limb, bimanual movement only (mixed selectivity) or
suppressed by movement, each with its own lead or lag; the rest are untuned. Spikes are
convolved with a GCaMP-like kernel (fast rise, 0.5–1 s decay); residual neuropil, a slow
baseline and shot noise are added to give ΔF/F.
"""

from __future__ import annotations

import numpy as np

from cortexedge.recording import Recording
from cortexedge.train.data.group_split import split_by_group
from cortexedge.train.data.synth_signals import causal_convolve, gcamp_kernel, ou_noise

FPS = 30.0
LIMITS = {"channels": (8, 2000), "minutes": (0.5, 60.0)}
# trial type -> (probability, limbs that move); limbs: (left, right)
TRIAL_TYPES = {
    "left": (0.3, (1, 0)),
    "right": (0.3, (0, 1)),
    "both": (0.25, (1, 1)),
    "none": (0.15, (0, 0)),
}
# neuron type -> (share, log-rate gain on left, right, bimanual (left AND right), any movement)
NEURON_TYPES = {
    "contralateral": (0.25, (0.0, 1.0, 0.0, 0.0)),
    "ipsilateral": (0.12, (1.0, 0.0, 0.0, 0.0)),
    "bilateral": (0.10, (0.6, 0.6, 0.0, 0.0)),
    "bimanual": (0.06, (0.0, 0.0, 1.0, 0.0)),
    "suppressed": (0.08, (0.0, 0.0, 0.0, -1.0)),
    "untuned": (0.39, (0.0, 0.0, 0.0, 0.0)),
}


def _trials(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n, 2] (left, right) and trial ids [n]: 4–6 s trials with 1.5–3 s bouts."""
    probs = np.array([p for p, _ in TRIAL_TYPES.values()])
    labels, segs, total = [], [], 0
    while total < n:
        length = int(rng.uniform(4.0, 6.0) * FPS)
        lab = np.zeros((length, 2), dtype=np.int64)
        _, limbs = list(TRIAL_TYPES.values())[rng.choice(len(probs), p=probs)]
        onset = rng.uniform(0.8, 1.6) * FPS
        for k in np.flatnonzero(limbs):
            start = int(onset + rng.uniform(-0.3, 0.3) * FPS)
            lab[start : start + int(rng.uniform(1.5, 3.0) * FPS), k] = 1
        labels.append(lab)
        segs.append(np.full(length, len(segs), dtype=np.int32))
        total += length
    return np.concatenate(labels)[:n], np.concatenate(segs)[:n]


def _spike_rates(
    rng: np.random.Generator, labels: np.ndarray, neurons: int
) -> tuple[np.ndarray, np.ndarray]:
    """Spike rates (Hz) [T, N] driven by the limb events, and neuron type ids [N].

    Each neuron leads or lags the movement by up to 0.3 s.
    """
    shares = np.array([s for s, _ in NEURON_TYPES.values()])
    kinds = rng.choice(len(shares), size=neurons, p=shares / shares.sum())
    gains = np.array([g for _, g in NEURON_TYPES.values()])[kinds].T  # [4, N]
    gains = gains * rng.uniform(1.0, 2.5, size=neurons)
    left, right = labels[:, 0].astype(np.float64), labels[:, 1].astype(np.float64)
    events = np.stack([left, right, left * right, np.maximum(left, right)], axis=1)
    ramp = np.ones(int(0.2 * FPS)) / int(0.2 * FPS)  # responses build up over 200 ms
    drive = causal_convolve(events, ramp) @ gains
    shift = np.round(rng.uniform(-0.3, 0.3, size=neurons) * FPS).astype(int)
    idx = np.clip(np.arange(len(labels))[:, None] + shift[None, :], 0, len(labels) - 1)
    drive = np.take_along_axis(drive, idx, axis=0)
    base = np.exp(rng.uniform(np.log(0.3), np.log(2.0), size=neurons))
    noise = ou_noise(rng, len(labels), neurons, tau=0.5 * FPS, std=0.5)
    return base * np.exp(drive + noise), kinds


def two_photon(seed: int = 0, channels: int = 150, minutes: float = 6.0) -> Recording:
    """Deterministic synthetic M1 two-photon recording: ΔF/F of `channels` neurons at 30 Hz."""
    rng = np.random.default_rng(seed)
    n = int(round(minutes * 60.0 * FPS))
    labels, segment = _trials(rng, n)
    rates, kinds = _spike_rates(rng, labels, channels)
    spikes = rng.poisson(rates / FPS)
    kernel = gcamp_kernel(FPS, 0.05, rng.uniform(0.5, 1.0, size=channels))
    calcium = causal_convolve(spikes.astype(np.float64), kernel) * rng.uniform(0.3, 0.8, channels)
    neuropil = calcium.mean(axis=1, keepdims=True) + ou_noise(rng, n, 1, tau=3 * FPS, std=0.1)
    dff = (
        calcium
        + rng.uniform(0.1, 0.3, size=channels) * neuropil
        + ou_noise(rng, n, channels, tau=20 * FPS, std=0.05)
        + rng.normal(0.0, 1.0, size=(n, channels)) * rng.uniform(0.08, 0.2, size=channels)
    )
    return Recording(
        x=dff.astype(np.float32),
        bin_ms=1000.0 / FPS,
        modality="calcium",
        labels=labels,
        segment=segment,
        split=split_by_group(segment, 0.6, 0.2, seed=seed, what="trial"),
        channel_names=[f"n{i}" for i in range(channels)],
        label_names=["left", "right"],
        meta={
            "source": "synthetic:two-photon",
            "seed": seed,
            "minutes": minutes,
            "fps": FPS,
            "x_units": "ΔF/F",
            "neuron_kinds": [list(NEURON_TYPES)[k] for k in kinds],
        },
    )
