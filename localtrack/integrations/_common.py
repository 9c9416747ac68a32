"""What every integration needs: the run it writes, and hyperparameters made storable.

A framework calls its logger or callback before, during and after training, and perhaps again
for a later evaluation: the run opens at the first call, an active run the script started is
used as it is (and left for the script to finish), and a run the integration finished is
resumed for a later call.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Collection
from typing import Any

import localtrack

log = logging.getLogger("localtrack")


class RunHandle:
    """The run an integration writes, opened with ``init_args`` when first needed."""

    def __init__(self, init_args: dict[str, Any], run: localtrack.Run | None = None) -> None:
        self.init_args = init_args
        self.run = run
        self._owns = False  # whether finish() finishes it (not a run the script started)
        self._checked_restart = False  # log_at's check, made at its first row
        self._offset = 0  # added by log_at to the framework's steps
        self._here: tuple[int, set[str]] = (-1, set())  # log_here's step, and its keys there

    def open(self) -> localtrack.Run:
        if self.run is None and localtrack.run is not None:
            log.info("logging to the active run %s", localtrack.run.path)
            self.run = localtrack.run
        elif self.run is None:
            self.run = localtrack.init(**self.init_args)
            self._owns = True
        return self.run

    def writable(self) -> localtrack.Run:
        """The run, resumed if it was finished."""
        run = self.open()
        if run.state != "running":
            self.init_args.update(id=run.id, project=run.project, resume="must")
            self.run = run = localtrack.init(**self.init_args)
            self._owns = True
        return run

    def log_at(self, row: dict[str, Any], step: int) -> localtrack.Run:
        """Log ``row`` at the framework's ``step``, which may start behind the run's. In a run
        resumed by id, the framework restarted from its checkpoint (a requeued job) and counts
        again from the checkpoint's step: the first row rewinds the run to just before it (the
        lost rows archived, as ``init(resume_from=)`` does), so the history is that of the model
        training kept. In the script's own run, which it logged to before training, the
        framework's steps follow the rows already there (else each row would be dropped)."""
        run = self.writable()
        if not self._checked_restart:
            self._checked_restart = True
            if run.resumed and 0 < step < run.step:
                log.info("training resumed %s at step %d: rewinding it from step %d", run.path,
                         step, run.step - 1)
                run.rewind(step - 1)
            elif step < run.step:
                self._offset = run.step - step
        run.log(row, step=step + self._offset)
        return run

    def log_here(self, row: dict[str, Any]) -> localtrack.Run:
        """Log ``row`` at the step the run is at, joining the row the framework logs there at
        its own step (before or after: the step stays open). Were a key of ``row`` already
        logged there by this handle, the step is committed first: no value is overwritten, and
        no row lands behind the run's step, to be dropped."""
        run = self.writable()
        step, keys = self._here
        if run.step != step:
            step, keys = run.step, set()
        elif not keys.isdisjoint(row):
            run.log()  # commits the step this handle left open
            step, keys = run.step, set()
        run.log(row, commit=False)
        self._here = (step, keys | set(row))
        return run

    def finish(self, exit_code: int) -> None:
        if self._owns and self.run is not None:
            self.run.finish(exit_code=exit_code)


def plain(value: Any) -> Any:
    """``value`` with what JSON cannot hold (a callable, a torch.dtype, a Path, an enum) turned
    into its string, as W&B stores such config values."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    item = getattr(value, "item", None)  # a numpy or torch scalar
    if callable(item) and getattr(value, "ndim", None) == 0:
        return plain(item())
    return getattr(value, "__name__", None) or str(value)


def define_best(run: localtrack.Run, key: str, metric: str, minimize: Collection[str],
                maximize: Collection[str]) -> None:
    """As W&B's XGBoost and LightGBM callbacks do (``define_metric=True``): the summary of
    ``key`` is its best value, the least of a loss or a metric in ``minimize``, the greatest of
    one in ``maximize`` (others keep the last value)."""
    name = metric.lower()
    if "loss" in name or name in minimize:
        run.define_metric(key, summary="min")
    elif name in maximize:
        run.define_metric(key, summary="max")


def log_model_file(run: localtrack.Run, artifact: str, filename: str,
                   save: Callable[[str], object], aliases: list[str] | None = None) -> None:
    """Save a model with ``save(path)`` into a scratch folder and log that file as the next
    version of the ``artifact`` (type "model"); the store keeps its own copy. The version is
    committed before this returns (a model logged once, at the end of training: a script
    killed next keeps it), unlike a bare log_artifact's."""
    with tempfile.TemporaryDirectory(prefix="localtrack-model-") as scratch:
        path = os.path.join(scratch, filename)
        save(path)
        model = localtrack.Artifact(artifact, "model")
        model.add_file(path)
        run.log_artifact(model, aliases=aliases).wait()
