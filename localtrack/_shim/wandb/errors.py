"""W&B's ``wandb.errors`` (localtrack's shim): scripts catch these names; localtrack raises its
own tree (``localtrack.errors``), which they are."""

from __future__ import annotations

from localtrack.errors import LocaltrackError as Error
from localtrack.errors import UsageError

__all__ = ["CommError", "Error", "UsageError"]


class CommError(Error):
    """W&B's error talking to its server: localtrack has no server, so nothing raises it."""
