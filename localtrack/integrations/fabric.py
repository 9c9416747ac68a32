"""A Lightning Fabric logger that writes a localtrack run: ``L.Fabric(loggers=[WandbLogger()])``.

W&B's ``wandb.integration.lightning.fabric.WandbLogger``, with the arguments and methods of the
Trainer's (see ``localtrack.integrations.lightning``): ``fabric.log_dict(metrics, step=)`` logs
at ``step``, and without one is a step of its own, as Fabric's loggers count; only rank zero
writes. Fabric calls no ``finalize``: ``fabric.logger.finalize("success")`` finishes the run,
or the script's exit does.
"""

from __future__ import annotations

from typing import Any

from lightning.fabric.loggers import Logger
from lightning.fabric.loggers.logger import rank_zero_experiment

from ._logger import LoggerBody

__all__ = ["LocaltrackLogger", "WandbLogger"]


class LocaltrackLogger(LoggerBody, Logger):  # type: ignore[misc]  # Lightning is not type-checked here
    """Logs ``fabric.log_dict`` rows and hyperparameters to a localtrack run; ``experiment`` is
    the ``localtrack.Run`` on rank zero."""

    JOINS = False

    @property
    @rank_zero_experiment  # type: ignore[untyped-decorator]
    def experiment(self) -> Any:
        return self._experiment()


WandbLogger = LocaltrackLogger
