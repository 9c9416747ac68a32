"""W&B's ``wandb.integration.lightgbm`` (localtrack's shim): ``localtrack.integrations.lightgbm``'s names."""

from __future__ import annotations

from localtrack.integrations.lightgbm import *  # noqa: F403
from localtrack.integrations.lightgbm import __all__ as __all__
