"""W&B's older path ``wandb.xgboost`` (localtrack's shim): ``localtrack.integrations.xgboost``'s names."""

from __future__ import annotations

from localtrack.integrations.xgboost import *  # noqa: F403
from localtrack.integrations.xgboost import __all__ as __all__
