"""Media items read from a synced copy on a remote: few requests, each item's bytes once.

An item costs a lookup of its blob, an open (a HEAD on S3) and a ranged read: ~5 requests an
item when each is read on its own. Here the items a ``media()`` call wants are read together:
grouped by blob, their ranges merged where they are adjacent or close (``_GAP``; at most
``_SPAN`` bytes a read), each blob looked up once. What stays, per remote (for the life of the
remote object, i.e. of an ``Api`` and its runs, or the dashboard's): the open handles of
sealed blobs (``segments/<seq>.blob``: written whole once, never changed) and of chunks, the
items read, by their reference (log, offset, length, checksum: a blob is append-only, and an
item at the same place with other bytes has another checksum), and a live blob's chunk
listing (``wal/``, a folder of chunks that sync extends), used only for the bytes it covered:
an item past them lists the folder again. All bounded. Anything unexpected (a chunk merged
away, a blob sealed meanwhile) leaves the item to the one-at-a-time path, which looks again
in the order sync moves blobs (see _mediaread._remote_item).
"""

from __future__ import annotations

import threading
from typing import Any

from . import _blobs
from ._naming import chunk_offset
from ._remotes import Lru, PerRemote, RemotePath

_GAP = 1 << 18  # bytes between two items read rather than ask again (a request costs more)
_SPAN = 16 << 20  # at most this much in one ranged read
_ITEM_BYTES = 64 << 20  # items kept per remote
_HANDLES = 32  # open sealed blobs kept per remote

ItemKey = tuple[str, int, int, int, Any]  # (run folder key, log, offset, length, checksum)


class _Cache:
    """One remote's read items, open sealed blobs and live blobs' chunk listings."""

    def __init__(self) -> None:
        self.items = Lru[ItemKey, bytes](size=_ITEM_BYTES, size_of=len)
        self.handles = Lru[str, tuple[Any, threading.Lock]](
            count=_HANDLES, on_drop=lambda held: held[0].close())
        self.listed = Lru[str, list[tuple[int, int, str]]](count=_HANDLES)

    def get(self, key: ItemKey) -> bytes | None:
        return self.items.get(key)

    def put(self, key: ItemKey, data: bytes) -> None:
        if len(data) <= _ITEM_BYTES // 4:
            self.items.put(key, data)

    def handle(self, path: RemotePath) -> tuple[Any, threading.Lock]:
        """An open handle of an object that does not change (a sealed blob, a chunk), kept;
        FileNotFoundError when it is not there."""
        held = self.handles.get(path.key)
        if held is None:
            held = (path.open_input(), threading.Lock())
            self.handles.put(path.key, held)
        return held

    def chunks(self, live: RemotePath, end: int) -> list[tuple[int, int, str]]:
        """The chunks (offset, size, name) of a live blob, listed again unless a listing kept
        covers its bytes up to ``end`` (what it covered then cannot have changed: the log is
        append-only; what lies past it may have grown)."""
        chunks = self.listed.get(live.key)
        if chunks is None or _chain_end(chunks) < end:
            chunks = sorted((o, e.size, n) for n, e in live.entries().items()
                            if (o := chunk_offset(n)) is not None)
            self.listed.put(live.key, chunks)
        return chunks

    def forget(self, rdir: RemotePath, seq: int) -> None:
        """Drop what is kept of log ``seq``'s blob (after a failed read: merged chunks, a blob
        sealed or replaced meanwhile)."""
        prefix = (rdir / "wal" / _blobs.name(seq)).key
        sealed = (rdir / "segments" / _blobs.name(seq)).key
        self.listed.drop(lambda key: key == prefix)
        self.handles.drop(lambda key: key == sealed or key.startswith(prefix + "/"))


def _chain_end(chunks: list[tuple[int, int, str]]) -> int:
    end = 0
    for offset, size, _ in chunks:
        if offset > end:
            break
        end = max(end, offset + size)
    return end


_cache = PerRemote(_Cache)


def _key(rdir: RemotePath, ref: dict[str, Any]) -> ItemKey | None:
    seq, off, length = ref.get("log"), ref.get("off"), ref.get("len")
    if type(seq) is not int or type(off) is not int or type(length) is not int:
        return None
    if seq < 0 or off < 0 or length < 0:
        return None
    digest = ref.get("xxh")  # (a sealed column's reference has both members, one null)
    return (rdir.key, seq, off, length, ref.get("crc") if digest is None else digest)


def cached(rdir: RemotePath, ref: dict[str, Any]) -> bytes | None:
    """The item of ``ref``, checked, if this remote read it before (see prefetch)."""
    key = _key(rdir, ref)
    return None if key is None else _cache(rdir.remote).get(key)


def prefetch(rdir: RemotePath, refs: list[dict[str, Any]], sealed_through: int = -1) -> None:
    """Read the items of ``refs`` (those not read yet) blob by blob, their ranges merged, and
    keep those that pass their checksum for ``cached``. Failures are left to the item's own
    read (which reports them). ``sealed_through``, the manifest's: which blobs to look for in
    segments/ first (sync uploads a segment before the manifest that covers it)."""
    cache = _cache(rdir.remote)
    by_log: dict[int, dict[ItemKey, dict[str, Any]]] = {}
    for ref in refs:
        key = _key(rdir, ref)
        if key is not None and cache.get(key) is None:
            by_log.setdefault(key[1], {})[key] = ref
    for seq, wanted in by_log.items():
        try:
            need = max(key[2] + key[3] for key in wanted)
            reader = _open_blob(rdir, seq, cache, seq <= sealed_through, need)
            if reader is None:
                continue
            for start, end, keys in _spans(sorted(wanted, key=lambda k: k[2])):
                data = reader(start, end - start)
                for key in keys:
                    item = data[key[2] - start:key[2] - start + key[3]]
                    try:
                        cache.put(key, _blobs.check(item, wanted[key], rdir))
                    except ValueError:
                        continue  # (short or damaged: the item's own read reports it)
        except (OSError, ValueError):  # (moved or merged meanwhile: read one at a time)
            cache.forget(rdir, seq)


def _spans(keys: list[ItemKey]) -> list[tuple[int, int, list[ItemKey]]]:
    """Ranges to read for items sorted by offset: neighbours at most _GAP apart share one,
    up to _SPAN bytes."""
    out: list[tuple[int, int, list[ItemKey]]] = []
    for key in keys:
        start, end = key[2], key[2] + key[3]
        if out and start - out[-1][1] <= _GAP and max(end, out[-1][1]) - out[-1][0] <= _SPAN:
            first, last, members = out[-1]
            out[-1] = (first, max(last, end), [*members, key])
        else:
            out.append((start, end, [key]))
    return out


def _open_blob(rdir: RemotePath, seq: int, cache: _Cache, sealed: bool, need: int) -> Any:
    """A function reading (offset, length) of log ``seq``'s blob (``need``: the end of the
    bytes wanted), or None when it is neither sealed nor a folder of chunks (the one-at-a-time
    path looks again). A blob the manifest read says ``sealed`` is looked for in segments/
    first (once there it is whole and final, whatever wal/ still holds), another in wal/."""
    name = _blobs.name(seq)
    live = rdir / "wal" / name
    if not sealed:
        reader = _open_chunks(live, cache, need)
        if reader is not None:
            return reader
    try:
        handle, lock = cache.handle(rdir / "segments" / name)
    except FileNotFoundError:
        return _open_chunks(live, cache, need) if sealed else None

    def read_sealed(off: int, length: int) -> bytes:
        with lock:  # (one position per handle)
            handle.seek(off)
            return bytes(handle.read(length))
    return read_sealed


def _open_chunks(live: RemotePath, cache: _Cache, need: int) -> Any:
    """A reader of a live blob (a folder of chunks), or None when it is not one."""
    chunks = cache.chunks(live, need)
    if not chunks:
        return None

    def read_chunks(off: int, length: int) -> bytes:
        return read_chunk_range(live, chunks, off, length, cache)
    return read_chunks


def read_chunk_range(path: RemotePath, chunks: list[tuple[int, int, str]], off: int,
                     length: int, cache: _Cache | None = None) -> bytes:
    """Bytes ``off`` to ``off + length`` of a log kept as the chunks listed (offset, size,
    name; overlapping chunks hold the same bytes), short at a gap or the end; the chunks'
    handles kept in ``cache``. A chunk merged away since the listing: FileNotFoundError (or
    the remote's error for an object gone)."""
    out = bytearray()
    end = off + length
    while off + len(out) < end:
        pos = off + len(out)
        cover = next(((o, size, n) for o, size, n in chunks if o <= pos < o + size), None)
        if cover is None:
            break
        start, size, chunk = cover
        want = min(end, start + size) - pos
        if cache is None:
            with (path / chunk).open_input() as fh:
                fh.seek(pos - start)
                data = fh.read(want)
        else:
            handle, lock = cache.handle(path / chunk)
            with lock:
                handle.seek(pos - start)
                data = handle.read(want)
        if not data:
            break
        out += data
    return bytes(out)
