"""W&B's ``wandb.sdk.lib`` (localtrack's shim): Lightning's WandbLogger imports ``RunDisabled``
(the run of ``mode="disabled"``), here localtrack's disabled run."""

from __future__ import annotations

from localtrack._session import DisabledRun as RunDisabled

from . import config_util

__all__ = ["RunDisabled", "config_util"]
