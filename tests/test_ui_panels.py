"""The run page's alerts, define_metric-aware charts and media panels: over HTTP (hostile
parameters too) and in Debian's Chromium, on a store a real user script wrote, served from
the store itself, from a directory copy and from an S3 remote it was synced to."""

from __future__ import annotations

import json
import re
import socket
import struct
import subprocess
from pathlib import Path

import pytest

import localtrack

from . import s3server, test_ui_browser, ui_helpers
from .helpers import run_script, script, wait_for
from .test_ui_server import get, get_json
from .ui_helpers import EVIL_NAME, UIProcess

browser = test_ui_browser.browser  # the Chromium fixture
s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures
RUN = "dash/d1"
FRAGMENT = "#/p/dash/r/d1"


def colour(step: int, item: int = 0) -> tuple[int, int, int]:
    return (40 * step + item, 200 - 40 * step, 10 * item)


def build_panels_run(root: Path) -> None:
    """Alerts, define_metric (an x axis, a glob, hidden keys) and media of every kind at
    several steps: a list of 3 images per step, a table with an image column, audio, HTML
    and a GIF video. Image i of step s is a solid colour(s, i) square."""
    done = run_script(f"""
        import numpy as np, localtrack
        def square(s, i=0):
            img = np.zeros((8, 8, 3), np.uint8); img[:, :] = (40 * s + i, 200 - 40 * s, 10 * i)
            return img
        run = localtrack.init(project="dash", id="d1", dir={str(root)!r}, name="panels")
        run.define_metric("val/*", step_metric="epoch")
        run.define_metric("epoch", hidden=True)
        run.define_metric("debug/grad", hidden=True)
        run.define_metric("train/loss", summary="min,max")  # the summary holds train/loss/min, not the key
        run.define_metric("lr", summary="none")  # no summary at all
        run.define_metric("noise/*", summary="none")  # keys in no summary, by a glob
        run.define_metric("ghost", step_metric="never_logged")  # an axis with no value
        for s in range(12):
            row = {{"train/loss": 1.0 / (s + 1), "debug/grad": s * 0.1, "lr": 0.1 * 0.9 ** s,
                    "noise/a": s % 3, "ghost": s * 2}}
            if s % 4 == 3:
                row.update({{"epoch": s // 4 + 1, "val/loss": 0.5 / (s // 4 + 1), "val/acc": 0.2 * (s // 4)}})
            if s < 3:
                row["samples"] = [localtrack.Image(square(s, i), caption=f"s{{s}}i{{i}}") for i in range(3)]
                cells = [[r, localtrack.Image(square(s, r)), f"<b>{{s}}</b>"] for r in range(2)]
                row["preds"] = localtrack.Table(columns=["id", "img", "label"], data=cells)
                row["page"] = localtrack.Html(f"<p>page at step {{s}}</p><script>alert(5)</script>")
            if s in (0, 2):
                row["tone"] = localtrack.Audio(np.sin(np.arange(400) / (4.0 + s)) * 0.5, sample_rate=8000)
                row["clip"] = localtrack.Video(np.stack([square(s)] * 2).transpose(0, 3, 1, 2), fps=2)
            run.log(row)
        run.alert(title="loss spike", text={EVIL_NAME!r}, level="WARN")
        run.alert(title="all good", text="finished training", level=localtrack.AlertLevel.INFO)
        run.finish()
    """)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("uipanels") / "store"
    build_panels_run(root)
    return root


ui = ui_helpers.ui  # the dashboard over this module's store


# -- over HTTP -------------------------------------------------------------------------------

def test_history_carries_define_metric(ui):
    keys = "val/loss,val/acc,train/loss,debug/grad"
    series = get_json(ui.url, "/api/history", path=RUN, keys=keys)["series"]
    assert series["val/loss"]["axis"] == "epoch" and series["val/loss"]["x"] == [1, 2, 3]
    assert series["val/loss"]["y"] == [0.5, 0.25, 0.5 / 3]
    assert series["val/acc"]["axis"] == "epoch"  # the glob applies to every val/ key
    assert "axis" not in series["train/loss"] and series["train/loss"]["x"] == list(range(12))
    assert series["debug/grad"]["hidden"] is True and "hidden" not in series["train/loss"]
    timed = get_json(ui.url, "/api/history", path=RUN, keys="val/loss", x="time")["series"]["val/loss"]
    assert "axis" not in timed and len(timed["x"]) == 3 and timed["x"][0] > 1e9  # wall time
    zoomed = get_json(ui.url, "/api/history", path=RUN, keys="val/loss", xmin=2, xmax=3)["series"]
    assert zoomed["val/loss"]["x"] == [2, 3]  # a zoom is in the axis's units


def test_odd_step_metrics_chart_or_stay_empty(tmp_path):
    """step_metric naming a built-in column, a text key or a key never logged (charted by
    step, saying so): no 500."""
    root = tmp_path / "store"
    done = run_script(f"""
        import localtrack
        run = localtrack.init(project="odd", id="o1", dir={str(root)!r})
        for key, axis in (("a", "_step"), ("b", "_timestamp"), ("c", "label"), ("d", "never")):
            run.define_metric(key, step_metric=axis, step_sync=False)
        for s in range(3):
            run.log({{"a": s, "b": s, "c": s, "d": s, "label": f"t{{s}}"}})
        run.finish()
        run = localtrack.init(project="odd", id="o2", dir={str(root)!r})
        run.define_metric("*", step_metric="gs")   # as Lightning and Transformers define it
        for s in range(3):
            run.log({{"gs": 10 * s, "e": s}})
        run.finish()
    """)
    assert done.returncode == 0, done.stderr
    ui = UIProcess(root)
    try:
        series = get_json(ui.url, "/api/history", path="odd/o1", keys="a,b,c,d")["series"]
        glob = get_json(ui.url, "/api/history", path="odd/o2", keys="gs,e")["series"]
    finally:
        code, _, err = ui.stop()
    assert code == 0 and "Traceback" not in err, err
    assert series["a"]["x"] == [0, 1, 2] and series["a"]["axis"] == "_step"
    assert series["b"]["axis"] == "_timestamp" and series["b"]["x"] == sorted(series["b"]["x"])
    assert series["c"]["x"] == [0, 1, 2] and "axis" not in series["c"]  # text is no axis: by step
    assert series["d"]["x"] == [0, 1, 2] and "axis" not in series["d"]  # no x value: by step
    assert series["d"]["axis_missing"] == "never" and "axis_missing" not in series["a"]
    # "*" matches the step metric too: it is charted by step, not against itself
    assert glob["e"]["axis"] == "gs" and glob["e"]["x"] == [0, 10, 20]
    assert "axis" not in glob["gs"] and glob["gs"]["x"] == [0, 1, 2]


def test_keys_summarised_by_define_metric_are_charted(ui):
    run = get_json(ui.url, "/api/run", path=RUN)
    assert "train/loss" not in run["summary"] and run["summary"]["train/loss/min"] == 1 / 12
    assert "lr" not in run["summary"] and "noise/a" not in run["summary"]
    assert {"train/loss", "lr", "val/loss", "epoch", "noise/a"} <= set(run["metrics"])
    listed = get_json(ui.url, "/api/runs", project="dash")["runs"]
    assert {"train/loss", "lr"} <= set(next(r for r in listed if r["path"] == RUN)["metrics"])


def test_listing_names_every_item_and_its_version(ui):
    listing = {m["key"]: m for m in get_json(ui.url, "/api/media", path=RUN)["media"]}
    assert listing["samples"]["counts"] == [3, 3, 3] and listing["samples"]["captions"][1] == "s1i0"
    assert listing["samples"]["item_captions"][1] == ["s1i0", "s1i1", "s1i2"]
    assert listing["clip"]["type"] == "video" and listing["clip"]["fmt"] == "gif"
    assert listing["tone"]["steps"] == [0, 2]
    versions = listing["samples"]["versions"]
    assert len(set(versions)) == 3 and all(re.fullmatch(r"[0-9a-f]{20}", v) for v in versions)


def test_table_image_cells_are_served_as_png(ui):
    from io import BytesIO

    from PIL import Image

    status, _, body = get(ui.url, "/api/media/item", path=RUN, key="preds", step=1)
    assert status == 200
    table = json.loads(body)
    assert table["data"][1] == [1, {"image": [1, 1]}, "<b>1</b>"]
    status, headers, body = get(ui.url, "/api/media/item", path=RUN, key="preds", step=1, row=1, col=1)
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(BytesIO(body)) as image:
        assert image.convert("RGB").getpixel((2, 2)) == colour(1, 1)
    status, headers, body = get(ui.url, "/api/media/item", path=RUN, key="clip", step=2)
    assert status == 200 and headers["content-type"] == "image/gif" and body.startswith(b"GIF8")


def test_an_item_url_with_its_version_is_cached_for_good(ui):
    listing = {m["key"]: m for m in get_json(ui.url, "/api/media", path=RUN)["media"]}
    version = listing["samples"]["versions"][2]
    status, headers, body = get(ui.url, "/api/media/item", path=RUN, key="samples", step=2, index=1,
                                v=version)
    assert status == 200 and "immutable" in headers["cache-control"]
    assert "max-age=31536000" in headers["cache-control"]
    etag = headers["etag"]
    again, headers2, body2 = get(ui.url, "/api/media/item", {"If-None-Match": etag}, path=RUN, key="samples",
                                 step=2, index=1, v=version)
    assert again == 304 and body2 == b"" and headers2["etag"] == etag
    other, headers3, _ = get(ui.url, "/api/media/item", {"If-None-Match": etag}, path=RUN, key="samples",
                             step=2, index=2, v=version)
    assert other == 200 and headers3["etag"] != etag  # another item of the step: another tag
    stale, headers4, body4 = get(ui.url, "/api/media/item", path=RUN, key="samples", step=2, index=1,
                                 v="0" * 20)
    assert stale == 200 and headers4["cache-control"] == "no-cache" and body4 == body  # revalidated each time


def test_a_steps_version_survives_sealing(tmp_path):
    """What a browser cached of a live run's media stays valid once the run is sealed."""
    root = tmp_path / "store"
    proc = script(f"""
        import sys, numpy as np, localtrack
        run = localtrack.init(project="seal", id="s1", dir={str(root)!r})
        for s in range(3):
            run.log({{"img": localtrack.Image(np.full((4, 4, 3), 50 * s, np.uint8)), "loss": s}})
        print("ready", flush=True)
        sys.stdin.readline()
        run.finish()
    """, env={"LOCALTRACK_SEAL_MIN_BYTES": "0"}, stdin=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    ui = UIProcess(root)
    try:
        def versions() -> list[str]:
            return get_json(ui.url, "/api/media", path="seal/s1")["media"][0]["versions"]

        live = versions()
        _, headers, _ = get(ui.url, "/api/media/item", path="seal/s1", key="img", step=1, v=live[1])
        segments = root / "seal" / "runs" / "s1" / "segments"
        assert not list(segments.glob("*.parquet"))
        proc.communicate(b"\n", timeout=60)
        assert proc.returncode == 0
        wait_for(lambda: list(segments.glob("*.parquet")), what="the run sealed into Parquet")
        assert versions() == live
        status, _, _ = get(ui.url, "/api/media/item", {"If-None-Match": headers["etag"]}, path="seal/s1",
                           key="img", step=1, v=live[1])
        assert status == 304
    finally:
        code, _, err = ui.stop()
    assert code == 0 and "Traceback" not in err, err


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"key": "preds", "step": "1", "row": "x", "col": "1"}, 400, "whole number for row"),
    ({"key": "preds", "step": "1", "row": "1"}, 400, "Missing query parameter 'col'"),
    ({"key": "preds", "step": "1", "row": "-1", "col": "1"}, 400, "row >= 0"),
    ({"key": "preds", "step": "1", "row": "99", "col": "1"}, 404, "there is no cell (99, 1)"),
    ({"key": "preds", "step": "1", "row": "0", "col": "0"}, 404, "holds no image"),
    ({"key": "samples", "step": "1", "row": "0", "col": "0"}, 400, "is not a table"),
    ({"key": "samples", "step": "1", "index": "3"}, 404, "there is no item 3"),
    ({"key": "samples", "step": "1", "index": "0\r\nX-Evil: 1"}, 400, "whole number for index"),
    ({"key": "samples", "step": "99999999999999999999999"}, 404, "no media under 'samples'"),
    ({"key": "samples", "step": "1.5"}, 400, "whole number for step"),
    ({"key": "../../etc/passwd", "step": "1"}, 404, "no media under '../../etc/passwd'"),
    ({"key": "train/loss", "step": "1"}, 404, "no media under 'train/loss'"),
    ({"key": "_step", "step": "1"}, 404, "no media under '_step'"),
    ({"path": "dash/../../etc", "key": "samples", "step": "1"}, 400, ""),
])
def test_hostile_item_parameters_are_4xx_with_a_message(ui, params, status, says):
    got, headers, body = get(ui.url, "/api/media/item", **{"path": RUN, **params})
    assert got == status, body
    assert headers["content-type"] == "application/json" and "x-evil" not in headers
    error = json.loads(body)["error"]
    assert says in error and "Traceback" not in error


def test_a_connection_reset_mid_request_prints_no_traceback(store):
    """A closed tab or a moved slider drops connections: the server says nothing on stderr."""
    proc = UIProcess(store)
    port = int(proc.url.rsplit(":", 1)[1].strip("/"))
    try:
        for request in (b"GET /api/projects HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % port,  # cut in the headers
                        b"GET /static/plotly.min.js HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port):
            for _ in range(3):
                with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                    sock.sendall(request)
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        assert get_json(proc.url, "/api/projects")["projects"][0]["name"] == "dash"
    finally:
        code, out, err = proc.stop()
    assert code == 0 and "Traceback" not in err and "Exception" not in err, err


# -- in Chromium -----------------------------------------------------------------------------

def open_run(browser, url: str):
    tab = test_ui_browser.Page(browser, url)
    tab.page.goto(url + FRAGMENT, wait_until="domcontentloaded")
    tab.page.wait_for_selector("#alerts")
    return tab


PIXEL = """(img) => { const c = document.createElement('canvas'); c.width = c.height = 1;
    const g = c.getContext('2d'); g.drawImage(img, 0, 0, 1, 1);
    return Array.from(g.getImageData(0, 0, 1, 1).data.slice(0, 3)); }"""


def pixels(locator) -> list[list[int]]:
    """The colour of each image the locator finds, once every one of them has loaded."""
    return [img.evaluate(PIXEL) for img in locator.all()]


def loaded(locator, n: int) -> bool:
    return locator.count() == n and all(i.evaluate("i => i.complete && i.naturalWidth > 0")
                                        for i in locator.all())


def test_alerts_panel(browser, ui):
    tab = open_run(browser, ui.url)
    try:
        rows = tab.page.locator("#alerts tbody tr")
        assert rows.count() == 2
        assert [r.get_attribute("data-level") for r in rows.all()] == ["INFO", "WARN"]  # newest first
        first, second = (r.locator("td").all_inner_texts() for r in rows.all())
        assert first[1:4] == ["INFO", "all good", "finished training"]
        assert second[1:4] == ["WARN", "loss spike", EVIL_NAME]  # store text stays text
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", first[0])
        assert tab.page.locator("#alerts-card h2").inner_text() == "alerts (2)"
        tab.check()
    finally:
        tab.context.close()


def test_an_alert_raised_while_the_page_is_open_shows_up(browser, ui, store):
    proc = script(f"""
        import sys, localtrack
        run = localtrack.init(project="dash", id="alerting", dir={str(store)!r})
        run.log({{"loss": 1.0}})
        print("ready", flush=True)
        sys.stdin.readline()
        run.log({{"loss": float("nan")}})
        run.alert(title="nan loss", text="loss is nan at step 1", level="ERROR")
        print("alerted", flush=True)
        sys.stdin.readline()
        run.finish()
    """, stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    tab = test_ui_browser.Page(browser, ui.url)
    try:
        assert proc.stdout.readline() == b"ready\n"
        tab.page.goto(ui.url + "#/p/dash/r/alerting", wait_until="domcontentloaded")
        tab.page.wait_for_selector("#events")
        assert tab.page.locator("#alerts").count() == 0
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == b"alerted\n"
        tab.wait("the alert on the open page", lambda: tab.page.locator("#alerts tbody tr").count() == 1)
        cells = tab.page.locator("#alerts tbody tr td").all_inner_texts()
        assert cells[1:] == ["ERROR", "nan loss", "loss is nan at step 1", "2"]  # the step being logged
        tab.check()
    finally:
        tab.context.close()
        proc.communicate(b"done\n", timeout=60)
    assert proc.returncode == 0


def test_define_metric_axes_and_hidden_metrics(browser, ui):
    tab = open_run(browser, ui.url)
    pg = tab.page
    try:
        pg.wait_for_selector('.panel[data-metric="val/loss"] .scatterlayer path.point')
        panel = pg.locator('.panel[data-metric="val/loss"]')
        assert panel.get_attribute("data-axis") == "epoch"
        plot = panel.locator(".js-plotly-plot")
        assert plot.evaluate("gd => gd.data.find(t => t.name !== undefined).x") == [1, 2, 3]
        assert plot.evaluate("gd => gd._fullLayout.xaxis.title.text") == "epoch"
        assert pg.locator('.panel[data-metric="val/acc"]').get_attribute("data-axis") == "epoch"
        train = pg.locator('.panel[data-metric="train/loss"]')
        assert train.get_attribute("data-axis") is None
        xs = "gd => gd.data.find(t => t.name !== undefined).x.length"
        assert train.locator(".js-plotly-plot").evaluate(xs) == 12
        assert pg.locator('.panel[data-metric="lr"]').count() == 1  # summary="none", still charted
        assert pg.locator('.panel[data-metric="noise/a"]').count() == 1  # ... by a glob too
        ghost = pg.locator('.panel[data-metric="ghost"]')  # its step metric never logged: by step
        assert ghost.locator(".js-plotly-plot").evaluate(xs) == 12
        assert ghost.get_attribute("data-axis") is None
        assert ghost.get_attribute("data-axis-missing") == "never_logged"
        assert "step metric never_logged never logged: by _step" in ghost.inner_text()
        for hidden in ("debug/grad", "epoch"):
            assert pg.locator(f'.panel[data-metric="{hidden}"]').count() == 0
        pg.check("#show-hidden")
        pg.wait_for_selector('.panel[data-metric="debug/grad"] .scatterlayer path.point')
        assert pg.locator('.panel[data-metric="epoch"]').count() == 1
        pg.uncheck("#show-hidden")
        tab.wait("hidden again", lambda: pg.locator('.panel[data-metric="debug/grad"]').count() == 0)
        tab.check()
    finally:
        tab.context.close()


def check_media_panels(tab) -> None:
    """Every media panel on the run page, stepping back with the sliders."""
    pg = tab.page
    samples = pg.locator('.media-panel[data-key="samples"] .media-items img')
    tab.wait("the last step's three images", lambda: loaded(samples, 3))
    assert pixels(samples) == [list(colour(2, i)) for i in range(3)]
    panel = pg.locator('.media-panel[data-key="samples"]')
    assert "step 2 · 3 items" in panel.inner_text()
    assert panel.locator(".media-item figcaption").all_inner_texts() == ["s2i0", "s2i1", "s2i2"]
    panel.locator("input.media-slider").fill("0")
    tab.wait("step 0's images", lambda: loaded(samples, 3) and pixels(samples)[1] == list(colour(0, 1)))

    thumbs = pg.locator('.media-panel[data-key="preds"] table img.media-thumb')
    tab.wait("the table's image cells", lambda: loaded(thumbs, 2))
    assert pixels(thumbs) == [list(colour(2, 0)), list(colour(2, 1))]
    first_row = pg.locator('.media-panel[data-key="preds"] tbody tr').first
    assert first_row.locator("td").nth(2).inner_text() == "<b>2</b>"
    pg.locator('.media-panel[data-key="preds"] input.media-slider').fill("1")
    tab.wait("step 1's table", lambda: loaded(thumbs, 2) and pixels(thumbs)[0] == list(colour(1, 0)))

    html = pg.locator('.media-panel[data-key="page"] pre')
    assert html.inner_text() == "<p>page at step 2</p><script>alert(5)</script>"
    pg.locator('.media-panel[data-key="page"] input.media-slider').fill("0")
    tab.wait("step 0's HTML source", lambda: html.inner_text().startswith("<p>page at step 0"))

    audio = pg.locator('.media-panel[data-key="tone"] audio')
    assert "step=2" in (audio.get_attribute("src") or "")
    pg.locator('.media-panel[data-key="tone"] input.media-slider').fill("0")
    tab.wait("step 0's audio", lambda: "step=0" in (audio.get_attribute("src") or ""))
    served = pg.request.get(tab.url + (audio.get_attribute("src") or "").lstrip("/"))
    assert served.headers["content-type"] == "audio/wav"

    clip = pg.locator('.media-panel[data-key="clip"] .media-items img')
    tab.wait("the GIF video", lambda: loaded(clip, 1))
    assert clip.evaluate(PIXEL) == list(colour(2))
    assert pg.locator('.media-panel[data-key="clip"] input.media-slider').get_attribute("max") == "1"


def test_media_panels(browser, ui):
    tab = open_run(browser, ui.url)
    try:
        check_media_panels(tab)
        # Back to a step already shown: the table comes from the browser's cache, not the server.
        pg = tab.page
        slider = pg.locator('.media-panel[data-key="preds"] input.media-slider')
        thumbs = pg.locator('.media-panel[data-key="preds"] table img.media-thumb')
        slider.fill("2")
        tab.wait("step 2's table again",
                 lambda: loaded(thumbs, 2) and pixels(thumbs)[0] == list(colour(2, 0)))
        sizes = pg.evaluate("""() => performance.getEntriesByType('resource')
            .filter(e => e.name.includes('key=preds&step=2&index=0&v=')).map(e => e.transferSize)""")
        assert len(sizes) == 2 and sizes[0] > 0 and sizes[1] == 0, sizes
        tab.check()
    finally:
        tab.context.close()


def test_a_slider_moved_back_stays_while_the_run_logs_on(browser, ui, store):
    proc = script(f"""
        import sys, numpy as np, localtrack
        run = localtrack.init(project="dash", id="live-media", dir={str(store)!r})
        for line in sys.stdin:
            for _ in range(int(line)):
                s = run.step
                run.log({{"img": localtrack.Image(np.full((4, 4, 3), 30 * s, np.uint8))}})
            print("at", run.step, flush=True)
        run.finish()
    """, stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None

    def log(n: int) -> None:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(f"{n}\n".encode())
        proc.stdin.flush()
        assert proc.stdout.readline().startswith(b"at ")

    tab = test_ui_browser.Page(browser, ui.url)
    pg = tab.page
    try:
        log(2)
        pg.goto(ui.url + "#/p/dash/r/live-media", wait_until="domcontentloaded")
        panel = pg.locator('.media-panel[data-key="img"]')
        slider = panel.locator("input.media-slider")
        image = panel.locator(".media-items img")
        tab.wait("two steps of images", lambda: slider.count() == 1 and slider.get_attribute("max") == "1")
        slider.fill("0")
        tab.wait("step 0's image", lambda: loaded(image, 1) and image.evaluate(PIXEL) == [0, 0, 0])
        log(2)
        tab.wait("the panel rebuilt with four steps", lambda: slider.get_attribute("max") == "3")
        assert slider.input_value() == "0" and "step 0" in panel.inner_text()
        tab.wait("still step 0's image", lambda: loaded(image, 1) and image.evaluate(PIXEL) == [0, 0, 0])
        slider.fill("3")  # back at the last step: follow the run again
        log(1)
        tab.wait("the newest step", lambda: slider.get_attribute("max") == slider.input_value() == "4")
        tab.wait("its image", lambda: loaded(image, 1) and image.evaluate(PIXEL) == [120, 120, 120])
        tab.check()
    finally:
        tab.context.close()
        proc.communicate(b"", timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize("remote", ["directory", "s3"])
def test_media_panels_of_a_synced_store(browser, store, tmp_path, request, remote):
    if remote == "s3":
        s3 = request.getfixturevalue("s3")
        target = s3.uri(s3.new_bucket())
    else:
        target = str(tmp_path / "copy")
    localtrack.sync(target, dir=str(store))
    proc = UIProcess(target)  # type: ignore[arg-type] - a URI where the helper expects a Path
    try:
        tab = open_run(browser, proc.url)
        try:
            assert tab.page.locator("#alerts tbody tr").count() == 2
            check_media_panels(tab)
            tab.check()
        finally:
            tab.context.close()
    finally:
        code, _, err = proc.stop()
    assert code == 0 and "Traceback" not in err, err
