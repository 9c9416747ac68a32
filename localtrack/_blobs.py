"""Blob logs: the bytes of a run's media, beside the history log whose rows refer to them.

``wal/<seq>.blob`` holds the media of the rows of ``wal/<seq>.jsonl``: the items one after
another, nothing between them, each written with one write() and never changed. A row refers
to an item with the tag ``{"$m": {"type", "fmt", "log": seq, "off", "len", "xxh", ...}}``
(the low 63 bits of the XXH3-64 of the item's bytes, an int64 for any JSON reader; ~15x
cheaper than CRC-32 on an image: a run with such items is format 5; items of format 3 and 4
have ``"crc"``, CRC-32, and are read as they are); a table's
JSON refers to its images the same way, and an
image's ``masks`` (JSON text) to its masks. The file is
made on the first media value of its log. Order: an item is written (and under
fsync="always" fsynced) before the row that refers to it; the flusher fsyncs the blob before
the history log, so the durable watermark covers both. When the sealer seals log ``seq`` the
blob file is fsynced and renamed to ``segments/<seq>.blob``: references stay valid, and a
finished run has a file per segment, however many images it logged. A crash between that
rename and the manifest leaves the blob in ``segments/`` while its log is not sealed: the next
writer renames it back (``unseal``). A row whose item is not whole (past the file's end, or
failing its checksum: a power cut that kept the row's page but not the blob's) is a torn tail
(see first_bad_ref and _durable.repair).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xxhash import xxh3_64_intdigest

from . import _fsutil
from ._codec import loads

TAG = "$m"
SUFFIX = ".blob"
ROTATE_BYTES = 256 << 20  # a blob file this big has its log rotated at the next step boundary


def name(seq: int) -> str:
    return f"{seq:08d}{SUFFIX}"


def wal_blob(rdir: Path, seq: int) -> Path:
    return rdir / "wal" / name(seq)


def sealed_blob(rdir: Path, seq: int) -> Path:
    return rdir / "segments" / name(seq)


def locate(rdir: Path, seq: int) -> Path | None:
    """Where the blob of log ``seq`` is now (a sealer may move it while we look: looked up in
    the order it moves, then again); None when it has none."""
    for path in (wal_blob(rdir, seq), sealed_blob(rdir, seq), wal_blob(rdir, seq)):
        if path.exists():
            return path
    return None


_LOW63 = (1 << 63) - 1


def digest(data: bytes | memoryview) -> dict[str, int]:
    """The checksum member of a new item's tag."""
    return {"xxh": xxh3_64_intdigest(data) & _LOW63}


def seal(rdir: Path, seq: int) -> None:
    """Move the blob of log ``seq`` (if it has one) to segments/, durably; the sealer calls this
    after writing the log's segment and before the manifest names it. Space a killed writer
    reserved past the end (see _logfile.Appender) is given back first."""
    src = wal_blob(rdir, seq)
    if not src.exists():
        return
    os.truncate(src, os.stat(src).st_size)
    _fsutil.fsync_file(src)
    # If we die here: the blob is still in wal/ beside its log; the next sealer moves it.
    _fsutil.rename_durable(src, sealed_blob(rdir, seq))
    _fsutil.fsync_dir(src.parent)
    # If we die here: the blob is in segments/ and its log not sealed: unseal() moves it back.


def unseal(rdir: Path, seq: int) -> None:
    """Put back in wal/ the blob of a log that is not sealed (a sealer died after moving it)."""
    moved = sealed_blob(rdir, seq)
    if moved.exists() and not wal_blob(rdir, seq).exists():
        _fsutil.rename_durable(moved, wal_blob(rdir, seq))


def refs(value: Any) -> Iterator[dict[str, Any]]:
    """The blob references in a stored value: a tag, or a list of tags."""
    if type(value) is dict and TAG in value and type(value[TAG]) is dict:
        yield value[TAG]
    elif type(value) is list:
        for item in value:
            yield from refs(item)


def read(path: Path, ref: dict[str, Any]) -> bytes:
    """The bytes of the item ``ref`` in the blob file ``path``; ValueError when they are not
    whole (past the file's end) or fail their checksum; OSError when the file cannot be read."""
    off, length = span(ref)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        data = os.pread(fd, length, off)
    finally:
        os.close(fd)
    return check(data, ref, path)


def span(ref: dict[str, Any]) -> tuple[int, int]:
    """The offset and length of the item of ``ref``; ValueError when it has no valid ones."""
    off, length = ref.get("off"), ref.get("len")
    if type(off) is not int or type(length) is not int or off < 0 or length < 0:
        raise ValueError(f"a media reference without a valid offset and length: {ref!r}")
    return off, length


def check(data: bytes, ref: dict[str, Any], path: object) -> bytes:
    """``data`` when it is the whole item of ``ref`` and passes its checksum, else ValueError."""
    off, length = ref.get("off"), ref.get("len")
    if len(data) != length:
        raise ValueError(f"the item at {off} ({length} bytes) is past the end of {path}")
    if ref.get("xxh") is not None:  # (a sealed row of older items has "xxh": null)
        ok = xxh3_64_intdigest(data) & _LOW63 == ref["xxh"]
    else:
        ok = zlib.crc32(data) == ref.get("crc")
    if not ok:
        raise ValueError(f"the item at {off} ({length} bytes) of {path} fails its checksum")
    return data


def intact(rdir: Path, ref: dict[str, Any]) -> bool:
    """Whether the item of ``ref`` (and a table's images) is whole and checks."""
    seq = ref.get("log")
    path = locate(rdir, seq) if type(seq) is int and seq >= 0 else None
    if path is None:
        return False
    try:
        data = read(path, ref)
        if ref.get("type") == "table":
            return all(intact(rdir, child) for child in _table_refs(loads(data)))
        if type(ref.get("masks")) is str:  # an image's masks: items of their own
            return all(intact(rdir, child) for child in _table_refs(loads(ref["masks"])))
    except (OSError, ValueError):
        return False
    return True


def _table_refs(value: Any) -> Iterator[dict[str, Any]]:
    if type(value) is dict:
        if TAG in value and type(value[TAG]) is dict:
            yield value[TAG]
            return
        for item in value.values():
            yield from _table_refs(item)
    elif type(value) is list:
        for item in value:
            yield from _table_refs(item)


def first_bad_ref(rdir: Path, data: bytes, end: int) -> int | None:
    """The offset of the first line of ``data[:end]`` (whole, checked log lines) that refers to
    a media item that is not whole; None when every one is."""
    if b'"' + TAG.encode() + b'"' not in data[:end]:
        return None
    pos = 0
    while pos < end:
        newline = data.find(b"\n", pos, end)
        if newline < 0:
            break
        line = data[pos:newline]
        if b'"$m"' in line:
            try:
                record = loads(line)
            except ValueError:
                record = None
            if type(record) is dict and not all(
                    intact(rdir, ref) for value in record.values() for ref in refs(value)):
                return pos
        pos = newline + 1
    return None
