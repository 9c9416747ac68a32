"""Media of a synced S3 copy are read by range: an item costs its own bytes, not its blob's.

(Beside the artifact tests: the same remote-reading seam. The bytes are counted at the remote
seam, around the real pyarrow S3 remote on the loopback server.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import localtrack
from localtrack._query import ApiRun
from localtrack._remotes import Entry, Remote, RemotePath, open_remote

from . import s3server
from .helpers import settle

s3_server, s3 = s3server.s3_server, s3server.s3  # the loopback S3 fixtures


class _Counted:
    """A file of the remote whose reads add to the remote's count."""

    def __init__(self, fh: Any, owner: CountingRemote, key: str) -> None:
        self.fh, self.owner, self.key = fh, owner, key

    def seek(self, pos: int, whence: int = 0) -> int:
        return int(self.fh.seek(pos, whence))

    def read(self, n: int = -1) -> bytes:
        data = bytes(self.fh.read(n) if n >= 0 else self.fh.read())
        self.owner.add(self.key, len(data))
        return data

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.fh.close()


class CountingRemote(Remote):
    """The real remote, counting the bytes read from blob logs (``.blob`` objects or chunks)."""

    def __init__(self, inner: Remote) -> None:
        self.inner, self.url, self.blob_bytes = inner, inner.url, 0

    def add(self, key: str, n: int) -> None:
        if ".blob" in key:
            self.blob_bytes += n

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        self.add(key, len(data))
        return data

    def open_input(self, key: str) -> Any:
        fh = self.inner.open_input(key)
        return _Counted(fh, self, key) if ".blob" in key else fh  # (Parquet: pyarrow's own file)

    def put(self, key: str, data: bytes) -> None:
        raise AssertionError("a reader writes nothing")

    def list(self, key: str) -> dict[str, Entry]:
        return self.inner.list(key)

    def info(self, key: str) -> Entry | None:
        return self.inner.info(key)

    def delete(self, key: str) -> None:
        raise AssertionError("a reader deletes nothing")


def _image(i: int) -> localtrack.Image:
    import numpy as np

    noise = np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    return localtrack.Image(noise, caption=f"c{i}")  # noise: PNG keeps it ~12 KB


@pytest.mark.parametrize("state", ["live", "sealed"])
def test_one_item_of_a_synced_blob_costs_its_own_bytes(tmp_path: Path, s3: s3server.S3Server,
                                                       state: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A live run's blob is a folder of chunks on the remote, a finished one's a plain object:
    either way reading step 7's image reads that item's bytes only, and the same image."""
    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    store = tmp_path / "store"
    uri = s3.uri(s3.new_bucket())
    run = localtrack.init(project="p", id="r", dir=store)
    for i in range(20):
        run.log({"img": _image(i)})
        if i in (5, 12):
            localtrack.sync(uri, dir=store)  # the live blob goes up as several chunks
    if state == "sealed":
        run.finish()
        settle(store)
        assert list((store / "p" / "runs" / "r" / "segments").glob("*.blob"))
    assert localtrack.sync(uri, dir=store).ok
    local = localtrack.Api(store).run("p/r")
    (_, want), = local.media("img", steps=[7])
    counting = CountingRemote(open_remote(uri))
    remote_run = ApiRun(RemotePath(counting), "p", "r")  # type: ignore[arg-type]
    (_, got), = remote_run.media("img", steps=[7])
    assert got.tobytes() == want.tobytes()
    blob_dir = store / "p" / "runs" / "r"
    blob_total = sum(p.stat().st_size for p in blob_dir.rglob("*.blob"))
    assert blob_total > 15 * counting.blob_bytes > 0  # one item of 20, not the whole blob
    # Every step read back the same through the ranged reads.
    everything = remote_run.media("img")
    assert [s for s, _ in everything] == list(range(20))
    assert all(g.tobytes() == w.tobytes() for (_, g), (_, w) in zip(everything, local.media("img"),
                                                                     strict=True))
    if state == "live":
        run.finish()


def test_a_damaged_item_on_the_remote_is_a_clear_error(tmp_path: Path, s3: s3server.S3Server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.fs as pafs

    monkeypatch.setenv("LOCALTRACK_SEAL_MIN_BYTES", "0")
    store = tmp_path / "store"
    uri = s3.uri(s3.new_bucket())
    with localtrack.init(project="p", id="r", dir=store) as run:
        for i in range(3):
            run.log({"img": _image(i)})
    settle(store)
    localtrack.sync(uri, dir=store)
    fs = s3.filesystem()
    bucket = uri.split("://", 1)[1].split("/", 1)[0]
    found = fs.get_file_info(pafs.FileSelector(bucket, recursive=True))
    (blob,) = [i.path for i in found if i.path.endswith(".blob") and i.type == pafs.FileType.File]
    with fs.open_input_stream(blob) as fh:
        data = bytearray(fh.read())
    data[len(data) // 2] ^= 0xFF
    with fs.open_output_stream(blob) as fh:
        fh.write(bytes(data))
    with pytest.raises(localtrack.errors.CorruptRunError, match="checksum"):
        localtrack.Api(uri).run("p/r").media("img")
    assert blob.split("/")[-2] == "segments"
    assert os.path.getsize(store / "p" / "runs" / "r" / "segments" / Path(blob).name) == len(data)
