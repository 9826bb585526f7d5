"""cortexedge.compress: magnitude and structured pruning, quantization-aware fine-tuning.

The package is callable: `cortexedge.compress(model, recording, recipe)` is
`cortexedge.compress.recipe.compress`, so `import cortexedge as ce; ce.compress(...)` works
whether or not this package was imported first (importing it binds the name on `cortexedge`).
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from types import ModuleType

# brevitas.graph.equalize imports the optional `fast_hadamard_transform` inside a bare
# `except:`, which swallows a Ctrl-C that lands during that import (the command then runs on
# and exits 0), and warns on every run. Where the package is absent, say so up front: the import
# then fails at once with ImportError. The warning tells a user nothing, so it is not shown.
if importlib.util.find_spec("fast_hadamard_transform") is None:
    sys.modules.setdefault("fast_hadamard_transform", None)
warnings.filterwarnings(
    "ignore", message="fast_hadamard_transform package not found", category=UserWarning
)


class _CallablePackage(ModuleType):
    def __call__(self, *args, **kwargs):
        """Compress a model with a Recipe (see `cortexedge.compress.recipe.compress`)."""
        from cortexedge.compress.recipe import compress

        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
