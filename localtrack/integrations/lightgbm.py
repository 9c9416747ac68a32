"""A LightGBM callback that writes a localtrack run: ``lgb.train(..., callbacks=[localtrack_callback()])``.

Shaped as W&B's ``wandb_callback`` and ``log_summary`` (also importable under those names): at
the first round the parameters become the config; after each round the evaluation results
are a row at the round's number as ``<data>_<metric>`` (``valid_0_l2``) with ``iteration``.
LightGBM tells a callback nothing when training ends, so the run stays open: the script's
``localtrack.finish()`` (or its exit) finishes it, as with W&B. The run is the script's active
run, or one opened with ``init_args``. ``log_summary(booster)`` puts ``best_iteration``,
``best_score`` and the ``feature_importance`` map in the summary. Training continued from a
saved model (``init_model=``) on the same run id (``id=..., resume="allow"``) numbers its rounds
on from the model's: rows logged after the model was saved are rewound.
"""

from __future__ import annotations

from typing import Any

import localtrack

from ._common import RunHandle, define_best, log_model_file, plain

__all__ = ["LocaltrackCallback", "localtrack_callback", "log_summary", "wandb_callback"]

# W&B's: define_metric=True makes these keys' summary their least or greatest value.
MINIMIZE = ("l1", "l2", "rmse", "mape", "huber", "fair", "poisson", "gamma", "binary_logloss")
MAXIMIZE = ("map", "auc", "average_precision")


class LocaltrackCallback:
    """The callable LightGBM calls after each boosting round (``order`` places it as LightGBM's
    own ``record_evaluation``, before early stopping can end training)."""

    order = 20

    def __init__(self, log_params: bool = True, define_metric: bool = True,
                 **init_args: Any) -> None:
        self._log_params = log_params
        self._define_metric = define_metric
        self._handle = RunHandle(init_args)

    @property
    def run(self) -> localtrack.Run | None:
        """The ``localtrack.Run`` (None before the first round)."""
        return self._handle.run

    def __call__(self, env: Any) -> None:
        row: dict[str, Any] = {"iteration": env.iteration}
        best: list[tuple[str, str]] = []  # (key, metric) for define_metric
        for data, name, value, *more in env.evaluation_result_list or []:
            if len(more) == 2:  # lgb.cv: ("valid", "l2", mean, bigger, stdv) (LightGBM 4.6),
                # ("cv_agg", "valid l2", ...) before
                if data == "cv_agg" and " " in name:
                    data, name = name.split(" ", 1)
                for part, v in (("mean", value), ("stdv", more[1])):
                    row[f"{data}_{name}-{part}"] = float(v)
                    best.append((f"{data}_{name}-{part}", f"{name}-{part}"))
            else:
                row[f"{data}_{name}"] = float(value)
                best.append((f"{data}_{name}", name))
        if env.iteration == env.begin_iteration:
            run = self._handle.writable()
            if self._log_params:
                run.config.update(plain(dict(env.params)), allow_val_change=True)
            for key, metric in best if self._define_metric else []:
                define_best(run, key, metric, MINIMIZE, MAXIMIZE)
        self._handle.log_at(row, env.iteration)

def localtrack_callback(log_params: bool = True, define_metric: bool = True,
                        **init_args: Any) -> LocaltrackCallback:
    """A callback for ``lgb.train`` or ``lgb.cv`` (``callbacks=[...]``; under ``lgb.cv``, each
    metric's ``-mean`` and ``-stdv`` over the folds, as W&B's); ``define_metric``: the summary
    of an l1, l2, rmse or loss is its least value, of a map or auc its greatest, as W&B's."""
    return LocaltrackCallback(log_params, define_metric, **init_args)


def log_summary(model: Any, feature_importance: bool = True,
                save_model_checkpoint: bool = False) -> None:
    """Put the booster's ``best_iteration``, ``best_score`` and (``feature_importance``) the
    gain of each feature in the active run's summary. ``save_model_checkpoint``: the model at
    its best iteration is a version of the artifact ``model_<run id>`` aliased ``best``, as
    W&B's."""
    run = localtrack.run
    if run is None:
        raise localtrack.errors.RunStateError(
            "log_summary(): no active run; call localtrack.init() (or train with "
            "localtrack_callback()) first")
    run.summary["best_iteration"] = int(model.best_iteration)
    scores = {f"{data}_{name}": float(v) for data, metrics in model.best_score.items()
              for name, v in metrics.items()}
    run.summary["best_score"] = scores
    if feature_importance:
        gains = model.feature_importance(importance_type="gain")
        run.summary["feature_importance"] = {
            name: float(g) for name, g in zip(model.feature_name(), gains, strict=True)}
    if save_model_checkpoint:
        best = int(model.best_iteration)
        log_model_file(run, f"model_{run.id}", f"model_ckpt_{best}.txt",
                       lambda path: model.save_model(path, num_iteration=best), aliases=["best"])


wandb_callback = localtrack_callback
