"""W&B's ``wandb.plot`` (localtrack's shim): ``localtrack.plot``'s names."""

from __future__ import annotations

from localtrack.plot import *  # noqa: F403
from localtrack.plot import __all__ as __all__
