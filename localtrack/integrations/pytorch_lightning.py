"""``LocaltrackLogger`` for scripts that import ``pytorch_lightning`` rather than ``lightning``:
the same logger (see ``localtrack.integrations.lightning``) on that package's ``Logger``."""

from __future__ import annotations

from typing import Any

from pytorch_lightning.loggers import Logger
from pytorch_lightning.loggers.logger import rank_zero_experiment

from ._logger import LoggerBody

__all__ = ["LocaltrackLogger", "WandbLogger"]


class LocaltrackLogger(LoggerBody, Logger):  # type: ignore[misc]  # Lightning is not type-checked here
    """See ``localtrack.integrations.lightning.LocaltrackLogger``."""

    @property
    @rank_zero_experiment  # type: ignore[untyped-decorator]
    def experiment(self) -> Any:
        return self._experiment()


WandbLogger = LocaltrackLogger
