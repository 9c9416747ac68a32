"""Append-only logs where nothing can be appended: a log as a folder of chunks.

Object stores cannot append, so on a remote store a log (``wal/<seq>.jsonl``,
``events.jsonl``) may be a *folder* of that name holding ``<offset>.jsonl``
objects: each holds the log's bytes from ``offset`` (16 digits) on, and ends
at a record boundary. The log is their concatenation in offset order. Since
the log is append-only, two chunks that overlap hold the same bytes there: a
chunk rewritten longer, or merged over smaller ones, is harmless. A gap (a
chunk missing) ends what can be read: the bytes after it are not there yet.
Only sync writes chunks; this module is the one place that reads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _frames, _fsutil, _wal
from .._naming import Ctx, chunk_offset
from ._base import Entry, RemotePath
from ._dir import open_file, read_file

if TYPE_CHECKING:
    from typing_extensions import Unpack

CHUNK_SUFFIX = ".jsonl"
_DIGITS = 16
_REREADS = 10
_TAIL = 4096  # bytes of a chunk's end read first for its last row: usually in its last lines


def chunk_name(offset: int) -> str:
    return f"{offset:0{_DIGITS}d}{CHUNK_SUFFIX}"


def join(chunks: list[tuple[int, bytes]]) -> bytes:
    """The log bytes from offset 0, up to the first gap."""
    out = bytearray()
    for offset, data in sorted(chunks, key=lambda c: c[0]):
        if offset > len(out):
            break
        out += data[len(out) - offset:]
    return bytes(out)


def chain_end(entries: dict[str, Entry]) -> int:
    """How many bytes of the log the chunks listed cover contiguously from 0."""
    end = 0
    for offset, size in sorted((o, e.size) for n, e in entries.items()
                               if (o := chunk_offset(n)) is not None):
        if offset > end:
            break
        end = max(end, offset + size)
    return end


def walk(folder: Path | RemotePath) -> dict[str, Entry]:
    """Every file below ``folder`` by its path relative to it (temporaries left out): one
    listing of a remote (see Remote.walk), a local folder (a directory remote) folder by
    folder. No link is followed; ``{}`` when there is no such folder."""
    if isinstance(folder, RemotePath):
        return folder.walk()
    out: dict[str, Entry] = {}
    try:
        with os.scandir(folder) as it:
            found = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in found:
        if entry.name.startswith(_fsutil.TMP_PREFIX) or entry.is_symlink():
            continue
        if entry.is_dir(follow_symlinks=False):
            out.update((f"{entry.name}/{rel}", e) for rel, e in walk(Path(entry.path)).items())
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:  # merged into another chunk since the listing
            continue
        out[entry.name] = Entry(False, st.st_size, st.st_mtime)
    return out


def last_row(path: Path | RemotePath, size: int, **ctx: Unpack[Ctx]) -> dict[str, Any] | None:
    """The last framed history row of the chunk ``path``, listed at ``size`` bytes (a chunk
    only grows; see _frames.last_framed_row: parsed, not checked), read from its end: 4 KiB,
    then four times more each time until a row is found or the whole chunk was read (a chunk
    starts at a line of the log), from one handle (on S3: ranged reads of one object).
    FileNotFoundError when it was merged into a longer chunk since it was listed."""
    length = _TAIL
    with path.open_input() if isinstance(path, RemotePath) else open_file(path, **ctx) as fh:
        while True:
            start = max(0, size - length)
            fh.seek(start)
            row = _frames.last_framed_row(bytes(fh.read(size - start)), start == 0)
            if row is not None or start == 0:
                return row
            length *= 4


def read_log(path: Path | RemotePath, under: Path | None = None, **ctx: Unpack[Ctx]) -> bytes:
    """A log's bytes, stored as a plain file or as a folder of chunks.

    A chunk that vanishes between listing and reading was merged into a bigger
    one (sync deletes chunks only after uploading what covers them): list again.
    FileNotFoundError when the log does not exist, or its whole folder was
    dropped (sync deletes the folders a manifest covers): callers read again.
    Locally no symbolic link from ``under`` (default: the log's folder) down is followed.
    """
    if isinstance(path, Path):
        under = path.parent if under is None else under
        try:
            return read_file(path, under, **ctx)
        except IsADirectoryError:
            pass
    for _ in range(_REREADS):
        names = [p.name for p in path.iterdir()]
        if not names and isinstance(path, RemotePath):
            return path.read_bytes()  # a plain object, as an upload by hand would leave
        try:
            return join([(o, _read(path / n, under, ctx)) for n in names
                         if (o := chunk_offset(n)) is not None])
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"the chunks of {path} keep changing")


def read_range(path: Path, off: int, length: int, under: Path, **ctx: Unpack[Ctx]) -> bytes:
    """Bytes ``off`` to ``off + length`` of a log kept as a local folder of chunks (a store
    synced to a directory), reading only the chunks that hold them; short at a gap or the end.
    A chunk merged away meanwhile is looked for again (see read_log)."""
    for _ in range(_REREADS):
        chunks = []
        for entry in os.scandir(path):
            if (o := chunk_offset(entry.name)) is not None:
                chunks.append((o, entry.stat(follow_symlinks=False).st_size, entry.name))
        chunks.sort()
        out = bytearray()
        end = off + length
        try:
            while off + len(out) < end:
                pos = off + len(out)
                cover = next(((o, n) for o, size, n in chunks if o <= pos < o + size), None)
                if cover is None:
                    break
                with open_file(path / cover[1], under, **ctx) as fh:
                    fh.seek(pos - cover[0])
                    data = fh.read(end - pos)
                if not data:
                    break
                out += data
        except FileNotFoundError:
            continue
        return bytes(out)
    raise FileNotFoundError(f"the chunks of {path} keep changing")


def _read(path: Path | RemotePath, under: Path | None, ctx: Ctx) -> bytes:
    return read_file(path, under, **ctx) if isinstance(path, Path) else path.read_bytes()


def read_records(path: Path | RemotePath, **ctx: Unpack[Ctx]) -> list[dict[str, Any]]:
    """The records of a framed log, plain or chunked; a torn tail is ignored (a writer may be mid-append).

    A plain local file is read by _wal.scan, exactly as before there were remotes.
    """
    if isinstance(path, Path):
        try:
            with open_file(path, **ctx):  # a link or a FIFO is refused before _wal.scan opens it
                pass
            return _wal.scan(path, **ctx)[0]
        except IsADirectoryError:
            pass
    return _frames.records(_wal.check(read_log(path, **ctx), str(path), **ctx).bodies)
