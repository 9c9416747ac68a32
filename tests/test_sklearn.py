"""W&B's ``wandb.sklearn`` plots (issue 16): ``localtrack.sklearn.plot_classifier(...)`` and the rest.

A user's script fits small scikit-learn models in a subprocess and calls the plots with W&B's
argument order; the test reads the run back from disk and checks each key holds a chart with
W&B's spec name and columns, and some tables against values worked out by hand. Hostile calls
(no run, a model not fitted, arrays of different lengths) must raise localtrack's errors
naming the problem, before anything is logged. Without scikit-learn, these skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import localtrack
from localtrack.errors import InvalidValueError, UnsupportedTypeError, UsageError

SHIM = Path(localtrack.__file__).resolve().parent / "_shim"

# W&B's key -> (its Vega spec, its table's columns)
CHARTS = {
    "feature_importances": ("wandb/feature_importances/v1", ["feature_names", "importances"]),
    "learning_curve": ("wandb/learning_curve/v1", ["dataset", "score", "train_size"]),
    "confusion_matrix": ("wandb/confusion_matrix/v1", ["Predicted", "Actual", "Count"]),
    "summary_metrics": ("wandb/metrics/v1", ["metric_name", "metric_value", "model_name"]),
    "class_proportions": ("wandb/class_proportions/v1", ["class", "dataset", "count"]),
    "calibration_curve": ("wandb/calibration/v1", ["model", "fraction_of_positives",
                                                   "mean_predicted_value", "hist_dict",
                                                   "edge_dict"]),
    "roc": ("wandb/area-under-curve/v0", ["class", "fpr", "tpr"]),
    "precision_recall": ("wandb/area-under-curve/v0", ["class", "precision", "recall"]),
    "outlier_candidates": ("wandb/outliers/v1", ["distance", "instance_indicies",
                                                 "outlier_percentage", "influence_threshold"]),
    "residuals": ("wandb/residuals_plot/v1", ["dataset", "y_pred", "residuals", "train_score",
                                              "test_score"]),
    "elbow_curve": ("wandb/elbow/v1", ["cluster_ranges", "errors", "clustering_time"]),
    "silhouette_plot": ("wandb/silhouette_/v1", ["x", "y", "colors", "centerx", "centery",
                                                 "y_sil", "x1", "x2", "color_sil",
                                                 "silhouette_avg"]),
}


@pytest.fixture
def sk() -> Any:
    return pytest.importorskip("sklearn")


def run_script(cwd: Path, code: str, shim: bool = False) -> subprocess.CompletedProcess[str]:
    (cwd / "train.py").write_text(textwrap.dedent(code))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOCALTRACK_", "WANDB_"))}
    env["LOCALTRACK_DIR"] = str(cwd / "store")
    if shim:
        env["PYTHONPATH"] = os.pathsep.join([str(SHIM), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "train.py"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Dropped a log()" not in proc.stderr, proc.stderr
    return proc


def charts(cwd: Path, path: str) -> dict[str, list[Any]]:
    """Each key of the run's media: its charts, in step order."""
    run = localtrack.Api(cwd / "store").run(path)
    return {key: [chart for _, chart in run.media(key)] for key in CHARTS
            if run.media(key)}


def test_import_localtrack_imports_no_sklearn_and_names_the_module_lazily() -> None:
    code = ("import sys, localtrack; assert 'localtrack.integrations' not in sys.modules; "
            "m = localtrack.sklearn; import localtrack.integrations.sklearn as i; "
            "assert m is i and len(m.__all__) == 15; print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # imported when a plot is made, not before


def test_without_scikit_learn_a_plot_says_what_to_install(tmp_path: Path) -> None:
    out = run_script(tmp_path, """
        import sys
        sys.modules["sklearn"] = None  # as if scikit-learn were not installed
        import localtrack
        localtrack.init(project="p", id="r")
        try:
            localtrack.sklearn.plot_class_proportions([0, 1], [1, 0])
        except localtrack.errors.UsageError as e:
            print(e)
    """).stdout
    assert "plot_class_proportions() (W&B's wandb.sklearn) needs scikit-learn: pip install " \
           "scikit-learn" in out


COMPOSITES = """
import numpy as np, localtrack
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs, make_classification, make_regression
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier

localtrack.init(project="p", id="clf")
X, y = make_classification(n_samples=200, n_features=5, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
model = RandomForestClassifier(n_estimators=10, random_state=0).fit(X_train, y_train)
localtrack.sklearn.plot_classifier(model, X_train, X_test, y_train, y_test,
                                   model.predict(X_test), model.predict_proba(X_test),
                                   ["no", "yes"], True, "RandomForest",
                                   ["a", "b", "c", "d", "e"], log_learning_curve=True)
localtrack.finish()

# Three classes and no feature importances: no calibration curve, no importances, the rest.
localtrack.init(project="p", id="knn")
X, y = make_classification(n_samples=150, n_features=4, n_informative=3, n_redundant=0,
                           n_classes=3, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
model = KNeighborsClassifier().fit(X_train, y_train)
localtrack.sklearn.plot_classifier(model, X_train, X_test, y_train, y_test,
                                   model.predict(X_test), model.predict_proba(X_test),
                                   ["a", "b", "c"])
localtrack.finish()

# One row of coefficients per class: no importances either (W&B's rule); the elbow curve's
# clones fitted by two joblib workers.
localtrack.init(project="p", id="lr3")
model = LogisticRegression().fit(X_train, y_train)
localtrack.sklearn.plot_classifier(model, X_train, X_test, y_train, y_test,
                                   model.predict(X_test), model.predict_proba(X_test), None)
localtrack.sklearn.plot_elbow_curve(KMeans(n_clusters=2, n_init=1).fit(X_train), X_train,
                                    [3, 2], n_jobs=2)
localtrack.finish()

localtrack.init(project="p", id="reg")
X, y = make_regression(n_samples=120, n_features=4, noise=5.0, random_state=0)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
model = Ridge().fit(X_train, y_train)
before = model.coef_.copy()
localtrack.sklearn.plot_regressor(model, X_train, X_test, y_train, y_test, "Ridge")
assert (model.coef_ == before).all()  # the plots fit clones, never the model passed
localtrack.finish()

localtrack.init(project="p", id="km")
X, _ = make_blobs(n_samples=90, centers=3, random_state=0)
model = KMeans(n_clusters=3, n_init=3, random_state=0).fit(X)
localtrack.sklearn.plot_clusterer(model, X, model.predict(X), None, "KMeans")
localtrack.finish()
"""


def test_the_composites_log_each_plot_as_wandb_does(tmp_path: Path, sk: Any) -> None:
    run_script(tmp_path, COMPOSITES)
    logged = {name: charts(tmp_path, f"p/{name}") for name in ("clf", "knn", "lr3", "reg", "km")}
    expected = {
        "clf": ["feature_importances", "learning_curve", "confusion_matrix", "summary_metrics",
                "class_proportions", "calibration_curve", "roc", "precision_recall"],
        "knn": ["confusion_matrix", "summary_metrics", "class_proportions", "roc",
                "precision_recall"],
        "lr3": ["confusion_matrix", "summary_metrics", "class_proportions", "roc",
                "precision_recall", "elbow_curve"],
        "reg": ["summary_metrics", "learning_curve", "outlier_candidates", "residuals"],
        "km": ["elbow_curve", "silhouette_plot"],
    }
    for name, keys in expected.items():
        assert sorted(logged[name]) == sorted(keys), name
        steps = [s for key in keys for s, _ in
                 localtrack.Api(tmp_path / "store").run(f"p/{name}").media(key)]
        assert steps == list(range(len(keys))), name  # one step each, in W&B's order
        for key in keys:
            [chart] = logged[name][key]
            assert isinstance(chart, localtrack.plot.CustomChart), (name, key)
            assert (chart.spec["spec_name"], chart.table.columns) == CHARTS[key], (name, key)
            assert chart.table.data, (name, key)
    clf, knn, lr3, reg, km = (logged[n] for n in ("clf", "knn", "lr3", "reg", "km"))
    assert [r[0] for r in lr3["elbow_curve"][0].table.data] == [2, 3]  # sorted, as W&B's
    assert {r[0] for r in lr3["class_proportions"][0].table.data} == {0, 1, 2}
    # The training set's 150 samples and the test set's 50, each class named by labels.
    counts = {(c, d): n for c, d, n in clf["class_proportions"][0].table.data}
    assert set(counts) == {(c, d) for c in ("no", "yes") for d in ("train", "test")}
    assert counts["no", "train"] + counts["yes", "train"] == 150
    assert counts["no", "test"] + counts["yes", "test"] == 50
    assert sorted(r[0] for r in clf["feature_importances"][0].table.data) == list("abcde")
    assert {r[0] for r in clf["roc"][0].table.data} == {"no", "yes"}
    assert {r[0] for r in knn["confusion_matrix"][0].table.data} == {"a", "b", "c"}
    assert sum(r[2] for r in knn["confusion_matrix"][0].table.data) == 38
    assert [r[0] for r in clf["summary_metrics"][0].table.data] == \
        ["accuracy_score", "precision", "recall", "f1_score"]
    assert [r[0] for r in reg["summary_metrics"][0].table.data] == ["mae", "mse", "r2_score"]
    calibration = {r[0] for r in clf["calibration_curve"][0].table.data}
    assert calibration == {"Perfectly calibrated", "Logistic", "RandomForest Isotonic",
                           "RandomForest Sigmoid"}
    # 90 training samples: 72 fit the clone, 18 test it.
    assert [sum(r[0] == d for r in reg["residuals"][0].table.data) for d in ("train", "test")] \
        == [72, 18]
    assert [r[1] for r in reg["outlier_candidates"][0].table.data] == list(range(90))
    assert [r[0] for r in km["elbow_curve"][0].table.data] == [1, 3, 5, 7, 9]
    errors = [r[1] for r in km["elbow_curve"][0].table.data]
    assert errors == sorted(errors, reverse=True)  # more clusters, less error
    silhouette = km["silhouette_plot"][0].table.data
    assert len(silhouette) == 90 and len({r[9] for r in silhouette}) == 1


HAND_CHECKED = """
import numpy as np, localtrack
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LinearRegression

localtrack.init(project="p", id="hand")
localtrack.sklearn.plot_class_proportions([0, 0, 1, 2, 2, 2], [1, 1, 0], ["a", "b", "c"])
localtrack.sklearn.plot_confusion_matrix([0, 0, 0, 1, 1], [0, 1, 1, 1, 1], ["neg", "pos"])
model = DummyClassifier(strategy="constant", constant=1).fit([[0], [1], [2], [3]], [0, 1, 1, 1])
localtrack.sklearn.plot_summary_metrics(model, [[0], [1], [2], [3]], [0, 1, 1, 1],
                                        [[4], [5], [6], [7]], [1, 1, 0, 0])
X = np.array([[0.0, 1, 2], [1, 0, 3], [2, 5, 1], [3, 2, 2], [4, 4, 0], [5, 1, 1]])
y = X @ np.array([3.0, -1.0, 2.0]) + 1.0
line = LinearRegression().fit(X, y)
localtrack.sklearn.plot_summary_metrics(line, X, y, X, y)
localtrack.sklearn.plot_feature_importances(line, ["f0", "f1", "f2"])
localtrack.sklearn.plot_confusion_matrix(np.array(["cat", "dog", "dog"]),
                                         np.array(["dog", "dog", "dog"]), normalize=True)
localtrack.finish()
"""


def test_tables_hold_the_values_worked_out_by_hand(tmp_path: Path, sk: Any) -> None:
    run_script(tmp_path, HAND_CHECKED)
    logged = charts(tmp_path, "p/hand")
    # y_train has two 0s, one 1, three 2s; y_test two 1s and one 0; named by labels.
    assert logged["class_proportions"][0].table.data == [
        ["a", "train", 2], ["a", "test", 1], ["b", "train", 1], ["b", "test", 2],
        ["c", "train", 3], ["c", "test", 0]]
    # Actual neg: 1 predicted neg, 2 predicted pos; actual pos: both predicted pos.
    assert logged["confusion_matrix"][0].table.data == [
        ["neg", "neg", 1], ["pos", "neg", 2], ["neg", "pos", 0], ["pos", "pos", 2]]
    # Each actual class's row divided by its count: cat 1 -> dog; dog 2 -> dog.
    assert logged["confusion_matrix"][1].table.data == [
        ["cat", "cat", 0.0], ["dog", "cat", 1.0], ["cat", "dog", 0.0], ["dog", "dog", 1.0]]
    # Always 1 on y_test [1, 1, 0, 0]: accuracy 2/4; class 0's precision, recall, f1 are 0,
    # class 1's 0.5, 1 and 2/3, each weighted by its 2 of 4 samples.
    classifier, regressor = logged["summary_metrics"]
    assert classifier.table.data == [["accuracy_score", 0.5, "DummyClassifier"],
                                     ["precision", 0.25, "DummyClassifier"],
                                     ["recall", 0.5, "DummyClassifier"],
                                     ["f1_score", 0.33, "DummyClassifier"]]
    # y = 3 x0 - x1 + 2 x2 + 1 exactly: no error, R² 1; coefficients most important first.
    assert regressor.table.data == [["mae", 0.0, "LinearRegression"],
                                    ["mse", 0.0, "LinearRegression"],
                                    ["r2_score", 1.0, "LinearRegression"]]
    importances = logged["feature_importances"][0].table.data
    assert [r[0] for r in importances] == ["f0", "f2", "f1"]
    assert [r[1] for r in importances] == pytest.approx([3.0, 2.0, -1.0])
    # The dashboard draws the matrix from these fields.
    assert logged["confusion_matrix"][0].spec["fields"] == {
        "Actual": "Actual", "Predicted": "Predicted", "nPredictions": "Count"}


def test_wandb_sklearn_under_the_shim_is_localtracks(tmp_path: Path, sk: Any) -> None:
    run_script(tmp_path, """
        import wandb, wandb.sklearn
        from wandb.integration.sklearn import plot_class_proportions
        import localtrack.integrations.sklearn as mine
        assert wandb.sklearn.__all__ == mine.__all__
        assert all(getattr(wandb.sklearn, n) is getattr(mine, n) for n in mine.__all__)
        wandb.init(project="p", id="shim")
        plot_class_proportions([0, 1, 1], [1, 0])
        wandb.finish()
    """, shim=True)
    assert charts(tmp_path, "p/shim")["class_proportions"][0].table.data == [
        [0, "train", 1], [0, "test", 1], [1, "train", 2], [1, "test", 1]]


# -- hostile calls ----------------------------------------------------------------------------

ALL = [  # W&B's 15 functions, each called with nothing usable
    "plot_calibration_curve", "plot_class_proportions", "plot_classifier", "plot_clusterer",
    "plot_confusion_matrix", "plot_elbow_curve", "plot_feature_importances",
    "plot_learning_curve", "plot_outlier_candidates", "plot_precision_recall", "plot_regressor",
    "plot_residuals", "plot_roc", "plot_silhouette", "plot_summary_metrics"]
POSITIONAL = {"plot_classifier": 8, "plot_regressor": 5, "plot_clusterer": 3}


@pytest.mark.parametrize("name", ALL)
def test_a_plot_without_an_active_run_says_to_call_init(sk: Any, name: str) -> None:
    import localtrack.integrations.sklearn as plots

    assert localtrack.run is None
    with pytest.raises(UsageError, match=r"logs to the active run, and there is none: call "
                                         r"localtrack.init\(\) first"):
        getattr(plots, name)(*[None] * POSITIONAL.get(name, 0))


def _data() -> tuple[Any, Any, Any]:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    return LogisticRegression().fit(X, y), X, y


def _classifier_short_y_test() -> None:
    model, X, y = _data()
    localtrack.sklearn.plot_classifier(model, X[:40], X[40:], y[:40], y[41:],
                                       model.predict(X[40:]), model.predict_proba(X[40:]),
                                       ["a", "b"])


def _classifier_short_y_train() -> None:
    model, X, y = _data()
    localtrack.sklearn.plot_summary_metrics(model, X[:40], y[:39], X[40:], y[40:])


def _not_fitted() -> None:
    from sklearn.linear_model import LogisticRegression

    _, X, y = _data()
    localtrack.sklearn.plot_summary_metrics(LogisticRegression(), X, y, X, y)


def _not_fitted_composite() -> None:
    from sklearn.linear_model import Ridge

    _, X, y = _data()
    localtrack.sklearn.plot_regressor(Ridge(), X, X, y, y)


def _not_an_estimator() -> None:
    localtrack.sklearn.plot_feature_importances("my model")


def _regressor_as_classifier() -> None:
    from sklearn.linear_model import Ridge

    _, X, y = _data()
    localtrack.sklearn.plot_classifier(Ridge().fit(X, y), X, X, y, y, y, None, None)


def _no_importances() -> None:
    from sklearn.neighbors import KNeighborsClassifier

    _, X, y = _data()
    localtrack.sklearn.plot_feature_importances(KNeighborsClassifier().fit(X, y))


def _importances_per_class() -> None:
    from sklearn.linear_model import LogisticRegression

    _, X, y = _data()
    y = y + (X[:, 0] > 1)
    localtrack.sklearn.plot_feature_importances(LogisticRegression().fit(X, y))


def _calibration_of_three_classes() -> None:
    from sklearn.linear_model import LogisticRegression

    _, X, y = _data()
    y = y + (X[:, 0] > 1)
    localtrack.sklearn.plot_calibration_curve(LogisticRegression().fit(X, y), X, y)


def _too_few_labels() -> None:
    localtrack.sklearn.plot_confusion_matrix([0, 1, 2], [0, 1, 1], ["a", "b"])


def _silhouette_of_one_feature() -> None:
    from sklearn.cluster import KMeans

    X = [[0.0], [0.1], [5.0], [5.1]]
    model = KMeans(n_clusters=2, n_init=1, random_state=0).fit(X)
    localtrack.sklearn.plot_silhouette(model, X, model.predict(X))


def _nan_in_x() -> None:
    from sklearn.linear_model import Ridge

    X = [[0.0, 1.0], [1.0, float("nan")], [2.0, 0.5], [3.0, 2.0]]
    model = Ridge().fit([[0.0, 1.0], [1.0, 0.0]], [0.0, 1.0])
    localtrack.sklearn.plot_residuals(model, X, [0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize(("call", "error", "message"), [
    pytest.param(_classifier_short_y_test, InvalidValueError,
                 r"X_test has 20, y_test has 19, y_pred has 20, y_probas has 20 samples",
                 id="mismatched-test-lengths"),
    pytest.param(_classifier_short_y_train, InvalidValueError, r"X has 40, y has 39 samples",
                 id="mismatched-train-lengths"),
    pytest.param(_not_fitted, UsageError, r"model \(LogisticRegression\) is not fitted; call "
                 r"model.fit\(X, y\)", id="not-fitted"),
    pytest.param(_not_fitted_composite, UsageError, r"plot_regressor\(\): model \(Ridge\) is "
                 "not fitted", id="not-fitted-composite"),
    pytest.param(_not_an_estimator, UnsupportedTypeError, "must be a scikit-learn estimator, "
                 "got str", id="not-an-estimator"),
    pytest.param(_regressor_as_classifier, UnsupportedTypeError, r"model \(Ridge\) is not a "
                 "classifier", id="regressor-as-classifier"),
    pytest.param(_no_importances, UnsupportedTypeError, "KNeighborsClassifier has no "
                 "feature_importances_", id="no-importances"),
    pytest.param(_importances_per_class, UnsupportedTypeError, r"LogisticRegression's coef_ "
                 r"has shape \(3, 4\) \(a row per class\)", id="importances-per-class"),
    pytest.param(_calibration_of_three_classes, InvalidValueError, "needs binary labels 0 and "
                 "1", id="calibration-multiclass"),
    pytest.param(_too_few_labels, InvalidValueError, r"2 labels for the 3 classes \[0, 1, 2\]",
                 id="too-few-labels"),
    pytest.param(_silhouette_of_one_feature, InvalidValueError, r"X has shape \(4, 1\)",
                 id="silhouette-one-feature"),
    pytest.param(_nan_in_x, InvalidValueError, r"plot_residuals\(\): scikit-learn could not "
                 "compute the plot from these arguments: .*NaN", id="nan-in-X"),
])
def test_hostile_calls_name_the_problem_and_log_nothing(tmp_path: Path, sk: Any, call: Any,
                                                        error: type[Exception],
                                                        message: str) -> None:
    run = localtrack.init(project="p", id="hostile", dir=tmp_path)
    try:
        with pytest.raises(error, match=message):
            call()
        assert run.step == 0  # nothing was logged
    finally:
        run.finish()
