"""`localtrack ui` end to end in Debian's Chromium, driven by Playwright.

A real `localtrack ui` process serves a store of runs made through the real API,
one of them written live by another process during the tests. Without Chromium
these tests FAIL (CI installs it); set LOCALTRACK_ALLOW_NO_BROWSER=1 to skip them
on a machine that has none. LOCALTRACK_UI_SCREENSHOT=docs/ui.png also saves the
main page there (how docs/ui.png is made).
"""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import pytest

import localtrack

from .ui_helpers import EVIL_CONFIG, EVIL_NAME, LiveWriter, UIProcess, build_media_run, build_store, serving

# Read at import: the autouse fixture in conftest.py clears LOCALTRACK_* before each test.
ALLOW_NO_BROWSER = bool(os.environ.get("LOCALTRACK_ALLOW_NO_BROWSER"))
SCREENSHOT = os.environ.get("LOCALTRACK_UI_SCREENSHOT")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000


def _no_browser(reason: str) -> None:
    if ALLOW_NO_BROWSER:
        pytest.skip(reason)
    pytest.fail(f"{reason}: install Debian's chromium (apt-get install chromium) and the test extra, "
                "or set LOCALTRACK_ALLOW_NO_BROWSER=1 to skip the browser tests", pytrace=False)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        _no_browser(f"no Chromium at {CHROMIUM}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _no_browser("playwright is not installed")
    with sync_playwright() as pw:
        # launch() gives the browser a new, empty --user-data-dir of its own.
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uib") / "store"
    build_store(root)
    return root


@pytest.fixture(scope="module")
def live(store: Path):
    writer = LiveWriter(store)
    writer.log(30)
    yield writer
    writer.close()


@pytest.fixture(scope="module")
def ui(store: Path, live: LiveWriter):
    with serving(store) as proc:
        yield proc


class Page:
    """One tab on the dashboard, shared by the tests of this module (loading plotly.js, 4.8 MB,
    takes a second or two: the dashboard is one page, so tests move by its #fragment as a
    user clicks), recording what could go wrong."""

    def __init__(self, browser, url: str) -> None:
        self.url = url
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT_MS)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def goto(self, fragment: str) -> None:
        """Open ``fragment`` with the settings a first visit has (no saved selection or columns)."""
        if self.page.url == "about:blank":
            self.page.goto(self.url + "#/", wait_until="domcontentloaded")
        self.page.evaluate("location.hash = '#/'; localStorage.clear()")
        self.page.wait_for_selector("#projects")
        self.page.evaluate("(f) => { location.hash = f; }", fragment)

    def points(self, metric: str, path: str) -> int:
        """Markers plotly drew for one run's line in one metric's panel."""
        return self.page.evaluate("""([metric, path]) => {
            const gd = [...document.querySelectorAll('.panel')].find(p => p.dataset.metric === metric)
                ?.querySelector('.js-plotly-plot');
            if (!gd || !gd.data) return -1;
            const i = gd.data.findIndex(t => t.meta === path && t.name !== undefined);
            if (i < 0) return -1;
            return gd.querySelectorAll('.scatterlayer .trace')[i].querySelectorAll('path.point').length;
        }""", [metric, path])

    def lines(self, metric: str) -> list[str]:
        """Which runs the metric's panel draws (paths of its main traces)."""
        return self.page.evaluate("""(metric) => {
            const gd = [...document.querySelectorAll('.panel')].find(p => p.dataset.metric === metric)
                ?.querySelector('.js-plotly-plot');
            return gd && gd.data ? gd.data.filter(t => t.name !== undefined).map(t => t.meta).sort() : [];
        }""", metric)

    def wait(self, what: str, predicate, timeout: float = TIMEOUT_MS / 1000) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            self.page.wait_for_timeout(100)
        raise AssertionError(f"timed out waiting for {what}")

    def check(self) -> None:
        """What must never happen, whatever the test did."""
        dialogs, errors, requests = self.dialogs[:], self.errors[:], self.requests[:]
        del self.dialogs[:], self.errors[:], self.requests[:]
        assert not dialogs, f"store data ran as code: {dialogs}"
        assert not errors, errors
        outside = [u for u in requests if not u.startswith(self.url)]
        assert not outside, f"requests left the machine: {outside}"


@pytest.fixture(scope="module")
def tab(browser, ui):
    p = Page(browser, ui.url)
    yield p
    p.context.close()


@pytest.fixture
def page(tab):
    tab.check()
    yield tab
    tab.check()


def row(page: Page, path: str):
    return page.page.locator(f'#runs tbody tr[data-path="{path}"]')


def test_runs_table_and_charts(page):
    page.goto("#/p/mnist")
    pg = page.page
    pg.wait_for_selector("#runs tbody tr")
    assert pg.inner_text("#run-count") == "8 of 8 runs"
    live_row = row(page, "mnist/live")
    assert live_row.locator(".state.running").count() == 1          # live runs look live
    assert live_row.locator("td").nth(4).inner_text() == "30"       # steps
    assert row(page, "mnist/r3-diverged").locator(".state.failed").count() == 1
    assert row(page, "mnist/crashed").locator(".state.crashed").count() == 1
    headers = pg.locator("#runs thead th").all_inner_texts()
    for column in ("name", "id", "state", "steps", "duration", "tags", "group", "host", "lr", "batch"):
        assert any(h.strip().startswith(column) for h in headers), (column, headers)
    assert row(page, "mnist/r1-wide-lr").inner_text().count("0.3") >= 1  # a config column

    # Charts: the newest runs are selected at first; every logged step is a drawn point.
    pg.wait_for_selector('.panel[data-metric="loss"] .scatterlayer path.point')
    page.wait("live run's loss curve", lambda: page.points("loss", "mnist/live") == 30)
    assert page.points("loss", "mnist/crashed") == 25
    assert pg.locator(".panel").count() >= 3 and pg.locator('.panel[data-metric="best_acc"]').count() == 0

    # Switch runs: only baseline, then baseline and wide-lr.
    pg.click("#clear-selection")
    page.wait("empty charts", lambda: pg.locator(".panel").count() == 0)
    row(page, "mnist/r0-baseline").locator("input.select").check()
    page.wait("baseline alone", lambda: page.lines("loss") == ["mnist/r0-baseline"])
    assert page.points("loss", "mnist/r0-baseline") == 40
    row(page, "mnist/r1-wide-lr").locator("input.select").check()
    page.wait("two runs overlaid", lambda: page.lines("loss") == ["mnist/r0-baseline", "mnist/r1-wide-lr"])
    assert pg.locator('.panel[data-metric="loss"] .legendtext').all_text_contents() == ["baseline", "wide-lr"]
    for path in ("mnist/r2-adam-small", "mnist/r3-diverged", "mnist/live"):
        row(page, path).locator("input.select").check()
    page.wait("five runs overlaid", lambda: len(page.lines("loss")) == 5)
    colors = pg.evaluate("""() => document.querySelector('.panel[data-metric="loss"] .js-plotly-plot')
        .data.filter(t => t.name !== undefined).map(t => t.line.color)""")
    assert len(set(colors)) == 5, colors
    pg.evaluate("document.activeElement.blur()")
    shot = pg.screenshot()
    assert shot.startswith(b"\x89PNG") and len(shot) > 50_000
    if SCREENSHOT:
        Path(SCREENSHOT).write_bytes(shot)

    # Sort and filter.
    pg.click('#runs thead th[data-key="steps"]')
    assert pg.locator("#runs tbody tr").first.get_attribute("data-path") == "mnist/r0-baseline" or \
        pg.locator("#runs tbody tr").first.locator("td").nth(4).inner_text() == "40"
    pg.select_option("#filter-state", "failed")
    assert pg.locator("#runs tbody tr").count() == 1 and pg.inner_text("#run-count") == "1 of 8 runs"
    pg.select_option("#filter-state", "")
    pg.fill("#search", "lr=0.3")
    assert [r.get_attribute("data-path") for r in pg.locator("#runs tbody tr").all()] == ["mnist/r1-wide-lr"]
    pg.fill("#search", "")
    pg.select_option("#filter-tag", "sweep")
    assert pg.locator("#runs tbody tr").count() == 3
    pg.select_option("#filter-group", "adam")
    shown = [r.get_attribute("data-path") for r in pg.locator("#runs tbody tr").all()]
    assert shown == ["mnist/r2-adam-small"]


def test_chart_controls(page):
    page.goto("#/p/mnist")
    pg = page.page
    pg.wait_for_selector('.panel[data-metric="loss"] .scatterlayer path.point')
    layout = """(key) => [...document.querySelectorAll('.panel')].find(p => p.dataset.metric === 'loss')
                  .querySelector('.js-plotly-plot')._fullLayout[key].type"""
    pg.select_option("#x-axis", "time")
    page.wait("a wall-time axis", lambda: pg.evaluate(layout, "xaxis") == "date")
    pg.select_option("#x-axis", "step")
    page.wait("a step axis", lambda: pg.evaluate(layout, "xaxis") == "linear")
    pg.check("#log-y")
    assert pg.evaluate(layout, "yaxis") == "log"
    pg.uncheck("#log-y")
    traces = "() => document.querySelector('.panel[data-metric=\"loss\"] .js-plotly-plot').data.length"
    before = pg.evaluate(traces)
    pg.fill("#smoothing", "0.6")
    page.wait("a faint raw line under each smoothed one", lambda: pg.evaluate(traces) == 2 * before)

    # Zoom by dragging across the plot: the server is asked for the range at full resolution.
    plot = pg.locator('.panel[data-metric="loss"] .nsewdrag').first
    box = plot.bounding_box()
    assert box
    y = box["y"] + box["height"] / 2
    pg.mouse.move(box["x"] + box["width"] * 0.3, y)
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    pg.mouse.up()
    page.wait("a zoomed request", lambda: any("xmin=" in u for u in page.requests))
    page.wait("the zoom shown", lambda: "zoomed" in pg.inner_text('.panel[data-metric="loss"] .info'))
    pg.locator('.panel[data-metric="loss"] .nsewdrag').first.dblclick()
    page.wait("zoom reset", lambda: "zoomed" not in pg.inner_text('.panel[data-metric="loss"] .info'))


def test_live_run_updates_without_reload(page, live, store):
    page.goto("#/p/mnist")
    pg = page.page
    pg.wait_for_selector('.panel[data-metric="loss"] .scatterlayer path.point')
    before = page.points("loss", "mnist/live")
    assert before == live.log(0)
    pg.evaluate("window.__notReloaded = true")
    at = live.log(7)
    # The page polls every 2 s; how soon the steps show is benchmarks/bench_limits.py's live-chart.
    page.wait("the new steps in the chart", lambda: page.points("loss", "mnist/live") == at)
    assert row(page, "mnist/live").locator("td").nth(4).inner_text() == str(at)
    assert pg.evaluate("window.__notReloaded") is True

    # A run that starts while the page is open shows up in the table by itself.
    newcomer = localtrack.init(project="mnist", id="newcomer", dir=store, name="late-arrival")
    newcomer.log({"loss": 0.5})
    newcomer.finish()
    page.wait("the new run's row", lambda: row(page, "mnist/newcomer").count() == 1, timeout=10)
    assert pg.evaluate("window.__notReloaded") is True


def test_runs_table_polls_only_what_changed(page, store):
    """After the first full listing the table asks ?since=STAMP and merges the changed rows:
    a run started, finished and deleted while the page is open shows each change."""
    page.goto("#/p/mnist")
    pg = page.page
    pg.wait_for_selector('#runs tbody tr[data-path="mnist/r0-baseline"]')
    shown = int(pg.inner_text("#run-count").split()[0])
    del page.requests[:]
    late = localtrack.init(project="mnist", id="poll-late", dir=store, name="started-while-open")
    try:
        late.log({"loss": 0.5})
        late_row = row(page, "mnist/poll-late")
        page.wait("the started run's row", lambda: late_row.locator(".state.running").count() == 1)
    finally:
        late.finish()
    page.wait("its finished state", lambda: late_row.locator(".state.finished").count() == 1)
    assert pg.inner_text("#run-count") == f"{shown + 1} of {shown + 1} runs"
    polls = [u for u in page.requests if "/api/runs?" in u]
    assert polls and all("since=" in u for u in polls), polls

    shutil.rmtree(localtrack.Api(store).run("mnist/poll-late").dir)  # the user deletes the run
    page.wait("the deleted run's row gone", lambda: row(page, "mnist/poll-late").count() == 0)
    assert pg.inner_text("#run-count") == f"{shown} of {shown} runs"
    assert row(page, "mnist/r0-baseline").count() == 1

    # The merge itself: a listing from a restarted server (since null) replaces every row.
    merged = pg.evaluate("""() => {
        const held = new Map([["p/a", {path: "p/a", state: "running", duration: 1}],
                              ["p/b", {path: "p/b", state: "finished", duration: 2}]]);
        const tick = mergeRuns(held, {since: "s.1", paths: ["p/a", "p/b"],
                                      runs: [{path: "p/a", state: "running", duration: 5}]});
        const gone = mergeRuns(held, {since: "s.2", paths: ["p/b"], runs: []});
        const restart = mergeRuns(held, {since: null, paths: ["p/c"],
                                         runs: [{path: "p/c", state: "finished"}]});
        return [tick.changed, tick.ticking, held.get("p/a").duration, gone.changed,
                gone.runs.map(r => r.path), restart.changed, restart.runs.map(r => r.path)];
    }""")
    assert merged == [False, True, 5, True, ["p/b"], True, ["p/c"]]


def test_store_data_is_text_not_code(page):
    page.goto("#/p/mnist")
    pg = page.page
    pg.wait_for_selector('#runs tbody tr[data-path="mnist/evil"]')
    evil = row(page, "mnist/evil")
    assert evil.locator("td.name a").inner_text() == EVIL_NAME
    assert evil.locator(".tag").inner_text() == "<b>t</b>"
    assert pg.evaluate("document.images.length") == 0
    pg.click("#clear-selection")
    evil.locator("input.select").check()
    row(page, "mnist/r0-baseline").locator("input.select").check()
    page.wait("the evil run charted", lambda: "mnist/evil" in page.lines("loss"))
    legend = pg.locator('.panel[data-metric="loss"] .legendtext').all_text_contents()
    assert EVIL_NAME in legend, legend
    page.goto("#/p/mnist/r/evil")
    pg.wait_for_selector("#config")
    assert pg.inner_text("#run-name") == EVIL_NAME
    assert EVIL_CONFIG in pg.inner_text("#config")
    assert pg.evaluate("document.scripts.length") == 4 and pg.evaluate("document.images.length") == 0
    pg.evaluate("document.title")   # the page is alive; close() checks no dialog ever opened


def test_run_page(page, live):
    page.goto("#/p/mnist/r/resumed")
    pg = page.page
    pg.wait_for_selector("#events")
    assert pg.inner_text("#run-name") == "resumed-once"
    assert "resumed 1× (at step 10)" in pg.inner_text("#lifecycle")
    assert "finished with exit code 0" in pg.inner_text("#lifecycle")
    assert pg.locator("#events tbody tr").count() == 3
    assert "lr" in pg.inner_text("#config") and "loss" in pg.inner_text("#summary")
    files = pg.locator("#files a").all_inner_texts()
    assert "run.json" in files and "events.jsonl" in files
    href = pg.locator("#files a", has_text="config.json").get_attribute("href")
    assert href and pg.request.get(page.url + href.lstrip("/")).json() == {"lr": 0.1}
    pg.wait_for_selector('.panel[data-metric="loss"] .scatterlayer path.point')
    assert page.points("loss", "mnist/resumed") == 20

    page.goto("#/p/mnist/r/live")
    pg.wait_for_selector('.panel[data-metric="loss"] .scatterlayer path.point')
    assert pg.locator("h1 .state.running").count() == 1
    at = live.log(3)
    page.wait("live steps on the run page", lambda: page.points("loss", "mnist/live") == at, timeout=10)


def test_a_forks_page_links_its_parent(page):
    page.goto("#/p/cifar10/r/c1-fork")
    pg = page.page
    pg.wait_for_selector("#fork-of")
    assert pg.inner_text("#fork-of") == "cifar10/c1 at step 0"
    assert "forked" in pg.inner_text("#events")
    pg.click("#fork-of a")
    page.wait("the parent's page", lambda: pg.inner_text("#run-name") == "c1")
    pg.wait_for_selector("#lifecycle")  # the parent was rewound after the fork
    assert "rewound from step 1 to 0" in pg.inner_text("#lifecycle")
    assert "rewound" in pg.inner_text("#events") and "from_step=1" in pg.inner_text("#events")


def test_compare_highlights_config_differences(page):
    page.goto("#/p/mnist")
    pg = page.page
    pg.wait_for_selector("#runs tbody tr")
    pg.click("#clear-selection")
    row(page, "mnist/r0-baseline").locator("input.select").check()
    row(page, "mnist/r1-wide-lr").locator("input.select").check()
    pg.click("#compare")
    pg.wait_for_selector("#compare-table")
    assert "compare" in pg.url
    diff = pg.locator('#compare-table tr[data-key="config:lr"]')
    assert "diff" in (diff.get_attribute("class") or "")
    assert diff.locator("td").all_inner_texts()[1:] == ["0.1", "0.3"]
    same = pg.locator('#compare-table tr[data-key="config:model.act"]')
    assert "diff" not in (same.get_attribute("class") or "")
    pg.check("#only-diff")
    assert pg.locator('#compare-table tr[data-key="config:model.act"]').count() == 0
    assert pg.locator('#compare-table tr[data-key="config:batch"]').count() == 1
    pg.wait_for_selector('.panel[data-metric="loss"] .scatterlayer path.point')
    assert sorted(page.lines("loss")) == ["mnist/r0-baseline", "mnist/r1-wide-lr"]


def test_projects_page(page):
    page.goto("#/")
    pg = page.page
    pg.wait_for_selector("#projects")
    assert pg.locator("#projects tbody tr").count() == 2
    pg.click("#projects a >> text=cifar10")
    pg.wait_for_selector("#runs tbody tr")
    assert pg.locator("#runs tbody tr").count() == 2  # c1 and its fork


@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    from .test_ui_server import make_sweep

    root = tmp_path_factory.mktemp("uis") / "store"
    return root, make_sweep(root)


def test_sweeps_view_shows_runs_and_best(browser, sweep_store):
    root, sweep_id = sweep_store
    runs = {r["params"]["lr"]: r["id"] for r in localtrack.Api(root).sweep(f"tune/{sweep_id}").runs}
    proc = UIProcess(root)
    tab = Page(browser, proc.url)
    try:
        pg = tab.page
        pg.goto(proc.url + "#/p/tune", wait_until="domcontentloaded")
        pg.wait_for_selector("#runs tbody tr")
        pg.click("#tab-sweeps")
        pg.wait_for_selector("#sweeps tbody tr")
        listed = pg.locator("#sweeps tbody tr")
        assert listed.count() == 1
        text = listed.inner_text()
        assert "lr-grid" in text and "grid" in text and "val/loss (minimize)" in text
        assert "2 finished" in text and "1 failed" in text and runs[0.1] in text
        listed.locator("a", has_text=sweep_id).click()
        pg.wait_for_selector("#sweep-runs tbody tr")
        rows = pg.locator("#sweep-runs tbody tr")
        assert [r.get_attribute("data-id") for r in rows.all()] == [runs[0.3], runs[0.1], runs[0.5]]
        best = pg.locator("#sweep-runs tbody tr.best")
        assert best.count() == 1 and best.get_attribute("data-id") == runs[0.1]
        assert "best" in best.inner_text() and "0.43333" in best.inner_text()
        failed = pg.locator(f'#sweep-runs tbody tr[data-id="{runs[0.5]}"]')
        assert failed.locator(".state.failed").count() == 1
        assert "(empty" in pg.inner_text("#sweep-queue")
        best.locator("a", has_text=runs[0.1]).click()
        pg.wait_for_selector("#config")
        assert "0.1" in pg.inner_text("#config") and pg.url.endswith(f"#/p/tune/r/{runs[0.1]}")
        tab.check()
    finally:
        tab.context.close()
        code, _, err = proc.stop()
    assert code == 0 and "Traceback" not in err, err


def test_run_page_shows_media(browser, tmp_path):
    """Images by step with a slider, a table, audio, HTML as text, histograms over steps."""
    root = tmp_path / "store"
    path = build_media_run(root)
    proc = UIProcess(root)
    tab = Page(browser, proc.url)
    try:
        pg = tab.page
        pg.goto(proc.url + f"#/p/{path.replace('/', '/r/')}", wait_until="domcontentloaded")
        image = pg.locator('.media-panel[data-key="sample"] img')
        image.wait_for()
        pixel = """(img) => { const c = document.createElement('canvas'); c.width = c.height = 1;
            const g = c.getContext('2d'); g.drawImage(img, 0, 0, 1, 1);
            return Array.from(g.getImageData(0, 0, 1, 1).data.slice(0, 3)); }"""
        tab.wait("the last step's image", lambda: image.evaluate("i => i.complete && i.naturalWidth") == 8)
        assert image.evaluate(pixel) == [160, 95, 0]  # step 4's colour
        panel = pg.locator('.media-panel[data-key="sample"]')
        assert "step 4" in panel.inner_text()
        last_src = image.get_attribute("src")
        panel.locator("input.media-slider").fill("1")
        tab.wait("step 1's image", lambda: image.get_attribute("src") != last_src
                 and image.evaluate("i => i.complete && i.naturalWidth") == 8)
        assert "step=1" in (image.get_attribute("src") or "")
        assert image.evaluate(pixel) == [40, 215, 0]
        assert "step 1" in panel.locator("figcaption").inner_text()
        table = pg.locator('.media-panel[data-key="preds"] table')
        assert table.locator("thead th").all_inner_texts() == ["id", "label"]
        assert table.locator("tbody tr").count() == 20
        assert table.locator("tbody tr").nth(3).inner_text().split() == ["3", "cls<3>"]
        assert "150 rows" in pg.inner_text('.media-panel[data-key="preds"]')
        assert pg.locator('.media-panel[data-key="tone"] audio').count() == 1
        assert "<script>alert(3)</script>" in pg.inner_text('.media-panel[data-key="page"] pre')
        pg.locator('.media-panel[data-key="weights"] .heatmaplayer').wait_for()
        heatmap = pg.locator('.media-panel[data-key="weights"] .js-plotly-plot')
        assert heatmap.evaluate("gd => gd.data[0].x") == [0, 1, 2, 3, 4]
        check_boxes_and_masks(tab)
        tab.check()
    finally:
        tab.context.close()
        code, _, err = proc.stop()
    assert code == 0 and "Traceback" not in err, err


GREY, CLASS_0, ROAD, CLASS_2 = (100, 100, 100), (230, 25, 75), (60, 180, 75), (255, 225, 25)  # _media.PALETTE


def _over_grey(rgb: tuple[int, int, int]) -> list[int]:
    """A class colour drawn at half opacity (_media.MASK_ALPHA) over the grey image."""
    return [round((c * 128 + 100 * 127) / 255) for c in rgb]


def check_boxes_and_masks(tab: Page) -> None:
    """The "seg" image of build_media_run with its boxes and mask drawn over it, read back from
    what Chromium rendered (a screenshot of the image and its layers), each overlay hidden and
    shown again with its checkbox, and still hidden after the slider moves."""
    from PIL import Image

    pg = tab.page
    panel = pg.locator('.media-panel[data-key="seg"]')
    image, mask = panel.locator("img.media-img"), panel.locator("img.media-mask")
    tab.wait("the image and its mask", lambda: mask.count() == 1 and all(
        el.evaluate("i => i.complete && i.naturalWidth") == 40 for el in (image, mask)))
    assert "step 4" in panel.inner_text()
    pred = panel.locator('.media-boxes[data-group="pred"] .media-box')
    assert pred.all_inner_texts() == ["cat", "dog"]  # a caption, else the class's label
    assert panel.locator('.media-boxes[data-group="truth"]').inner_text() == "class_3"  # W&B's default
    assert pred.first.get_attribute("title") == "cat · p 0.75"
    where = """(box) => { const i = box.closest('.media-stack').querySelector('img.media-img')
        .getBoundingClientRect(), b = box.getBoundingClientRect(), w = i.width - 2, h = i.height - 2;
        return [(b.left - i.left - 1) / w, (b.top - i.top - 1) / h, b.width / w, b.height / h]
            .map(v => Math.round(v * 1000) / 1000); }"""
    assert pred.first.evaluate(where) == [0.25, 0.2, 0.25, 0.55]  # relative: fractions of the image
    assert pred.nth(1).evaluate(where) == [0.65, 0.3, 0.2, 0.4]  # pixels: (26, 6) 8x8 of 40x20
    assert panel.locator('.media-boxes[data-group="truth"] .media-box').evaluate(where) == [0, 0, 1, 1]

    def pixel(x: float, y: float, dx: float = 0, dy: float = 0) -> list[int]:
        """The colour Chromium drew at (x, y) in the image's own pixels, moved (dx, dy) CSS
        pixels (to land inside a box's 2 CSS pixel border)."""
        shot = Image.open(io.BytesIO(panel.locator(".media-stack").screenshot())).convert("RGB")
        scale = (shot.width - 2) / 40  # the stack is the image (1px border) and its layers
        return list(shot.getpixel((int(1 + x * scale + dx), int(1 + y * scale + dy))))

    def near(got: list[int], want: list[int] | tuple[int, ...]) -> bool:
        return max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 3

    assert near(pixel(5, 17.5), _over_grey(ROAD)) and near(pixel(35, 17.5), _over_grey(CLASS_0))
    assert near(pixel(10, 9.5, dx=1), ROAD)  # the middle of the cat box's 2px border: class 1's colour
    assert near(pixel(30, 6, dy=1), CLASS_2)  # the dog box's top border
    toggle = {name: panel.locator(f'.overlay-toggle[data-overlay="{name}"] input')
              for name in ("mask:pred", "boxes:pred", "boxes:truth")}
    toggle["mask:pred"].uncheck()
    assert not mask.is_visible()
    tab.wait("the image without its mask", lambda: near(pixel(5, 17.5), GREY))
    evil = panel.locator(".media-boxes").last  # store text stays text: group, caption, toggle
    assert evil.get_attribute("data-group") == EVIL_NAME and evil.inner_text() == EVIL_NAME
    assert panel.locator(".overlay-toggle").last.inner_text().strip() == f"boxes {EVIL_NAME} (1)"
    toggle["boxes:pred"].uncheck()
    assert not pred.first.is_visible() and panel.locator('.media-boxes[data-group="truth"]').is_visible()
    panel.locator("input.media-slider").fill("0")  # step 3: what was hidden stays hidden
    tab.wait("step 3's image", lambda: "step 3" in panel.inner_text() and pred.count() == 2
             and "step=3" in (image.get_attribute("src") or ""))
    assert not pred.first.is_visible() and not panel.locator("img.media-mask").is_visible()
    assert not toggle["mask:pred"].is_checked() and toggle["boxes:truth"].is_checked()
    toggle["boxes:pred"].check()
    assert pred.first.evaluate(where) == [0.25, 0.15, 0.25, 0.6]  # step 3's box
    toggle["mask:pred"].check()
    tab.wait("step 3's mask", lambda: panel.locator("img.media-mask").evaluate(
        "i => i.complete && i.naturalWidth") == 40)
    assert near(pixel(5, 17.5), _over_grey(ROAD)) and near(pixel(15, 17.5), _over_grey(CLASS_0))
