"""A shared run's charts (init(mode="shared"), several writers): a line per writer label, each
label downsampled on its own, over HTTP and in Debian's Chromium, on a run written by three
real processes at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import localtrack

from . import s3server, test_sync_media, test_ui_browser, ui_helpers
from .helpers import script
from .test_ui_browser import Page
from .test_ui_server import get, get_json
from .ui_helpers import LiveWriter, UIProcess

browser = test_ui_browser.browser  # the Chromium fixture
s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures
remote_uri = test_sync_media.remote_uri  # a directory remote or a bucket on loopback S3
LABELS = ["rank0", "rank1", "rank2"]
STEPS = {"rank0": 20, "rank1": 30, "rank2": 3000}
SPIKE = 1500  # rank2's loss is 100 at this step
HIST_EVERY = 10  # each writer logs a histogram "h" every 10 steps

WRITER = f"""
import sys, localtrack
rank = int(sys.argv[2])
run = localtrack.init(project="sh", id="job", dir=sys.argv[1], name="job-name",
                      settings={{"mode": "shared"}})
for s in range(int(sys.argv[3])):
    row = {{"loss": 100.0 if (rank, s) == (2, {SPIKE}) else rank + s / 1000, "acc": rank}}
    if s % {HIST_EVERY} == 0:  # the same steps of every writer: a histogram of each, apart
        row["h"] = localtrack.Histogram(np_histogram=([rank + 1, s + 1], [rank, rank + 1, rank + 2]))
    run.log(row)
run.finish()
"""


def loss(label: str, step: int) -> float:
    rank = int(label[-1])
    return 100.0 if (rank, step) == (2, SPIKE) else rank + step / 1000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared run "sh/job", its three writers started at once (SLURM_PROCID: labels rank0,
    the primary, rank1 and rank2), a single-writer run "sh/solo" and a project "other"."""
    root = tmp_path_factory.mktemp("uishared") / "store"
    procs = [script(WRITER, str(root), str(rank), str(STEPS[label]), env={"SLURM_PROCID": str(rank)})
             for rank, label in enumerate(LABELS)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    solo = localtrack.init(project="sh", id="solo", dir=root, name="solo-run")
    solo.log({"loss": 5.0, "acc": 0.5, "h": localtrack.Histogram(np_histogram=([1], [0.0, 1.0]))})
    for s in range(1, 10):
        solo.log({"loss": 5 - s / 10, "acc": 0.5})
    solo.finish()
    localtrack.init(project="other", id="o", dir=root).finish()  # two projects: the home page lists them
    run = localtrack.Api(root).run("sh/job")
    assert run.labels == LABELS and run.state == "finished"
    return root


ui = ui_helpers.ui  # the dashboard over this module's store


# -- over HTTP -------------------------------------------------------------------------------

def test_history_by_label(ui):
    """by=label: per writer label the series of its own rows, each downsampled on its own (a
    spike of one label stays in that label's band), beside the merged series."""
    d = get_json(ui.url, "/api/history", path="sh/job", keys="loss,acc", points=100, by="label")
    assert list(d["labels"]) == LABELS
    for label in ("rank0", "rank1"):
        one = d["labels"][label]["loss"]
        assert one["sampled"] is False and one["rows"] == STEPS[label]
        assert one["x"] == list(range(STEPS[label]))
        assert one["y"] == [loss(label, s) for s in range(STEPS[label])]
        assert d["labels"][label]["acc"]["y"] == [int(label[-1])] * STEPS[label]
    big = d["labels"]["rank2"]["loss"]
    assert big["sampled"] is True and big["rows"] == 3000 and len(big["x"]) <= 100
    assert max(big["ymax"]) == 100.0 and min(big["ymin"]) == 2.0
    assert big["x"][0] < 30 and big["x"][-1] > 2970  # its own steps, not the merged x range
    merged = d["series"]["loss"]
    assert merged["rows"] == sum(STEPS.values())  # every label's rows, as without by=
    plain = get_json(ui.url, "/api/history", path="sh/job", keys="loss,acc", points=100)
    assert "labels" not in plain and plain["series"] == d["series"]


def test_history_by_label_zoomed_and_by_time(ui):
    zoomed = get_json(ui.url, "/api/history", path="sh/job", keys="loss", xmin=10, xmax=25, by="label")
    assert zoomed["labels"]["rank0"]["loss"]["x"] == list(range(10, 20))
    assert zoomed["labels"]["rank1"]["loss"]["x"] == list(range(10, 26))
    assert zoomed["labels"]["rank2"]["loss"]["x"] == list(range(10, 26))
    timed = get_json(ui.url, "/api/history", path="sh/job", keys="loss", x="time", by="label")
    assert all(len(timed["labels"][label]["loss"]["x"]) == STEPS[label] for label in ("rank0", "rank1"))
    assert timed["labels"]["rank0"]["loss"]["x"][0] > 1e9  # wall time


def test_by_label_of_a_single_writer_run_is_its_history(ui):
    d = get_json(ui.url, "/api/history", path="sh/solo", keys="loss", by="label")
    assert "labels" not in d and d["series"]["loss"]["x"] == list(range(10))


@pytest.mark.parametrize("by", ["run", "", "LABEL"])
def test_a_bad_grouping_is_a_400(ui, by):
    status, _, body = get(ui.url, "/api/history", path="sh/job", keys="loss", by=by)
    if by == "":  # an empty parameter is no parameter
        assert status == 200 and "labels" not in json.loads(body)
        return
    assert status == 400 and "the one grouping is by=label" in json.loads(body)["error"]


def _hist_steps(label: str) -> list[int]:
    return list(range(0, STEPS[label], HIST_EVERY))


def test_histograms_of_every_writer_apart(store, ui):
    """histograms(key): every writer's histograms of a step, each tagged with its writer
    (never mixed into one series); label= reads one writer's; /api/histograms names each
    histogram's writer, on one grid."""
    run = localtrack.Api(store).run("sh/job")
    pairs = run.histograms("h")
    assert [(p[0], p.label) for p in pairs] == sorted(
        (s, label) for label in LABELS for s in _hist_steps(label))
    for pair in pairs:  # each the histogram its writer logged at its step
        step, hist = pair
        rank = int(pair.label[-1])
        assert hist.counts == (rank + 1, step + 1) and hist.edges == (rank, rank + 1, rank + 2)
    one = run.histograms("h", label="rank1")
    assert [(p[0], p.label) for p in one] == [(s, "rank1") for s in _hist_steps("rank1")]
    assert [(p[0], p.label) for p in localtrack.Api(store).run("sh/solo").histograms("h")] == [
        (0, None)]  # a run of one writer
    d = get_json(ui.url, "/api/histograms", path="sh/job", key="h")
    assert list(zip(d["steps"], d["labels"], strict=True)) == [(p[0], p.label) for p in pairs]
    assert d["edges"][0] == 0 and d["edges"][-1] == 4 and len(d["counts"]) == len(pairs)
    by_one = get_json(ui.url, "/api/histograms", path="sh/job", key="h", label="rank0")
    assert by_one["steps"] == _hist_steps("rank0") and set(by_one["labels"]) == {"rank0"}


# -- in Chromium -----------------------------------------------------------------------------

TRACES = """(metric) => {
    const gd = [...document.querySelectorAll('.panel')].find(p => p.dataset.metric === metric)
        ?.querySelector('.js-plotly-plot');
    return gd && gd.data ? gd.data.filter(t => t.name !== undefined)
        .map(t => ({name: t.name, color: t.line.color, dash: t.line.dash, n: t.x.length})) : [];
}"""


def test_a_shared_runs_charts_draw_a_line_per_writer(browser, ui):
    """The run page: a line per label in every chart, the legend naming the labels, each its
    colour; unticking "a line per writer" draws the merged line, and the choice is kept. A
    single writer's page has no such control; compare draws each writer in its run's colour."""
    tab = Page(browser, ui.url)
    try:
        pg = tab.page
        tab.goto("#/p/sh/r/job")
        pg.locator('.panel[data-metric="loss"] .scatterlayer .trace').first.wait_for()
        tab.wait("a line per writer", lambda: len(pg.evaluate(TRACES, "loss")) == 3)
        traces = pg.evaluate(TRACES, "loss")
        assert [t["name"] for t in traces] == LABELS
        assert len({t["color"] for t in traces}) == 3
        assert [t["n"] for t in traces[:2]] == [20, 30] and traces[2]["n"] < 3000  # rank2 downsampled
        panel = pg.locator('.panel[data-metric="loss"]')
        assert panel.locator(".legendtext").all_text_contents() == LABELS
        # rank2's one-step spike survives its downsampling, in its own band
        assert pg.evaluate("""() => {
            const gd = document.querySelector('.panel[data-metric="loss"] .js-plotly-plot');
            return Math.max(...gd.data.filter(t => t.legendgroup === 'sh/job|rank2' && t.fill)
                .flatMap(t => t.y)); }""") == 100
        control = pg.locator("#by-label")
        assert control.is_visible() and control.is_checked()
        control.uncheck()
        tab.wait("the merged line", lambda: [t["name"] for t in pg.evaluate(TRACES, "loss")] == ["job-name"])
        assert pg.evaluate(TRACES, "loss")[0]["n"] > 0
        assert panel.locator(".legendtext").count() == 0  # one line: no legend
        tab.goto("#/p/sh/r/solo")  # (goto clears the saved settings: ticked again)
        pg.locator('.panel[data-metric="loss"] .scatterlayer .trace').first.wait_for()
        assert [t["name"] for t in pg.evaluate(TRACES, "loss")] == ["solo-run"]
        assert not pg.locator("#by-label").is_visible()
        tab.goto("#/p/sh/compare/job,solo")
        tab.wait("compare's lines", lambda: len(pg.evaluate(TRACES, "loss")) == 4)
        traces = pg.evaluate(TRACES, "loss")
        assert [t["name"] for t in traces] == [f"job-name · {label}" for label in LABELS] + ["solo-run"]
        assert len({t["color"] for t in traces[:3]}) == 1 and traces[3]["color"] != traces[0]["color"]
        assert [t["dash"] for t in traces[:3]] == ["solid", "dash", "dot"]
        pg.locator("#by-label").uncheck()
        tab.wait("compare's merged lines", lambda: [t["name"] for t in pg.evaluate(TRACES, "loss")]
                 == ["job-name", "solo-run"])
        pg.reload(wait_until="domcontentloaded")  # the choice is kept (localStorage)
        pg.locator('.panel[data-metric="loss"] .scatterlayer .trace').first.wait_for()
        tab.wait("compare's merged lines after a reload", lambda: [
            t["name"] for t in pg.evaluate(TRACES, "loss")] == ["job-name", "solo-run"])
        assert not pg.locator("#by-label").is_checked()
        tab.check()
    finally:
        tab.context.close()


HEATMAPS = """(key) => [...document.querySelectorAll(`.media-panel[data-key="${key}"] .media-hist-writer`)]
    .map(w => { const gd = w.querySelector('.js-plotly-plot');
        return {title: w.querySelector('h4').textContent, label: w.dataset.label,
                x: gd.data[0].x, zmax: gd.data[0].zmax, range: gd.layout.xaxis.range}; })"""


def test_a_shared_runs_histograms_draw_a_heatmap_per_writer(browser, ui):
    """The run page draws a shared run's histogram key as a heatmap per writer, headed by its
    label, each of its own histograms only, on one step range and colour scale; a single
    writer's run keeps its one heatmap."""
    tab = Page(browser, ui.url)
    try:
        pg = tab.page
        tab.goto("#/p/sh/r/job")
        pg.locator('.media-panel[data-key="h"] .media-hist-writer .heatmaplayer').first.wait_for()
        tab.wait("a heatmap per writer", lambda: len(pg.evaluate(HEATMAPS, "h")) == 3)
        maps = pg.evaluate(HEATMAPS, "h")
        assert [m["title"] for m in maps] == [m["label"] for m in maps] == LABELS
        assert [m["x"] for m in maps] == [_hist_steps(label) for label in LABELS]
        assert {m["zmax"] for m in maps} == {3000 - HIST_EVERY + 1}  # rank2's last: one scale
        assert all(m["range"] == maps[0]["range"] for m in maps)  # one step range
        assert maps[0]["range"][0] < 0 and maps[0]["range"][1] > 2990
        tab.goto("#/p/sh/r/solo")
        pg.locator('.media-panel[data-key="h"] .heatmaplayer').wait_for()
        assert pg.evaluate(HEATMAPS, "h") == []
        gd = pg.locator('.media-panel[data-key="h"] .js-plotly-plot')
        assert gd.evaluate("gd => gd.data[0].x") == [0]
        tab.check()
    finally:
        tab.context.close()


WIDE = """
import sys, localtrack
rank = int(sys.argv[2])
run = localtrack.init(project="sh", id="wide", dir=sys.argv[1], settings={"mode": "shared"})
for s in range(3):
    run.log({"h": localtrack.Histogram(np_histogram=([rank + 1, s + 1], [0, 1, 2]))})
run.finish()
"""


def test_a_shared_run_of_many_writers_shows_one_heatmap_chosen_in_a_list(browser, ui, store):
    """Past 8 writers (64 ranks would be 64 plots) the panel draws the heatmap of the writer
    chosen in a list (the primary first), on the range and colour scale of all of them."""
    ranks = range(9)
    procs = [script(WIDE, str(store), str(rank), env={"SLURM_PROCID": str(rank)}) for rank in ranks]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    tab = Page(browser, ui.url)
    try:
        pg = tab.page
        tab.goto("#/p/sh/r/wide")
        pick = pg.locator('.media-panel[data-key="h"] select.media-hist-pick')
        pick.wait_for()
        assert pick.evaluate("s => [...s.options].map(o => o.value)") == [f"rank{r}" for r in ranks]
        tab.wait("rank0's heatmap", lambda: [m["label"] for m in pg.evaluate(HEATMAPS, "h")] == ["rank0"])
        pick.select_option("rank7")
        tab.wait("rank7's heatmap", lambda: [m["label"] for m in pg.evaluate(HEATMAPS, "h")] == ["rank7"])
        (shown,) = pg.evaluate(HEATMAPS, "h")
        assert shown["x"] == [0, 1, 2] and shown["zmax"] == 9  # rank8's largest count: one scale
        tab.check()
    finally:
        tab.context.close()


LIVE = """
import sys, localtrack
run = localtrack.init(project="sh", id="live", dir=sys.argv[1], name="live-job",
                      settings={"mode": "shared"})
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "q":
        break
    for _ in range(int(line)):
        run.log({"loss": 1.0 / (run.step + 1)})
    print("at", run.step, flush=True)
run.finish()
"""


class SharedWriter(LiveWriter):
    """One writer of the shared run "sh/live" (rank ``rank``); it must finish cleanly."""

    CODE = LIVE

    def __init__(self, root: Path, rank: int) -> None:
        super().__init__(root, env={"SLURM_PROCID": str(rank)})

    def close(self) -> bytes:
        err = super().close()
        assert self.proc.returncode == 0, err.decode()
        return err


def test_a_live_shared_run_follows_each_writer(browser, ui, store):
    """While two writers log, the page follows the one that lags behind: its rows move the
    run's last write (not its step count), so the poll sees them and the chart grows."""
    primary = SharedWriter(store, 0)
    other = None
    try:
        primary.log(50)
        other = SharedWriter(store, 1)
        other.log(5)
        tab = Page(browser, ui.url)
        try:
            pg = tab.page
            tab.goto("#/p/sh/r/live")
            tab.wait("both writers' lines", lambda: [t["n"] for t in pg.evaluate(TRACES, "loss")] == [50, 5])
            before = get_json(ui.url, "/api/status", paths="sh/live")["sh/live"]
            other.log(7)
            tab.wait("the lagging writer's new rows", lambda: [
                t["n"] for t in pg.evaluate(TRACES, "loss")] == [50, 12], timeout=30)
            after = get_json(ui.url, "/api/status", paths="sh/live")["sh/live"]
            assert after["steps"] == before["steps"] == 50 and after["updated"] > before["updated"]
            assert after["state"] == "running"
            tab.check()
        finally:
            tab.context.close()
    finally:
        for writer in (other, primary):
            if writer is not None:
                writer.close()


@pytest.mark.parametrize("remote_uri", ["dir", "s3"], indirect=True)
def test_a_remote_dashboard_follows_a_lagging_writer(request, tmp_path, remote_uri):
    """A live shared run synced twice, only its lagging writer (not the primary) logging in
    between: the copy's last write moves to that writer's last row (its step count does not),
    in the read API and in a dashboard over the copy (its status poll). On S3 the labels' logs
    cost one listing, and a poll with nothing new no read of them."""
    root = tmp_path / "store"
    primary = SharedWriter(root, 0)
    other = None
    ui = None
    try:
        primary.log(50)
        other = SharedWriter(root, 1)
        other.log(5)
        localtrack.sync(remote_uri, dir=root)
        there = localtrack.Api(remote_uri).run("sh/live")
        assert there.state == "running" and there.last_step == 49
        before = there.updated
        ui = UIProcess(remote_uri)  # (a URI where the helper expects a Path: it only formats it)
        polled = get_json(ui.url, "/api/status", paths="sh/live")["sh/live"]
        assert polled == {"state": "running", "steps": 50, "updated": before}
        other.log(7)
        localtrack.sync(remote_uri, dir=root)
        s3 = request.getfixturevalue("s3") if remote_uri.startswith("s3://") else None
        there = localtrack.Api(remote_uri).run("sh/live")
        if s3 is not None:
            s3.requests.clear()
        after = there.updated
        asked = list(s3.requests) if s3 is not None else []
        last_row = max(there.history_table(label="rank1").column("_timestamp").to_pylist())
        assert after == last_row > before and there.last_step == 49
        if s3 is not None:
            lists = [r for r in asked if "list-type" in r[1] and "/labels/" in r[1]]
            assert len(lists) == 1 and "delimiter" not in lists[0][1], asked
            s3.requests.clear()
            assert localtrack.Api(remote_uri).run("sh/live").updated == after
            assert not [r for r in s3.requests if "/labels/" in r[1] and "/wal/" in r[1]
                        and "list-type" not in r[1]]  # the chunks' times are known
        polled = get_json(ui.url, "/api/status", paths="sh/live")["sh/live"]
        assert polled == {"state": "running", "steps": 50, "updated": after}
    finally:
        if ui is not None:
            code, out, err = ui.stop()
            assert code == 0 and "Traceback" not in err, (out, err)
        for writer in (other, primary):
            if writer is not None:
                writer.close()
