"""W&B's ``wandb.sdk.wandb_run`` (localtrack's shim): Lightning's WandbLogger checks
``isinstance(experiment, Run)``, so ``Run`` is localtrack's."""

from __future__ import annotations

from localtrack import Run

__all__ = ["Run"]
