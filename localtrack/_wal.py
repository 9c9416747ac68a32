"""The append-only, framed JSONL log used for history and lifecycle events.

Every line is one JSON object whose last member is ``"_crc"``: the CRC-32 of
the line's bytes before ``,"_crc":``. A record whose append returned is in the
page cache and survives SIGKILL; fsync follows the run's policy.

The history log is appended through a shared memory map of a preallocated
window of the file (MappedLog): a record costs a memory copy, not a system
call. So a log being written, or left by a killed writer, ends in NUL padding
up to the window's end; readers ignore trailing NULs. A closed log has none,
unless its writer left it to the sealer that removes the file (Run.finish).
Space is reserved with posix_fallocate before a window is mapped, so a full
disk is an error from log(), never a SIGBUS. Where a store into a mapped page
could still fail later (copy-on-write, network and FUSE file systems: see
MAPPABLE_FS) the log is appended with one ``write()`` per record instead
(Appender), as are lifecycle events.

After a crash the tail may be cut off or hold junk: a bad *tail* is torn (it
is cut off on the next writer open, a ``.broken`` copy is kept); a bad record
followed by a good one is corruption and is reported with its offset, never
skipped.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fsutil
from ._codec import dumps, loads
from ._naming import Ctx
from .errors import CorruptRunError

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("localtrack")

_CRC_MARK = b',"_crc":'
_TAIL_CHUNK = 64 * 1024
_ZEROS = bytes(_TAIL_CHUNK)
_WINDOW = 1 << 20  # bytes reserved and mapped at a time (a multiple of the page size)
_PAGE = mmap.ALLOCATIONGRANULARITY
# Local file systems where a store into a fallocated, shared writable map cannot fail later:
# the blocks are reserved and page faults allocate nothing. Not copy-on-write ones (btrfs, f2fs,
# zfs reserve space at fault time and answer a full disk with SIGBUS), not network or FUSE ones.
MAPPABLE_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs", "overlay"})


def frame(record: dict[str, Any]) -> bytes:
    """One framed line for ``record`` (which must not hold ``_crc``)."""
    return frame_body(dumps(record)[:-1])


def frame_body(body: bytes) -> bytes:
    """Close ``body`` (a JSON object without its final ``}``) with its checksum."""
    return body + b',"_crc":%d}\n' % zlib.crc32(body)


def _body(line: bytes) -> bytes | None:
    """The checksummed part of one line (without its newline), or None when the frame is bad."""
    cut = line.rfind(_CRC_MARK)
    if cut < 0 or not line.endswith(b"}"):
        return None
    try:
        crc = int(line[cut + len(_CRC_MARK):-1])
    except ValueError:
        return None
    body = line[:cut]
    return body if zlib.crc32(body) == crc else None


def parse(line: bytes) -> dict[str, Any] | None:
    """The record of one line (without its newline), or None when the frame is bad."""
    body = _body(line)
    if body is None:
        return None
    try:
        record = loads(body + b"}")
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def check(data: bytes, path: Path | str, *, allow_torn_tail: bool = True,
          **ctx: Unpack[Ctx]) -> tuple[list[bytes], int]:
    """The checksummed bodies of a log's records and the offset just past the last good one.

    A bad record followed by a good one raises CorruptRunError. A bad tail
    raises too unless ``allow_torn_tail`` (a live writer may be mid-append).
    """
    bodies: list[bytes] = []
    good_end = 0
    bad_at: int | None = None
    pos = 0
    size = len(data.rstrip(b"\0"))  # a mapped log's unused, preallocated end
    while pos < size:
        nl = data.find(b"\n", pos)
        end = size if nl < 0 else nl
        body = _body(data[pos:end]) if nl >= 0 else None
        if body is None:
            if bad_at is None:
                bad_at = pos
        else:
            if bad_at is not None:
                raise CorruptRunError(
                    f"{path} is corrupt: the record at byte {bad_at} fails its checksum but later "
                    "records are intact. Nothing was changed: restore the file from a sync "
                    "remote or a backup, or cut it at that offset to keep what comes before.",
                    path=str(path), offset=bad_at, **ctx)
            bodies.append(body)
            good_end = end + 1
        pos = end + 1
    if bad_at is not None and not allow_torn_tail:
        raise CorruptRunError(
            f"{path} ends in a damaged record at byte {bad_at}; a closed log file should be "
            "complete. Nothing was changed.", path=str(path), offset=bad_at, **ctx)
    return bodies, good_end


def scan(path: Path, *, allow_torn_tail: bool = True,
         **ctx: Unpack[Ctx]) -> tuple[list[dict[str, Any]], int]:
    """All records of a log file (see check) and the offset just past the last good one."""
    bodies, good_end = check(path.read_bytes(), path, allow_torn_tail=allow_torn_tail, **ctx)
    try:
        return [loads(body + b"}") for body in bodies], good_end
    except ValueError as exc:
        raise CorruptRunError(f"{path} holds a record with a valid checksum that is not JSON "
                              f"({exc}); it was not written by localtrack.", path=str(path),
                              **ctx) from exc


def last_record(path: Path) -> tuple[dict[str, Any] | None, int]:
    """The last good record and the offset just past it, reading only the tail.

    Constant time in the length of the file: it reads 64 KiB windows backwards
    until a good record turns up.
    """
    with open(path, "rb") as fh:
        size = end_of_data(fh)
        window = _TAIL_CHUNK
        while True:
            start = max(0, size - window)
            fh.seek(start)
            chunk = fh.read(size - start)
            lines = chunk.split(b"\n")
            # lines[-1] follows the last newline: empty, or a torn tail.
            end = size - len(lines[-1])
            first = 0 if start == 0 else 1  # lines[0] may begin mid-record
            for i in range(len(lines) - 2, first - 1, -1):
                record = parse(lines[i])
                if record is not None:
                    return record, end
                end -= len(lines[i]) + 1
            if start == 0:
                return None, 0
            window *= 4


def data_size(path: Path) -> int:
    """The size of a log without its NUL padding."""
    with open(path, "rb") as fh:
        return end_of_data(fh)


def end_of_data(fh: Any) -> int:
    """The size of an open log without its NUL padding, reading backwards from the end."""
    end = os.fstat(fh.fileno()).st_size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        fh.seek(start)
        block = fh.read(end - start)
        if block != _ZEROS[:len(block)]:  # a memcmp; rstrip takes ~100x longer on padding
            return start + len(block.rstrip(b"\0"))
        end = start
    return 0


def cut_torn_tail(path: Path, good_end: int, *, warn: bool = True, **ctx: Unpack[Ctx]) -> None:
    """Truncate ``path`` to ``good_end``, keeping cut bytes other than padding in ``<path>.broken``."""
    size = path.stat().st_size
    if size <= good_end:
        return
    with open(path, "r+b") as fh:
        end = end_of_data(fh)
        fh.seek(good_end)
        junk = fh.read(end - good_end) if end > good_end else b""
        if not junk:  # only the padding of a mapped log whose writer died: nothing was lost,
            fh.truncate(good_end)  # and no fsync: padding that a power cut brings back is padding
            return
        with open(path.with_name(path.name + ".broken"), "ab") as keep:
            keep.write(junk)
            keep.flush()
            os.fsync(keep.fileno())
        fh.truncate(good_end)
        fh.flush()
        os.fsync(fh.fileno())
    where = f"run {ctx.get('run_id')!r} in project {ctx.get('project')!r}" if ctx else str(path)
    message = (f"Dropped a torn tail of {len(junk)} bytes from {path} ({where}): the writer "
               "died mid-append; those bytes were never acknowledged. A copy is in "
               f"{path.name}.broken.")
    log.warning(message)
    if warn:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class Appender:
    """An open log file that appends framed lines with one write() each; the caller fsyncs.

    ``put`` is append() until the file reaches ``limit`` bytes, then raises ValueError,
    like a full MappedLog window: that is when the writer considers rotating.
    """

    def __init__(self, path: Path, limit: int = 1 << 62) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.offset = os.fstat(self.fd).st_size
        self._limit = limit

    def put(self, line: bytes) -> None:
        if self.offset >= self._limit:
            raise ValueError("the log file is full")
        self.append(line)

    def append(self, line: bytes) -> None:
        """Write one line with one write(); on failure the file is cut back, then re-raise."""
        try:
            n = os.write(self.fd, line)
            if n != len(line):
                self._finish_short_write(line, n)
        except BaseException:
            self._cut_back()
            raise
        self.offset += len(line)

    def _finish_short_write(self, line: bytes, n: int) -> None:
        view = memoryview(line)
        while n < len(view):
            n += os.write(self.fd, view[n:])

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self.fd, self.offset)
        except OSError:
            log.error("could not cut %s back to %d bytes after a failed write", self.path,
                      self.offset, exc_info=True)

    def sync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    def close(self, sync: bool = True, cut: bool = True) -> None:
        """Close, fsyncing first if ``sync`` (``cut``: as MappedLog's; this file has no padding)."""
        if self.fd >= 0:
            try:
                if sync:
                    os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1


class MappedLog:
    """The active history log, appended by copying into a shared map of its file.

    Stores into a MAP_SHARED page land in the page cache, so a step survives
    SIGKILL as soon as log() returns, without a system call per record. The
    file grows a window at a time: posix_fallocate reserves the blocks first
    (ENOSPC/EFBIG surface here, as from write()), then the window is mapped.
    close() cuts the padding unless a sealer is to remove the file.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._end = os.fstat(self.fd).st_size  # the opener has cut any padding
        self._map: mmap.mmap | None = None
        self._base = 0  # the file offset where _map starts
        self.put: Callable[[bytes], Any] = _full  # the map's write(): ValueError when full

    @property
    def offset(self) -> int:
        """The end of the data: where the next record goes."""
        return self._end if self._map is None else self._base + self._map.tell()

    def append(self, line: bytes) -> None:
        """Copy one line in; the file grows first when it must (nothing is written if that fails)."""
        try:
            self.put(line)
        except ValueError:
            self._remap(self.offset + len(line))
            self.put(line)

    def _remap(self, need: int) -> None:
        """Reserve and map a window from the current offset's page through at least ``need``."""
        start = self.offset
        base = start - start % _PAGE
        limit = max(base + _WINDOW, -(-need // _PAGE) * _PAGE)
        try:
            os.posix_fallocate(self.fd, base, limit - base)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            limit = need  # short of space: reserve just this record (raises if even that fails)
            os.posix_fallocate(self.fd, base, limit - base)
        self._unmap()
        self._map = mmap.mmap(self.fd, limit - base, offset=base)
        self._map.seek(start - base)
        self._base = base
        self.put = self._map.write

    def _unmap(self) -> None:
        if self._map is not None:
            self._end = self.offset
            self._map.close()
            self._map = None
            self.put = _full

    def sync(self) -> None:
        if self.fd >= 0:
            os.fsync(self.fd)

    def close(self, sync: bool = True, cut: bool = True) -> None:
        """Unmap, cut the padding, fsync (unless the caller has that done later).

        ``cut=False`` leaves the padding to whoever removes the file (a sealer): on ext4 the
        ftruncate waits for the file's writeback whenever a journal commit is under way.
        """
        if self.fd < 0:
            return
        try:
            self._unmap()
            if cut:
                os.ftruncate(self.fd, self._end)
            if sync:
                os.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1


def _full(line: bytes) -> None:
    raise ValueError("no window is mapped")


def fsync_path(path: Path) -> None:
    """fsync a closed log by name; one sealed (and removed) meanwhile needs none."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def mappable(directory: Path) -> bool:
    """Whether logs in ``directory`` may be appended through a shared map (see MAPPABLE_FS)."""
    return _fsutil.mount_type(directory) in MAPPABLE_FS


def open_log(path: Path, limit: int, mapped: bool) -> MappedLog | Appender:
    """The appender for a history log: mapped where ``mappable`` says so, write() elsewhere.

    Its ``put`` raises ValueError when a window is full (MappedLog) or the file has
    ``limit`` bytes (Appender); ``append`` always writes.
    """
    return MappedLog(path) if mapped else Appender(path, limit)
