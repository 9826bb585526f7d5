"""A decoder built for a recording: the sizes it implies, the durations at its bin width.

`model_for` is what `cortexedge train`, the sweeps and `build_model(name, recording=...)` call.
The constructor receives, in order of precedence: the caller's arguments ([model] table,
`--model-args`), the windowing parameters the constructor shares with the training spec
([data], else the spec's defaults in rows at the recording's `bin_ms`, e.g. AEGRU's
`bin_width`), and the sizes the recording implies (channels, outputs, frame shape) for the
parameters the constructor has. A size the caller contradicts is refused.
"""

from __future__ import annotations

import inspect

from torch import nn

from cortexedge.errors import CortexEdgeError
from cortexedge.families import FAMILIES
from cortexedge.recording import Recording


def model_for(
    name: str,
    rec: Recording,
    kind: str | None = None,
    model_args: dict | None = None,
    data: dict | None = None,
    seed: int | None = None,
) -> nn.Module:
    """A new model of family `name` (or a registered user class) sized for `rec`; `seed` fixes
    its initial weights."""
    from cortexedge.scoring import target_kind
    from cortexedge.train.config import RunConfig, check_model_keys
    from cortexedge.train.models.registry import build_model
    from cortexedge.train.specs import spec_for

    if name not in FAMILIES:
        known = ", ".join(sorted(FAMILIES))
        raise CortexEdgeError(f"unknown model '{name}' (known: {known}, or file.py:Class)")
    kind = kind or target_kind(rec)
    cls, spec = FAMILIES[name].model_class(), spec_for(name)
    spec.check(rec, kind, name)
    args, data = dict(model_args or {}), dict(data or {})
    check_model_keys(RunConfig(model=args), cls)
    params = inspect.signature(cls).parameters
    implied = {k: v for k, v in spec.build_kwargs(rec, kind).items() if k in params}
    for key, value in args.items():
        if key in implied and implied[key] != value:
            raise CortexEdgeError(
                f"model.{key}={value} does not match the recording ({key}={implied[key]})"
            )
    windowing = {**spec.defaults_at(rec.bin_ms), **data}
    shared = {k: v for k, v in windowing.items() if k in params}
    shared.update(spec.defaults_at(rec.bin_ms, "model"))
    if seed is not None:
        from cortexedge.train.fit import seed_everything

        seed_everything(seed)
    return build_model(name, **{**implied, **shared, **args})
