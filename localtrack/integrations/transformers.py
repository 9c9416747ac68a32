"""A Transformers callback that writes a localtrack run: ``Trainer(..., report_to="none",
callbacks=[LocaltrackCallback()])`` (``report_to`` names only Transformers' own integrations).

Like W&B's callback: the run opens at ``on_train_begin`` (or is the script's active run), with
the model's config and the TrainingArguments as config; each ``on_log`` is a row at
``state.global_step``, its keys named as W&B's are (``train/loss``, ``eval/loss``); the
end-of-training totals (``train_runtime``, ``train_loss``, ...) go to the summary. Training
resumed from a checkpoint rewinds the run to the checkpoint's step (see ``_logger``).
``log_model`` and ``watch`` are W&B's ``WANDB_LOG_MODEL`` and ``WANDB_WATCH`` (given here, or
else read from those variables as W&B's callback reads them): the model as artifact
``model-<run id>`` (``model-<run_name>``), aliased ``base_model`` (its architecture, at the
start), ``final_model`` ("end"), or ``checkpoint_global_step_<N>`` and ``epoch_<E>`` for each
checkpoint folder ("checkpoint").
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from typing import Any

from transformers import TrainerCallback

import localtrack

from ._common import RunHandle, plain

__all__ = ["LocaltrackCallback"]

log = logging.getLogger("localtrack")

# "true" is W&B's older spelling of "end" (it still takes it, with a deprecation warning).
LOG_MODEL: dict[str | bool, str | None] = {False: None, "false": None, "end": "end",
                                           "checkpoint": "checkpoint", "true": "end"}
WATCH: dict[str | bool, str | None] = {False: None, "false": None, "gradients": "gradients",
                                       "parameters": "parameters", "all": "all"}
TOTALS = ("train_runtime", "train_samples_per_second", "train_steps_per_second", "train_loss",
          "total_flos")


def _choice(arg: str, value: str | bool | None, variable: str,
            allowed: dict[str | bool, str | None]) -> str | None:
    """The argument's meaning, else the W&B variable's (lower-cased, as W&B reads it; unset:
    off): a value neither knows is an error naming where it came from."""
    where = f"LocaltrackCallback({arg}={value!r})"
    if value is None:
        value = os.environ.get(variable, "false").strip().lower() or "false"
        where = f"{variable}={value!r}"
    if value not in allowed:
        choices = ", ".join(repr(k) for k in allowed if k is not False)
        raise localtrack.errors.InvalidValueError(
            f"{where}: {arg} is one of {choices} or False (W&B's {variable}).")
    return allowed[value]


class LocaltrackCallback(TrainerCallback):  # type: ignore[misc]  # Transformers is not type-checked here
    """Logs the Trainer's logs to a localtrack run; ``init_args`` go to ``localtrack.init()``."""

    def __init__(self, log_model: str | bool | None = None, watch: str | bool | None = None,
                 **init_args: Any) -> None:
        self._log_model = _choice("log_model", log_model, "WANDB_LOG_MODEL", LOG_MODEL)
        self._watch = _choice("watch", watch, "WANDB_WATCH", WATCH)
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
        if hasattr(model, "num_parameters"):
            run.config["model/num_parameters"] = model.num_parameters()
        if self._watch is not None:
            run.watch(model, log=self._watch, log_freq=max(100, state.logging_steps))
        if self._log_model is not None:
            artifact = localtrack.Artifact(self._model_name(args, run), "model", metadata={
                "model_config": plain(values) or None, "initial_model": True,
                "num_parameters": run.config.get("model/num_parameters")})
            with artifact.new_file("model_architecture.txt") as f:
                print(model, file=f)
            run.log_artifact(artifact, aliases=["base_model"])
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

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._log_model != "checkpoint" or not state.is_world_process_zero:
            return
        run = self._handle.writable()
        artifact = localtrack.Artifact(self._model_name(args, run), "model",
                                       metadata=self._metadata(run))
        artifact.add_dir(os.path.join(args.output_dir, f"checkpoint-{state.global_step}"))
        run.log_artifact(artifact, aliases=[f"epoch_{round(state.epoch, 2)}",
                                            f"checkpoint_global_step_{state.global_step}"])

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None,
                     processing_class: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        if self._log_model is not None and model is not None:
            run = self._handle.writable()
            artifact = localtrack.Artifact(self._model_name(args, run), "model",
                                           metadata={**self._metadata(run), "final_model": True})
            with tempfile.TemporaryDirectory(prefix="localtrack-model-") as scratch:
                model.save_pretrained(scratch)
                if processing_class is not None:
                    processing_class.save_pretrained(scratch)
                with open(os.path.join(scratch, "model_architecture.txt"), "w") as f:
                    print(model, file=f)
                artifact.add_dir(scratch)
                run.log_artifact(artifact, aliases=["final_model"])
        self._handle.finish(exit_code=0)

    @staticmethod
    def _model_name(args: Any, run: localtrack.Run) -> str:
        """W&B's: ``model-<run id>``, or ``model-<run name>`` when the TrainingArguments name
        the run (made a valid artifact name)."""
        if args.run_name is None or args.run_name == args.output_dir:
            return f"model-{run.id}"
        return "model-" + re.sub(r"[^A-Za-z0-9._-]", "-", run.name or run.id)

    @staticmethod
    def _metadata(run: localtrack.Run) -> dict[str, Any]:
        """The run's numeric summary values, as W&B's model artifacts carry."""
        numbers = {k: v for k, v in dict(run.summary).items() if not k.startswith("_")
                   and isinstance(v, (int, float)) and not isinstance(v, bool)}
        return {**numbers, "model/num_parameters": run.config.get("model/num_parameters")}
