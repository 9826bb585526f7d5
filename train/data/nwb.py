"""NWB reader (optional extra: pip install 'cortexedge[nwb]'): sorted units and behaviour.

- Input: each row of the units table is one channel; its spike times are counted in `bin_ms`
  bins (default 4) laid from the first behaviour timestamp, as many whole bins as the
  behaviour series spans.
- Targets: one behaviour series: `behaviour=NAME`, else the only series whose name contains
  "vel" (several: an error), else the only position SpatialSeries. A SpatialSeries whose name
  does not say "vel" is a position and becomes velocity by `np.gradient` over its own
  timestamps (units per second); any other series is used as is. Targets are linearly
  interpolated at bin centres. Candidates are SpatialSeries and plain TimeSeries (not
  electrical, imaging or other subtypes).
- Segments and split: with a trials table, a bin belongs to the trial holding its centre, bins
  between trials are dropped, and whole trials are split (seeded, default 60/20/20). Without
  trials, three contiguous time blocks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cortexedge.errors import CortexEdgeError, RecordingError
from cortexedge.recording import Recording
from cortexedge.train.data.containers import container_kind, open_hdf5, require_finite
from cortexedge.train.data.group_split import check_ratios, split_by_group, split_by_time

MISSING_EXTRA = "reading NWB needs the optional extra: pip install 'cortexedge[nwb]'"


def detect(path: Path) -> bool:
    """An HDF5 file whose root carries the `nwb_version` attribute (no pynwb needed)."""
    try:
        if container_kind(path) != "hdf5":
            return False
        with open_hdf5(path) as f:
            return "nwb_version" in f.attrs
    except RecordingError:
        return False


def read(
    path: Path,
    bin_ms: float = 4.0,
    behaviour: str | None = None,
    train_ratio: float = 0.6,
    val_ratio: float = 0.2,
    seed: int = 0,
) -> Recording:
    """Bin the units' spikes and take velocity targets from a behaviour series."""
    try:
        import pynwb
    except ImportError:
        raise CortexEdgeError(MISSING_EXTRA) from None
    if not (np.isfinite(bin_ms) and bin_ms > 0):
        raise CortexEdgeError(f"bin_ms: must be a positive number, got {bin_ms}")
    check_ratios(train_ratio, val_ratio)
    open_hdf5(path).close()  # a corrupted or truncated file fails here with a clear message
    with pynwb.NWBHDF5IO(str(path), "r") as io:
        try:
            nwbfile = io.read()
        except Exception as e:  # pynwb/hdmf raise many types for a file that is not NWB
            raise RecordingError(f"not a readable NWB file ({type(e).__name__}: {e})") from None
        series = _behaviour_series(nwbfile, behaviour, pynwb)
        stamps, targets, derived = _targets(series, pynwb)
        edges = stamps[0] + (bin_ms / 1000.0) * np.arange(_n_bins(stamps, bin_ms) + 1)
        x = _bin_units(nwbfile, edges)
        trials = _trials(nwbfile)
        unit = series.unit
    centres = (edges[:-1] + edges[1:]) / 2
    y = np.stack([np.interp(centres, stamps, col) for col in targets.T], axis=1)
    if trials is None:
        segment, split = split_by_time(len(x), train_ratio, val_ratio)
    else:
        keep, segment = _trial_of_bins(centres, *trials)
        x, y = x[keep], y[keep]
        split = split_by_group(segment, train_ratio, val_ratio, seed, what="trial")
    return Recording(
        x=x,
        bin_ms=float(bin_ms),
        modality="spikes",
        y=y.astype(np.float32),
        segment=segment,
        split=split,
        channel_names=[f"unit{i}" for i in range(x.shape[1])],
        target_names=[f"{'v' if derived else series.name + '_'}{a}" for a in _axes(y.shape[1])],
        meta={
            "source": "nwb",
            "file": Path(path).name,
            "behaviour": series.name,
            "y_units": f"{unit}/s" if derived else unit,
            "split": {
                "by": "time" if trials is None else "trial",
                "seed": seed,
                "train_ratio": train_ratio,
                "val_ratio": val_ratio,
            },
        },
    )


def _behaviour_series(nwbfile, name: str | None, pynwb):
    """The series to decode: by name, else the unique velocity, else the unique position."""
    cands = {
        obj.name: obj
        for obj in nwbfile.objects.values()
        if isinstance(obj, pynwb.behavior.SpatialSeries) or type(obj) is pynwb.TimeSeries
    }
    if name is not None:
        if name not in cands:
            raise RecordingError(f"behaviour '{name}' not found; series: {sorted(cands)}")
        return cands[name]
    velocity = [s for n, s in cands.items() if "vel" in n.lower()]
    found = velocity or [s for s in cands.values() if _is_position(s, pynwb)]
    if len(found) == 1:
        return found[0]
    if not cands:
        raise RecordingError("no behaviour series (SpatialSeries or TimeSeries) found")
    raise RecordingError(
        f"cannot choose among behaviour series {sorted(cands)}; name one with behaviour="
    )


def _is_position(series, pynwb) -> bool:
    return isinstance(series, pynwb.behavior.SpatialSeries) and "vel" not in series.name.lower()


def _targets(series, pynwb) -> tuple[np.ndarray, np.ndarray, bool]:
    """(timestamps, [n, D] values, whether they were derived from position)."""
    stamps = np.asarray(series.get_timestamps()[:], dtype=np.float64)
    data = np.asarray(series.data[:], dtype=np.float64)
    data = data[:, None] if data.ndim == 1 else data
    if data.ndim != 2 or len(data) != len(stamps) or len(data) < 2:
        raise RecordingError(
            f"{series.name}: expected [n, D] data with n >= 2 timestamps, got {data.shape} "
            f"and {len(stamps)} timestamps"
        )
    require_finite(series.name, data)
    require_finite(f"{series.name} timestamps", stamps)
    if (np.diff(stamps) <= 0).any():
        raise RecordingError(f"{series.name}: timestamps must increase")
    derived = _is_position(series, pynwb)
    return stamps, np.gradient(data, stamps, axis=0) if derived else data, derived


def _n_bins(stamps: np.ndarray, bin_ms: float) -> int:
    n = int(np.floor((stamps[-1] - stamps[0]) * 1000.0 / bin_ms + 1e-9))
    if n < 1:
        raise RecordingError(f"behaviour spans less than one {bin_ms} ms bin")
    return n


def _bin_units(nwbfile, edges: np.ndarray) -> np.ndarray:
    """[n_bins, n_units] spike counts per unit (histogram bins [e_i, e_i+1))."""
    units = nwbfile.units
    if units is None or len(units) == 0:
        raise RecordingError("no units table (sorted spike times) in the file")
    counts = []
    for i in range(len(units)):
        times = np.asarray(units["spike_times"][i], dtype=np.float64)
        require_finite(f"units[{i}].spike_times", times)
        counts.append(np.histogram(times, bins=edges)[0])
    return np.stack(counts, axis=1).astype(np.int32)


def _trials(nwbfile) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(start, stop, id) of the trials, sorted by start, or None without a trials table."""
    if nwbfile.trials is None or len(nwbfile.trials) == 0:
        return None
    start = np.asarray(nwbfile.trials["start_time"][:], dtype=np.float64)
    order = np.argsort(start, kind="stable")
    stop = np.asarray(nwbfile.trials["stop_time"][:], dtype=np.float64)
    return start[order], stop[order], np.asarray(nwbfile.trials.id[:], dtype=np.int64)[order]


def _trial_of_bins(centres, start, stop, ids) -> tuple[np.ndarray, np.ndarray]:
    """(mask of bins inside a trial, trial id of each kept bin)."""
    k = np.searchsorted(start, centres, side="right") - 1
    inside = (k >= 0) & (centres < stop[np.maximum(k, 0)])
    if not inside.any():
        raise RecordingError("no bin falls inside a trial (trials and behaviour do not overlap)")
    return inside, ids[k[inside]]


def _axes(n: int) -> list[str]:
    return list("xyz"[:n]) if n <= 3 else [str(i) for i in range(n)]
