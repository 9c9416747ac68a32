"""Media read from a synced copy cost few requests (issue 20): counted at the loopback S3
server (every HTTP request it serves), the reads themselves real.

The items one media() call wants are read blob by blob with their ranges merged; a sealed
blob's handle and the items read stay with the remote; the run folder is listed by every
call (one request: the history's version, see _remotesnap), so what was logged and synced
since the last read is there, and the history is read again only when the listing changed.
One image at a time, through ApiRun.media or the dashboard's item route, costs that listing
and the image's bytes."""

from __future__ import annotations

import io
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs

import numpy as np
import pytest

import localtrack
from localtrack._ui import make_server

from . import s3server
from .helpers import settle
from .test_ui_server import get, get_json

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures

N = 60


def _image(i: int) -> localtrack.Image:
    noise = np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)
    return localtrack.Image(noise, caption=f"c{i}")


def _pixels(items: list[tuple[int, object]]) -> list[tuple[int, bytes]]:
    return [(step, image.tobytes()) for step, image in items]  # type: ignore[attr-defined]


def _blob_requests(server: s3server.S3Server) -> list[tuple[str, str, str | None]]:
    """The requests for blob objects and their chunks (HEAD, ranged GET) or listing them."""
    return [r for r in server.requests if ".blob" in r[1]]


def _kind(request: tuple[str, str, str | None]) -> str:
    """``listing``: of the run folder, whole (the history's version); ``bytes``: a ranged GET
    of a blob or of one of its chunks (an item); ``lookup``: a HEAD of one, or a listing of a
    live blob's chunks; ``other``: anything else (the manifest, a log, a segment, run.json)."""
    method, path, ranged = request
    query = parse_qs(path.partition("?")[2])
    if query.get("list-type") and query.get("prefix") == ["team/p/runs/r/"] and "delimiter" not in query:
        return "listing"
    if ".blob" in path:
        return "bytes" if method == "GET" and ranged else "lookup"
    return "other"


def _per_image(server: s3server.S3Server, images: int, blobs: int, state: str) -> Counter[str]:
    """The requests since the last clear, by kind, checked against what reading ``images``
    images one at a time may cost: a listing and the image's bytes each (a live blob's item
    may straddle two chunks), and a lookup of each blob or chunk at most once."""
    kinds = Counter(_kind(r) for r in server.requests)
    lookups = [r[:2] for r in server.requests if _kind(r) == "lookup"]
    assert kinds["other"] == 0, [r for r in server.requests if _kind(r) == "other"][:10]
    assert kinds["listing"] == images, kinds  # one freshness check an image
    assert images <= kinds["bytes"] <= images * (1 if state == "sealed" else 2), kinds
    assert len(lookups) == len(set(lookups)), lookups  # (handles and listings kept)
    if state == "sealed":
        assert kinds["lookup"] <= blobs and sum(kinds.values()) <= 2 * images + blobs, kinds
    return kinds


def _make(tmp_path: Path, uri: str, state: str, images: int = N) -> localtrack.Run:
    """A run of ``images`` images in several blob logs, synced to ``uri`` three times while it
    logs; "sealed": finished and sealed, then synced; "live": still open (returned)."""
    store = tmp_path / "store"
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(images):
        run.log({"img": _image(i), "x": float(i)})
        if i % (images // 3) == images // 3 - 1:
            localtrack.sync(uri, dir=store)  # (a live blob goes up as a folder of chunks)
    if state == "sealed":
        run.finish()
        settle(store)
    assert localtrack.sync(uri, dir=store).ok
    return run


class _Dashboard:
    """The dashboard over a remote store, served in this process on a free port once its
    warm-up (which reads every run) is over, so the requests counted are the routes' own."""

    def __init__(self, uri: str) -> None:
        self.server = make_server(uri, port=0)
        for thread in threading.enumerate():
            if thread.name == "localtrack-ui-warmup":
                thread.join(timeout=120)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = self.server.url

    def item(self, step: int) -> bytes:
        """The pixels of the image at ``step``, as the page gets it (a PNG)."""
        from PIL import Image

        status, headers, body = get(self.url, "/api/media/item", path="p/r", key="img", step=step)
        assert status == 200 and headers["content-type"] == "image/png", body
        return Image.open(io.BytesIO(body)).convert("RGB").tobytes()

    def steps(self) -> list[int]:
        media = get_json(self.url, "/api/media", path="p/r")["media"]
        return next(m["steps"] for m in media if m["key"] == "img")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=30)


@pytest.mark.parametrize("state", ["sealed", "live"])
def test_n_items_cost_a_bounded_number_of_requests(tmp_path: Path, s3: s3server.S3Server,
                                                   state: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """60 images in several blob logs: reading them all costs a few requests a blob (it cost ~5 an
    item: a listing, a lookup of wal/, a listing, a HEAD and a GET), and gives what the local
    read gives; read again through the same Api, the items cost no request; a fresh Api
    pays the first cost again."""
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "4000")  # the logs rotate: several blobs
    store = tmp_path / "store"
    uri = s3.uri(s3.new_bucket())
    run = _make(tmp_path, uri, state)
    rdir = store / "p" / "runs" / "r"
    blobs = {p.name for p in rdir.rglob("*.blob")}
    assert 3 <= len(blobs) <= 8, blobs
    want = _pixels(localtrack.Api(store).run("p/r").media("img"))
    assert len(want) == N

    s3.requests.clear()
    api_run = localtrack.Api(uri).run("p/r")
    assert _pixels(api_run.media("img")) == want
    first = _blob_requests(s3)
    assert len(first) <= 4 * len(blobs) < N, first  # (before: ~5 * N)
    assert len(s3.requests) < N, s3.requests

    s3.requests.clear()
    assert _pixels(api_run.media("img", steps=[7, 33])) == [want[7], want[33]]
    again = [r for r in s3.requests if ".blob" in r[1] or ".parquet" in r[1]]
    assert again == [], again  # read before: from the remote's cache, checked then
    s3.requests.clear()  # as the dashboard asks: one call per item, each reading the history
    assert _pixels([api_run.media("img", steps=[s])[0] for s in range(N)]) == want
    # The items were read before; the history is the one read before: a listing a call (it
    # was the manifest twice and a listing of wal/, and a live run's logs again).
    assert [_kind(r) for r in s3.requests] == ["listing"] * N, s3.requests[:10]
    s3.requests.clear()
    assert _pixels(localtrack.Api(uri).run("p/r").media("img")) == want
    assert len(_blob_requests(s3)) == len(first)
    if state == "live":
        run.finish()


@pytest.mark.parametrize("remote", ["s3", "dir"])
def test_a_live_blob_that_grew_is_read_fresh(tmp_path: Path, remote: str,
                                             request: pytest.FixtureRequest) -> None:
    """A live run read through one Api, then logging and synced more: the next read has the new
    items (the live blob's length is never cached), and every item equals the local one."""
    store = tmp_path / "store"
    if remote == "s3":
        server = request.getfixturevalue("s3")
        uri = server.uri(server.new_bucket())
    else:
        uri = str(tmp_path / "remote")
    run = localtrack.init(project="p", id="r", dir=store)
    for round_ in range(3):
        for i in range(round_ * 15, round_ * 15 + 15):
            run.log({"img": _image(i)})
        assert localtrack.sync(uri, dir=store).ok
        if round_ == 0:
            api_run = localtrack.Api(uri).run("p/r")  # one Api for every read below
        want = _pixels(localtrack.Api(store).run("p/r").media("img"))
        assert len(want) == 15 * (round_ + 1)
        assert _pixels(api_run.media("img")) == want
        assert _pixels(api_run.media("img", steps=[want[-1][0]])) == want[-1:]
    run.finish()
    settle(store)
    assert localtrack.sync(uri, dir=store).ok
    assert _pixels(api_run.media("img")) == want  # now from the sealed blob


@pytest.mark.parametrize("state", ["sealed", "live"])
@pytest.mark.parametrize("via", ["api", "dashboard"])
def test_one_image_at_a_time_costs_a_listing_and_its_bytes(tmp_path: Path, s3: s3server.S3Server,
                                                          state: str, via: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Images read one at a time, as the dashboard's slider asks, through ApiRun.media or the
    dashboard's item route: once the first is read, each costs a listing of the run folder and
    its bytes (a GET), and each blob is looked up once (it was ~6 an image through the API, 16
    through the dashboard, which made the run and read the key's history for each); each
    equals the local read."""
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    monkeypatch.setenv("LOCALTRACK_ROTATE_BYTES", "4000")
    uri = s3.uri(s3.new_bucket())
    run = _make(tmp_path, uri, state)
    rdir = tmp_path / "store" / "p" / "runs" / "r"
    blobs = len({p.name for p in rdir.rglob("*.blob")})
    want = _pixels(localtrack.Api(tmp_path / "store").run("p/r").media("img"))
    if via == "api":
        api_run = localtrack.Api(uri).run("p/r")

        def read(step: int) -> bytes:
            (at, image), = api_run.media("img", steps=[step])
            assert at == step
            return bytes(image.tobytes())
    else:
        ui = _Dashboard(uri)
        assert ui.steps() == list(range(N))  # (the run page's first request)
        read = ui.item
    try:
        assert read(0) == want[0][1]  # (the first: the run's segments, a blob's lookup)
        s3.requests.clear()
        assert [read(step) for step in range(1, N)] == [image for _, image in want[1:]]
        _per_image(s3, N - 1, blobs, state)
        s3.requests.clear()  # again: the items were read, a listing each
        assert [read(step) for step in (5, 1, 5)] == [want[5][1], want[1][1], want[5][1]]
        assert [_kind(r) for r in s3.requests] == ["listing"] * 3, s3.requests
    finally:
        if via == "dashboard":
            ui.close()
        if state == "live":
            run.finish()


@pytest.mark.parametrize("change", ["grown", "resumed", "rewound"])
def test_new_steps_synced_since_the_last_read_are_shown(tmp_path: Path, s3: s3server.S3Server,
                                                        change: str) -> None:
    """One Api and one dashboard read a synced run, then it changes and is synced again:
    "grown", a live run logs more (its live blob grows); "resumed", a finished run is resumed
    and logs more; "rewound", it is resumed rewound to step 9 (the rows after it archived)
    and logs more (steps 10..19 again, other images). The next reads, through the same Api and
    dashboard, give what the local read gives (the listing differs, so the history is read
    again)."""
    store = tmp_path / "store"
    uri = s3.uri(s3.new_bucket())
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(20):
        run.log({"img": _image(i)})
    if change != "grown":
        run.finish()
        settle(store)
    assert localtrack.sync(uri, dir=store).ok
    api_run = localtrack.Api(uri).run("p/r")
    ui = _Dashboard(uri)
    try:
        before = _pixels(localtrack.Api(store).run("p/r").media("img"))
        assert _pixels(api_run.media("img")) == before
        assert ui.steps() == list(range(20))
        assert [ui.item(step) for step in range(20)] == [image for _, image in before]
        if change == "resumed":
            run = localtrack.init(project="p", id="r", dir=store, resume="must")
        elif change == "rewound":
            run = localtrack.init(project="p", dir=store, resume_from="r?_step=9")
        for i in range(100, 110):
            run.log({"img": _image(i)})
        if change != "grown":
            run.finish()
            settle(store)
        assert localtrack.sync(uri, dir=store).ok
        want = _pixels(localtrack.Api(store).run("p/r").media("img"))
        steps = [step for step, _ in want]
        assert steps == (list(range(10)) if change == "rewound" else list(range(20))) + \
            list(range(steps[-1] - 9, steps[-1] + 1))
        assert _pixels(api_run.media("img")) == want
        assert _pixels(api_run.media("img", steps=[steps[-1]])) == want[-1:]
        assert ui.steps() == steps
        assert [ui.item(step) for step in steps] == [image for _, image in want]
        if change == "rewound":  # steps 10..19 hold other images now
            assert want[10:] != before[10:] and want[:10] == before[:10]
    finally:
        ui.close()
        if change == "grown":
            run.finish()


def test_a_segment_its_manifest_does_not_name_yet_keeps_the_manifest_read(
        tmp_path: Path, s3: s3server.S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sync pass stopped between a segment and the manifest naming it (made here by putting a
    segment the manifest does not name): the next pass may change only the manifest, which a
    listing cannot see within a second at the same size, so while the listing holds such a
    segment every read reads the manifest again; once it is gone (or named), one listing."""
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    uri = s3.uri(s3.new_bucket())
    _make(tmp_path, uri, "sealed", images=6)
    assert (tmp_path / "store" / "p" / "runs" / "r" / "segments" / "00000000.parquet").exists()
    api_run = localtrack.Api(uri).run("p/r")
    want = _pixels(localtrack.Api(tmp_path / "store").run("p/r").media("img"))
    assert _pixels(api_run.media("img")) == want
    fs = s3.filesystem()
    folder = uri.partition("://")[2].partition("?")[0] + "/p/runs/r/segments"
    with fs.open_input_stream(f"{folder}/00000000.parquet") as src, \
            fs.open_output_stream(f"{folder}/00000099.parquet") as dst:
        dst.write(src.read())
    for _ in range(2):
        s3.requests.clear()
        assert _pixels(api_run.media("img", steps=[3])) == want[3:4]
        manifest = [r[0] for r in s3.requests if r[1].endswith("/manifest.json")]
        assert [_kind(r) for r in s3.requests].count("listing") == 1 and manifest, s3.requests
    fs.delete_file(f"{folder}/00000099.parquet")
    assert _pixels(api_run.media("img", steps=[3])) == want[3:4]  # (read again, kept)
    s3.requests.clear()
    assert _pixels(api_run.media("img", steps=[3])) == want[3:4]
    assert [_kind(r) for r in s3.requests] == ["listing"], s3.requests
