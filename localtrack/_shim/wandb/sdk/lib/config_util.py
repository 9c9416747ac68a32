"""W&B's ``wandb.sdk.lib.config_util`` (localtrack's shim): Transformers' WandbCallback catches
``ConfigError`` around ``wandb.config[...] = ...``. localtrack's config never raises it (a value
may always change), so it exists only to be named."""

from __future__ import annotations

from localtrack.errors import UsageError

__all__ = ["ConfigError"]


class ConfigError(UsageError):
    """W&B's error for a config value it refuses to change."""
