"""W&B's ``wandb.plot``: charts logged as a Table plus a chart spec (``localtrack.plot``).

A chart is its data, a ``Table`` laid out as W&B lays it out (a PR curve: one row per class
and recall point), and a small spec: W&B's Vega spec name (``wandb/line/v0``...), which column
plays which part (``fields``) and its strings (title, axis titles). It is stored as the
table's item with the spec in its JSON, so a reader that knows no charts reads a table (see
docs/format.md "Charts"). Curves are computed with numpy (imported when one is computed), as
scikit-learn's ``precision_recall_curve`` and ``roc_curve`` compute them, so scikit-learn is
not needed. The ``localtrack plot`` command (_plot) is another thing: it draws logged metrics
to image files.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any

import orjson

from ._richmedia import Item, Media, Table, _bad
from .errors import InvalidValueError, UnsupportedTypeError

#: Rows of a computed curve table at most (W&B's Table.MAX_ROWS); a longer ROC curve keeps
#: evenly spaced points of each class, its ends included.
MAX_ROWS = 10_000
SPECS = {"line": "wandb/line/v0", "scatter": "wandb/scatter/v0", "bar": "wandb/bar/v0",
         "histogram": "wandb/histogram/v0", "line_series": "wandb/lineseries/v0",
         "curve": "wandb/area-under-curve/v0", "confusion_matrix": "wandb/confusion_matrix/v1"}


class CustomChart(Media):
    """A chart to log: ``table`` (a localtrack.Table) and ``spec`` (a dict: ``spec_name``,
    ``fields``, ``string_fields``), as W&B's ``wandb.plot.*`` return it. ``ApiRun.media``
    returns the same kind of object. ``key`` is the key it was logged under (W&B's
    ``set_key``, which ``log()`` calls); ``split_table`` is W&B's UI layout (its table in a
    "Custom Chart Tables" section), kept as given and not stored."""

    _type = "table"

    def __init__(self, table: Table, spec: dict[str, Any], split_table: bool = False) -> None:
        self.table = table
        self.spec = spec
        self.split_table = split_table
        self.key = ""

    def set_key(self, key: str) -> None:
        """Name the chart by the key it is logged under, as W&B's ``log()`` does."""
        if not isinstance(key, str) or not key:
            raise UnsupportedTypeError(f"CustomChart.set_key() takes the chart's key, a "
                                       f"non-empty str, got {key!r}.")
        self.key = key

    def _item(self, key: str, where: str) -> Item:
        self.set_key(key)
        spec = self.spec if isinstance(self.spec, dict) else {}
        try:  # checked again: the table or the spec may have changed since it was made
            spec = _spec(spec.get("spec_name"), self.table, spec.get("fields"),
                         spec.get("string_fields"), "a chart")
        except (InvalidValueError, UnsupportedTypeError) as exc:
            raise _bad(key, where, str(exc)) from None
        item = self.table._item(key, where)
        # The table's JSON object with the spec as one more member (a reader of tables skips it).
        data = bytes(item.data[:-1]) + b',"chart":' + orjson.dumps(spec) + b"}"
        return Item({**item.meta, "chart": spec["spec_name"]}, data, item.children)

    def __repr__(self) -> str:
        return (f"<localtrack.plot.CustomChart {self.spec['spec_name']} of "
                f"{len(self.table.data)} rows>")


def _check_fields(table: Table, fields: dict[str, Any], what: str) -> None:
    """Every column a chart's fields name is a column of its table."""
    for field, column in fields.items():
        if column is not None and column not in table.columns:
            raise InvalidValueError(f"{what}: {field}={column!r} is not a column of the table "
                                    f"(its columns: {table.columns!r}).")


def plot_table(vega_spec_name: str, data_table: Table, fields: dict[str, Any],
               string_fields: dict[str, Any] | None = None,
               split_table: bool = False) -> CustomChart:
    """A chart of ``data_table`` drawn by the Vega spec ``vega_spec_name`` (W&B's
    ``wandb.plot_table``); the dashboard draws W&B's built-in specs and shows any other as
    its table. ``split_table`` is W&B's UI layout: kept on the chart, it changes nothing here."""
    return CustomChart(data_table, _spec(vega_spec_name, data_table, fields, string_fields,
                                         "localtrack.plot_table()"), split_table=split_table)


def _spec(name: Any, table: Any, fields: Any, strings: Any, what: str) -> dict[str, Any]:
    """A checked chart spec (the columns its fields name are the table's)."""
    if not isinstance(name, str) or not name:
        raise UnsupportedTypeError(f"{what}: vega_spec_name must be a non-empty str such as "
                                   f"'wandb/line/v0', got {name!r}.")
    if not isinstance(table, Table):
        raise UnsupportedTypeError(f"{what}: data_table must be a localtrack.Table, got "
                                   f"{type(table).__name__}.")
    if not isinstance(fields, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in fields.items()):
        raise UnsupportedTypeError(f"{what}: fields maps the spec's field names to column "
                                   f"names (str to str), got {fields!r}.")
    if strings is not None and not isinstance(strings, dict):
        raise UnsupportedTypeError(f"{what}: string_fields must be a dict, got {strings!r}.")
    checked = {}
    for key, value in (strings or {}).items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if not isinstance(key, str) or not (value is None or isinstance(value, (str, bool, int))
                                            or isinstance(value, float) and math.isfinite(value)):
            raise UnsupportedTypeError(f"{what}: string_fields maps names to strings or "
                                       f"finite numbers, got {key!r}: {value!r}.")
        checked[key] = value
    _check_fields(table, fields, what)
    return {"spec_name": name, "fields": dict(fields), "string_fields": checked}


def read_chart(table: Table, spec: Any, pandas: bool) -> Any:
    """A stored chart: its table and the spec stored beside it, or with ``pandas`` the
    table's DataFrame with the spec in ``.attrs["chart"]`` (ValueError if malformed)."""
    if not isinstance(spec, dict):
        raise ValueError(f"a chart's spec is not a dict: {spec!r}")
    chart = CustomChart(table, _spec(spec.get("spec_name"), table, spec.get("fields"),
                                     spec.get("string_fields"), "a stored chart"))
    if not pandas:
        return chart
    frame = table.get_dataframe()
    frame.attrs["chart"] = chart.spec
    return frame


# -- charts of a table ----------------------------------------------------------------------


def line(table: Table, x: str, y: str, stroke: str | None = None, title: str = "",
         split_table: bool = False) -> CustomChart:
    """A line of ``y`` over ``x``, one line per value of the column ``stroke``."""
    return plot_table(SPECS["line"], table, {"x": x, "y": y, "stroke": stroke},
                      {"title": title}, split_table)


def scatter(table: Table, x: str, y: str, title: str = "",
            split_table: bool = False) -> CustomChart:
    """A point per row at (``x``, ``y``)."""
    return plot_table(SPECS["scatter"], table, {"x": x, "y": y}, {"title": title}, split_table)


def bar(table: Table, label: str, value: str, title: str = "",
        split_table: bool = False) -> CustomChart:
    """A bar per row: ``value`` under ``label``."""
    return plot_table(SPECS["bar"], table, {"label": label, "value": value}, {"title": title},
                      split_table)


def histogram(table: Table, value: str, title: str = "",
              split_table: bool = False) -> CustomChart:
    """The distribution of the column ``value`` (binned by the dashboard)."""
    return plot_table(SPECS["histogram"], table, {"value": value}, {"title": title},
                      split_table)


def line_series(xs: Iterable[Any], ys: Iterable[Iterable[Any]],
                keys: Iterable[str] | None = None, title: str = "", xname: str = "x",
                split_table: bool = False) -> CustomChart:
    """Several lines: ``ys[i]`` over ``xs[i]`` (or over ``xs`` for all, given one list),
    named by ``keys``; a table of (step, lineKey, lineVal) rows, as W&B's."""
    what = "localtrack.plot.line_series()"
    y_lists = [_values(y, what, f"ys[{i}]") for i, y in enumerate(_values(ys, what, "ys"))]
    if not y_lists:
        raise InvalidValueError(f"{what}: ys is empty; give at least one series.")
    x_all = _values(xs, what, "xs")
    if x_all and _is_series(x_all[0]):
        x_lists = [_values(x, what, f"xs[{i}]") for i, x in enumerate(x_all)]
    else:
        x_lists = [x_all] * len(y_lists)
    names = [f"line_{i}" for i in range(len(y_lists))] if keys is None \
        else _values(keys, what, "keys")
    if len(x_lists) != len(y_lists) or len(names) != len(y_lists):
        raise InvalidValueError(f"{what}: {len(y_lists)} series in ys, {len(x_lists)} in xs and "
                                f"{len(names)} keys; give one x series (or one shared) and one "
                                "key per y series.")
    data: list[list[Any]] = []
    for i, (x, y, name) in enumerate(zip(x_lists, y_lists, names, strict=True)):
        if len(x) != len(y):
            raise InvalidValueError(f"{what}: series {i} ({name!r}) has {len(x)} x values and "
                                    f"{len(y)} y values.")
        data.extend([xv, name, yv] for xv, yv in zip(x, y, strict=True))
    table = Table(columns=["step", "lineKey", "lineVal"], data=data)
    return plot_table(SPECS["line_series"], table,
                      {"step": "step", "lineKey": "lineKey", "lineVal": "lineVal"},
                      {"title": title, "xname": xname}, split_table)


def _is_series(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes))


def _values(value: Any, what: str, name: str) -> list[Any]:
    """A list of ``value``'s elements (a list, a tuple, an array, a tensor, a range)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not _is_series(value):
        raise UnsupportedTypeError(f"{what}: {name} must be a list or an array, got "
                                   f"{type(value).__name__}.")
    return list(value)


# -- charts computed from predictions -------------------------------------------------------


def confusion_matrix(probs: Any = None, y_true: Any = None, preds: Any = None,
                     class_names: list[str] | None = None, title: str = "Confusion Matrix Curve",
                     split_table: bool = False) -> CustomChart:
    """Counts of (actual, predicted) class pairs: a row per pair (Actual, Predicted,
    nPredictions), as W&B's. Give ``preds`` or ``probs`` (one row of class probabilities per
    sample: its argmax). With ``class_names`` the labels are class indices into it; without,
    the classes are the sorted distinct labels, named Class_1, Class_2...."""
    what = "localtrack.plot.confusion_matrix()"
    if (probs is None) == (preds is None):
        raise InvalidValueError(f"{what}: give preds= (the predicted labels) or probs= (class "
                                "probabilities per sample), " + (
                                    "not both." if probs is not None else "got neither."))
    if y_true is None:
        raise InvalidValueError(f"{what}: y_true= (the true labels) is missing.")
    truth = _labels(y_true, what, "y_true")
    if probs is not None:
        predicted = _scores(probs, what, "probs").argmax(axis=1).tolist()
    else:
        predicted = _labels(preds, what, "preds")
    if len(predicted) != len(truth):
        raise InvalidValueError(f"{what}: {len(predicted)} predictions for {len(truth)} true "
                                "labels; give one per sample.")
    if class_names is not None:
        names = [str(n) for n in _values(class_names, what, "class_names")]
        index = {i: i for i in range(len(names))}
        for name, labels in (("y_true", truth), ("probs" if probs is not None else "preds",
                                                 predicted)):
            bad = next((v for v in labels if v not in index), None)
            if bad is not None:
                raise InvalidValueError(f"{what}: {name} holds {bad!r}, not a class index "
                                        f"0..{len(names) - 1} of class_names.")
    else:
        try:
            classes = sorted(set(truth) | set(predicted))
        except TypeError:
            raise InvalidValueError(f"{what}: the labels mix types that do not sort "
                                    "(e.g. ints and strs); give labels of one type.") from None
        index = {c: i for i, c in enumerate(classes)}
        names = [f"Class_{i + 1}" for i in range(len(classes))]
    n = len(names)
    counts = [[0] * n for _ in range(n)]
    for actual, predicted_label in zip(truth, predicted, strict=True):
        counts[index[actual]][index[predicted_label]] += 1
    data = [[names[i], names[j], counts[i][j]] for i in range(n) for j in range(n)]
    table = Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
    return plot_table(SPECS["confusion_matrix"], table,
                      {"Actual": "Actual", "Predicted": "Predicted",
                       "nPredictions": "nPredictions"}, {"title": title}, split_table)


def pr_curve(y_true: Any = None, y_probas: Any = None, labels: list[str] | None = None,
             classes_to_plot: list[Any] | None = None, interp_size: int = 21,
             title: str = "Precision-Recall Curve", split_table: bool = False) -> CustomChart:
    """Precision over recall per class, as W&B's: the precision made non-increasing in
    recall, read at ``interp_size`` recalls from 1 down to 0; rows (class, precision,
    recall) rounded to 3 decimals."""
    import numpy as np

    what = "localtrack.plot.pr_curve()"
    if isinstance(interp_size, bool) or not isinstance(interp_size, int) or interp_size < 2:
        raise InvalidValueError(f"{what}: interp_size must be an int >= 2, got {interp_size!r}.")
    recalls = np.linspace(0, 1, interp_size)[::-1]
    curves = {}
    for name, positive, score in _per_class(y_true, y_probas, labels, classes_to_plot, what):
        fps, tps, _ = _binary_curve(positive, score)
        ps = tps + fps
        precision = np.divide(tps, ps, out=np.zeros(len(tps)), where=ps != 0)
        recall = tps / tps[-1] if tps[-1] else np.ones(len(tps))
        # scikit-learn's order (recall falling, ending at precision 1, recall 0), then W&B's
        # running maximum, then recall rising to look the recalls up.
        precision = np.maximum.accumulate(np.r_[precision[::-1], 1.0])[::-1]
        recall = np.r_[recall[::-1], 0.0][::-1]
        curves[name] = (precision[np.searchsorted(recall, recalls, side="left")], recalls)
    return _curve_chart(curves, ("precision", "recall"), ("recall", "precision"),
                        {"title": title, "x-axis-title": "Recall", "y-axis-title": "Precision"},
                        split_table)


def roc_curve(y_true: Any = None, y_probas: Any = None, labels: list[str] | None = None,
              classes_to_plot: list[Any] | None = None, title: str = "ROC Curve",
              split_table: bool = False) -> CustomChart:
    """True over false positive rate per class, as W&B's (scikit-learn's points, collinear
    ones dropped); rows (class, fpr, tpr) rounded to 3 decimals."""
    import numpy as np

    curves = {}
    for name, positive, score in _per_class(y_true, y_probas, labels, classes_to_plot,
                                            "localtrack.plot.roc_curve()"):
        fps, tps, _ = _binary_curve(positive, score)
        if len(fps) > 2:  # drop the points on a straight line between their neighbours
            keep = np.r_[True, (np.diff(fps, 2) != 0) | (np.diff(tps, 2) != 0), True]
            fps, tps = fps[keep], tps[keep]
        fps, tps = np.r_[0, fps], np.r_[0, tps]
        with np.errstate(invalid="ignore", divide="ignore"):  # a class with no negatives: NaN
            curves[name] = (fps / fps[-1], tps / tps[-1])
    return _curve_chart(curves, ("fpr", "tpr"), ("fpr", "tpr"),
                        {"title": title, "x-axis-title": "False positive rate",
                         "y-axis-title": "True positive rate"}, split_table)


def _binary_curve(positive: Any, score: Any) -> tuple[Any, Any, Any]:
    """(false positives, true positives, threshold) at each distinct score, highest first
    (scikit-learn's _binary_clf_curve)."""
    import numpy as np

    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last of each tie
    tps = np.cumsum(positive)[last]
    return 1 + last - tps, tps, score[last]


def _per_class(y_true: Any, y_probas: Any, labels: Any, classes_to_plot: Any,
               what: str) -> list[tuple[Any, Any, Any]]:
    """(class label, is-this-class per sample, this class's scores) of each class to plot.

    The classes are the sorted distinct values of y_true; integer classes that all index
    y_probas' columns take the column of their value, else the i-th class takes column i
    (W&B's rule, which is the same when every class occurs)."""
    import numpy as np

    if y_true is None or y_probas is None:
        raise InvalidValueError(f"{what}: y_true= (the true labels) and y_probas= (class "
                                "probabilities per sample) are both needed.")
    truth = np.asarray(_labels(y_true, what, "y_true"))
    scores = _scores(y_probas, what, "y_probas")
    if len(scores) != len(truth):
        raise InvalidValueError(f"{what}: y_probas has {len(scores)} rows for {len(truth)} "
                                "labels in y_true; give one row of class probabilities per "
                                "sample.")
    classes = np.unique(truth)
    integral = truth.dtype.kind in "iu"
    by_value = integral and 0 <= classes[0] and classes[-1] < scores.shape[1]
    if not by_value and len(classes) > scores.shape[1]:
        raise InvalidValueError(f"{what}: y_true has {len(classes)} classes but y_probas only "
                                f"{scores.shape[1]} columns; give a column per class.")
    wanted = classes if classes_to_plot is None else \
        np.asarray(_values(classes_to_plot, what, "classes_to_plot"))
    names = None if labels is None else _values(labels, what, "labels")
    out = []
    for i, cls in enumerate(classes):
        if not np.isin(cls, wanted):
            continue
        name = cls.item()
        if names is not None and integral:
            if not 0 <= name < len(names):
                raise InvalidValueError(f"{what}: class {name} of y_true has no name in labels "
                                        f"({len(names)} names).")
            name = names[name]
        column = scores[:, int(cls) if by_value else i]
        out.append((name, truth == cls, column))
    if not out:
        raise InvalidValueError(f"{what}: classes_to_plot={classes_to_plot!r} names none of "
                                f"y_true's classes {classes.tolist()!r}.")
    return out


def _curve_chart(curves: dict[Any, tuple[Any, Any]], columns: tuple[str, str],
                 axes: tuple[str, str], strings: dict[str, str],
                 split_table: bool) -> CustomChart:
    """A chart of (class, a, b) rows, each class's points thinned to its share of MAX_ROWS."""
    import numpy as np

    share = max(2, MAX_ROWS // max(1, len(curves)))
    data: list[list[Any]] = []
    for name, (a, b) in curves.items():
        if len(a) > share:
            keep = np.unique(np.linspace(0, len(a) - 1, share).round().astype(int))
            a, b = a[keep], b[keep]
        data.extend([name, x, y] for x, y in zip(np.round(a, 3).tolist(),
                                                 np.round(b, 3).tolist(), strict=True))
    table = Table(columns=["class", *columns], data=data)
    return plot_table(SPECS["curve"], table, {"x": axes[0], "y": axes[1], "class": "class"},
                      strings, split_table)


def _labels(value: Any, what: str, name: str) -> list[Any]:
    """Class labels as a list of ints or strs (bools and whole floats, as a numpy array of
    labels holds them, as ints), refusing an empty list or another kind of label."""
    labels = _values(value, what, name)
    if not labels:
        raise InvalidValueError(f"{what}: {name} is empty; give one label per sample.")
    out = []
    for label in labels:
        if isinstance(label, (bool, float)) and float(label).is_integer():
            label = int(label)
        if not isinstance(label, (int, str)):
            raise InvalidValueError(f"{what}: {name} holds {label!r}; labels are ints or strs "
                                    "(a class index, or a class name).")
        out.append(label)
    return out


def _scores(value: Any, what: str, name: str) -> Any:
    """Probabilities as a finite float array (samples, classes)."""
    import numpy as np

    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, TypeError):
        raise InvalidValueError(f"{what}: {name} must be numbers of shape (samples, classes), "
                                f"got {type(value).__name__} that is not one.") from None
    if array.ndim != 2 or array.size == 0:
        raise InvalidValueError(f"{what}: {name} must have shape (samples, classes), got "
                                f"{array.shape}; for a binary classifier's p give "
                                "np.stack([1 - p, p], axis=1).")
    bad = int(array.size - np.isfinite(array).sum())
    if bad:
        raise InvalidValueError(f"{what}: {name} holds NaN or infinite values ({bad} of "
                                f"{array.size}); replace them first (np.nan_to_num).")
    return array
