"""localtrack.plot (W&B's wandb.plot): each chart's table against values worked out by hand,
hostile input refused before anything is written, charts logged by a user script in a real
subprocess read back through Api (sealed and not), served by `localtrack ui` and drawn by
the run page in Chromium."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import localtrack
from localtrack import _blobs
from localtrack.errors import InvalidValueError, UnsupportedTypeError, UsageError
from localtrack.plot import CustomChart

from . import test_ui_browser as browser_tests
from .helpers import run_script, settle
from .test_ui_server import get
from .ui_helpers import serving

browser = browser_tests.browser  # the module-scoped Chromium fixture

# Two samples of each class; class 1's scores rank .8 (1), .4 (0), .35 (1), .1 (0).
Y_TRUE = [0, 0, 1, 1]
Y_PROBAS = [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]]
RECALLS = [round(1 - i / 20, 3) for i in range(21)]  # W&B's interp_size=21, from 1 down to 0


def rows_of(chart: CustomChart, cls: object) -> list[list[object]]:
    return [row[1:] for row in chart.table.data if row[0] == cls]


# -- each chart's table, by hand ------------------------------------------------------------


def test_pr_curve_is_the_interpolated_precision_at_each_recall():
    chart = localtrack.plot.pr_curve(Y_TRUE, Y_PROBAS, labels=["neg", "pos"])
    assert chart.table.columns == ["class", "precision", "recall"]
    assert chart.spec == {"spec_name": "wandb/area-under-curve/v0",
                          "fields": {"x": "recall", "y": "precision", "class": "class"},
                          "string_fields": {"title": "Precision-Recall Curve",
                                            "x-axis-title": "Recall", "y-axis-title": "Precision"}}
    # Thresholds .8, .4, .35, .1 give (recall, precision) (.5, 1), (.5, .5), (1, .667),
    # (1, .5): the best precision at recall > .5 is 2/3, at recall <= .5 it is 1.
    expected = [[0.667 if r > 0.5 else 1.0, r] for r in RECALLS]
    assert rows_of(chart, "pos") == expected
    assert rows_of(chart, "neg") == expected  # class 0's scores rank the same way
    assert len(chart.table.data) == 42
    only = localtrack.plot.pr_curve(Y_TRUE, Y_PROBAS, classes_to_plot=[1], interp_size=3)
    assert only.table.data == [[1, 0.667, 1.0], [1, 1.0, 0.5], [1, 1.0, 0.0]]
    as_arrays = localtrack.plot.pr_curve(np.array(Y_TRUE, bool), np.array(Y_PROBAS),
                                         classes_to_plot=[1], interp_size=3)
    assert as_arrays.table.data == only.table.data


def test_roc_curve_points_by_hand():
    chart = localtrack.plot.roc_curve(Y_TRUE, Y_PROBAS)
    assert chart.table.columns == ["class", "fpr", "tpr"]
    assert chart.spec["fields"] == {"x": "fpr", "y": "tpr", "class": "class"}
    assert rows_of(chart, 1) == [[0.0, 0.0], [0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [1.0, 1.0]]
    # Three positives ranked first: (0, 1/3) and (0, 2/3) lie on the line from (0, 0) to
    # (0, 1), so the middle one is dropped as scikit-learn drops it.
    ranked = localtrack.plot.roc_curve([1, 1, 1, 0], [[0.1, 0.9], [0.2, 0.8], [0.3, 0.7],
                                                      [0.9, 0.1]], classes_to_plot=[1])
    assert ranked.table.data == [[1, 0.0, 0.0], [1, 0.0, 0.333], [1, 0.0, 1.0], [1, 1.0, 1.0]]


def test_integer_classes_take_the_column_of_their_value():
    # Class 1 never occurs: class 2 is column 2 (perfect), not the second column (reversed).
    probas = [[0.1, 0.8, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.2, 0.0, 0.8]]
    chart = localtrack.plot.roc_curve([0, 0, 2, 2], probas, labels=["a", "b", "c"],
                                      classes_to_plot=[2])
    assert chart.table.data == [["c", 0.0, 0.0], ["c", 0.0, 1.0], ["c", 1.0, 1.0]]


def test_a_long_roc_curve_keeps_its_ends_within_the_row_limit():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 30_000)
    scores = rng.random(30_000)
    chart = localtrack.plot.roc_curve(truth, np.stack([1 - scores, scores], axis=1))
    assert len(chart.table.data) <= 10_000
    for cls in (0, 1):
        rows = rows_of(chart, cls)
        assert rows[0] == [0.0, 0.0] and rows[-1] == [1.0, 1.0]
        assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_confusion_matrix_of_three_classes():
    truth, preds = [0, 1, 2, 2, 1, 0], [0, 2, 2, 1, 1, 1]
    chart = localtrack.plot.confusion_matrix(y_true=truth, preds=preds, class_names=["a", "b", "c"])
    assert chart.table.columns == ["Actual", "Predicted", "nPredictions"]
    assert chart.table.data == [["a", "a", 1], ["a", "b", 1], ["a", "c", 0],
                                ["b", "a", 0], ["b", "b", 1], ["b", "c", 1],
                                ["c", "a", 0], ["c", "b", 1], ["c", "c", 1]]
    assert chart.spec["spec_name"] == "wandb/confusion_matrix/v1"
    probs = np.eye(3)[preds] * 0.7 + 0.1  # argmax is preds
    from_probs = localtrack.plot.confusion_matrix(probs=probs, y_true=np.array(truth),
                                                  class_names=["a", "b", "c"])
    assert from_probs.table.data == chart.table.data
    named = localtrack.plot.confusion_matrix(y_true=["dog", "cat"], preds=["cat", "cat"])
    assert named.table.data == [["Class_1", "Class_1", 1], ["Class_1", "Class_2", 0],
                                ["Class_2", "Class_1", 1], ["Class_2", "Class_2", 0]]


def test_charts_of_a_table_and_line_series():
    table = localtrack.Table(columns=["x", "y", "run"], data=[[1, 2.0, "a"], [2, 3.0, "b"]])
    assert localtrack.plot.line(table, "x", "y", stroke="run", title="T").spec == {
        "spec_name": "wandb/line/v0", "fields": {"x": "x", "y": "y", "stroke": "run"},
        "string_fields": {"title": "T"}}
    assert localtrack.plot.scatter(table, "x", "y").spec["fields"] == {"x": "x", "y": "y"}
    assert localtrack.plot.bar(table, "run", "y").spec["fields"] == {"label": "run", "value": "y"}
    assert localtrack.plot.histogram(table, "y").spec["spec_name"] == "wandb/histogram/v0"
    assert localtrack.plot.line(table, "x", "y").table is table
    series = localtrack.plot.line_series([0, 1], [[5, 6], np.array([7, 8])], keys=["p", "q"],
                                         xname="epoch")
    assert series.table.columns == ["step", "lineKey", "lineVal"]
    assert series.table.data == [[0, "p", 5], [1, "p", 6], [0, "q", 7], [1, "q", 8]]
    assert series.spec["string_fields"] == {"title": "", "xname": "epoch"}
    own_xs = localtrack.plot.line_series([[0, 1], [2]], [[5, 6], [7]])
    assert own_xs.table.data == [[0, "line_0", 5], [1, "line_0", 6], [2, "line_1", 7]]
    custom = localtrack.plot_table("me/spec/v1", table, {"a": "x"}, {"title": "t", "n": 3})
    assert custom.spec == {"spec_name": "me/spec/v1", "fields": {"a": "x"},
                           "string_fields": {"title": "t", "n": 3}}


# -- hostile input --------------------------------------------------------------------------

TABLE = localtrack.Table(columns=["a", "b"], data=[[1, 2]])


@pytest.mark.parametrize(("call", "error", "says"), [
    (lambda: localtrack.plot.pr_curve([0, 1, 1], [[0.5, 0.5], [0.2, 0.8]]), InvalidValueError,
     "2 rows for 3 labels"),
    (lambda: localtrack.plot.roc_curve([0, 1], [[math.nan, 0.5], [0.2, 0.8]]), InvalidValueError,
     "y_probas holds NaN"),
    (lambda: localtrack.plot.pr_curve([0, 1], [0.3, 0.7]), InvalidValueError, "(samples, classes)"),
    (lambda: localtrack.plot.roc_curve([], []), InvalidValueError, "y_true is empty"),
    (lambda: localtrack.plot.pr_curve([0, 1], None), InvalidValueError, "y_probas="),
    (lambda: localtrack.plot.pr_curve([0, 1, 2], [[1, 0], [0, 1], [1, 0]]), InvalidValueError,
     "only 2 columns"),
    (lambda: localtrack.plot.pr_curve([0, 1], [[1, 0], [0, 1]], labels=["x"]), InvalidValueError,
     "class 1 of y_true has no name"),
    (lambda: localtrack.plot.pr_curve([0, 1], [[1, 0], [0, 1]], classes_to_plot=[7]),
     InvalidValueError, "names none"),
    (lambda: localtrack.plot.pr_curve([0.5, 1], [[1, 0], [0, 1]]), InvalidValueError, "0.5"),
    (lambda: localtrack.plot.line(TABLE, "nope", "b"), InvalidValueError, "x='nope'"),
    (lambda: localtrack.plot.bar(TABLE, "a", "val"), InvalidValueError, "value='val'"),
    (lambda: localtrack.plot.line([[1, 2]], "a", "b"), UnsupportedTypeError, "localtrack.Table"),
    (lambda: localtrack.plot_table("", TABLE, {}), UnsupportedTypeError, "vega_spec_name"),
    (lambda: localtrack.plot_table("s", TABLE, {"x": 1}), UnsupportedTypeError, "fields"),
    (lambda: localtrack.plot_table("s", TABLE, {}, {"t": math.nan}), UnsupportedTypeError,
     "'t': nan"),
    (lambda: localtrack.plot.confusion_matrix(y_true=[0, 1], preds=[0]), InvalidValueError,
     "1 predictions for 2"),
    (lambda: localtrack.plot.confusion_matrix(probs=[[1, 0]], y_true=[0], preds=[0]),
     InvalidValueError, "not both"),
    (lambda: localtrack.plot.confusion_matrix(y_true=[0]), InvalidValueError, "got neither"),
    (lambda: localtrack.plot.confusion_matrix(y_true=[0, 5], preds=[0, 1], class_names=["a", "b"]),
     InvalidValueError, "y_true holds 5"),
    (lambda: localtrack.plot.confusion_matrix(y_true=[0, "a"], preds=[0, 0]), InvalidValueError,
     "do not sort"),
    (lambda: localtrack.plot.line_series([1, 2], [[1, 2, 3]]), InvalidValueError,
     "2 x values and 3 y values"),
    (lambda: localtrack.plot.line_series([1, 2], [[1, 2]], keys=["a", "b"]), InvalidValueError,
     "2 keys"),
    (lambda: localtrack.plot.line_series([1], []), InvalidValueError, "ys is empty"),
    (lambda: localtrack.plot.pr_curve([0, 1], [[1, 0], [0, 1]], interp_size=1), InvalidValueError,
     "interp_size"),
])
def test_hostile_input_is_refused_naming_the_argument(call, error, says):
    with pytest.raises(error) as info:
        call()
    assert says in str(info.value)
    assert isinstance(info.value, UsageError)


def test_a_chart_that_went_bad_before_log_writes_nothing(store: Path):
    run = localtrack.init(project="p", id="bad", dir=store)
    run.log({"loss": 1.0})
    table = localtrack.Table(columns=["a", "b"], data=[[1, 2]])
    gone = localtrack.plot.line(table, "a", "b")
    gone.spec["fields"]["x"] = "nope"  # the spec changed after it was made
    object_cell = localtrack.plot.scatter(localtrack.Table(columns=["a"], data=[[object()]]),
                                          "a", "a")
    for chart, error, says in ((gone, InvalidValueError, "x='nope'"),
                               (object_cell, UnsupportedTypeError, "table cell [0]['a']")):
        with pytest.raises(error) as info:
            run.log({"ok": localtrack.plot.bar(table, "a", "b"), "chart": chart})
        assert says in str(info.value) and "key 'chart' in run 'bad'" in str(info.value)
    assert not list((store / "p" / "runs" / "bad").rglob("*.blob"))  # no item went out
    run.log({"loss": 0.5})
    run.finish()
    stored = localtrack.Api(store).run("p/bad")
    assert [r["loss"] for r in stored.history(pandas=False)] == [1.0, 0.5]
    assert stored.media("chart") == [] and stored.media("ok") == []


# -- logged by a user script, read back -----------------------------------------------------

SCRIPT = """
import numpy as np, localtrack as wandb
run = wandb.init(project="plots", id="r1", dir={root!r})
table = wandb.Table(columns=["x", "y", "g"], data=[[i, i * i, "odd" if i % 2 else "even"]
                                                   for i in range(6)])
for step in range(2):
    wandb.log({{"pr": wandb.plot.pr_curve({y_true}, {y_probas}, labels=["neg", "pos"]),
               "roc": wandb.plot.roc_curve({y_true}, {y_probas}),
               "cm": wandb.plot.confusion_matrix(y_true=[0, 1, 2, 2, 1, 0],
                                                 preds=[0, 2, 2, 1, 1, 1],
                                                 class_names=["a", "b", "c"]),
               "line": wandb.plot.line(table, "x", "y", stroke="g", title="squares"),
               "scatter": wandb.plot.scatter(table, "x", "y"),
               "bar": wandb.plot.bar(table, "g", "y"),
               "hist": wandb.plot.histogram(table, "y"),
               "series": wandb.plot.line_series([0, 1, 2], [[1, 2, 3], [3, 2, 1]], keys=["up", "down"]),
               "custom": wandb.plot_table("me/custom/v1", table, {{"a": "x"}}),
               "mixed": table if step == 0 else wandb.plot.bar(table, "g", "y"),
               "grows": wandb.plot.scatter(wandb.Table(columns=["x", "y"],
                                                       data=[[i, i] for i in range(3 + step)]), "x", "y"),
               "evil": wandb.plot.bar(wandb.Table(columns=["l", "v"], data=[[{evil!r}, 1]]), "l",
                                      "v", title={evil!r})}})
run.finish()
"""
EVIL = "<img src=x onerror=alert(1)>&amp;"
KINDS = {"pr": "wandb/area-under-curve/v0", "roc": "wandb/area-under-curve/v0",
         "cm": "wandb/confusion_matrix/v1", "line": "wandb/line/v0", "scatter": "wandb/scatter/v0",
         "bar": "wandb/bar/v0", "hist": "wandb/histogram/v0", "series": "wandb/lineseries/v0",
         "custom": "me/custom/v1"}


def log_every_kind(root: Path, seal: bool) -> str:
    done = run_script(SCRIPT.format(root=str(root), y_true=Y_TRUE, y_probas=Y_PROBAS, evil=EVIL),
                      env={"LOCALTRACK_SEAL_MIN_BYTES": "0" if seal else str(1 << 40)})
    assert done.returncode == 0, done.stderr
    settle(root)
    return "plots/r1"


@pytest.mark.parametrize("seal", [False, True], ids=["wal", "sealed"])
def test_a_script_logs_every_kind_and_api_reads_them_back(tmp_path: Path, seal: bool):
    root = tmp_path / "store"
    run = localtrack.Api(root).run(log_every_kind(root, seal))
    assert bool(list(run._rdir.glob("segments/*.parquet"))) == seal
    for key, spec_name in KINDS.items():
        found = run.media(key)
        assert [step for step, _ in found] == [0, 1], key
        chart = found[1][1]
        assert isinstance(chart, CustomChart) and chart.spec["spec_name"] == spec_name, key
    pr = run.media("pr")[0][1]
    assert pr.table.data == localtrack.plot.pr_curve(Y_TRUE, Y_PROBAS, labels=["neg", "pos"]).table.data
    assert rows_of(run.media("roc")[0][1], 1)[1] == [0.0, 0.5]
    cm = run.media("cm")[0][1]
    assert [r[2] for r in cm.table.data] == [1, 1, 0, 0, 1, 1, 0, 1, 1]
    line = run.media("line", [1])[0][1]
    assert line.spec["string_fields"] == {"title": "squares"}
    assert line.table.columns == ["x", "y", "g"] and line.table.data[5] == [5, 25, "odd"]
    frame = run.media("series", pandas=True)[0][1]
    assert list(frame.columns) == ["step", "lineKey", "lineVal"] and len(frame) == 6
    assert frame.attrs["chart"]["spec_name"] == "wandb/lineseries/v0"
    mixed = run.media("mixed")
    assert isinstance(mixed[0][1], localtrack.Table) and isinstance(mixed[1][1], CustomChart)
    # What a reader that knows no charts sees: a table tag, and a table's JSON.
    ref = next(_blobs.refs(run.history(pandas=False)[0]["pr"]))
    assert ref["type"] == "table" and ref["chart"] == "wandb/area-under-curve/v0"
    stored = json.loads(_blobs.read(_blobs.locate(run._rdir, ref["log"]), ref))
    assert stored["columns"] == ["class", "precision", "recall"] and len(stored["data"]) == 42
    assert stored["chart"]["fields"] == {"x": "recall", "y": "precision", "class": "class"}
    if not seal:  # `localtrack show` names a chart by its spec, not as a table
        res = run_script("from localtrack._cli import main; main()", "show", "plots/r1",
                         "--dir", str(root), "--rows", "2")
        assert res.returncode == 0, res.stderr
        assert "chart[wandb/area-under-curve/v0]" in res.stdout, res.stdout
        assert "chart[me/custom/v1]" in res.stdout, res.stdout


# -- the dashboard --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("plots") / "store"
    path = log_every_kind(root, seal=False)
    with serving(root) as proc:
        yield proc, path


def test_the_server_lists_and_sends_charts(served):
    ui, path = served
    status, _, body = get(ui.url, "/api/media", path=path)
    assert status == 200
    listing = {m["key"]: m for m in json.loads(body)["media"]}
    assert {k: listing[k]["chart"] for k in KINDS} == KINDS
    assert listing["mixed"]["chart"] == "wandb/bar/v0"  # the last step's
    status, headers, body = get(ui.url, "/api/media/item", path=path, key="pr", step=1)
    assert status == 200 and headers["content-type"] == "application/json"
    sent = json.loads(body)
    assert sent["rows"] == 42 and len(sent["data"]) == 42
    assert sent["chart"]["spec_name"] == "wandb/area-under-curve/v0"


def test_the_run_page_draws_each_chart(browser, served):
    ui, path = served
    tab = browser_tests.Page(browser, ui.url)
    try:
        pg = tab.page
        pg.goto(ui.url + f"#/p/{path.replace('/', '/r/')}", wait_until="domcontentloaded")
        pg.locator('.media-panel[data-key="scatter"] .plot-chart .scatterlayer').wait_for()

        def drawn(key: str) -> dict[str, object]:
            return pg.locator(f'.media-panel[data-key="{key}"] .plot-chart').evaluate(
                """gd => ({spec: gd.dataset.spec, types: gd.data.map(t => t.type),
                          points: gd.data.map(t => (t.x || []).length),
                          z: gd.data[0].z || null})""")

        pr = drawn("pr")
        assert pr["spec"] == "wandb/area-under-curve/v0" and pr["points"] == [21, 21]
        assert drawn("roc")["points"] == [5, 5]
        cm = drawn("cm")
        assert cm["types"] == ["heatmap"] and cm["z"] == [[1, 1, 0], [0, 1, 1], [0, 1, 1]]
        assert drawn("line")["points"] == [3, 3]  # even and odd x
        assert drawn("scatter")["points"] == [6]
        assert drawn("bar") == {"spec": "wandb/bar/v0", "types": ["bar"], "points": [6], "z": None}
        assert drawn("hist")["types"] == ["histogram"] and drawn("hist")["points"] == [6]
        assert drawn("series")["points"] == [3, 3]
        custom = pg.locator('.media-panel[data-key="custom"] table')  # an unknown spec: its table
        assert custom.locator("thead th").all_inner_texts() == ["x", "y", "g"]
        assert custom.locator("tbody tr").count() == 6
        evil = pg.locator('.media-panel[data-key="evil"] .plot-chart')
        assert evil.locator(".xtick text").all_text_contents() == [EVIL]  # text, never markup
        assert evil.locator(".gtitle").text_content() == EVIL
        tab.check()
    finally:
        tab.context.close()


def test_custom_chart_set_key_and_split_table_as_wandb(tmp_path: Path) -> None:
    """W&B's CustomChart methods: ``set_key`` names the chart (log() calls it with the key it
    logs under); ``split_table`` is kept as given (a UI layout, nothing stored)."""
    table = localtrack.Table(columns=["x", "y"], data=[[0, 1.0], [1, 2.0]])
    chart = localtrack.plot.line(table, "x", "y", title="t", split_table=True)
    plain = localtrack.plot.scatter(table, "x", "y")
    assert (chart.key, chart.split_table, plain.split_table) == ("", True, False)
    chart.set_key("mine")
    assert chart.key == "mine"
    for bad in ("", 3, None):
        with pytest.raises(UnsupportedTypeError, match="set_key"):
            chart.set_key(bad)  # type: ignore[arg-type]
    assert chart.key == "mine"
    with localtrack.init(project="p", id="r1", dir=tmp_path / "store") as run:
        run.log({"curves/loss": chart, "s": plain})
    assert (chart.key, plain.key) == ("curves/loss", "s")
    stored = localtrack.Api(tmp_path / "store").run("p/r1").media("curves/loss")[0][1]
    assert stored.table.data == table.data and stored.spec == chart.spec


def test_a_chart_panel_steps_back_with_its_slider(browser, served):
    """A chart logged at several steps: the last step's first, any other by the slider (a step
    whose table has no chart shows the table), and back."""
    ui, path = served
    tab = browser_tests.Page(browser, ui.url)
    try:
        pg = tab.page
        pg.goto(ui.url + f"#/p/{path.replace('/', '/r/')}", wait_until="domcontentloaded")
        grows = pg.locator('.media-panel[data-key="grows"]')
        chart = grows.locator(".plot-chart")
        grows.locator(".scatterlayer").wait_for()

        def points() -> list[int]:
            return chart.evaluate("gd => gd.data.map(t => t.x.length)")

        assert points() == [4] and chart.get_attribute("data-step") == "1"
        assert "step 1" in grows.locator(".media-step").inner_text() and "4 rows" in grows.inner_text()
        slider = grows.locator("input.media-slider")
        assert slider.get_attribute("max") == "1"
        slider.fill("0")
        tab.wait("step 0's chart", lambda: chart.get_attribute("data-step") == "0" and points() == [3])
        assert "3 rows" in grows.inner_text()
        mixed = pg.locator('.media-panel[data-key="mixed"]')
        assert mixed.locator(".plot-chart").get_attribute("data-spec") == "wandb/bar/v0"
        mixed.locator("input.media-slider").fill("0")  # step 0 logged a plain table
        tab.wait("step 0's table", lambda: mixed.locator("table tbody tr").count() == 6)
        assert not mixed.locator(".plot-chart").is_visible()
        assert mixed.locator("thead th").all_inner_texts() == ["x", "y", "g"]
        mixed.locator("input.media-slider").fill("1")
        tab.wait("the bar chart again", lambda: mixed.locator(".plot-chart").is_visible()
                 and mixed.locator("table").count() == 0)
        assert mixed.locator(".plot-chart").evaluate("gd => gd.data[0].type") == "bar"
        tab.check()
    finally:
        tab.context.close()
