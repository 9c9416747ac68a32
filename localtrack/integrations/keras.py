"""Keras 3 callbacks that write a localtrack run: ``model.fit(..., callbacks=[LocaltrackCallback()])``.

``LocaltrackCallback`` is shaped as W&B's ``WandbMetricsLogger`` (also importable under that
name): the ``logs`` Keras hands its callbacks become ``epoch/<metric>`` rows (with
``epoch/epoch`` and ``epoch/learning_rate``) and, with ``log_freq="batch"`` or every
``log_freq`` batches, ``batch/<metric>`` rows (with ``batch/batch_step``). The step is the
epoch when only epochs are logged, else the count of training batches (``initial_global_step``
plus those seen), an epoch's row joining its last batch's step. Unlike W&B's, it needs no
``init()`` first: it opens a run with its ``init_args`` at the start of training (or uses the
script's active run, left open) and finishes the run it opened when training ends.
``fit(initial_epoch=k)`` on the same run id (``id=..., resume="allow"``) continues it,
rewinding rows logged after epoch ``k``.

``WandbModelCheckpoint`` is Keras's ``ModelCheckpoint`` that also logs each file it saves as a
version of the model artifact ``run_<run id>_model``; ``WandbEvalCallback`` is W&B's base of
callbacks that log a table of data at the start of training and one of predictions after each
epoch. Each uses the script's active run, or opens one with its ``init_args`` and finishes it
when training ends.
"""

from __future__ import annotations

import abc
import os
from typing import Any

import keras

import localtrack

from ._common import RunHandle, plain

__all__ = ["LocaltrackCallback", "WandbEvalCallback", "WandbMetricsLogger", "WandbModelCheckpoint"]


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


class WandbModelCheckpoint(keras.callbacks.ModelCheckpoint):  # type: ignore[misc]
    """Keras's ``ModelCheckpoint`` (same arguments, same files) that logs each file it saves as
    the next version of the artifact ``run_<run id>_model`` (type "model"), aliased ``latest``
    and ``epoch_<epoch>`` (``epoch_<epoch>_batch_<batch>`` with ``save_freq`` a count of
    batches), as W&B's does; with ``save_best_only`` a save is the best so far and is also
    aliased ``best``. An epoch it does not save logs nothing. ``init_args`` go to
    ``localtrack.init()`` when no run is active at the start of training."""

    def __init__(self, filepath: str | os.PathLike[str], monitor: str = "val_loss",
                 verbose: int = 0, save_best_only: bool = False, save_weights_only: bool = False,
                 mode: str = "auto", save_freq: str | int = "epoch",
                 initial_value_threshold: float | None = None, **init_args: Any) -> None:
        if not hasattr(keras.callbacks.ModelCheckpoint, "_should_save_model"):  # Keras < 3.10
            raise localtrack.errors.UsageError(
                f"WandbModelCheckpoint needs Keras 3.10 or later to know which epochs saved a "
                f"file; this is Keras {keras.__version__}: pip install -U keras.")
        super().__init__(filepath=filepath, monitor=monitor, verbose=verbose,
                         save_best_only=save_best_only, save_weights_only=save_weights_only,
                         mode=mode, save_freq=save_freq,
                         initial_value_threshold=initial_value_threshold)
        self._handle = RunHandle(init_args)
        self._saving = False  # what ModelCheckpoint decided for the save under way

    @property
    def run(self) -> localtrack.Run | None:
        """The ``localtrack.Run`` (None before training began)."""
        return self._handle.run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        self._handle.writable()

    def _should_save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None,
                           filepath: str) -> bool:
        self._saving = bool(super()._should_save_model(epoch, batch, logs, filepath))
        return self._saving

    def _save_model(self, epoch: int, batch: int | None, logs: dict[str, Any] | None) -> None:
        self._saving = False
        super()._save_model(epoch, batch, logs)
        if not self._saving:  # save_best_only, and no better: nothing new to log
            return
        path = self._get_file_path(epoch, batch, logs or {})
        run = self._handle.writable()
        artifact = localtrack.Artifact(f"run_{run.id}_model", "model")
        if os.path.isdir(path):
            artifact.add_dir(path)
        else:
            artifact.add_file(path)
        aliases = [f"epoch_{epoch}" if batch is None else f"epoch_{epoch}_batch_{batch}"]
        if self.save_best_only:
            aliases.append("best")
        run.log_artifact(artifact, aliases=aliases)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        super().on_train_end(logs)
        self._handle.finish(exit_code=0)


class TableRef:
    """The logged ``data_table`` as W&B's ``data_table_ref`` offers it: its ``columns``,
    ``data`` (also as ``ref[row][column]``), and ``get_index()`` (the row indexes, for a
    prediction table to refer to)."""

    def __init__(self, table: localtrack.Table) -> None:
        self.columns = table.columns
        self.data = table.data

    def get_index(self) -> list[int]:
        return list(range(len(self.data)))

    def __getitem__(self, row: int) -> list[Any]:
        return self.data[row]

    def __len__(self) -> int:
        return len(self.data)


class WandbEvalCallback(keras.callbacks.Callback, abc.ABC):  # type: ignore[misc]
    """W&B's base of callbacks that show a model's predictions: a subclass fills
    ``self.data_table`` in ``add_ground_truth`` (called at the start of training) and
    ``self.pred_table`` in ``add_model_predictions`` (after each epoch). Each table is logged to
    the run's history (where W&B makes an artifact of it) under its ``table_name``: ``val_data``
    once, ``eval_data`` after each epoch, read back by ``Api().run(p).media("eval_data")``. A
    table joins the step the run is at (where a metrics logger's row of that epoch goes), and
    moves the step on only if it already holds that table. ``init_args`` go to
    ``localtrack.init()`` when no run is active at the start of training."""

    def __init__(self, data_table_columns: list[str], pred_table_columns: list[str],
                 **init_args: Any) -> None:
        super().__init__()
        self.data_table_columns = data_table_columns
        self.pred_table_columns = pred_table_columns
        self.data_table = localtrack.Table(columns=data_table_columns)
        self.pred_table = localtrack.Table(columns=pred_table_columns)
        self.data_table_ref = TableRef(self.data_table)
        self._handle = RunHandle(init_args)

    @property
    def run(self) -> localtrack.Run | None:
        """The ``localtrack.Run`` (None before training began)."""
        return self._handle.run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.init_data_table(column_names=self.data_table_columns)
        self.add_ground_truth(logs)
        self.log_data_table()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.init_pred_table(column_names=self.pred_table_columns)
        self.add_model_predictions(epoch, logs)
        self.log_pred_table()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._handle.finish(exit_code=0)

    @abc.abstractmethod
    def add_ground_truth(self, logs: dict[str, Any] | None = None) -> None:
        """Fill ``self.data_table`` (called once, at the start of training)."""

    @abc.abstractmethod
    def add_model_predictions(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        """Fill ``self.pred_table`` (called after each epoch)."""

    def init_data_table(self, column_names: list[str]) -> None:
        """A new, empty ``data_table``."""
        self.data_table = localtrack.Table(columns=column_names, allow_mixed_types=True)

    def init_pred_table(self, column_names: list[str]) -> None:
        """A new, empty ``pred_table``."""
        self.pred_table = localtrack.Table(columns=column_names)

    def log_data_table(self, name: str = "val", type: str = "dataset",
                       table_name: str = "val_data") -> None:
        """Log ``data_table`` as ``table_name`` and keep it as ``data_table_ref`` (W&B's
        artifact ``name`` and ``type`` name no artifact here)."""
        self._log_table(table_name, self.data_table)
        self.data_table_ref = TableRef(self.data_table)

    def log_pred_table(self, type: str = "evaluation", table_name: str = "eval_data",
                       aliases: list[str] | None = None) -> None:
        """Log ``pred_table`` as ``table_name`` (W&B's artifact ``type`` and ``aliases`` name no
        artifact here)."""
        self._log_table(table_name, self.pred_table)

    def _log_table(self, key: str, table: localtrack.Table) -> None:
        self._handle.log_here({key: table})
