"""An XGBoost callback that writes a localtrack run: ``xgb.train(..., callbacks=[LocaltrackCallback()])``.

Shaped as W&B's ``WandbCallback`` (also importable under that name; ``wandb_callback()`` is
W&B's older one): before training the booster's configuration (``save_config()``) becomes the
config; after each boosting round the evaluation results are a row at the round's number
(counted on from a model training continues) as ``<data>-<metric>`` (``validation-rmse``; under
``xgb.cv``, the folds' mean) with ``epoch``; after training the summary gets
``best_iteration``/``best_score`` (set by early stopping) and the ``feature_importance`` map
(``importance_type``; W&B draws it as a bar chart). The run opens with ``init_args`` at the
start of training (or is the script's active run, left open) and the run it opened finishes
when training ends. Training continued from a saved model (``xgb_model=``) on the same run id
(``id=..., resume="allow"``) numbers its rounds on from the model's: rows logged after the
model was saved are rewound.
"""

from __future__ import annotations

import json
from typing import Any

from xgboost.callback import TrainingCallback

import localtrack

from ._common import RunHandle, define_best, log_model_file, plain

__all__ = ["LocaltrackCallback", "WandbCallback", "wandb_callback"]

# W&B's: define_metric=True makes these keys' summary their least or greatest value.
MINIMIZE = ("rmse", "rmsle", "mae", "mape", "mphe", "logloss", "error", "error@t", "merror")
MAXIMIZE = ("auc", "aucpr", "ndcg", "map", "ndcg@n", "map@n")


class LocaltrackCallback(TrainingCallback):  # type: ignore[misc]  # XGBoost is not type-checked here
    """Logs XGBoost's evaluation results to a localtrack run; ``init_args`` go to
    ``localtrack.init()``. ``log_model``: after training, the booster (as JSON) is the next
    version of the artifact ``<run id>_model.json`` (type "model"), as W&B's is.
    ``define_metric``: the summary of a loss or error is its least value, of an auc, map or
    ndcg its greatest, as W&B's."""

    def __init__(self, log_model: bool = False, log_feature_importance: bool = True,
                 importance_type: str = "gain", define_metric: bool = True,
                 **init_args: Any) -> None:
        super().__init__()
        self._log_model = log_model
        self._define_metric = define_metric
        self._importance = importance_type if log_feature_importance else None
        self._handle = RunHandle(init_args)
        self._first_round = 0  # the rounds of the model training continues (xgb_model=)

    @property
    def run(self) -> localtrack.Run | None:
        """The ``localtrack.Run`` (None before training began)."""
        return self._handle.run

    def before_training(self, model: Any) -> Any:
        run = self._handle.writable()
        folds = getattr(model, "cvfolds", None)  # xgb.cv: a booster for each fold, alike
        booster = folds[0].bst if folds else model
        run.config.update(plain(json.loads(booster.save_config())), allow_val_change=True)
        self._first_round = booster.num_boosted_rounds()  # XGBoost counts epochs from 0 again
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        step = self._first_round + epoch
        row: dict[str, Any] = {"epoch": step}
        for data, metrics in evals_log.items():
            for name, values in metrics.items():
                last = values[-1]  # xgb.cv gives (mean, std) pairs: the mean
                row[f"{data}-{name}"] = float(last[0] if isinstance(last, tuple) else last)
        run = self._handle.writable()
        if self._define_metric:  # once, at the first round (as W&B's)
            self._define_metric = False
            for data, metrics in evals_log.items():
                for name in metrics:
                    define_best(run, f"{data}-{name}", name, MINIMIZE, MAXIMIZE)
        self._handle.log_at(row, step)
        return False  # never stops training

    def after_training(self, model: Any) -> Any:
        run = self._handle.writable()
        for key in ("best_iteration", "best_score"):
            value = model.attr(key) if hasattr(model, "attr") else None
            if value is not None:
                run.summary[key] = int(value) if key == "best_iteration" else float(value)
        if self._log_model and hasattr(model, "save_model"):
            log_model_file(run, f"{run.id}_model.json", f"{run.id}_model.json", model.save_model)
        if self._importance is not None and hasattr(model, "get_score"):
            run.summary["feature_importance"] = plain(model.get_score(
                importance_type=self._importance))
        self._handle.finish(exit_code=0)
        return model


WandbCallback = LocaltrackCallback


def wandb_callback(**init_args: Any) -> LocaltrackCallback:
    """W&B's older callback (``wandb.xgboost.wandb_callback()``, deprecated there for
    WandbCallback): the evaluation results at each round. W&B's is a function for XGBoost's
    callback API of before 2.0, which XGBoost no longer calls; this is the TrainingCallback
    that logs the same rows (and, as WandbCallback, the booster's config and best score)."""
    return LocaltrackCallback(log_feature_importance=False, **init_args)
