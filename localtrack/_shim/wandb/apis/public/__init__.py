"""W&B's ``wandb.apis.public`` (localtrack's shim): ``Api``, and ``Run`` (a run read back)."""

from __future__ import annotations

from localtrack import Api
from localtrack import ApiRun as Run

__all__ = ["Api", "Run"]
