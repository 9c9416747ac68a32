"""W&B's ``wandb.sdk`` (localtrack's shim): the modules frameworks import from it."""

from __future__ import annotations

from localtrack import Run, Settings

from . import lib, wandb_run

__all__ = ["Run", "Settings", "lib", "wandb_run"]
