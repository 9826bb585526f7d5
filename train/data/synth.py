"""The synthetic recordings by name, and the embedded default that lets everything run offline.

`generate(kind, seed, **options)` checks the options against the generator's signature and its
declared limits, then builds the recording; the same seed always gives the same arrays.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable

from cortexedge.errors import CortexEdgeError
from cortexedge.recording import Recording
from cortexedge.train.data import synth_reaching, synth_two_photon, synth_widefield

GENERATORS: dict[str, Callable[..., Recording]] = {
    "reaching": synth_reaching.reaching,
    "two-photon": synth_two_photon.two_photon,
    "widefield": synth_widefield.widefield,
}
# kind -> option -> (lowest, highest) accepted value
LIMITS: dict[str, dict[str, tuple[float, float]]] = {
    "reaching": synth_reaching.LIMITS,
    "two-photon": synth_two_photon.LIMITS,
    "widefield": synth_widefield.LIMITS,
}


def _check_option(kind: str, name: str, value: object, default: object) -> None:
    lo, hi = LIMITS[kind][name]
    integral = isinstance(default, int)
    ok_type = numbers.Integral if integral else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        expected = "an integer" if integral else "a number"
        raise CortexEdgeError(f"{kind}: {name} must be {expected}, got {value!r}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise CortexEdgeError(f"{kind}: {name} must be between {lo:g} and {hi:g}, got {value!r}")


def generate(kind: str, seed: int = 0, **options: object) -> Recording:
    """Build the synthetic recording `kind` ("reaching", "two-photon" or "widefield")."""
    if kind not in GENERATORS:
        raise CortexEdgeError(f"unknown synthetic kind '{kind}'; choose one of {list(GENERATORS)}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise CortexEdgeError(f"seed must be a non-negative integer, got {seed!r}")
    params = inspect.signature(GENERATORS[kind]).parameters
    accepted = [p for p in params if p != "seed"]
    for name, value in options.items():
        if name not in accepted:
            raise CortexEdgeError(f"{kind}: unknown option '{name}'; it accepts {accepted}")
        _check_option(kind, name, value, params[name].default)
    return GENERATORS[kind](seed=int(seed), **options)


def default_recording(seed: int = 0) -> Recording:
    """The embedded default: synthetic reaching, 96 channels, 9 minutes at 4 ms."""
    return generate("reaching", seed=seed)
