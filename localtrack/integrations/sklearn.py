"""W&B's ``wandb.sklearn`` plots: ``localtrack.sklearn.plot_classifier(model, X_train, ...)``.

Each plot computes a table with scikit-learn, as W&B's does, and logs it to the active run as
a chart (``localtrack.plot.CustomChart``) under W&B's key with W&B's Vega spec name and
columns (``learning_curve``: ``wandb/learning_curve/v1``, rows (dataset, score, train_size)),
so ``Api().run(p).media("learning_curve")`` reads what W&B would store. The ROC and PR curves
are ``localtrack.plot.roc_curve``/``pr_curve``. The composites (``plot_classifier``,
``plot_regressor``, ``plot_clusterer``) log their parts one step each, as W&B's ``log()``
calls do. Where W&B prints an error and logs nothing (no active run, a model not fitted,
arrays of different lengths), these raise, before anything is logged; a part that does not
apply to the model (no feature importances, labels that are not 0/1 for the calibration
curve) is skipped by a composite with a warning, as W&B's. scikit-learn is imported when a
plot is made; the model passed is never refitted (the plots that fit, fit a clone).
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import localtrack
from localtrack.errors import InvalidValueError, LocaltrackError, UnsupportedTypeError, UsageError

__all__ = ["plot_calibration_curve", "plot_class_proportions", "plot_classifier",
           "plot_clusterer", "plot_confusion_matrix", "plot_elbow_curve",
           "plot_feature_importances", "plot_learning_curve", "plot_outlier_candidates",
           "plot_precision_recall", "plot_regressor", "plot_residuals", "plot_roc",
           "plot_silhouette", "plot_summary_metrics"]

log = logging.getLogger("localtrack")

#: W&B's chart_limit: the rows a table keeps at most (W&B's loops keep one more).
CHART_LIMIT = 1000


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _boundary(plot: Callable[_P, _R]) -> Callable[_P, _R]:
    """scikit-learn's and numpy's refusals (a NaN in X, a cv larger than the data) as
    localtrack's InvalidValueError naming the plot; localtrack's own errors as they are."""
    @functools.wraps(plot)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return plot(*args, **kwargs)
        except LocaltrackError:
            raise
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            raise InvalidValueError(f"localtrack.sklearn.{plot.__name__}(): scikit-learn could "
                                    f"not compute the plot from these arguments: {exc}") from exc
    return call


def _sklearn(what: str) -> Any:
    """scikit-learn, imported now (never by ``import localtrack``)."""
    try:
        import sklearn
        import sklearn.base
        import sklearn.exceptions
        import sklearn.metrics
        import sklearn.model_selection
        import sklearn.utils.validation
    except ModuleNotFoundError as exc:
        raise UsageError(f"{what} (W&B's wandb.sklearn) needs scikit-learn: pip install "
                         "scikit-learn.") from exc
    return sklearn


def _run(what: str) -> localtrack.Run:
    run: localtrack.Run | None = localtrack.run
    if run is None:
        raise UsageError(f"{what} logs to the active run, and there is none: call "
                         "localtrack.init() first.")
    return run


def _start(what: str) -> Any:
    """scikit-learn, once it is known there is an active run to log the plot to."""
    sk = _sklearn(what)
    _run(what)
    return sk


def _log(key: str, table: Any, spec_name: str, fields: dict[str, Any] | None = None) -> None:
    """Log ``table`` as a chart of W&B's spec ``spec_name`` under ``key`` (W&B's
    ``wandb.log({key: wandb.visualize(spec_name, table)})``)."""
    localtrack.log({key: localtrack.plot_table(spec_name, table, fields or {})})


def _table(columns: list[str], rows: list[list[Any]]) -> localtrack.Table:
    return localtrack.Table(columns=columns, data=[[_py(v) for v in row] for row in rows])


def _py(value: Any) -> Any:
    """A cell as a Python value (numpy scalars as their int/float/str/bool; NaN as None)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fitted(sk: Any, model: Any, what: str, name: str = "model") -> None:
    if model is None:
        raise InvalidValueError(f"{what}: {name} is None; pass the fitted estimator.")
    try:
        sk.utils.validation.check_is_fitted(model)
    except TypeError:
        raise UnsupportedTypeError(f"{what}: {name} must be a scikit-learn estimator, got "
                                   f"{type(model).__name__}.") from None
    except sk.exceptions.NotFittedError:
        raise UsageError(f"{what}: {name} ({type(model).__name__}) is not fitted; call "
                         f"{name}.fit(X, y) before plotting it.") from None


def _kind(sk: Any, model: Any, what: str, name: str, kinds: tuple[str, ...]) -> None:
    """``model`` is a classifier/regressor/clusterer as the plot needs."""
    def of(kind: str) -> bool:  # is_clusterer is scikit-learn 1.6's
        test = getattr(sk.base, f"is_{kind}", None)
        return bool(test(model)) if test else getattr(model, "_estimator_type", None) == kind

    if not any(of(kind) for kind in kinds):
        raise UnsupportedTypeError(f"{what}: {name} ({type(model).__name__}) is not a "
                                   f"{' or '.join(kinds)}.")


def _n(value: Any) -> int:
    shape = getattr(value, "shape", None)
    return int(shape[0]) if shape else len(value)


def _arrays(what: str, **arrays: Any) -> None:
    """Every array is given, and those of one group of samples have one length each: the
    groups are ``X``/``y`` (training) and ``X_test``/``y_test``/``y_pred``/``y_probas``."""
    lengths: dict[str, int] = {}
    for name, value in arrays.items():
        if value is None:
            raise InvalidValueError(f"{what}: {name} is None; give an array of samples.")
        try:
            lengths[name] = _n(value)
        except TypeError:
            raise UnsupportedTypeError(f"{what}: {name} must be an array or a list, got "
                                       f"{type(value).__name__}.") from None
        if lengths[name] == 0:
            raise InvalidValueError(f"{what}: {name} is empty.")
    for group in (("X", "y", "X_train", "y_train", "cluster_labels"),
                  ("X_test", "y_test", "y_pred", "y_true", "y_probas")):
        sized = {n: lengths[n] for n in group if n in lengths}
        if len(set(sized.values())) > 1:
            raise InvalidValueError(f"{what}: " + ", ".join(f"{n} has {k}" for n, k in
                                                            sized.items())
                                    + " samples; give one entry per sample in each.")


def _labels(y: Any) -> Any:
    import numpy as np

    return np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else y)


def _classes(what: str, **arrays: Any) -> tuple[list[Any], Any]:
    """The arrays as label arrays, and the sorted classes they hold between them."""
    from sklearn.utils.multiclass import unique_labels

    _arrays(what, **arrays)
    got = [_labels(a) for a in arrays.values()]
    try:
        return got, unique_labels(*got)
    except ValueError as exc:
        raise InvalidValueError(f"{what}: {' and '.join(arrays)} are not class labels of one "
                                f"kind: {exc}") from None


def _named(labels: Any, value: Any, what: str) -> Any:
    """W&B's rule: an integer class is named by ``labels[class]`` when labels are given."""
    import numpy as np

    if labels is None or not isinstance(value, (int, np.integer)):
        return value
    if not 0 <= int(value) < len(labels):
        raise InvalidValueError(f"{what}: class {value!r} has no name in labels ({len(labels)} names); "
                                "give a name per class index.")
    return labels[int(value)]


# -- classifiers ----------------------------------------------------------------------------


@_boundary
def plot_classifier(model: Any, X_train: Any, X_test: Any, y_train: Any, y_test: Any,  # noqa: N803
                    y_pred: Any, y_probas: Any, labels: Any, is_binary: bool = False,
                    model_name: str = "Classifier", feature_names: Any = None,
                    log_learning_curve: bool = False) -> None:
    """Every classifier plot of W&B's: feature importances (unless the model has none),
    the learning curve (``log_learning_curve``), confusion matrix, summary metrics, class
    proportions, calibration curve (binary 0/1 labels only), ROC and PR curves."""
    what = "localtrack.sklearn.plot_classifier()"
    sk = _start(what)
    _fitted(sk, model, what)
    _kind(sk, model, what, "model", ("classifier",))
    _arrays(what, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test,
            y_pred=y_pred, y_probas=y_probas)
    log.info("plotting %s", model_name)
    from sklearn import naive_bayes

    multinomial = isinstance(model, naive_bayes.MultinomialNB)
    if not multinomial:
        importances, problem = _importances(model)
        if problem:
            log.warning("%s: no feature importances plotted: %s", what, problem)
        else:
            plot_feature_importances(model, feature_names)
    if log_learning_curve:
        plot_learning_curve(model, X_train, y_train)
    plot_confusion_matrix(y_test, y_pred, labels)
    plot_summary_metrics(model, X=X_train, y=y_train, X_test=X_test, y_test=y_test)
    plot_class_proportions(y_train, y_test, labels)
    if not multinomial:
        if _binary(_labels(y_train)):
            plot_calibration_curve(model, X_train, y_train, model_name)
        else:
            log.warning("%s: the calibration curve needs labels 0 and 1 (a binary "
                        "classifier), as W&B's: not plotted", what)
    plot_roc(y_test, y_probas, labels)
    plot_precision_recall(y_test, y_probas, labels)


@_boundary
def plot_roc(y_true: Any = None, y_probas: Any = None, labels: Any = None,
             plot_micro: bool = True, plot_macro: bool = True,
             classes_to_plot: Any = None) -> None:
    """The ROC curve per class (``localtrack.plot.roc_curve``) under ``roc``; ``plot_micro``
    and ``plot_macro`` are accepted and unused, as in W&B's."""
    what = "localtrack.sklearn.plot_roc()"
    _run(what)
    localtrack.log({"roc": localtrack.plot.roc_curve(y_true, y_probas, labels, classes_to_plot)})


@_boundary
def plot_precision_recall(y_true: Any = None, y_probas: Any = None, labels: Any = None,
                          plot_micro: bool = True, classes_to_plot: Any = None) -> None:
    """The PR curve per class (``localtrack.plot.pr_curve``) under ``precision_recall``."""
    what = "localtrack.sklearn.plot_precision_recall()"
    _run(what)
    localtrack.log({"precision_recall": localtrack.plot.pr_curve(y_true, y_probas, labels,
                                                                 classes_to_plot)})


@_boundary
def plot_confusion_matrix(y_true: Any = None, y_pred: Any = None, labels: Any = None,
                          true_labels: Any = None, pred_labels: Any = None,
                          normalize: bool = False) -> None:
    """Counts of (predicted, actual) pairs under ``confusion_matrix``: rows (Predicted,
    Actual, Count) over the sorted classes of both (named by ``labels`` in that order), each
    row's counts divided by its sum with ``normalize``; ``true_labels``/``pred_labels`` keep
    only those classes. W&B's spec ``wandb/confusion_matrix/v1``."""
    import numpy as np

    what = "localtrack.sklearn.plot_confusion_matrix()"
    sk = _start(what)
    (truth, pred), found = _classes(what, y_true=y_true, y_pred=y_pred)
    cm = sk.metrics.confusion_matrix(truth, pred, labels=found)
    if labels is None:
        classes = found
    else:
        classes = np.asarray(labels)
        if len(classes) != len(found):
            raise InvalidValueError(f"{what}: {len(classes)} labels for the {len(found)} classes "
                                    f"{found.tolist()!r} of y_true and y_pred; give a name per "
                                    "class.")
    if normalize:
        with np.errstate(invalid="ignore", divide="ignore"):
            cm = np.around(cm.astype("float") / cm.sum(axis=1)[:, np.newaxis], decimals=2)
        cm[np.isnan(cm)] = 0.0
    rows_kept = _kept(classes, true_labels, what, "true_labels")
    cols_kept = _kept(classes, pred_labels, what, "pred_labels")
    # W&B's table names cm's row (the actual class) "Predicted"; localtrack names each cell
    # by what it counts (the actual class in Actual), in W&B's columns and order.
    rows = [[classes[j], classes[i], cm[i, j]] for i, j in itertools.product(rows_kept,
                                                                              cols_kept)]
    _log("confusion_matrix", _table(["Predicted", "Actual", "Count"], rows[:CHART_LIMIT + 1]),
         "wandb/confusion_matrix/v1",
         {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "Count"})


def _kept(classes: Any, wanted: Any, what: str, name: str) -> list[int]:
    """Indexes of the classes to keep: all, or those in ``wanted``."""
    if wanted is None:
        return list(range(len(classes)))
    wanted = list(wanted)
    missing = [w for w in wanted if w not in classes.tolist()]
    if missing:
        raise InvalidValueError(f"{what}: {name} holds {missing!r}, not among the classes "
                                f"{classes.tolist()!r}.")
    return [i for i, c in enumerate(classes.tolist()) if c in wanted]


def _importances(model: Any) -> tuple[Any, str]:
    """The model's importances as one row, or why it has none to plot (W&B's rule)."""
    import numpy as np

    name = type(model).__name__
    found = next((a for a in ("feature_importances_", "feature_log_prob_", "coef_")
                  if hasattr(model, a)), None)
    if found is None:
        return None, f"{name} has no feature_importances_, feature_log_prob_ or coef_ to plot"
    importances = np.asarray(getattr(model, found))
    if sum(n > 1 for n in importances.shape) > 1:
        return None, (f"{name}'s {found} has shape {importances.shape} (a row per class); "
                      "only one row of importances can be plotted, as in W&B's")
    return importances.reshape(-1), ""


@_boundary
def plot_feature_importances(model: Any = None, feature_names: Any = None,
                             title: str = "Feature Importance", max_num_features: int = 50) -> None:
    """The model's ``feature_importances_`` (else ``feature_log_prob_``, else ``coef_``), most
    important first, under ``feature_importances``: rows (feature_names, importances), a
    feature named by its index without ``feature_names``. ``title`` and
    ``max_num_features`` are accepted and unused, as in W&B's."""
    import numpy as np

    what = "localtrack.sklearn.plot_feature_importances()"
    sk = _start(what)
    _fitted(sk, model, what)
    _kind(sk, model, what, "model", ("classifier", "regressor"))
    importances, problem = _importances(model)
    if problem:
        raise UnsupportedTypeError(f"{what}: {problem}.")
    order = np.argsort(importances)[::-1]
    if feature_names is None:
        names = order
    else:
        names = np.asarray(list(feature_names))
        if len(names) != len(importances):
            raise InvalidValueError(f"{what}: {len(names)} feature_names for "
                                    f"{len(importances)} features; give a name per feature.")
        names = names[order]
    _log("feature_importances", _table(["feature_names", "importances"],
                                       [list(r) for r in zip(names, importances[order],
                                                             strict=True)]),
         "wandb/feature_importances/v1")


@_boundary
def plot_class_proportions(y_train: Any = None, y_test: Any = None, labels: Any = None) -> None:
    """How many samples of each class the training and test sets hold, under
    ``class_proportions``: rows (class, dataset, count), "train" then "test" per class."""
    what = "localtrack.sklearn.plot_class_proportions()"
    _start(what)
    (train, test), classes = _classes(what, y_train=y_train, y_test=y_test)
    rows = []
    for i, cls in enumerate(classes):
        name = _named(labels, cls, what)
        rows += [[name, "train", (train == cls).sum()], [name, "test", (test == cls).sum()]]
        if i > CHART_LIMIT:
            break
    _log("class_proportions", _table(["class", "dataset", "count"], rows),
         "wandb/class_proportions/v1")


def _binary(y: Any) -> bool:
    return bool(y.dtype.char != "U" and ((y == 0) | (y == 1)).all())


@_boundary
def plot_calibration_curve(clf: Any = None, X: Any = None, y: Any = None,  # noqa: N803
                           clf_name: str = "Classifier") -> None:
    """Reliability curves of a logistic regression and of the classifier calibrated
    isotonic and sigmoid (each fitted on a clone, on 10% of ``X``; the rest scores), under
    ``calibration_curve``: rows (model, fraction_of_positives, mean_predicted_value,
    hist_dict, edge_dict) after the perfectly calibrated line. Binary 0/1 labels only."""
    import numpy as np

    what = "localtrack.sklearn.plot_calibration_curve()"
    sk = _start(what)
    _fitted(sk, clf, what, "clf")
    _kind(sk, clf, what, "clf", ("classifier",))
    _arrays(what, X=X, y=y)
    y = _labels(y)
    if not _binary(y):
        raise InvalidValueError(f"{what}: y holds {np.unique(y).tolist()[:10]!r}; the "
                                "calibration curve needs binary labels 0 and 1, as W&B's.")
    from sklearn import naive_bayes
    from sklearn.calibration import CalibratedClassifierCV, calibration_curve
    from sklearn.linear_model import LogisticRegression

    if isinstance(clf, naive_bayes.ComplementNB):  # needs features >= 0
        X = X - X.min()  # noqa: N806
    rows: list[list[Any]] = [["Perfectly calibrated", 0, 0, 0, 0],
                             ["Perfectly calibrated", 1, 1, 0, 0]]
    x_train, x_test, y_train, y_test = sk.model_selection.train_test_split(
        X, y, test_size=0.9, random_state=42)
    models = [(LogisticRegression(C=1.0), "Logistic"),
              (CalibratedClassifierCV(sk.base.clone(clf), cv=2, method="isotonic"),
               f"{clf_name} Isotonic"),
              (CalibratedClassifierCV(sk.base.clone(clf), cv=2, method="sigmoid"),
               f"{clf_name} Sigmoid")]
    for model, name in models:
        model.fit(x_train, y_train)
        prob = model.predict_proba(x_test)[:, 1]
        hist, edges = np.histogram(prob, bins=10, density=False)
        positives, predicted = calibration_curve(y_test, prob, n_bins=10)
        # W&B's table: the i-th point beside the i-th of the 10 bins (empty bins make no point)
        rows += [[name, round(float(f), 3), round(float(m), 3), hist[i], edges[i]]
                 for i, (f, m) in enumerate(zip(positives, predicted, strict=True))]
    _log("calibration_curve", _table(["model", "fraction_of_positives", "mean_predicted_value",
                                      "hist_dict", "edge_dict"], rows),
         "wandb/calibration/v1")


# -- classifiers and regressors -------------------------------------------------------------


@_boundary
def plot_summary_metrics(model: Any = None, X: Any = None, y: Any = None,  # noqa: N803
                         X_test: Any = None, y_test: Any = None) -> None:  # noqa: N803
    """The model's scores on the test set, rounded to 2 decimals, under ``summary_metrics``:
    rows (metric_name, metric_value, model_name); a classifier's accuracy_score and weighted
    precision, recall, f1_score, a regressor's mae, mse, r2_score."""
    what = "localtrack.sklearn.plot_summary_metrics()"
    sk = _start(what)
    _fitted(sk, model, what)
    _kind(sk, model, what, "model", ("classifier", "regressor"))
    _arrays(what, X=X, y=y, X_test=X_test, y_test=y_test)
    y_test = _labels(y_test)
    y_pred = model.predict(X_test)
    m = sk.metrics
    if sk.base.is_classifier(model):
        metrics = {"accuracy_score": m.accuracy_score(y_test, y_pred),
                   "precision": m.precision_score(y_test, y_pred, average="weighted",
                                                  zero_division=0),
                   "recall": m.recall_score(y_test, y_pred, average="weighted", zero_division=0),
                   "f1_score": m.f1_score(y_test, y_pred, average="weighted", zero_division=0)}
    else:
        metrics = {"mae": m.mean_absolute_error(y_test, y_pred),
                   "mse": m.mean_squared_error(y_test, y_pred),
                   "r2_score": m.r2_score(y_test, y_pred)}
    name = type(model).__name__
    _log("summary_metrics", _table(["metric_name", "metric_value", "model_name"],
                                   [[k, round(float(v), 2), name] for k, v in metrics.items()]),
         "wandb/metrics/v1")


@_boundary
def plot_learning_curve(model: Any = None, X: Any = None, y: Any = None,  # noqa: N803
                        cv: Any = None, shuffle: bool = False, random_state: Any = None,
                        train_sizes: Any = None, n_jobs: int | None = 1,
                        scoring: Any = None) -> None:
    """The model's mean train and cross-validated scores at growing training sizes
    (scikit-learn's ``learning_curve``, fitting clones), under ``learning_curve``: rows
    (dataset, score, train_size), "train" then "test" per size, scores rounded to 2."""
    import numpy as np

    what = "localtrack.sklearn.plot_learning_curve()"
    sk = _start(what)
    if model is None:
        raise InvalidValueError(f"{what}: model is None; pass the estimator.")
    _kind(sk, model, what, "model", ("classifier", "regressor"))
    _arrays(what, X=X, y=y)
    sizes, train, test = sk.model_selection.learning_curve(
        model, X, _labels(y), cv=cv, n_jobs=n_jobs,
        train_sizes=np.linspace(0.1, 1.0, 5) if train_sizes is None else train_sizes,
        scoring=scoring, shuffle=shuffle, random_state=random_state)
    rows = []
    for size, tr, te in list(zip(sizes, train.mean(axis=1), test.mean(axis=1), strict=True)
                             )[:CHART_LIMIT // 2 + 1]:
        rows += [["train", round(float(tr), 2), size], ["test", round(float(te), 2), size]]
    _log("learning_curve", _table(["dataset", "score", "train_size"], rows),
         "wandb/learning_curve/v1")


# -- regressors -----------------------------------------------------------------------------


@_boundary
def plot_regressor(model: Any, X_train: Any, X_test: Any, y_train: Any, y_test: Any,  # noqa: N803
                   model_name: str = "Regressor") -> None:
    """Every regressor plot of W&B's: summary metrics, learning curve, outlier candidates
    and residuals."""
    what = "localtrack.sklearn.plot_regressor()"
    sk = _start(what)
    _fitted(sk, model, what)
    _kind(sk, model, what, "model", ("regressor",))
    _arrays(what, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    log.info("plotting %s", model_name)
    plot_summary_metrics(model, X_train, y_train, X_test, y_test)
    plot_learning_curve(model, X_train, y_train)
    plot_outlier_candidates(model, X_train, y_train)
    plot_residuals(model, X_train, y_train)


@_boundary
def plot_outlier_candidates(regressor: Any = None, X: Any = None, y: Any = None) -> None:  # noqa: N803
    """Each training sample's Cook's distance (a clone of the regressor fitted on ``X``),
    under ``outlier_candidates``: rows (distance, instance_indicies, outlier_percentage,
    influence_threshold), W&B's columns (its spelling), the first 1001 samples."""
    import numpy as np

    what = "localtrack.sklearn.plot_outlier_candidates()"
    sk = _start(what)
    _fitted(sk, regressor, what, "regressor")
    _kind(sk, regressor, what, "regressor", ("regressor",))
    _arrays(what, X=X, y=y)
    X = np.asarray(X, dtype=float)  # noqa: N806
    y = _labels(y).astype(float)
    model = sk.base.clone(regressor).fit(X, y)
    leverage = (X * np.linalg.pinv(X).T).sum(1)
    dof = X.shape[0] - np.linalg.matrix_rank(X)
    residuals = y - model.predict(X)
    with np.errstate(invalid="ignore", divide="ignore"):
        mse = np.dot(residuals, residuals) / dof
        studentized = residuals / np.sqrt(mse) / np.sqrt(1 - leverage)
        distance = studentized ** 2 / X.shape[1] * (leverage / (1 - leverage))
    threshold = 4 / X.shape[0]
    percentage = round(float((distance >= threshold).sum() / X.shape[0] * 100.0), 3)
    rows = [[d, i, percentage, threshold] for i, d in enumerate(distance[:CHART_LIMIT + 1])]
    _log("outlier_candidates", _table(["distance", "instance_indicies", "outlier_percentage",
                                       "influence_threshold"], rows), "wandb/outliers/v1")


@_boundary
def plot_residuals(regressor: Any = None, X: Any = None, y: Any = None) -> None:  # noqa: N803
    """Predictions and residuals (prediction - truth) of a clone fitted on a random 80% of
    ``X`` (scored on the other 20%), under ``residuals``: rows (dataset, y_pred, residuals,
    train_score, test_score), the first 101 of "train" then of "test"."""
    what = "localtrack.sklearn.plot_residuals()"
    sk = _start(what)
    _fitted(sk, regressor, what, "regressor")
    _kind(sk, regressor, what, "regressor", ("regressor",))
    _arrays(what, X=X, y=y)
    x_train, x_test, y_train, y_test = sk.model_selection.train_test_split(
        X, _labels(y), test_size=0.2)
    model = sk.base.clone(regressor).fit(x_train, y_train)
    scores = model.score(x_train, y_train), model.score(x_test, y_test)
    rows = []
    for name, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        pred = model.predict(xs)
        rows += [[name, p, r, *scores] for p, r in list(zip(pred, pred - ys, strict=True))[:101]]
    _log("residuals", _table(["dataset", "y_pred", "residuals", "train_score", "test_score"],
                             rows), "wandb/residuals_plot/v1")


# -- clusterers -----------------------------------------------------------------------------


@_boundary
def plot_clusterer(model: Any, X_train: Any, cluster_labels: Any, labels: Any = None,  # noqa: N803
                   model_name: str = "Clusterer") -> None:
    """Every clusterer plot of W&B's: the elbow curve (KMeans only) and the silhouette
    plot; ``cluster_labels`` is the cluster of each sample of ``X_train``."""
    what = "localtrack.sklearn.plot_clusterer()"
    sk = _start(what)
    _fitted(sk, model, what)
    _kind(sk, model, what, "model", ("clusterer",))
    _arrays(what, X_train=X_train, cluster_labels=cluster_labels)
    log.info("plotting %s", model_name)
    from sklearn.cluster import KMeans

    kmeans = isinstance(model, KMeans)
    if kmeans:
        plot_elbow_curve(model, X_train)
    plot_silhouette(model, X_train, cluster_labels, labels=labels, kmeans=kmeans)


@_boundary
def plot_elbow_curve(clusterer: Any = None, X: Any = None,  # noqa: N803
                     cluster_ranges: Any = None, n_jobs: int | None = 1,
                     show_cluster_time: bool = True) -> None:
    """The clusterer's error (the absolute ``score``) and fitting time with each number of
    clusters in ``cluster_ranges`` (1, 3, 5, 7, 9), each a clone fitted on ``X``, under
    ``elbow_curve``: rows (cluster_ranges, errors, clustering_time)."""
    what = "localtrack.sklearn.plot_elbow_curve()"
    sk = _start(what)
    _fitted(sk, clusterer, what, "clusterer")
    if not hasattr(clusterer, "n_clusters"):
        raise UnsupportedTypeError(f"{what}: {type(clusterer).__name__} has no n_clusters: "
                                   "the elbow curve varies it (KMeans and its kin).")
    _arrays(what, X=X)
    sizes = range(1, 10, 2) if cluster_ranges is None else sorted(cluster_ranges)
    from joblib import Parallel, delayed

    results = Parallel(n_jobs=n_jobs)(delayed(_score_clusters)(clusterer, X, k) for k in sizes)
    rows = [[k, abs(err), took] for k, (err, took) in zip(sizes, results, strict=True)]
    _log("elbow_curve", _table(["cluster_ranges", "errors", "clustering_time"], rows),
         "wandb/elbow/v1")


def _score_clusters(clusterer: Any, X: Any, k: int) -> tuple[float, float]:  # noqa: N803
    """(score, seconds) of a clone with ``k`` clusters; run by joblib, maybe in a worker."""
    from sklearn.base import clone

    start = time.time()
    model = clone(clusterer).set_params(n_clusters=k)
    return float(model.fit(X).score(X)), time.time() - start


@_boundary
def plot_silhouette(clusterer: Any = None, X: Any = None, cluster_labels: Any = None,  # noqa: N803
                    labels: Any = None, metric: str = "euclidean", kmeans: bool = True) -> None:
    """Each sample's silhouette coefficient by cluster, with the samples' first two features
    and (``kmeans``) the cluster centres, under ``silhouette_plot``: W&B's rows (x, y, colors,
    centerx, centery, y_sil, x1, x2, color_sil, silhouette_avg). ``cluster_labels`` are the
    clusters 0..k-1 of the samples of ``X``; ``labels`` is accepted and unused, as in W&B's."""
    import numpy as np

    what = "localtrack.sklearn.plot_silhouette()"
    sk = _start(what)
    _fitted(sk, clusterer, what, "clusterer")
    _arrays(what, X=X, cluster_labels=cluster_labels)
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X)  # noqa: N806
    clusters = _labels(cluster_labels)
    k = len(np.unique(clusters))
    if X.ndim != 2 or X.shape[1] < 2:
        raise InvalidValueError(f"{what}: X has shape {X.shape}; the plot draws the samples' "
                                "first two features, so give at least two.")
    if clusters.dtype.kind not in "iu" or set(np.unique(clusters).tolist()) != set(range(k)):
        raise InvalidValueError(f"{what}: cluster_labels hold {np.unique(clusters).tolist()[:10]!r};"
                                " give each sample's cluster as 0..k-1 (model.predict(X)).")
    if not 2 <= k < len(X):
        raise InvalidValueError(f"{what}: {k} clusters among {len(X)} samples; a silhouette "
                                "needs 2 to n_samples - 1 clusters.")
    average = sk.metrics.silhouette_score(X, clusters, metric=metric)
    samples = sk.metrics.silhouette_samples(X, clusters, metric=metric)
    x_sil: list[float] = []
    y_sil: list[int] = []
    color_sil: list[int] = []
    y_lower = 10
    for i in range(k):
        values = np.sort(samples[clusters == i])
        for j, value in enumerate(values):  # W&B's limit: once past it, a point per cluster
            y_sil.append(y_lower + j)
            x_sil.append(value)
            color_sil.append(i)
            if len(color_sil) > CHART_LIMIT:
                break
        y_lower += len(values) + 10
    if kmeans:
        centers = np.asarray(clusterer.cluster_centers_)
        centerx, centery = centers[:, 0].tolist(), centers[:, 1].tolist()
    else:
        centerx = centery = [None] * k
    rows = [[X[i, 0], X[i, 1], clusters[i], centerx[clusters[i]], centery[clusters[i]], y_sil[i],
             0, x_sil[i], color_sil[i], average] for i in range(len(color_sil))]
    _log("silhouette_plot", _table(["x", "y", "colors", "centerx", "centery", "y_sil", "x1",
                                    "x2", "color_sil", "silhouette_avg"], rows),
         "wandb/silhouette_/v1")
