"""Boxes and masks of images in a Table's cells, on the run page: over HTTP and in Debian's
Chromium (pixels read back from a screenshot), on a run a real user script logged."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from . import test_ui_browser
from .helpers import run_script
from .test_ui_browser import CLASS_0, GREY, ROAD, Page, _over_grey
from .test_ui_server import get
from .ui_helpers import EVIL_NAME, serving

browser = test_ui_browser.browser  # the Chromium fixture
RUN = "cells/t1"


def build_cells_run(root: Path) -> None:
    """A table "preds" at steps 0 and 1, columns id, im, plain. Row 0's im is a grey (100)
    40x20 image with a box group "pred" (one box from (0.25, 0.25) to (0.5, 0.75) captioned
    "cat", class 1) and a mask "m" (class 1, "road", in the left 10 * (step + 1) columns, 0
    elsewhere); row 1's im has one box group "pred" (class 2, no labels, the whole image) and
    a group EVIL_NAME; plain is an 8x8 image without overlays in each row."""
    done = run_script(f"""
        import numpy as np, localtrack
        run = localtrack.init(project="cells", id="t1", dir={str(root)!r})
        grey = np.full((20, 40, 3), 100, np.uint8)
        whole = {{"minX": 0, "maxX": 1, "minY": 0, "maxY": 1}}
        for s in range(2):
            mask = np.zeros((20, 40), np.uint8); mask[:, :10 * (s + 1)] = 1
            cat = localtrack.Image(grey, boxes={{"pred": {{"box_data": [{{"position": {{"minX": 0.25,
                "maxX": 0.5, "minY": 0.25, "maxY": 0.75}}, "class_id": 1, "box_caption": "cat"}}],
                "class_labels": {{1: "cat"}}}}}}, masks={{"m": {{"mask_data": mask,
                "class_labels": {{1: "road"}}}}}})
            other = localtrack.Image(grey, boxes={{"pred": {{"box_data": [{{"position": whole,
                "class_id": 2}}]}}, {EVIL_NAME!r}: {{"box_data": [{{"position": whole,
                "box_caption": {EVIL_NAME!r}}}]}}}})
            plain = localtrack.Image(np.zeros((8, 8, 3), np.uint8))
            run.log({{"preds": localtrack.Table(columns=["id", "im", "plain"],
                                                data=[[0, cat, plain], [1, other, plain]])}})
        run.finish()
    """)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uicells") / "store"
    build_cells_run(root)
    with serving(root) as proc:
        yield proc


# -- over HTTP -------------------------------------------------------------------------------

def test_a_table_marks_the_cells_with_overlays(ui):
    status, _, body = get(ui.url, "/api/media/item", path=RUN, key="preds", step=1)
    assert status == 200
    data = json.loads(body)["data"]
    assert data[0] == [0, {"image": [0, 1], "overlaid": True}, {"image": [0, 2]}]
    assert data[1] == [1, {"image": [1, 1], "overlaid": True}, {"image": [1, 2]}]


def test_a_cells_boxes_and_masks(ui):
    from PIL import Image

    cell = {"path": RUN, "key": "preds", "step": 1, "row": 0, "col": 1}
    status, headers, body = get(ui.url, "/api/media/item", **cell, overlay=1)
    assert status == 200 and headers["content-type"] == "application/json"
    drawn = json.loads(body)
    assert (drawn["w"], drawn["h"]) == (40, 20)
    (cat,) = drawn["boxes"]["pred"]
    assert {k: cat[k] for k in ("x", "y", "w", "h", "label")} == {"x": 10, "y": 5, "w": 10, "h": 10,
                                                                   "label": "cat"}
    assert [(c["id"], c["label"]) for c in drawn["masks"]["m"]] == [(0, "class_0"), (1, "road")]
    status, headers, body = get(ui.url, "/api/media/item", **cell, mask="m")
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(body)) as png:
        assert png.getpixel((19, 3)) == (*ROAD, 128) and png.getpixel((20, 3)) == (*CLASS_0, 128)
    other = json.loads(get(ui.url, "/api/media/item", **{**cell, "row": 1}, overlay=1)[2])
    assert other["boxes"]["pred"][0]["label"] == "class_2" and other["masks"] == {}
    assert other["boxes"][EVIL_NAME][0]["label"] == EVIL_NAME
    # every part of every cell has its own ETag: a browser never takes one for another
    tags = {get(ui.url, "/api/media/item", **{**cell, **part})[1]["etag"]
            for part in ({}, {"overlay": "1"}, {"mask": "m"}, {"row": "1"}, {"row": "1", "overlay": "1"})}
    assert len(tags) == 5


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"row": "0", "col": "2", "overlay": "1"}, 200, ""),  # no overlays: nothing to draw
    ({"row": "0", "col": "2", "mask": "m"}, 404, "has no mask 'm'"),
    ({"row": "0", "col": "0", "overlay": "1"}, 404, "holds no image"),
    ({"row": "5", "col": "1", "overlay": "1"}, 404, "there is no cell (5, 1)"),
    ({"row": "0", "overlay": "1"}, 400, "Missing query parameter 'col'"),
])
def test_cell_overlay_parameters(ui, params, status, says):
    got, _, body = get(ui.url, "/api/media/item", path=RUN, key="preds", step=0, **params)
    assert got == status, body
    if status == 200:
        assert json.loads(body) == {"w": 8, "h": 8, "boxes": {}, "masks": {}}
    else:
        assert says in json.loads(body)["error"]


# -- in Chromium -----------------------------------------------------------------------------

def test_boxes_and_masks_are_drawn_in_table_cells(browser, ui):
    """Each overlaid cell drawn with its mask and boxes, large enough to read; a checkbox per
    overlay in the column's header hides it in every cell of the column, and it stays hidden
    as the slider moves; cells without overlays stay thumbnails; store text stays text."""
    from PIL import Image

    tab = Page(browser, ui.url)
    try:
        pg = tab.page
        pg.goto(ui.url + "#/p/cells/r/t1", wait_until="domcontentloaded")
        panel = pg.locator('.media-panel[data-key="preds"]')
        cells = panel.locator("td .media-cell")
        masks = panel.locator("td img.media-mask")
        tab.wait("the overlaid cells", lambda: cells.count() == 2 and masks.count() == 1 and all(
            el.evaluate("i => i.complete && i.naturalWidth") == 40
            for el in (*cells.locator("img.media-img").all(), masks.first)))
        assert "step 1" in panel.inner_text()
        assert panel.locator("td img.media-thumb").count() == 2  # the "plain" column
        first = cells.first
        assert first.locator("img.media-img").evaluate("i => i.getBoundingClientRect().width") >= 160
        assert first.locator(".media-box").inner_text() == "cat"
        assert cells.nth(1).locator('.media-boxes[data-group="pred"]').inner_text() == "class_2"
        evil = cells.nth(1).locator(".media-boxes").last
        assert evil.get_attribute("data-group") == EVIL_NAME and evil.inner_text() == EVIL_NAME
        heads = panel.locator("thead th")
        assert heads.nth(0).inner_text() == "id" and heads.nth(2).inner_text() == "plain"
        toggles = heads.nth(1).locator(".overlay-toggle")
        assert [t.get_attribute("data-overlay") for t in toggles.all()] == [
            "mask:m", "boxes:pred", f"boxes:{EVIL_NAME}"]
        assert toggles.first.locator(".overlay-class").all_inner_texts() == ["class_0", "road"]

        def pixel(x: float, y: float, dx: float = 0, dy: float = 0) -> list[int]:
            """What Chromium drew at (x, y) in the first cell image's own pixels."""
            shot = Image.open(io.BytesIO(first.screenshot())).convert("RGB")
            scale = (shot.width - 2) / 40  # the stack is the image (1px border) and its layers
            return list(shot.getpixel((int(1 + x * scale + dx), int(1 + y * scale + dy))))

        def near(got: list[int], want: tuple[int, ...] | list[int]) -> bool:
            return max(abs(a - b) for a, b in zip(got, want, strict=True)) <= 3

        assert near(pixel(5, 2), _over_grey(ROAD)) and near(pixel(35, 2), _over_grey(CLASS_0))
        assert near(pixel(15, 5, dy=1), ROAD)  # the cat box's top border: class 1's colour
        mask_box = toggles.first.locator("input")
        mask_box.uncheck()
        tab.wait("the cell without its mask", lambda: near(pixel(5, 2), GREY))
        assert near(pixel(15, 5, dy=1), ROAD)  # the box is still drawn
        toggles.nth(1).locator("input").uncheck()  # boxes:pred, in both rows
        assert not first.locator(".media-box").is_visible()
        assert not cells.nth(1).locator('.media-boxes[data-group="pred"]').is_visible()
        assert evil.is_visible()
        tab.wait("the cell without its boxes", lambda: near(pixel(15, 5, dy=1), GREY))
        panel.locator("input.media-slider").fill("0")  # step 0: what was hidden stays hidden
        tab.wait("step 0's table", lambda: "step 0" in panel.inner_text() and cells.count() == 2
                 and "step=0" in (cells.first.locator("img.media-img").get_attribute("src") or ""))
        assert not toggles.first.locator("input").is_checked()
        assert not cells.first.locator("img.media-mask").is_visible()
        assert not cells.first.locator(".media-box").is_visible()
        toggles.first.locator("input").check()
        tab.wait("step 0's mask", lambda: cells.first.locator("img.media-mask").evaluate(
            "i => i.complete && i.naturalWidth") == 40)
        tab.wait("step 0's mask drawn", lambda: near(pixel(5, 2), _over_grey(ROAD))
                 and near(pixel(15, 2), _over_grey(CLASS_0)))
        tab.check()
    finally:
        tab.context.close()
