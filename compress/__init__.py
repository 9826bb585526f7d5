"""cortexedge.compress: magnitude and structured pruning, quantization-aware fine-tuning.

The package is callable: `cortexedge.compress(model, recording, recipe)` is
`cortexedge.compress.recipe.compress`, so `import cortexedge as ce; ce.compress(...)` works
whether or not this package was imported first (importing it binds the name on `cortexedge`).
"""

from __future__ import annotations

import sys
from types import ModuleType


class _CallablePackage(ModuleType):
    def __call__(self, *args, **kwargs):
        """Compress a model with a Recipe (see `cortexedge.compress.recipe.compress`)."""
        from cortexedge.compress.recipe import compress

        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
