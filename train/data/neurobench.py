"""NeuroBench primate reaching reader: O'Doherty et al. 2017 MATLAB v7.3 files, as NeuroBench 2.3.

Reproduces `neurobench.datasets.PrimateReaching` (neurobench 2.3.0) with its benchmark settings
(no spike sorting, 4 ms stride, no biological delay, no removal of long segments):

- File (HDF5, as h5py sees it): `spikes` [n_units, n_channels] object references, each to a
  spike-time vector in seconds; `t` [1, T] every 4 ms; `cursor_pos`, `target_pos` [2, T].
- Input: edges `arange(t[0] - bin_width, t[-1], 4 ms)`; a 4 ms sample is 1 when any unit of the
  channel spiked in it, with each histogram index shifted by +1 (sample 0 is always 0); then a
  "valid" box sum over `round(bin_width / 4 ms)` samples, cut to the T rows NeuroBench indexes.
- Targets: cursor velocity = gradient of float32 `cursor_pos` along time with unit spacing
  (`torch.gradient(dim=1)` semantics), in position units per 4 ms sample.
- Segments run between changes of `target_pos`: a change between samples k and k+1 starts a new
  segment AT k (NeuroBench's boundary convention). In each of `split_num` chunks of
  `int(S / split_num)` segments, the first `floor(train_ratio * n)` go to train and the rest are
  halved (floor) into val, then test; segments beyond the last full chunk are in no set.

One deliberate difference: an empty MATLAB cell (`MATLAB_empty`, stored as the dimension pair
[0, 0]) contributes no spikes here, while NeuroBench histograms its two zeros; the two agree
unless time 0 lies inside the recording.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.containers import has_arrays, open_hdf5, require_finite

SAMPLE_S = 0.004  # O'Doherty `t` and NeuroBench's SAMPLING_RATE
DATASETS = ("spikes", "t", "cursor_pos", "target_pos")
NEUROBENCH_VERSION = "2.3.0"


def detect(path: Path) -> bool:
    """An HDF5 (MATLAB v7.3) file with `spikes`, `t`, `cursor_pos` and `target_pos`."""
    return has_arrays(path, set(DATASETS))


def read(
    path: Path, bin_width: float = 0.004, train_ratio: float = 0.5, split_num: int = 1
) -> Recording:
    """Read one O'Doherty session into 4 ms rows of `bin_width` spike-presence sums."""
    width = _check_params(bin_width, train_ratio, split_num)
    with open_hdf5(path) as f:
        try:
            t, cursor, target, refs = _load(f)
            presence = _presence(f, refs, np.arange(t[0] - bin_width, t[-1], SAMPLE_S))
        except OSError as e:
            raise RecordingError(f"HDF5 data could not be read (truncated?): {e}") from None
    x = _box_sum(presence, width)
    if len(x) < len(t):
        raise RecordingError(f"t: {len(t)} samples but spikes bin into only {len(x)} rows")
    segment = segment_ids(target)
    return Recording(
        x=x[: len(t)],
        bin_ms=SAMPLE_S * 1000,
        modality="spikes",
        y=np.gradient(cursor.astype(np.float32), axis=1).T.copy(),
        segment=segment,
        split=neurobench_split(segment, train_ratio, split_num),
        target_names=["vx", "vy"],
        meta={
            "source": "neurobench_primate_reaching",
            "file": Path(path).name,
            "neurobench_version": NEUROBENCH_VERSION,
            "bin_width": bin_width,
            "train_ratio": train_ratio,
            "split_num": split_num,
            "y_units": "cursor position units per 4 ms sample",
        },
    )


def _check_params(bin_width: float, train_ratio: float, split_num: int) -> int:
    """NeuroBench's own parameter checks; returns the box width in 4 ms samples."""
    if not bin_width >= SAMPLE_S:
        raise CortexEdgeError(f"bin_width: must be at least {SAMPLE_S} s, got {bin_width}")
    if not 0 <= train_ratio <= 1:
        raise CortexEdgeError(f"train_ratio: must be in [0, 1], got {train_ratio}")
    if not (isinstance(split_num, int) and split_num >= 1):
        raise CortexEdgeError(f"split_num: must be a positive integer, got {split_num}")
    return int(np.round(bin_width / SAMPLE_S))


def _load(f: h5py.File) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validated `t` [T], `cursor_pos` [2, T], `target_pos` [2, T] and the spike references."""
    for name in DATASETS:
        if not isinstance(f.get(name), h5py.Dataset):
            raise RecordingError(f"missing dataset '{name}' (not an O'Doherty reaching file?)")
    t = np.squeeze(f["t"][()]).astype(np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise RecordingError(f"t: expected [1, T] sample times, got shape {f['t'].shape}")
    require_finite("t", t)
    step = np.diff(t)
    off = np.flatnonzero(np.abs(step - SAMPLE_S) > 0.1 * SAMPLE_S)
    if off.size:
        raise RecordingError(
            f"t: samples must be 4 ms apart, found {step[off[0]] * 1000:.3f} ms at sample {off[0]}"
        )
    arrays = []
    for name in ("cursor_pos", "target_pos"):
        arr = f[name][()]
        if arr.shape != (2, len(t)) or not np.issubdtype(arr.dtype, np.number):
            raise RecordingError(
                f"{name}: expected numeric [2, T={len(t)}], got {arr.dtype} {arr.shape}"
            )
        require_finite(name, arr.T)
        arrays.append(arr)
    refs = f["spikes"]
    if refs.ndim != 2 or h5py.check_dtype(ref=refs.dtype) is not h5py.Reference:
        raise RecordingError(
            f"spikes: expected [n_units, n_channels] object references, got {refs.dtype} "
            f"{refs.shape}"
        )
    return t, arrays[0], arrays[1], refs[()]


def _spike_times(f: h5py.File, ref: h5py.Reference, unit: int, channel: int) -> np.ndarray:
    """One unit's spike times in seconds; an empty MATLAB cell is no spikes."""
    where = f"spikes (unit {unit}, channel {channel})"
    if not ref:
        raise RecordingError(f"{where}: null object reference")
    obj = f[ref]
    if not isinstance(obj, h5py.Dataset):
        raise RecordingError(f"{where}: reference does not point to a dataset")
    if obj.attrs.get("MATLAB_empty", 0):
        return np.empty(0)
    times = np.asarray(obj[()], dtype=np.float64).ravel()
    if not np.isfinite(times).all():
        raise RecordingError(f"{where}: non-finite spike time (NaN or inf)")
    return times


def _presence(f: h5py.File, refs: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """[len(edges), n_channels] bool: any unit of the channel spiked in the bin before the edge."""
    presence = np.zeros((len(edges), refs.shape[1]), dtype=bool)
    for (unit, channel), ref in np.ndenumerate(refs):
        counts, _ = np.histogram(_spike_times(f, ref, unit, channel), bins=edges)
        presence[np.flatnonzero(counts) + 1, channel] = True
    return presence


def _box_sum(samples: np.ndarray, width: int) -> np.ndarray:
    """'valid' moving sum of `width` consecutive rows: out[j] = samples[j : j + width].sum(0)."""
    n_out = len(samples) - width + 1
    if n_out < 1:
        raise RecordingError(f"recording has {len(samples)} samples, fewer than bin width {width}")
    out = np.zeros((n_out, *samples.shape[1:]), dtype=np.min_scalar_type(width))
    for k in range(width):
        out += samples[k : k + n_out]
    return out


def segment_ids(target_pos: np.ndarray) -> np.ndarray:
    """Per-sample segment id: +1 at every k where target_pos[:, k + 1] != target_pos[:, k]."""
    change = np.flatnonzero(np.abs(np.diff(target_pos, axis=1)).sum(axis=0))
    return np.searchsorted(change, np.arange(target_pos.shape[1]), side="right").astype(np.int64)


def neurobench_split(segment: np.ndarray, train_ratio: float, split_num: int) -> dict:
    """NeuroBench's chunked split of segments into train / val / test row indices."""
    n_segments = int(segment[-1]) + 1  # ids count empty segments too, as NeuroBench does
    per_chunk = int(n_segments / split_num)
    if per_chunk < 1:
        raise CortexEdgeError(f"split_num: {split_num} chunks for only {n_segments} segments")
    n_train = math.floor(train_ratio * per_chunk)
    n_val = math.floor((per_chunk - n_train) / 2)
    position = segment % per_chunk
    used = segment < split_num * per_chunk
    return {
        "train": np.flatnonzero(used & (position < n_train)),
        "val": np.flatnonzero(used & (position >= n_train) & (position < n_train + n_val)),
        "test": np.flatnonzero(used & (position >= n_train + n_val)),
    }
