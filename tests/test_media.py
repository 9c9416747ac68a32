"""Media (issue 20): Image, Audio, Video, Html and Table in a run's blob logs.

Every type is logged by a real script in a subprocess and read back here, from the live logs
and after sealing; a run killed at random instants while logging images reads back every item
whose log() returned; a resumed, rewound or forked run reads the media it should; a run of
1,000 images is a handful of files; hostile values raise an error naming the key and the run,
and store nothing.
"""

from __future__ import annotations

import os
import random
import signal
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import localtrack
from localtrack import _blobs
from localtrack.errors import InvalidValueError, UnsupportedTypeError

from .helpers import read_as_older, run_script, script, settle

RNG = np.random.default_rng(20)
HWC = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)

WRITE_ALL = """
import io, sys, wave, numpy as np, pandas as pd, torch, localtrack
from PIL import Image as PILImage
import os
store, seal, tmp = sys.argv[1], sys.argv[2] == "1", sys.argv[3]
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0" if seal else str(1 << 40)
rng = np.random.default_rng(20)
hwc = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
PILImage.fromarray(hwc).save(tmp + "/img.png")
with wave.open(tmp + "/a.wav", "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(8000)
    w.writeframes(np.arange(100, dtype="<i2").tobytes())
open(tmp + "/page.html", "w").write("<p>file</p>")
PILImage.fromarray(hwc).save(tmp + "/v.gif")
run = localtrack.init(project="p", id="m", dir=store)
run.log({"img": localtrack.Image(hwc, caption="hwc")})
run.log({"img": localtrack.Image(hwc.transpose(2, 0, 1).astype(np.float32) / 255)})  # CHW floats
run.log({"img": localtrack.Image(hwc[:, :, 0])})                                    # grayscale
run.log({"img": localtrack.Image(PILImage.fromarray(hwc))})
run.log({"img": localtrack.Image(torch.from_numpy(hwc.transpose(2, 0, 1).copy()))})
run.log({"img": localtrack.Image(tmp + "/img.png", caption="file")})
run.log({"img": localtrack.Image(hwc, mode="L")})
run.log({"many": [localtrack.Image(hwc), localtrack.Image(hwc[::-1])], "x": 1.0})
run.log({"aud": localtrack.Audio(np.linspace(-1, 1, 800, dtype=np.float32), sample_rate=8000,
                                 caption="ramp")})
run.log({"aud": localtrack.Audio(np.zeros((50, 2), np.int16), sample_rate=44100)})
run.log({"aud": localtrack.Audio(tmp + "/a.wav")})
run.log({"html": localtrack.Html("<b>hi</b>")})
from pathlib import Path
run.log({"html": localtrack.Html(Path(tmp + "/page.html"))})
t = localtrack.Table(columns=["n", "s", "im"], data=[[1, "a", localtrack.Image(hwc)]])
t.add_data(2.5, None, None)
t.add_column("f", [float("nan"), True])
run.log({"table": t})
run.log({"table": localtrack.Table(dataframe=pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))})
run.log({"video": localtrack.Video(rng.integers(0, 256, (3, 3, 8, 10), dtype=np.uint8), fps=5)})
run.log({"video": localtrack.Video(tmp + "/v.gif")})
run.log({"nested": {"img": localtrack.Image(hwc)}}, step=100)
mask = np.zeros((12, 20), np.uint8); mask[2:5, 3:9] = 7
boxes = {"predictions": {"box_data": [
    {"position": {"minX": 0.1, "maxX": 0.2, "minY": 0.3, "maxY": 0.4}, "class_id": 1,
     "box_caption": "cat", "scores": {"acc": np.float32(0.5)}},
    {"position": {"middle": [10, 6], "width": 4, "height": 2}, "domain": "pixel", "class_id": 2}],
    "class_labels": {1: "cat", 2: "dog"}}}
masks = {"pred": {"mask_data": mask, "class_labels": {7: "road"}}, "truth": {"mask_data": mask > 0}}
run.log({"boxed": localtrack.Image(hwc, boxes=boxes, masks=masks)}, step=101)
run.log({"boxed": localtrack.Table(columns=["im"], data=[[localtrack.Image(hwc, masks=masks)]])},
        step=102)
PILImage.fromarray(mask).save(tmp + "/mask.png")  # a mask file, as W&B writes them: mode L
PILImage.fromarray(mask, "L").convert("P").save(tmp + "/mask_p.png")
unlabelled = {"p": {"box_data": [{"position": {"minX": 0, "maxX": 1, "minY": 0, "maxY": 1},
                                  "class_id": c} for c in (3, 1, 3)]}}
run.log({"paths": localtrack.Image(hwc, boxes=unlabelled, masks={
    "file": {"path": tmp + "/mask.png", "class_labels": {7: "road"}},
    "palette": {"path": Path(tmp + "/mask_p.png")}})}, step=103)
run.finish()
print("done")
"""


def _write_all(tmp_path: Path, seal: bool) -> localtrack.ApiRun:
    store = tmp_path / "store"
    res = run_script(WRITE_ALL, str(store), "1" if seal else "0", str(tmp_path), timeout=120)
    assert res.returncode == 0 and "done" in res.stdout, res.stderr
    settle(store)
    rdir = store / "p" / "runs" / "m"
    sealed = (rdir / "segments" / _blobs.name(0)).exists()
    assert sealed == seal and (rdir / "wal" / _blobs.name(0)).exists() == (not seal)
    return localtrack.Api(store).run("p/m")


@pytest.mark.parametrize("seal", [False, True], ids=["live-log", "sealed"])
def test_every_type_round_trips(tmp_path: Path, seal: bool) -> None:
    run = _write_all(tmp_path, seal)
    images = run.media("img")
    assert [s for s, _ in images] == list(range(7))
    arrays = [np.asarray(im) for _, im in images]
    for i in (0, 3, 4, 5):
        assert np.array_equal(arrays[i], HWC), i
    assert np.abs(arrays[1].astype(int) - HWC).max() <= 1  # floats in 0..1, scaled by 255
    assert np.array_equal(arrays[2], HWC[:, :, 0]) and images[2][1].mode == "L"
    assert images[6][1].mode == "L" and images[6][1].size == (20, 12)
    assert [s for s, _ in run.media("img", steps=[1, 5])] == [1, 5]
    (step, many), = run.media("many")
    assert step == 7 and [np.asarray(i).tolist() for i in many] == [HWC.tolist(), HWC[::-1].tolist()]
    audio = [a for _, a in run.media("aud")]
    samples, rate = audio[0]
    assert rate == 8000 and samples.shape == (800,) and abs(samples[0] + 1) < 1e-4
    assert audio[1][0].shape == (50, 2) and audio[1][1] == 44100
    assert audio[2][1] == 8000 and np.allclose(audio[2][0] * 32767, np.arange(100), atol=0.5)
    assert [h for _, h in run.media("html")] == ["<b>hi</b>", "<p>file</p>"]
    (_, table), (_, frame) = run.media("table")
    assert table.columns == ["n", "s", "im", "f"]
    assert table.data[0][:2] == [1, "a"] and np.array_equal(np.asarray(table.data[0][2]), HWC)
    assert table.data[1][:3] == [2.5, None, None] and table.data[1][3] is True
    assert np.isnan(table.data[0][3])
    assert frame.columns == ["a", "b"] and frame.data == [[1, "x"], [2, "y"]]
    df = run.media("table", steps=[14], pandas=True)[0][1]
    assert list(df["b"]) == ["x", "y"]
    videos = [v for _, v in run.media("video")]
    assert videos[0][:6] == b"GIF89a" and videos[1] == (tmp_path / "v.gif").read_bytes()
    assert [s for s, _ in run.media("nested/img")] == [100]
    (_, boxed), (_, in_table) = run.media("boxed")
    assert np.array_equal(np.asarray(boxed), HWC) and boxed.boxes == {"predictions": {
        "box_data": [
            {"position": {"minX": 0.1, "maxX": 0.2, "minY": 0.3, "maxY": 0.4}, "class_id": 1,
             "box_caption": "cat", "scores": {"acc": 0.5}},
            {"position": {"middle": [10.0, 6.0], "width": 4.0, "height": 2.0},
             "domain": "pixel", "class_id": 2}],
        "class_labels": {1: "cat", 2: "dog"}}}
    mask = np.zeros((12, 20), np.uint8)
    mask[2:5, 3:9] = 7
    assert boxed.masks.keys() == {"pred", "truth"} and images[0][1].masks == {}
    assert np.array_equal(boxed.masks["pred"]["mask_data"], mask)
    assert boxed.masks["pred"]["class_labels"] == {7: "road"}
    assert np.array_equal(boxed.masks["truth"]["mask_data"], (mask > 0).astype(np.uint8))
    assert boxed.masks["truth"]["class_labels"] == {0: "class_0", 1: "class_1"}  # W&B's default
    (_, paths), = run.media("paths")
    assert paths.masks.keys() == {"file", "palette"}
    for name in ("file", "palette"):  # a mask file is read into its class ids when logged
        assert np.array_equal(paths.masks[name]["mask_data"], mask), name
    assert paths.masks["file"]["class_labels"] == {7: "road"}
    assert paths.masks["palette"]["class_labels"] == {0: "class_0", 7: "class_7"}
    assert paths.boxes["p"]["class_labels"] == {1: "class_1", 3: "class_3"}
    cell = in_table.data[0][0]
    assert np.array_equal(cell.masks["pred"]["mask_data"], mask) and cell.boxes == {}
    history = run.history_table(["img", "x"]).to_pylist()
    ref = history[0]["img"][_blobs.TAG]
    assert ref["type"] == "image" and ref["w"] == 20 and ref["h"] == 12 and ref["caption"] == "hwc"
    assert history[7]["x"] == 1.0 and history[7]["img"] is None


def test_show_lists_media_keys(tmp_path: Path) -> None:
    _write_all(tmp_path, seal=False)
    res = run_script("from localtrack._cli import main; main()", "show", "p/m", "--dir",
                     str(tmp_path / "store"))
    assert res.returncode == 0, res.stderr
    media = res.stdout.split("\nmedia\n")[1]
    assert "  img: 7 step(s)" in media and "  table: 2 step(s)" in media
    assert "image[20x12]" in res.stdout and "2 images" in res.stdout


THOUSAND = """
import sys, numpy as np, localtrack
import os
from localtrack import _blobs
os.environ["LOCALTRACK_SEAL_MIN_BYTES"] = "0"
_blobs.ROTATE_BYTES = 200_000       # the history rotates when its blob holds ~260 images
run = localtrack.init(project="p", id="k", dir=sys.argv[1])
img = np.zeros((16, 16, 3), np.uint8)
for i in range(1000):
    img[0, 0, 0] = i % 256
    run.log({"img": localtrack.Image(img), "i": i, "note": "n" * 20})
run.finish()
"""


def test_a_thousand_images_are_a_handful_of_files(store: Path) -> None:
    res = run_script(THOUSAND, str(store), timeout=120)
    assert res.returncode == 0, res.stderr
    settle(store)
    rdir = store / "p" / "runs" / "k"
    files = [p for p in rdir.rglob("*") if p.is_file()]
    blobs = sorted(p.name for p in (rdir / "segments").glob("*.blob"))
    segments = list((rdir / "segments").glob("*.parquet"))
    assert len(segments) >= 2 and len(blobs) == len(segments), (blobs, segments)
    assert not list((rdir / "wal").glob("*.blob"))
    assert len(files) <= 10 + 2 * len(segments), sorted(str(p) for p in files)
    items = localtrack.Api(store).run("p/k").media("img")
    assert [s for s, _ in items] == list(range(1000))
    assert all(np.asarray(im)[0, 0, 0] == s % 256 for s, im in items)


def test_resume_keeps_old_media_and_rewind_hides_archived_media(store: Path) -> None:
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(6):
        run.log({"img": localtrack.Image(np.full((2, 2), i * 10, np.uint8))})
    run.finish()
    run = localtrack.init(project="p", id="r", dir=store, resume="must")
    run.log({"img": localtrack.Image(np.full((2, 2), 60, np.uint8))})
    run.finish()
    values = [(s, int(np.asarray(im)[0, 0])) for s, im in localtrack.Api(store).run("p/r").media("img")]
    assert values == [(s, s * 10) for s in range(7)]
    run = localtrack.init(project="p", dir=store, resume_from="r?_step=3")
    run.log({"img": localtrack.Image(np.full((2, 2), 99, np.uint8))})
    run.finish()
    values = [(s, int(np.asarray(im)[0, 0])) for s, im in localtrack.Api(store).run("p/r").media("img")]
    assert values == [(0, 0), (1, 10), (2, 20), (3, 30), (4, 99)]


def test_a_fork_reads_its_parents_media_before_the_fork_point(store: Path) -> None:
    run = localtrack.init(project="p", id="parent", dir=store)
    for i in range(5):
        run.log({"img": localtrack.Image(np.full((2, 2), i, np.uint8))})
    run.finish()
    fork = localtrack.init(project="p", id="child", dir=store, fork_from="parent?_step=2")
    fork.log({"img": localtrack.Image(np.full((2, 2), 77, np.uint8))})
    fork.finish()
    values = [(s, int(np.asarray(im)[0, 0])) for s, im in localtrack.Api(store).run("p/child").media("img")]
    assert values == [(0, 0), (1, 1), (2, 2), (3, 77)]


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_fsync_policies_store_media(store: Path, fsync: str) -> None:
    run = localtrack.init(project="p", id="f", dir=store, settings={"fsync": fsync})
    run.log({"img": localtrack.Image(HWC)})
    run.finish()
    (_, image), = localtrack.Api(store).run("p/f").media("img")
    assert np.array_equal(np.asarray(image), HWC)


# -- crashes ----------------------------------------------------------------------------------

KILLED = """
import sys, numpy as np, localtrack
run = localtrack.init(project="p", id="w", dir=sys.argv[1], resume="allow")
rng = np.random.default_rng(int(sys.argv[2]))
print("start", flush=True)
for i in range(10**6):
    side = int(rng.integers(1, 40))
    row = {"img": localtrack.Image(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)),
           "x": float(i)}
    if i % 7 == 0:
        row["pair"] = [localtrack.Image(np.full((3, 3), i % 256, np.uint8))] * 2
    run.log(row)
    print(i, flush=True)
"""


def test_sigkill_while_logging_images_keeps_every_acknowledged_item(store: Path) -> None:
    rng = random.Random(20)
    for trial in range(4):
        proc = script(KILLED, str(store), str(trial))
        assert proc.stdout.readline() == b"start\n", proc.stderr.read().decode()
        acked = -1
        lines = rng.randint(20, 400)
        for _ in range(lines):  # the step of every log() that returned
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a torn tail cut
            live = localtrack.Api(store).run("p/w").media("img")
            run = localtrack.init(project="p", id="w", dir=store, resume="must")
        assert run.step > acked
        run.finish()
        settle(store)
        items = localtrack.Api(store).run("p/w").media("img")  # each checked against its crc
        assert [s for s, _ in items][:acked + 1] == list(range(acked + 1)), trial
        assert len(live) >= acked + 1
        pairs = localtrack.Api(store).run("p/w").media("pair")
        assert all(len(p) == 2 for _, p in pairs)


def test_a_row_whose_media_a_power_cut_lost_is_cut_as_a_torn_tail(store: Path) -> None:
    """The blob bytes of the last rows are gone (unsynced pages lost), the rows are there: the
    next writer cuts the log at the first such row, keeps a .broken copy, and carries on."""
    run = localtrack.init(project="p", id="t", dir=store, settings={"fsync": "never"})
    for i in range(10):
        run.log({"img": localtrack.Image(np.full((4, 4), i, np.uint8))})
    run._drop()  # killed: nothing more written or synced
    rdir = store / "p" / "runs" / "t"
    blob = rdir / "wal" / _blobs.name(0)
    os.truncate(blob, 16 * 6 + 5)  # items 0..5 whole, 6 torn, 7..9 lost
    with pytest.warns(RuntimeWarning, match="torn tail"):
        run = localtrack.init(project="p", id="t", dir=store, resume="must")
    assert run.step == 6
    run.log({"img": localtrack.Image(np.full((4, 4), 66, np.uint8))})
    run.finish()
    values = [(s, int(np.asarray(im)[0, 0])) for s, im in localtrack.Api(store).run("p/t").media("img")]
    assert values == [(s, s) for s in range(6)] + [(6, 66)]
    assert (rdir / "wal" / "00000000.jsonl.broken").exists()


def test_a_row_whose_mask_a_power_cut_lost_is_cut_though_its_image_is_whole(store: Path) -> None:
    """A mask is an item of its own, written before its image: a power cut may keep the
    image's page and lose the mask's (pages are not persisted in order). The row is a torn
    tail as when the image itself is lost."""
    run = localtrack.init(project="p", id="k", dir=store, settings={"fsync": "never"})
    mask = np.ones((4, 4), np.uint8)
    for i in range(4):
        run.log({"img": localtrack.Image(np.full((4, 4), i, np.uint8),
                                         masks={"m": {"mask_data": mask * i}})})
    run._drop()
    rdir = store / "p" / "runs" / "k"
    blob = rdir / "wal" / _blobs.name(0)
    data = bytearray(blob.read_bytes())
    assert len(data) == 4 * 32  # per row: the mask (16 bytes), then the image (16 bytes)
    data[2 * 32:2 * 32 + 16] = bytes(16)  # row 2's mask reads as zeros, its image is whole
    blob.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="torn tail"):
        run = localtrack.init(project="p", id="k", dir=store, resume="must")
    assert run.step == 2
    run.finish()
    read = localtrack.Api(store).run("p/k").media("img")
    assert [(s, int(im.masks["m"]["mask_data"][0, 0])) for s, im in read] == [(0, 0), (1, 1)]


def test_a_damaged_item_is_a_corrupt_run_error_naming_the_run(store: Path) -> None:
    run = localtrack.init(project="p", id="c", dir=store)
    run.log({"img": localtrack.Image(HWC)})
    run.finish()
    blob = store / "p" / "runs" / "c" / "wal" / _blobs.name(0)
    data = bytearray(blob.read_bytes())
    data[5] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(localtrack.errors.CorruptRunError, match="run 'p/c'.*checksum"):
        localtrack.Api(store).run("p/c").media("img")


def test_a_sealer_that_died_after_moving_a_blob_is_undone(store: Path, monkeypatch) -> None:
    """The blob went to segments/ but the manifest never named the log's segment: the next
    writer moves it back beside its log, and the media read back."""
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", str(1 << 40))
    run = localtrack.init(project="p", id="s", dir=store)
    run.log({"img": localtrack.Image(HWC)})
    run.finish()
    rdir = store / "p" / "runs" / "s"
    (rdir / "segments").mkdir()
    os.rename(rdir / "wal" / _blobs.name(0), rdir / "segments" / _blobs.name(0))
    assert len(localtrack.Api(store).run("p/s").media("img")) == 1  # readers look in both
    run = localtrack.init(project="p", id="s", dir=store, resume="must")
    assert (rdir / "wal" / _blobs.name(0)).exists()
    run.log({"img": localtrack.Image(HWC[::-1])})
    run.finish()
    images = [np.asarray(im) for _, im in localtrack.Api(store).run("p/s").media("img")]
    assert len(images) == 2 and np.array_equal(images[1], HWC[::-1])


# -- hostile values ---------------------------------------------------------------------------


def _empty_file(tmp: Path) -> str:
    (tmp / "empty.png").write_bytes(b"")
    return str(tmp / "empty.png")


def _not_an_image(tmp: Path) -> str:
    (tmp / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return str(tmp / "x.png")


def _png(folder: Path, array: Any) -> str:
    from PIL import Image as PILImage

    PILImage.fromarray(array).save(folder / "m.png")
    return str(folder / "m.png")


def _file(folder: Path, data: bytes) -> str:
    (folder / "f.png").write_bytes(data)
    return str(folder / "f.png")


def _boxes(position: dict[str, Any], **box: Any) -> dict[str, Any]:
    return {"predictions": {"box_data": [{"position": position, **box}]}}


HOSTILE = [
    pytest.param(lambda t: localtrack.Image(_empty_file(t)), "empty", id="image-0-byte-file"),
    pytest.param(lambda t: localtrack.Image(np.zeros((0, 4, 3), np.uint8)), "empty",
                 id="image-empty-array"),
    pytest.param(lambda t: localtrack.Image(np.zeros((5, 5, 7), np.uint8)), "channel",
                 id="image-7-channels"),
    pytest.param(lambda t: localtrack.Image(np.zeros((2, 4, 4, 3), np.uint8)), "dimensions",
                 id="image-4d"),
    pytest.param(lambda t: localtrack.Image(np.array([["a"]])), "numbers", id="image-strings"),
    pytest.param(lambda t: localtrack.Image(np.full((4, 4), np.nan)), "NaN", id="image-nan"),
    pytest.param(lambda t: localtrack.Image(str(t / "nope.png")), "does not exist",
                 id="image-missing-file"),
    pytest.param(lambda t: localtrack.Image(_not_an_image(t)), "cannot be read",
                 id="image-garbage-file"),
    pytest.param(lambda t: localtrack.Image(42), "numpy array", id="image-a-number"),
    pytest.param(lambda t: localtrack.Audio(np.zeros(10)), "sample_rate", id="audio-no-rate"),
    pytest.param(lambda t: localtrack.Audio(np.zeros((2, 2, 2)), sample_rate=8000), "shape",
                 id="audio-3d"),
    pytest.param(lambda t: localtrack.Audio(np.array([np.inf]), sample_rate=8000), "NaN",
                 id="audio-inf"),
    pytest.param(lambda t: localtrack.Video(np.zeros((4, 4), np.uint8)), "4 dimensions",
                 id="video-2d"),
    pytest.param(lambda t: localtrack.Html(b"\xff\xfe"), "takes a str", id="html-bytes"),
    pytest.param(lambda t: localtrack.Table(columns=["a"], data=[[object()]]), "table cell",
                 id="table-object-cell"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=_boxes({"minX": 0.5, "maxX": 0.1,
                                                               "minY": 0, "maxY": 1})),
                 "minX <= maxX", id="box-min-above-max"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=_boxes({"minX": float("nan"), "maxX": 1,
                                                               "minY": 0, "maxY": 1})),
                 "finite", id="box-nan"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=_boxes({"middle": [1], "width": 1,
                                                               "height": 1})),
                 "'middle' as [x, y]", id="box-middle-one-number"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=_boxes({"middle": [1, 1], "width": -1,
                                                               "height": 1})),
                 ">= 0", id="box-negative-width"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes={"p": {"box_data": [{"class_id": 1}]}}),
                 "'position'", id="box-no-position"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=_boxes({"minX": 0, "maxX": 1, "minY": 0,
                                                               "maxY": 1}, domain="percent")),
                 "domain", id="box-bad-domain"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=_boxes({"minX": 0, "maxX": 1, "minY": 0,
                                                               "maxY": 1}, class_id="cat")),
                 "class_id", id="box-class-id-str"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes={"p": {"box_data": [],
                                                             "class_labels": {"cat": 1}}}),
                 "map ints to strings", id="box-class-labels-reversed"),
    pytest.param(lambda t: localtrack.Image(HWC, boxes=[1, 2]), "dict of box groups",
                 id="boxes-a-list"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"mask_data": np.zeros((20, 12))}}),
                 "shape (20, 12), the image is 12x20", id="mask-transposed"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"mask_data": np.full((12, 20), 256)}}),
                 "ints from 0 to 255", id="mask-256"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"mask_data": np.zeros((12, 20))}}),
                 "ints from 0 to 255", id="mask-floats"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"class_labels": {1: "a"}}}),
                 "'mask_data'", id="mask-neither-data-nor-path"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"path": str(t / "none.png")}}),
                 "does not exist", id="mask-path-missing"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"path": _png(t, HWC)}}),
                 "has 3 channels", id="mask-path-rgb"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"path": _png(t, HWC[:6, :, 0])}}),
                 "shape (6, 20), the image is 12x20", id="mask-path-wrong-size"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"path": _file(t, b"not a png")}}),
                 "cannot be read as an image", id="mask-path-not-an-image"),
    pytest.param(lambda t: localtrack.Image(HWC, masks={"m": {"path": 7}}),
                 "'path' must be a file path", id="mask-path-a-number"),
    pytest.param(lambda t: localtrack.Object3D(np.zeros((3, 3))), "not stored", id="object3d"),
    pytest.param(lambda t: localtrack.Molecule("x.pdb"), "not stored", id="molecule"),
]


@pytest.mark.parametrize("make, words", HOSTILE)
def test_hostile_values_raise_naming_key_and_run_and_store_nothing(
        store: Path, tmp_path: Path, make, words: str) -> None:
    run = localtrack.init(project="p", id="h", dir=store)
    run.log({"img": localtrack.Image(HWC), "x": 1.0})
    blob = store / "p" / "runs" / "h" / "wal" / _blobs.name(0)
    size = blob.stat().st_size
    with pytest.raises((InvalidValueError, UnsupportedTypeError)) as info:
        run.log({"x": 2.0, "ok": localtrack.Image(HWC), "bad": make(tmp_path)})
    assert "'bad'" in str(info.value) and "'h'" in str(info.value) and words in str(info.value)
    assert blob.stat().st_size == size  # nothing stored for the refused row, not even "ok"
    run.log({"x": 3.0})
    run.finish()
    api = localtrack.Api(store).run("p/h")
    assert api.history_table(["x"]).column("x").to_pylist() == [1.0, 3.0]
    assert len(api.media("img")) == 1 and api.media("ok") == []


@pytest.mark.parametrize("make, words", [
    pytest.param(lambda: localtrack.Table(columns=["a", "b"], data=[[1, 2], [3]]), "a row of 1",
                 id="table-ragged"),
    pytest.param(lambda: localtrack.Table(columns=["a", "a"]), "distinct", id="table-same-column"),
    pytest.param(lambda: localtrack.Table(columns=["a"], data=[[1]]).add_column("b", [1, 2]),
                 "2 values for 1 rows", id="table-column-length"),
    pytest.param(lambda: localtrack.Video(np.zeros((1, 3, 4, 4)), format="mp4"), "pip install av",
                 id="video-mp4-from-array"),
])
def test_values_refused_when_made(make, words: str) -> None:
    with pytest.raises((InvalidValueError, UnsupportedTypeError), match=words):
        make()


def test_media_are_refused_in_config_and_summary(store: Path) -> None:
    run = localtrack.init(project="p", id="z", dir=store)
    with pytest.raises(UnsupportedTypeError):
        run.summary["img"] = localtrack.Image(HWC)
    run.finish()


def test_blob_items_carry_their_checksum(store: Path) -> None:
    """Items are checked by XXH3-64 (its low 63 bits): the run is format 5 from its first one,
    and only then (a run without media stays format 3, readable by older versions)."""
    import json

    import xxhash

    plain = localtrack.init(project="p", id="plain", dir=store)
    plain.log({"x": 1.0})
    plain.finish()
    run = localtrack.init(project="p", id="q", dir=store)
    run.log({"x": 1.0})
    assert json.loads((store / "p" / "runs" / "q" / "run.json").read_text())["format"] == 3
    run.log({"a": localtrack.Html("<i>x</i>"), "img": localtrack.Image(HWC)})
    run.name = "renamed"  # run.json rewritten from what init() read: the format stays
    run.finish()
    meta = json.loads((store / "p" / "runs" / "q" / "run.json").read_text())
    assert meta["format"] == 5 and meta["name"] == "renamed"
    assert json.loads((store / "p" / "runs" / "plain" / "run.json").read_text())["format"] == 3
    row = localtrack.Api(store).run("p/q").history_table(["a", "img"]).to_pylist()[1]
    data = (store / "p" / "runs" / "q" / "wal" / _blobs.name(0)).read_bytes()
    ref = row["a"][_blobs.TAG]
    assert data[ref["off"]:ref["off"] + ref["len"]] == b"<i>x</i>"
    assert ref["xxh"] == xxhash.xxh3_64_intdigest(b"<i>x</i>") & (2**63 - 1)
    ref = row["img"][_blobs.TAG]  # written from the array's buffer: the same bytes
    assert data[ref["off"]:ref["off"] + ref["len"]] == HWC.tobytes()
    assert ref["xxh"] == xxhash.xxh3_64_intdigest(HWC.tobytes()) & (2**63 - 1)
    assert "crc" not in ref


def test_an_older_reader_is_told_a_run_with_media_is_newer(store: Path) -> None:
    """A localtrack that knows only format 4 would take XXH3-checked items for damaged ones
    (and cut their rows when repairing): it refuses the run instead."""
    run = localtrack.init(project="p", id="m", dir=store)
    run.log({"img": localtrack.Image(HWC)})
    run.finish()
    [said] = read_as_older(store, 4, "p/m")
    assert "uses format 5, newer than this localtrack understands (4)" in said


def test_items_of_an_older_format_read_beside_new_ones(store: Path, monkeypatch) -> None:
    """A format 3 run whose items carry CRC-32 (as localtrack wrote them before format 5),
    resumed by this version: old and new items read back, unsealed and sealed (where the
    Parquet column holds both members, each null where the other is set)."""
    import json

    from localtrack import _frames

    run = localtrack.init(project="p", id="o", dir=store)
    run.finish()
    rdir = store / "p" / "runs" / "o"
    meta = json.loads((rdir / "run.json").read_text())
    (rdir / "run.json").write_text(json.dumps({**meta, "format": 3}))
    item = b"<i>old</i>"
    (rdir / "wal" / _blobs.name(0)).write_bytes(item)
    ref = {"type": "html", "fmt": "html", "log": 0, "off": 0, "len": len(item),
           "crc": zlib.crc32(item)}
    (rdir / "wal" / "00000000.jsonl").write_bytes(_frames.frame(
        {"a": {_blobs.TAG: ref}, "_step": 0, "_timestamp": 1.0}))
    again = localtrack.init(project="p", id="o", resume="must", dir=store)
    again.log({"a": localtrack.Html("<i>new</i>")})
    again.finish()
    assert json.loads((rdir / "run.json").read_text())["format"] == 5

    def html() -> list[str]:
        return [str(v) for _, v in localtrack.Api(store).run("p/o").media("a")]
    assert html() == ["<i>old</i>", "<i>new</i>"]
    settle(store)
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "1")
    localtrack.init(project="p", id="o", resume="must", dir=store).finish()
    settle(store)
    assert json.loads((rdir / "manifest.json").read_text())["segments"], "not sealed"
    assert html() == ["<i>old</i>", "<i>new</i>"]


def test_blob_space_reserved_ahead_is_given_back(store: Path, monkeypatch) -> None:
    """Blocks reserved past a blob log's end (so an image's write() allocates nothing) never
    show in its size, and are given back when the writer closes it or, for a killed writer's
    file, when the sealer seals it."""
    def allocated(path: Path) -> int:
        return os.stat(path).st_blocks * 512

    code = """
import os, signal, sys, localtrack, numpy as np
run = localtrack.init(project="p", id=sys.argv[2], dir=sys.argv[1])
run.log({"img": localtrack.Image(np.zeros((64, 64, 3), np.uint8))})
print(os.stat(run.dir + "/wal/00000000.blob").st_blocks * 512, flush=True)
if sys.argv[3] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
run.finish()
"""
    for rid, how in (("closed", "finish"), ("killed", "kill")):
        res = run_script(code, str(store), rid, how)
        assert int(res.stdout.split()[0]) >= 1 << 20, res  # reserved while the run logs
        blob = store / "p" / "runs" / rid / "wal" / _blobs.name(0)
        assert blob.stat().st_size == 64 * 64 * 3  # no padding: readers see the items only
        if how == "finish":
            assert allocated(blob) < 1 << 16
    killed = store / "p" / "runs" / "killed" / "wal" / _blobs.name(0)
    assert allocated(killed) >= 1 << 20  # a killed writer gave nothing back
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "1")
    localtrack.init(project="p", id="killed", resume="must", dir=store).finish()
    settle(store)
    sealed = store / "p" / "runs" / "killed" / "segments" / _blobs.name(0)
    assert sealed.stat().st_size == 64 * 64 * 3 and allocated(sealed) < 1 << 16
    assert len(localtrack.Api(store).run("p/killed").media("img")) == 1


@pytest.mark.parametrize("member", ["xxh", "crc"])
def test_an_item_is_read_and_a_damaged_one_refused(tmp_path: Path, member: str) -> None:
    """An item reads when its checksum (format 5's `xxh`, or `crc`, CRC-32, before) matches;
    a flipped byte or a shifted offset fails it; a reference with no checksum is refused."""
    item = bytes(range(256)) * 40
    path = tmp_path / _blobs.name(0)
    path.write_bytes(b"junk" + item)
    ref = {"off": 4, "len": len(item),
           **(_blobs.digest(item) if member == "xxh" else {"crc": zlib.crc32(item)})}
    assert set(ref) == {"off", "len", member}
    assert _blobs.read(path, ref) == item
    with pytest.raises(ValueError, match="fails its checksum"):
        _blobs.read(path, {**ref, "off": 3})
    damaged = bytearray(b"junk" + item)
    damaged[100] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="fails its checksum"):
        _blobs.read(path, ref)
    with pytest.raises(ValueError, match="fails its checksum"):
        _blobs.read(path, {"off": 4, "len": len(item)})


def test_sync_clean_removes_a_run_once_its_media_are_on_the_remote(store: Path, tmp_path: Path) -> None:
    """Sync uploads blob logs (issue 20): --clean deletes the local copy, the remote keeps the media."""
    run = localtrack.init(project="p", id="sc", dir=store)
    run.log({"img": localtrack.Image(HWC), "x": 1.0})
    local = localtrack.Api(store).run("p/sc").media("img")
    run.finish()
    settle(store)
    report = localtrack.sync(tmp_path / "remote", dir=store, clean=True)
    assert report.cleaned == ["p/sc"]
    remote = localtrack.Api(tmp_path / "remote").run("p/sc").media("img")
    assert [(s, i.tobytes()) for s, i in remote] == [(s, i.tobytes()) for s, i in local]


def test_doctor_finds_and_fixes_a_row_whose_media_were_lost(store: Path) -> None:
    from localtrack import _doctor

    run = localtrack.init(project="p", id="d", dir=store, settings={"fsync": "never"})
    for i in range(4):
        run.log({"img": localtrack.Image(np.full((4, 4), i, np.uint8))})
    run._drop()
    os.truncate(store / "p" / "runs" / "d" / "wal" / _blobs.name(0), 16 * 2)
    found = _doctor.check_store(store)
    assert any("refers to media" in f.problem for f in found), found
    _doctor.check_store(store, fix=True)
    assert not _doctor.check_store(store)
    assert [s for s, _ in localtrack.Api(store).run("p/d").media("img")] == [0, 1]


# A writer from before issue 20's defaults (27f6185): class_labels not given were stored as {}.
OLD_WRITER = """
import sys, json, numpy as np, localtrack
from localtrack import _richmedia
given = _richmedia._class_labels
_richmedia._class_labels = lambda labels, *a: {} if labels is None else given(labels, *a)
img = np.zeros((6, 8, 3), np.uint8)
mask = np.zeros((6, 8), np.uint8); mask[:, 4:] = 5
box = lambda c: {"position": {"minX": 0, "maxX": 1, "minY": 0, "maxY": 1}, "class_id": c}
boxes = {"bare": {"box_data": [box(3), box(1), box(3), {"position": box(0)["position"]}]},
         "named": {"box_data": [box(2), box(9)], "class_labels": {2: "dog"}}}
masks = {"bare": {"mask_data": mask}, "named": {"mask_data": mask, "class_labels": {5: "road"}}}
run = localtrack.init(project="p", id="old", dir=sys.argv[1])
image = localtrack.Image(img, boxes=boxes, masks=masks)
run.log({"im": image, "t": localtrack.Table(columns=["im"], data=[[image]])})
run.finish()
"""


@pytest.mark.parametrize("seal", [False, True], ids=["live-log", "sealed"])
def test_labels_of_a_run_written_with_empty_class_labels(tmp_path: Path, seal: bool) -> None:
    """Boxes and masks stored with ``{}`` class labels (no class_labels given, written before
    the writer stored W&B's defaults) read back with those defaults, ``class_<id>`` for the
    ids present, as the dashboard labels them; labels that were given are kept as given."""
    store = tmp_path / "store"
    env = {"LOCALTRACK_SEAL_MIN_BYTES": "0" if seal else str(1 << 40)}
    done = run_script(OLD_WRITER, str(store), env=env)
    assert done.returncode == 0, done.stderr
    settle(store)
    run = localtrack.Api(store).run("p/old")
    tag = run.history_table(["im"]).to_pylist()[0]["im"][_blobs.TAG]
    assert '"class_labels":{}' in tag["boxes"] and '"class_labels":{}' in tag["masks"]  # the old way
    (_, image), = run.media("im")
    (_, table), = run.media("t")
    for read in (image, table.data[0][0]):
        assert read.boxes["bare"]["class_labels"] == {1: "class_1", 3: "class_3"}
        assert read.boxes["named"]["class_labels"] == {2: "dog"}
        assert read.masks["bare"]["class_labels"] == {0: "class_0", 5: "class_5"}
        assert read.masks["named"]["class_labels"] == {5: "road"}


@pytest.mark.parametrize("fields", [
    pytest.param({"masks": "{not json"}, id="masks-not-json"),
    pytest.param({"masks": '{"m": {"mask": 1, "class_labels": {}}}'}, id="mask-not-a-reference"),
    pytest.param({"masks": '{"m": {"class_labels": {}}}'}, id="mask-missing"),
    pytest.param({"masks": 7}, id="masks-a-number"),
    pytest.param({"boxes": '{"p": {"box_data": [], "class_labels": {"cat": "x"}}}'},
                 id="box-label-not-an-int"),
    pytest.param({"masks": '{"m": {"mask": {"$m": {"type": "mask", "w": 2, "h": 2, "log": 0, '
                           '"off": 0, "len": 1}}, "class_labels": {}}}'}, id="mask-unchecked"),
])
def test_a_damaged_image_tag_is_a_corrupt_run_error(store: Path, fields: dict[str, Any]) -> None:
    """The tag's boxes and masks come from the store: anything wrong in them is reported as a
    damaged run, never as a raw exception."""
    from localtrack._mediaread import _decode

    rdir = store / "p" / "runs" / "d"
    (rdir / "wal").mkdir(parents=True)
    (rdir / "wal" / _blobs.name(0)).write_bytes(b"\x07")
    ref = {"type": "image", "fmt": "raw", "w": 1, "h": 1, "c": 1, "log": 0, "off": 0, "len": 1,
           "crc": zlib.crc32(b"\x07"), **fields}
    assert _decode(rdir, {k: v for k, v in ref.items() if k not in fields}, {}, False).masks == {}
    with pytest.raises(localtrack.errors.CorruptRunError):
        _decode(rdir, ref, {"project": "p", "run_id": "d"}, False)
