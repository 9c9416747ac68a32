"""A Keras 3 callback that writes a localtrack run: ``model.fit(..., callbacks=[LocaltrackCallback()])``.

Shaped as W&B's ``WandbMetricsLogger`` (also importable under that name): the ``logs`` Keras
hands its callbacks become ``epoch/<metric>`` rows (with ``epoch/epoch`` and
``epoch/learning_rate``) and, with ``log_freq="batch"`` or every ``log_freq`` batches,
``batch/<metric>`` rows (with ``batch/batch_step``). The step is the epoch when only epochs
are logged, else the count of training batches (``initial_global_step`` plus those seen), an
epoch's row joining its last batch's step. Unlike W&B's, it needs no ``init()`` first: it opens
a run with its ``init_args`` at the start of training (or uses the script's active run, left
open) and finishes the run it opened when training ends. ``fit(initial_epoch=k)`` on the same
run id (``id=..., resume="allow"``) continues it, rewinding rows logged after epoch ``k``.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

import localtrack

from ._common import RunHandle, plain

__all__ = ["LocaltrackCallback", "WandbMetricsLogger"]

log = logging.getLogger("localtrack")


class LocaltrackCallback(keras.callbacks.Callback):  # type: ignore[misc]  # Keras is not type-checked here
    """Logs Keras's training logs to a localtrack run; ``init_args`` go to ``localtrack.init()``."""

    def __init__(self, log_freq: str | int = "epoch", initial_global_step: int = 0,
                 **init_args: Any) -> None:
        super().__init__()
        if log_freq == "batch":
            log_freq = 1
        if log_freq != "epoch" and (isinstance(log_freq, bool) or not isinstance(log_freq, int)
                                    or log_freq < 1):
            raise localtrack.errors.InvalidValueError(
                f"LocaltrackCallback(log_freq={log_freq!r}): use 'epoch', 'batch' or a count of "
                "batches >= 1")
        self._every = None if log_freq == "epoch" else int(log_freq)
        self._batch_step = initial_global_step
        self._handle = RunHandle(init_args)

    @property
    def run(self) -> localtrack.Run | None:
        """The ``localtrack.Run`` (None before training began)."""
        return self._handle.run

    def _learning_rate(self) -> float | None:
        rate = getattr(getattr(self.model, "optimizer", None), "learning_rate", None)
        if rate is None:
            return None
        try:
            return float(keras.ops.convert_to_numpy(rate))
        except (TypeError, ValueError):  # a schedule object: not a number at this point
            return None

    def _row(self, prefix: str, logs: dict[str, Any] | None) -> dict[str, Any]:
        row = {f"{prefix}/{k}": plain(v) for k, v in (logs or {}).items()}
        rate = self._learning_rate()
        if rate is not None:
            row[f"{prefix}/learning_rate"] = rate
        return row

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._handle.writable()

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batch_step += 1
        if self._every is not None and self._batch_step % self._every == 0:
            row = self._row("batch", logs)
            row["batch/batch_step"] = self._batch_step
            self._handle.log_at(row, self._batch_step)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        row = self._row("epoch", logs)
        row["epoch/epoch"] = epoch
        self._handle.log_at(row, epoch if self._every is None else self._batch_step)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._handle.finish(exit_code=0)


WandbMetricsLogger = LocaltrackCallback
