"""W&B's older path ``wandb.keras`` (localtrack's shim): ``localtrack.integrations.keras``'s names."""

from __future__ import annotations

from localtrack.integrations.keras import *  # noqa: F403
from localtrack.integrations.keras import __all__ as __all__
