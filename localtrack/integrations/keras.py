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

``WandbCallback`` is W&B's legacy callback (``wandb.keras.WandbCallback``, deprecated by W&B
but in many scripts), with its whole signature: each epoch logs ``epoch`` and Keras's logs as
one row at the run's next step (and, with ``log_batch_frequency``, every that many batches a
row of the batch's logs), ``best_<monitor>`` and ``best_epoch`` in the summary when the monitored
value improves, and the best model saved as ``model-best.h5`` (``model-best.weights.h5`` with
``save_weights_only``) in the run's files, where ``localtrack.restore`` and
``Api().run(p).file`` find it. ``log_weights`` logs a ``Histogram`` of each layer's weights
(``parameters/<layer>.weights``, ``.bias``).
"""

from __future__ import annotations

import abc
import logging
import operator
import os
import tempfile
from collections.abc import Callable
from typing import Any

import keras

import localtrack

from ._common import RunHandle, plain

__all__ = ["LocaltrackCallback", "WandbCallback", "WandbEvalCallback", "WandbMetricsLogger",
           "WandbModelCheckpoint"]

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


# WandbCallback's arguments that show W&B's server views (example predictions, evaluation
# tables, the graph, FLOPs): accepted, and ignored here with one debug log.
_VIEWS = ("training_data", "validation_data", "labels", "generator", "input_type", "output_type",
          "validation_steps", "class_colors", "validation_indexes", "validation_row_processor",
          "prediction_row_processor")


class WandbCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """W&B's legacy ``WandbCallback``: metrics per epoch, the best value in the summary, the
    best model saved with the run (see the module's docstring). As W&B's, it needs
    ``localtrack.init()`` first; it leaves the run open."""

    def __init__(self, monitor: str = "val_loss", verbose: int = 0, mode: str = "auto",
                 save_weights_only: bool = False, log_weights: bool = False,
                 log_gradients: bool = False, save_model: bool = True,
                 training_data: Any = None, validation_data: Any = None, labels: Any = None,
                 predictions: int = 36, generator: Any = None, input_type: str | None = None,
                 output_type: str | None = None, log_evaluation: bool = False,
                 validation_steps: int | None = None, class_colors: Any = None,
                 log_batch_frequency: int | None = None, log_best_prefix: str = "best_",
                 save_graph: bool = True, validation_indexes: Any = None,
                 validation_row_processor: Any = None, prediction_row_processor: Any = None,
                 infer_missing_processors: bool = True, log_evaluation_frequency: int = 0,
                 compute_flops: bool = False, **kwargs: Any) -> None:
        given = dict(locals())
        super().__init__()
        if localtrack.run is None:
            raise localtrack.errors.UsageError(
                "WandbCallback() needs an active run, as W&B's does: call localtrack.init() "
                "first (or use LocaltrackCallback, which opens one).")
        if log_gradients:
            raise localtrack.errors.UsageError(
                "WandbCallback(log_gradients=True) is not supported by localtrack: W&B computes "
                "them with TensorFlow from training_data. Log gradient histograms with "
                "localtrack.watch(model) on a torch-backend model, or drop log_gradients.")
        if log_batch_frequency is not None and (isinstance(log_batch_frequency, bool) or not
                                                isinstance(log_batch_frequency, int)
                                                or log_batch_frequency < 1):
            raise localtrack.errors.InvalidValueError(
                f"WandbCallback(log_batch_frequency={log_batch_frequency!r}): give a count of "
                "batches >= 1, or None for epochs only")
        self.run = localtrack.run
        self.monitor = monitor
        self.verbose = verbose
        self.save_weights_only = save_weights_only
        self.log_weights = log_weights
        self.save_model = save_model
        self.log_batch_frequency = log_batch_frequency
        self.log_best_prefix = log_best_prefix
        self.monitor_op, self.best = _monitor(monitor, mode)
        self.best_epoch: int | None = None
        ignored = [n for n in (*_VIEWS, "log_evaluation", "log_evaluation_frequency",
                               "compute_flops") if _given(given[n])]
        ignored += list(kwargs)
        if ignored:
            log.debug("WandbCallback ignores %s: W&B server views with no local counterpart",
                      ", ".join(ignored))

    @property
    def filename(self) -> str:
        """The best model's name in the run's files (W&B's ``model-best.h5``)."""
        return "model-best.weights.h5" if self.save_weights_only else "model-best.h5"

    def on_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.log_batch_frequency and batch % self.log_batch_frequency == 0:
            self.run.log({k: plain(v) for k, v in (logs or {}).items()})

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = logs or {}
        row: dict[str, Any] = {"epoch": epoch, **{k: plain(v) for k, v in logs.items()}}
        if self.log_weights:
            row.update(self._weights())
        self.run.log(row)
        current = logs.get(self.monitor)
        if current is None or not self.monitor_op(float(current), self.best):
            return
        self.best, self.best_epoch = float(current), epoch
        if self.log_best_prefix:
            self.run.summary.update({f"{self.log_best_prefix}{self.monitor}": self.best,
                                     f"{self.log_best_prefix}epoch": epoch})
        if self.save_model:
            self._save_best(epoch)

    def _weights(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for layer in self.model.layers:
            weights = [keras.ops.convert_to_numpy(w) for w in layer.weights]
            for suffix, w in zip(("weights", "bias"), weights[:2], strict=False):
                out[f"parameters/{layer.name}.{suffix}"] = localtrack.Histogram(w.ravel())
        return out

    def _save_best(self, epoch: int) -> None:
        save: Callable[[str], object] = (self.model.save_weights if self.save_weights_only
                                         else self.model.save)
        with tempfile.TemporaryDirectory(prefix="localtrack-model-") as scratch:
            path = os.path.join(scratch, self.filename)
            save(path)
            self.run.save(path, base_path=scratch, policy="now")
        if self.verbose:
            log.info("Epoch %d: %s improved to %s, saved the model as %s in %s", epoch,
                     self.monitor, self.best, self.filename, self.run.path)


def _given(value: Any) -> bool:
    """Whether an argument was set (an array's truth is no answer: compare by identity)."""
    return not (value is None or value is False or (type(value) is int and value == 0))


def _monitor(monitor: str, mode: str) -> tuple[Callable[[float, float], bool], float]:
    """W&B's rule: "min" or "max", and with "auto" max for an accuracy (or fmeasure)."""
    if mode not in ("auto", "min", "max"):
        log.warning("WandbCallback mode %r is unknown: falling back to auto", mode)
        mode = "auto"
    if mode == "max" or (mode == "auto" and ("acc" in monitor
                                              or monitor.startswith("fmeasure"))):
        return operator.gt, float("-inf")
    return operator.lt, float("inf")
