"""W&B's ``wandb.apis`` (localtrack's shim)."""

from __future__ import annotations

from . import public

__all__ = ["public"]
