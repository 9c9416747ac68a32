"""A Lightning logger that writes a localtrack run: ``Trainer(logger=LocaltrackLogger(...))``.

It takes WandbLogger's arguments (``project``, ``name``, ``id``/``version``, ``save_dir``/``dir``
as the store, and any ``localtrack.init()`` argument such as ``config``, ``tags``, ``resume``);
``log_model`` logs checkpoints as artifacts, as WandbLogger's does (see ``_logger``);
``offline`` and ``anonymous`` are accepted and ignored. Metrics are logged at
Lightning's step; see ``_logger`` for resuming from a checkpoint. Also importable as
``WandbLogger``, with its ``watch``, ``log_table``, ``log_text``, ``log_image``, ``log_audio``,
``log_video``, ``use_artifact`` and ``download_artifact``: what they log without a ``step``
joins the step Lightning is at.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers.logger import rank_zero_experiment

from ._logger import LoggerBody

__all__ = ["LocaltrackLogger", "WandbLogger"]


class LocaltrackLogger(LoggerBody, Logger):  # type: ignore[misc]  # Lightning is not type-checked here
    """Logs hyperparameters to ``run.config`` and metrics to ``run.log`` at Lightning's step;
    ``experiment`` is the ``localtrack.Run`` on rank zero."""

    @property
    @rank_zero_experiment  # type: ignore[untyped-decorator]
    def experiment(self) -> Any:
        return self._experiment()


WandbLogger = LocaltrackLogger
