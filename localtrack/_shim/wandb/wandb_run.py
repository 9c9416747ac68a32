"""W&B's old path ``wandb.wandb_run`` (localtrack's shim): Lightning's WandbLogger imports ``Run``
from here."""

from __future__ import annotations

from localtrack import Run

__all__ = ["Run"]
