"""W&B's ``wandb.integration.sklearn`` (localtrack's shim): ``localtrack.integrations.sklearn``'s names."""

from __future__ import annotations

from localtrack.integrations.sklearn import *  # noqa: F403
from localtrack.integrations.sklearn import __all__ as __all__
