"""Synthetic primate reaching: M1-like channels of Poisson spikes tuned to hand kinematics.

Centre-out-and-back reaches at 4 ms samples, shaped like the NeuroBench primate reaching data:
a target appears, the hand waits a reaction time, makes a minimum-jerk reach (slightly curved,
with a corrective submovement), holds, and the next target (the centre, then a new outer one)
starts the next segment. Channel rates are log-linear in the kinematics they lead by ~100 ms
(velocity direction and speed; a few channels position or acceleration), under a ceiling,
with slow baseline drift, a shared gain and low-rank non-kinematic latent activity; a fifth of
the channels are untuned. The weak, noisy tuning is calibrated so that a lagged ridge decoder
reaches a test R² of about 0.55 and a GRU about 0.7. Labels are hand velocity in mm per 4 ms
sample (the NeuroBench convention: the per-sample gradient of position).
"""

from __future__ import annotations

import numpy as np

from cortexedge.recording import Recording
from cortexedge.train.data.neurobench import neurobench_split
from cortexedge.train.data.synth_signals import ou_noise

BIN_MS = 4.0
DT = BIN_MS / 1000.0
LIMITS = {"channels": (8, 1024), "minutes": (0.25, 60.0)}

V_SCALE = 1.0  # mm per sample (250 mm/s): the speed that gives unit drive
A_SCALE = 0.02  # mm per sample²
P_SCALE = 80.0  # mm
R_MAX = 100.0  # Hz: ceiling of a channel's rate
DRIFT_PERIODS_MIN = (5.0, 9.0)  # baseline drift: sin/cos at these periods, loading std 0.1
N_LATENT, LATENT_TAU, LATENT_STD = 8, 50.0, 0.4  # non-kinematic latents (200 ms)
SHARED_TAU, SHARED_STD = 250.0, 0.3  # shared gain (1 s)
# channel type -> (share of channels, uniform ranges of its log-rate gains); gains act on
# velocity along the preferred direction ("dir"), speed, position along a second preferred
# direction ("pos") and acceleration along the preferred direction ("acc")
UNIT_TYPES = {
    "velocity": (0.40, {"dir": (0.3, 0.9), "speed": (-0.3, 0.5)}),
    "speed": (0.10, {"dir": (0.0, 0.3), "speed": (0.5, 1.0)}),
    "position": (0.08, {"dir": (0.1, 0.3), "pos": (0.3, 0.8)}),
    "acceleration": (0.07, {"dir": (0.1, 0.3), "acc": (0.3, 0.6)}),
    "untuned": (0.35, {}),
}


def _min_jerk(n: int) -> np.ndarray:
    """Velocity profile of a unit minimum-jerk movement over n samples (sums to 1)."""
    s = (np.arange(n) + 0.5) / n
    return 30 * s**2 * (1 - s) ** 2 / n


def _segment_velocity(rng: np.random.Generator, start: np.ndarray, goal: np.ndarray) -> np.ndarray:
    """One segment's hand velocity [n, 2]: reaction time, curved reach, correction, hold."""
    delta = goal - start
    dist = float(np.hypot(*delta))
    react = int(rng.uniform(0.15, 0.30) / DT)
    dur = int((0.25 + dist / 250.0) * rng.uniform(0.85, 1.15) / DT)
    fix_dur = int(rng.uniform(0.18, 0.28) / DT)
    fix_at = react + int(0.7 * dur)
    hold = int(rng.uniform(0.35, 0.8) / DT)
    vel = np.zeros((max(react + dur, fix_at + fix_dur) + hold, 2))
    miss = rng.normal(0.0, 0.06 * dist + 1.0, size=2)
    primary = delta + miss
    vel[react : react + dur] += _min_jerk(dur)[:, None] * primary
    # curvature: a sideways excursion sin²(πs) that returns to the straight path
    side = np.array([-primary[1], primary[0]]) * rng.normal(0.0, 0.12)
    s = np.arange(dur) / dur
    vel[react : react + dur] += np.pi * np.sin(2 * np.pi * s)[:, None] * side / dur
    vel[fix_at : fix_at + fix_dur] += _min_jerk(fix_dur)[:, None] * -miss
    return vel


def _trajectory(rng: np.random.Generator, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Hand velocity [T, 2] (mm/sample) and segment ids [T] for centre-out-and-back reaches."""
    pieces: list[np.ndarray] = []
    pos, total = np.zeros(2), 0
    while total < n_rows:
        if len(pieces) % 2 == 0:
            angle = rng.integers(8) * np.pi / 4 + rng.normal(0.0, 0.12)
            goal = rng.uniform(60.0, 100.0) * np.array([np.cos(angle), np.sin(angle)])
        else:
            goal = np.zeros(2)
        pieces.append(_segment_velocity(rng, pos, goal))
        pos = pos + pieces[-1].sum(axis=0)
        total += len(pieces[-1])
    segment = np.repeat(np.arange(len(pieces), dtype=np.int32), [len(p) for p in pieces])
    jitter = ou_noise(rng, n_rows, 2, tau=25.0, std=0.02)  # small hand jitter, also at rest
    return np.concatenate(pieces)[:n_rows] + jitter, segment[:n_rows]


def _tuning(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    """Per-channel parameters: type, preferred directions, gains, baseline, lead, noise loadings."""
    shares = np.array([share for share, _ in UNIT_TYPES.values()])
    kinds = rng.choice(len(UNIT_TYPES), size=channels, p=shares / shares.sum())
    gains = {f: np.zeros(channels) for f in ("dir", "speed", "pos", "acc")}
    for i, (_, ranges) in enumerate(UNIT_TYPES.values()):
        sel = kinds == i
        for feat, (lo, hi) in ranges.items():
            gains[feat][sel] = rng.uniform(lo, hi, size=int(sel.sum()))
    theta = rng.uniform(0, 2 * np.pi, size=channels)
    phi = theta + rng.normal(0, 0.8, size=channels)
    return {
        "kind": kinds,
        "theta": theta,
        "u": np.stack([np.cos(theta), np.sin(theta)], axis=1),
        "w": np.stack([np.cos(phi), np.sin(phi)], axis=1),
        **gains,
        "base_hz": np.exp(rng.uniform(np.log(5.0), np.log(25.0), size=channels)),
        "lead": np.clip(np.round(rng.normal(100.0, 35.0, size=channels) / BIN_MS), 5, 50),
        "drift": rng.normal(0.0, 0.1, size=(2 * len(DRIFT_PERIODS_MIN), channels)),
        "latent": rng.normal(0.0, LATENT_STD, size=(N_LATENT, channels)),
    }


def _log_rates(
    vel: np.ndarray, tune: dict[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """Log firing rate (Hz) [T, C]: one matrix product of features and gains, then the leads."""
    n = len(vel)
    phase = 2 * np.pi * np.arange(n)[:, None] * DT / (60.0 * np.array(DRIFT_PERIODS_MIN))
    feats = np.concatenate(
        [
            vel / V_SCALE,
            np.hypot(*vel.T)[:, None] / V_SCALE,
            np.cumsum(vel, axis=0) / P_SCALE,
            np.gradient(vel, axis=0) / A_SCALE,
            np.sin(phase),
            np.cos(phase),
            ou_noise(rng, n, N_LATENT, tau=LATENT_TAU, std=1.0),
        ],
        axis=1,
    ).astype(np.float32)
    gains = np.concatenate(
        [
            tune["u"].T * tune["dir"],
            tune["speed"][None],
            tune["w"].T * tune["pos"],
            tune["u"].T * tune["acc"],
            tune["drift"],
            tune["latent"],
        ]
    ).astype(np.float32)
    drive = feats @ gains
    out = np.empty_like(drive)
    for lead in np.unique(tune["lead"]).astype(int):  # channel fires `lead` rows before movement
        cols = np.flatnonzero(tune["lead"] == lead)
        out[: n - lead, cols] = drive[lead:, cols]
        out[n - lead :, cols] = drive[-1, cols]
    out += ou_noise(rng, n, 1, tau=SHARED_TAU, std=SHARED_STD).astype(np.float32)
    out += np.log(tune["base_hz"]).astype(np.float32)
    return out


def reaching(seed: int = 0, channels: int = 96, minutes: float = 9.0) -> Recording:
    """Deterministic synthetic reaching recording: `channels` spike-count channels at 4 ms.

    The split follows NeuroBench (train_ratio 0.5): the first half of the target-change segments
    train, the next quarter validate, the last quarter test.
    """
    rng = np.random.default_rng(seed)
    n_rows = int(round(minutes * 60.0 / DT))
    vel, segment = _trajectory(rng, n_rows)
    tune = _tuning(rng, channels)
    log_rate = _log_rates(vel, tune, rng)
    np.minimum(log_rate, np.log(R_MAX), out=log_rate)
    spikes = rng.poisson(np.exp(log_rate + np.float32(np.log(DT)))).astype(np.uint8)
    velocity = np.gradient(np.cumsum(vel, axis=0), axis=0).astype(np.float32)
    return Recording(
        x=spikes,
        bin_ms=BIN_MS,
        modality="spikes",
        y=velocity,
        segment=segment,
        split=neurobench_split(segment, train_ratio=0.5, split_num=1),
        target_names=["vx", "vy"],
        meta={
            "source": "synthetic:reaching",
            "seed": seed,
            "minutes": minutes,
            "y_units": "mm per 4 ms sample",
            "unit_kinds": [list(UNIT_TYPES)[k] for k in tune["kind"]],
            "preferred_direction_deg": np.round(np.degrees(tune["theta"]) % 360, 1).tolist(),
        },
    )
