"""Media read from a synced copy cost few requests (issue 20): counted at the loopback S3
server (every HTTP request it serves), the reads themselves real.

The items one media() call wants are read blob by blob with their ranges merged; a sealed
blob's handle and the items read stay with the remote; a live blob is listed afresh by every
call, so items logged and synced since the last read are there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import localtrack

from . import s3server
from .helpers import settle

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
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(N):
        run.log({"img": _image(i), "x": float(i)})
        if i % 20 == 19:
            localtrack.sync(uri, dir=store)  # (a live blob goes up as a folder of chunks)
    if state == "sealed":
        run.finish()
        settle(store)
    assert localtrack.sync(uri, dir=store).ok
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
    assert not [r for r in s3.requests if ".blob" in r[1]]  # (the items: read before)
    if state == "sealed":  # the manifest (twice) and a listing of wal/ a call, no segment
        assert len(s3.requests) == 5 * N, s3.requests[:10]
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
