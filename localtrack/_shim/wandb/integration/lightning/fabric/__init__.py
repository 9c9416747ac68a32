"""W&B's ``wandb.integration.lightning.fabric`` (localtrack's shim): the names of
``localtrack.integrations.fabric``."""

from __future__ import annotations

from localtrack.integrations.fabric import *  # noqa: F403
from localtrack.integrations.fabric import __all__ as __all__
