"""A run folder of a synced copy on a remote, read through one listing that stands for its history.

Reading a run's history from a remote cost a listing of ``wal/``, one of each live log, a HEAD
and a GET per chunk and per manifest read, on every read: a dashboard showing one image at a
time paid that for each image. Here one flat listing of the run folder (a request per 1,000
objects) is the history's *version*: the key, size and time of each object it is made of
(``manifest.json``, ``segments/``, ``wal/``, ``events.jsonl/``). What was read under a
version is kept per remote object (an Api's, the dashboard's) and reused while the next
listing shows the same version; when it differs, the manifest is read again, and of the logs
only the chunks not read before (same key, size and time: a log is append-only, a chunk
rewritten longer or merged has another size, a log sync sends again from the start new times).

Why a version does not hide a change once the sync pass that made it is over: sync changes a
run's history only through those objects, and a manifest that gives other rows comes from a
seal or a rewind, whose pass also adds or drops another of them (a seal: its segment before
the manifest, the log folders it covers after; a rewind: its ``rewound`` event), so the next
listing differs even where the manifest kept its size within a second (listings give times in
seconds). A pass stopped between a segment and its manifest would leave the next pass nothing
else to change: the caller does not keep what it read while the listing holds a segment its
manifest does not name (_segments). docs/format.md, "Remote stores", states the rule for sync.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, cast

from ._naming import chunk_offset
from ._remotes import Entry, Lru, PerRemote, RemotePath
from ._remotes._chunks import join

T = TypeVar("T")
Listing = dict[str, Entry]  # object key below the run folder -> its entry
Version = frozenset[tuple[str, int, float]]

_PARTS = ("manifest.json", "segments/", "wal/", "events.jsonl/")  # what the history is made of
_FOLDERS = 64  # run folders kept per remote
_BYTES = 128 << 20  # bytes of logs kept per remote (their chunks, and joined)
_TRIES = 20  # listings while sync moves what one names


class Reader:
    """What a snapshot is read through: the listing taken for it, and the chunks read under
    the version kept before (reused when listed alike)."""

    def __init__(self, rdir: RemotePath, listing: Listing, before: dict[str, tuple[Entry, bytes]]):
        self.rdir = rdir
        self.listing = listing
        self._before = before
        self.chunks: dict[str, tuple[Entry, bytes]] = {}  # what this version's logs were read from

    def names(self, prefix: str) -> set[str]:
        """The names listed right below ``prefix`` (``"wal/"``), files and folders alike."""
        return {key[len(prefix):].partition("/")[0] for key in self.listing if key.startswith(prefix)}

    def get(self, key: str) -> bytes | None:
        """The object's bytes, read now; None when the listing has no such object."""
        return (self.rdir / key).read_bytes() if key in self.listing else None

    def log(self, key: str) -> bytes:
        """The bytes of the log ``key`` (``wal/<seq>.jsonl``): a plain object or its chunks as
        listed (see _remotes._chunks). FileNotFoundError when it is not listed, or when a chunk
        is gone since (merged into a bigger one, or the folder dropped): list again."""
        if key in self.listing:
            return self._chunk(key)
        chunks = [(o, name) for name in self.names(key + "/") if (o := chunk_offset(name)) is not None]
        if not chunks:
            raise FileNotFoundError(f"{self.rdir / key} is not listed")
        return join([(o, self._chunk(f"{key}/{name}")) for o, name in chunks])

    def _chunk(self, key: str) -> bytes:
        entry = self.listing[key]
        before = self._before.get(key)
        data = before[1] if before is not None and before[0] == entry else (self.rdir / key).read_bytes()
        self.chunks[key] = (entry, data)
        return data


class _Kept(NamedTuple):
    version: Version
    value: Any
    chunks: dict[str, tuple[Entry, bytes]]
    size: int


_cache = PerRemote(lambda: Lru[str, _Kept](count=_FOLDERS, size=_BYTES,
                                            size_of=lambda kept: kept.size))


def version(listing: Listing) -> Version:
    return frozenset((key, e.size, e.mtime) for key, e in listing.items() if key.startswith(_PARTS))


def snapshot(rdir: RemotePath, build: Callable[[Reader], tuple[T, bool] | None]) -> T | None:
    """What ``build`` reads of the run folder ``rdir`` through a Reader, or what it read before
    when a new listing shows the same version. ``build`` returns (the value, whether it may be
    kept), or None when what it read did not fit together (list again; so does a
    FileNotFoundError). None when that went on for _TRIES listings."""
    cache = _cache(rdir.remote)
    for _ in range(_TRIES):
        listing = rdir.walk()
        now = version(listing)
        kept = cache.get(rdir.key)
        if kept is not None and kept.version == now:
            return cast(T, kept.value)
        reader = Reader(rdir, listing, kept.chunks if kept is not None else {})
        try:
            built = build(reader)
        except FileNotFoundError:
            continue
        if built is None:
            continue
        value, keep = built
        if keep:
            size = sum(len(data) for _, data in reader.chunks.values())
            cache.put(rdir.key, _Kept(now, value, reader.chunks, 2 * size))  # (the logs joined too)
        else:
            cache.drop(lambda key: key == rdir.key)
        return value
    return None
