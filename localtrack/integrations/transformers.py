"""A Transformers callback that writes a localtrack run: ``Trainer(..., report_to="none",
callbacks=[LocaltrackCallback()])`` (``report_to`` names only Transformers' own integrations).

Like W&B's callback: the run opens at ``on_train_begin`` (or is the script's active run), with
the model's config and the TrainingArguments as config; each ``on_log`` is a row at
``state.global_step``, its keys named as W&B's are (``train/loss``, ``eval/loss``); the
end-of-training totals (``train_runtime``, ``train_loss``, ...) go to the summary. Training
resumed from a checkpoint rewinds the run to the checkpoint's step (see ``_logger``).
"""

from __future__ import annotations

import logging
from typing import Any

from transformers import TrainerCallback

import localtrack

from ._common import RunHandle, plain

__all__ = ["LocaltrackCallback"]

log = logging.getLogger("localtrack")

TOTALS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
          "total_flos")


class LocaltrackCallback(TrainerCallback):  # type: ignore[misc]  # Transformers is not type-checked here
    """Logs the Trainer's logs to a localtrack run; ``init_args`` go to ``localtrack.init()``."""

    def __init__(self, **init_args: Any) -> None:
        self._handle = RunHandle(init_args)

    @property
    def run(self) -> localtrack.Run | None:
        """The ``localtrack.Run`` (None before training began)."""
        return self._handle.run

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if args.run_name is not None:
            self._handle.init_args.setdefault("name", args.run_name)
        run = self._handle.writable()
        config = getattr(model, "config", None)
        values = config.to_dict() if config is not None else {}
        run.config.update(plain({**values, **args.to_dict()}), allow_val_change=True)
        last = run.step - 1
        if run.resumed and 0 < state.global_step < last:  # resumed from a checkpoint
            log.info("Trainer resumed %s at step %d: rewinding it from step %d", run.path,
                     state.global_step, last)
            run.rewind(state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        run = self._handle.writable()
        row = {}
        for key, value in logs.items():
            if key in TOTALS:
                run.summary[key] = value
            elif key.startswith(("eval_", "test_")):
                row[key.replace("_", "/", 1)] = value
            else:
                row[f"train/{key}"] = value
        run.log(row, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._handle.finish(exit_code=0)
