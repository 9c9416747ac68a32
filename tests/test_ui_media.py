"""`localtrack ui`'s media routes over HTTP, on a run a real subprocess logged media into."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import localtrack
from localtrack._ui import _media

from .helpers import run_script, settle
from .test_ui_server import get
from .ui_helpers import UIProcess, build_media_run, serving


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("uim") / "store"
    path = build_media_run(root)
    with serving(root) as proc:
        yield proc, path, root


def test_media_listing(media):
    ui, path, _ = media
    status, _, body = get(ui.url, "/api/media", path=path)
    assert status == 200
    listing = json.loads(body)
    by_key = {m["key"]: m for m in listing["media"]}
    assert set(by_key) == {"sample", "preds", "tone", "page", "seg"}
    assert by_key["sample"]["type"] == "image" and by_key["sample"]["steps"] == [0, 1, 2, 3, 4]
    assert by_key["sample"]["captions"] == [f"step {s}" for s in range(5)]
    assert [by_key[k]["type"] for k in ("preds", "tone", "page")] == ["table", "audio", "html"]
    assert by_key["preds"]["steps"] == [2]
    assert by_key["sample"]["overlaid"] == [False] * 5  # no boxes or masks: no overlay to fetch
    assert by_key["seg"]["steps"] == [3, 4] and by_key["seg"]["overlaid"] == [True, True]
    assert listing["histograms"] == ["weights"]


@pytest.mark.parametrize("step", [0, 3])
def test_an_image_is_sent_as_png_of_its_step(media, step):
    ui, path, _ = media
    status, headers, body = get(ui.url, "/api/media/item", path=path, key="sample", step=step)
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(body)) as image:
        assert image.format == "PNG" and image.size == (8, 8)
        assert image.convert("RGB").getpixel((3, 3)) == (40 * step, 255 - 40 * step, 0)


def test_an_image_s_boxes_and_masks(media):
    """What the page draws over an image: boxes as pixel rectangles with their labels and
    colours, each mask's classes, and each mask as a class-coloured half-transparent PNG."""
    ui, path, _ = media
    status, headers, body = get(ui.url, "/api/media/item", path=path, key="seg", step=4, overlay=1)
    assert status == 200 and headers["content-type"] == "application/json"
    drawn = json.loads(body)
    assert (drawn["w"], drawn["h"]) == (40, 20)
    cat, dog = drawn["boxes"]["pred"]
    assert {k: cat[k] for k in ("x", "y", "w", "h", "label", "class_id", "scores")} == {
        "x": 10, "y": 4, "w": 10, "h": 11, "label": "cat", "class_id": 1, "scores": {"p": 0.75}}
    assert {k: dog[k] for k in ("x", "y", "w", "h", "label")} == {  # domain "pixel", middle/size
        "x": 26, "y": 6, "w": 8, "h": 8, "label": "dog"}
    (truth,) = drawn["boxes"]["truth"]
    assert truth["label"] == "class_3" and (truth["w"], truth["h"]) == (40, 20)
    assert len({cat["colour"], dog["colour"], truth["colour"]}) == 3  # a colour per class
    classes = drawn["masks"]["pred"]
    assert [(c["id"], c["label"]) for c in classes] == [(0, "class_0"), (1, "road")]
    assert classes[1]["colour"] == cat["colour"]  # class 1 has one colour, box or mask

    status, headers, body = get(ui.url, "/api/media/item", path=path, key="seg", step=4, mask="pred")
    assert status == 200 and headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(body)) as png:
        assert png.mode == "RGBA" and png.size == (40, 20)
        road = tuple(int(classes[1]["colour"][i:i + 2], 16) for i in (1, 3, 5))
        background = tuple(int(classes[0]["colour"][i:i + 2], 16) for i in (1, 3, 5))
        assert png.getpixel((19, 5)) == (*road, 128) and png.getpixel((20, 5)) == (*background, 128)
    _, _, step3 = get(ui.url, "/api/media/item", path=path, key="seg", step=3, mask="pred")
    with Image.open(io.BytesIO(step3)) as png:
        assert png.getpixel((9, 5))[:3] == road and png.getpixel((10, 5))[:3] == background
    # each part has its own ETag: a browser never takes a mask for the image or the overlay
    tags = {get(ui.url, "/api/media/item", path=path, key="seg", step=4, **part)[1]["etag"]
            for part in ({}, {"overlay": "1"}, {"mask": "pred"})}
    assert len(tags) == 3


@pytest.mark.parametrize("seal", [False, True], ids=["wal", "sealed"])
def test_which_steps_have_boxes_or_masks(tmp_path: Path, seal: bool):
    """A sealed segment's reference has every field (null where unset): a step without boxes
    or masks is still one without."""
    root = tmp_path / "store"
    done = run_script(f"""
        import numpy as np, localtrack
        run = localtrack.init(project="o", id="o1", dir={str(root)!r})
        box = {{"p": {{"box_data": [{{"position": {{"minX": 0, "maxX": 1, "minY": 0, "maxY": 1}}}}]}}}}
        img = np.zeros((4, 4, 3), np.uint8)
        masked = localtrack.Image(img, masks={{"m": {{"mask_data": img[:, :, 0]}}}})
        for s in range(4):
            run.log({{"im": localtrack.Image(img, boxes=box) if s == 1 else localtrack.Image(img),
                      "many": [localtrack.Image(img), masked] if s == 2 else [localtrack.Image(img)]}})
        run.finish()
    """, env={"LOCALTRACK_SEAL_MIN_BYTES": "0" if seal else str(1 << 40)})
    assert done.returncode == 0, done.stderr
    settle(root)
    run = localtrack.Api(root).run("o/o1")
    assert bool(list(Path(run.dir).glob("segments/*.parquet"))) == seal
    listing = {m["key"]: m for m in _media.media_keys(run)["media"]}
    assert listing["im"]["overlaid"] == [False, True, False, False]
    assert listing["many"]["overlaid"] == [False, False, True, False]
    assert _media.overlay(run.media("many", [2])[0][1][1])["masks"] == {
        "m": [{"id": 0, "label": "class_0", "colour": _media.colour(0)}]}


def test_table_audio_and_html_items(media):
    ui, path, root = media
    status, headers, body = get(ui.url, "/api/media/item", path=path, key="preds", step=2)
    assert status == 200 and headers["content-type"] == "application/json"
    table = json.loads(body)
    assert table["columns"] == ["id", "label"] and table["rows"] == 150
    assert len(table["data"]) == 100 and table["data"][7] == [7, "cls<7>"]

    status, headers, body = get(ui.url, "/api/media/item", path=path, key="tone", step=2)
    assert status == 200 and headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(body)) as wav:
        assert (wav.getframerate(), wav.getnframes(), wav.getnchannels()) == (8000, 800, 1)
        served = np.frombuffer(wav.readframes(800), "<i2")
    stored = localtrack.Api(root).run(path).media("tone")[0][1][0]
    assert np.abs(served / 32767 - stored).max() < 1e-3

    status, headers, body = get(ui.url, "/api/media/item", path=path, key="page", step=2)
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8"
    assert body == b"<script>alert(3)</script><b>hi</b>"  # its source as text, never run
    assert "default-src 'none'" in headers["content-security-policy"]


def test_histograms_over_steps(media):
    ui, path, root = media
    status, _, body = get(ui.url, "/api/histograms", path=path, key="weights")
    assert status == 200
    d = json.loads(body)
    assert d["steps"] == [0, 1, 2, 3, 4] and len(d["edges"]) == len(d["counts"][0]) + 1
    assert [sum(row) for row in d["counts"]] == [500] * 5
    stored = localtrack.Api(root).run(path).histograms("weights")
    assert d["edges"][0] == min(h.edges[0] for _, h in stored)
    assert d["edges"][-1] == pytest.approx(max(h.edges[-1] for _, h in stored))
    centres = [(a + b) / 2 for a, b in zip(d["edges"], d["edges"][1:], strict=False)]
    means = [sum(c * n for c, n in zip(centres, row, strict=True)) / 500 for row in d["counts"]]
    assert means == sorted(means) and means[4] - means[0] > 3  # normal(s, 1) moves right


@pytest.mark.parametrize(("route", "params", "status", "says"), [
    ("/api/media/item", {"key": "sample", "step": "x"}, 400, "whole number for step"),
    ("/api/media/item", {"key": "sample", "step": "-1"}, 400, "step >= 0"),
    ("/api/media/item", {"key": "sample"}, 400, "Missing query parameter 'step'"),
    ("/api/media/item", {"step": "1"}, 400, "Missing query parameter 'key'"),
    ("/api/media/item", {"key": "sample", "step": "9"}, 404, "no media under 'sample' at step 9"),
    ("/api/media/item", {"key": "loss", "step": "1"}, 404, "no media under 'loss'"),
    ("/api/media/item", {"key": "nokey", "step": "1"}, 404, "no media under 'nokey'"),
    ("/api/media/item", {"key": "sample", "step": "1", "index": "3"}, 404, "there is no item 3"),
    ("/api/media/item", {"key": "seg", "step": "4", "mask": "truth"}, 404, "has no mask 'truth'"),
    ("/api/media/item", {"key": "seg", "step": "4", "mask": "pred", "overlay": "1"}, 400, "not both"),
    ("/api/media/item", {"key": "preds", "step": "2", "overlay": "1"}, 400, "is not an image"),
    ("/api/media/item", {"key": "sample", "step": "2", "mask": "pred"}, 404, "has no mask 'pred'"),
    ("/api/histograms", {"key": "loss"}, 404, "no histogram under 'loss'"),
    ("/api/histograms", {"key": "_step"}, 400, "holds no histograms"),
    ("/api/media", {"path": "../../etc"}, 400, "Invalid project name"),
    ("/api/media", {"path": "media/../../x"}, 400, ""),
    ("/api/media", {"path": "media/nope"}, 404, ""),
    ("/api/media/item", {"path": "/etc/passwd", "key": "sample", "step": "0"}, 404, "No run 'passwd'"),
])
def test_bad_parameters_are_4xx_with_a_message(media, route, params, status, says):
    ui, path, _ = media
    got, headers, body = get(ui.url, route, **{"path": path, **params})
    assert got == status, body
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert says in error and "Traceback" not in error


def test_a_damaged_blob_is_an_error_not_a_traceback(tmp_path: Path):
    root = tmp_path / "store"
    path = build_media_run(root)
    blobs = list((root / "media").rglob("*.blob"))
    assert blobs
    for blob in blobs:
        data = bytearray(blob.read_bytes())
        for i in range(0, len(data), 16):  # every item: each fails its CRC-32
            data[i] ^= 0xFF
        blob.write_bytes(bytes(data))
    ui = UIProcess(root)
    try:
        statuses = [get(ui.url, "/api/media/item", path=path, key="sample", step=s) for s in range(5)]
    finally:
        code, _, err = ui.stop()
    assert all(s == 500 and b"cannot be read" in body for s, _, body in statuses), statuses
    assert code == 0 and "Traceback" not in err
