"""Synthetic widefield GCaMP imaging of mouse dorsal cortex during running and rest.

64x64 frames at 30 frames/s inside a two-hemisphere cortex mask (zero outside). Twelve smooth
areas (six per hemisphere) each carry one activity trace; the forelimb and hindlimb
somatosensory areas follow running strongly, motor areas less, visual and barrel areas a little.
Traces pass through a GCaMP kernel and a slow, delayed haemodynamic dip, then spatially
correlated noise and pixel noise are added. Labels are run (1) / rest (0) per frame; segments
are 10 s sessions with their own brightness and gain, and the split keeps sessions whole.
"""

from __future__ import annotations

import numpy as np

from cortexedge.recording import Recording
from cortexedge.train.data.group_split import split_by_group
from cortexedge.train.data.synth_signals import (
    alternating_bouts,
    causal_convolve,
    gcamp_kernel,
    ou_noise,
)

FPS = 30.0
SIZE = 64
SESSION_S = 10.0
LEAD = 6  # frames (200 ms) by which cortical activity leads the run label
LIMITS = {"minutes": (0.5, 10.0)}
# area -> (centre (row, col) in the left hemisphere as a fraction of the frame, run coupling)
AREAS = {
    "M2": ((0.18, 0.42), 0.3),
    "M1": ((0.30, 0.32), 0.5),
    "S1-FL": ((0.45, 0.24), 1.0),
    "S1-HL": ((0.45, 0.38), 1.0),
    "S1-BF": ((0.58, 0.14), 0.1),
    "V1": ((0.80, 0.30), 0.25),
}


def _area_maps() -> tuple[np.ndarray, np.ndarray]:
    """Soft area weights [A, H, W] (a smooth partition of the cortex) and the cortex mask [H, W]."""
    r, c = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    centres = [(y, x) for (y, x), _ in AREAS.values()]
    centres += [(y, 1 - x) for y, x in centres]  # mirror into the right hemisphere
    dist2 = np.stack([(r - y) ** 2 + (c - x) ** 2 for y, x in centres])
    weights = np.exp(-dist2 / (2 * 0.08**2))
    hemisphere = np.abs(c - 0.5) > 0.02
    mask = (((r - 0.5) / 0.46) ** 2 + ((c - 0.5) / 0.44) ** 2 < 1) & hemisphere
    return weights / weights.sum(axis=0) * mask, mask


def _noise_maps(rng: np.random.Generator, k: int) -> np.ndarray:
    """k random smooth blobs [k, H, W], the spatial modes of correlated noise."""
    r, c = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    y, x = rng.uniform(0, 1, size=(2, k, 1, 1))
    width = rng.uniform(0.08, 0.2, size=(k, 1, 1))
    return np.exp(-((r - y) ** 2 + (c - x) ** 2) / (2 * width**2))


def _area_traces(rng: np.random.Generator, run: np.ndarray) -> np.ndarray:
    """ΔF/F of each area [T, A]: run coupling plus area noise, GCaMP and haemodynamic filters."""
    n = len(run)
    coupling = np.array([k for _, k in AREAS.values()] * 2)
    lead = np.concatenate([run[LEAD:], np.repeat(run[-1:], LEAD)]).astype(float)
    onset = causal_convolve(np.diff(lead, prepend=0).clip(0, None), np.ones(15))
    activity = (
        np.outer(causal_convolve(lead, np.ones(6) / 6), coupling)
        + 0.5 * np.outer(onset, coupling)
        + ou_noise(rng, n, 1, tau=1.0 * FPS, std=0.25)  # arousal, shared by all areas
        + ou_noise(rng, n, len(coupling), tau=0.5 * FPS, std=0.3)
    )
    t = np.arange(int(8 * FPS)) / FPS
    hemo = t**2 * np.exp(-t / 0.6)  # gamma-like, peaks at 1.2 s
    neural = causal_convolve(activity, gcamp_kernel(FPS, 0.05, 0.4) / 3)
    return neural - 0.3 * causal_convolve(neural, hemo / hemo.sum())


def widefield(seed: int = 0, minutes: float = 1.5) -> Recording:
    """Deterministic synthetic widefield recording: [T, 64, 64] ΔF/F frames with run/rest labels."""
    rng = np.random.default_rng(seed)
    n = int(round(minutes * 60.0 * FPS))
    run = alternating_bouts(rng, n, off_rows=(1.5 * FPS, 4 * FPS), on_rows=(1.0 * FPS, 3.5 * FPS))
    segment = (np.arange(n) // int(SESSION_S * FPS)).astype(np.int32)
    areas, mask = _area_maps()
    noise_maps = _noise_maps(rng, 16)
    session_gain = rng.uniform(0.7, 1.3, size=segment[-1] + 1)[segment]
    traces = _area_traces(rng, run) * session_gain[:, None]
    noise = ou_noise(rng, n, len(noise_maps), tau=0.3 * FPS, std=0.6)
    frames = np.concatenate([traces, noise], axis=1).astype(np.float32) @ np.concatenate(
        [areas, noise_maps]
    ).reshape(-1, SIZE * SIZE).astype(np.float32)
    frames += 0.3 * rng.standard_normal(size=frames.shape, dtype=np.float32)
    frames += rng.normal(0.0, 0.2, size=segment[-1] + 1).astype(np.float32)[segment][:, None]
    frames *= mask.reshape(1, -1)
    return Recording(
        x=frames.reshape(n, SIZE, SIZE),
        bin_ms=1000.0 / FPS,
        modality="widefield",
        labels=run,
        segment=segment,
        split=split_by_group(segment, 0.6, 0.2, seed=seed, what="session"),
        label_names=["rest", "run"],
        meta={
            "source": "synthetic:widefield",
            "seed": seed,
            "minutes": minutes,
            "fps": FPS,
            "x_units": "ΔF/F (%)",
            "areas": [f"{a}-{h}" for h in ("L", "R") for a in AREAS],
        },
    )
