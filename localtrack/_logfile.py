"""Appending to a log file: through a shared memory map, or with one write() per line.

The history log is appended through a shared memory map of a preallocated
window of the file (MappedLog): a record costs a memory copy, not a system
call. So a log being written, or left by a killed writer, ends in NUL padding
up to the window's end; readers ignore trailing NULs. A closed log has none,
unless its writer left it to the sealer that removes the file (LogStream.close).
Space is reserved with posix_fallocate before a window is mapped, so a full
disk is an error from log(), never a SIGBUS. Where a store into a mapped page
could still fail later (copy-on-write, network and FUSE file systems: see
MAPPABLE_FS) the log is appended with one ``write()`` per record instead
(Appender), as are lifecycle events. Nothing here fsyncs on its own: the
durability policy is _stream's.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import _fsutil
from ._frames import END_BODY, framed_line

log = logging.getLogger("localtrack")

_PAGE = mmap.ALLOCATIONGRANULARITY
_WINDOW = 1 << 20  # bytes reserved and mapped at a time, at most (see window())
# Local file systems where a store into a fallocated, shared writable map cannot fail later:
# the blocks are reserved and page faults allocate nothing. Not copy-on-write ones (btrfs, f2fs,
# zfs reserve space at fault time and answer a full disk with SIGBUS), not network or FUSE ones.
MAPPABLE_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs", "overlay"})


class Appender:
    """An open log file that appends framed lines with one write() each; the caller fsyncs.

    ``put`` is append() until the file reaches ``limit`` bytes, then raises ValueError,
    like a full MappedLog window: that is when the writer considers rotating. With
    ``reserve`` (blob logs: large appends), blocks are reserved that many bytes at a time past
    the end (_fsutil.reserve, the size unchanged: readers see no padding); close() gives back
    what was not used, and so does the sealer for a killed writer's file (_blobs.seal).
    """

    def __init__(self, path: Path, limit: int = 1 << 62, frame_at: int = 0,
                 reserve: int = 0) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.offset = os.fstat(self.fd).st_size
        self.frame_at = frame_at  # where the checksum range of the next framed line starts
        self._limit = limit
        self._reserve = reserve
        self._reserved = self.offset  # the end of the blocks reserved so far

    def put(self, line: bytes) -> None:
        if self.offset >= self._limit:
            raise ValueError("the log file is full")
        self.append(line)

    def append(self, line: bytes | memoryview) -> None:
        """Write one line with one write(); on failure the file is cut back, then re-raise."""
        if self._reserve and self.offset + len(line) > self._reserved:
            self._reserve_more(len(line))
        try:
            n = os.write(self.fd, line)
            if n != len(line):
                self._finish_short_write(line, n)
        except BaseException:
            self._cut_back()
            raise
        self.offset += len(line)

    def _reserve_more(self, need: int) -> None:
        length = max(self._reserve, need)
        if _fsutil.reserve(self.fd, self.offset, length):
            self._reserved = self.offset + length
        else:
            self._reserve = 0  # not here: appends allocate as they go

    def range_crc(self) -> int:
        """The CRC-32 of the bytes since the last framed line."""
        return _pread_crc(self.fd, self.frame_at, self.offset)

    def _finish_short_write(self, line: bytes | memoryview, n: int) -> None:
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
            _fsutil.fsync(self.fd)

    def abandon(self) -> None:
        """Close without anything else (see MappedLog.abandon)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self, sync: bool = True, cut: bool = True) -> None:
        """Close, fsyncing first if ``sync`` (``cut``: as MappedLog's; this file has no padding);
        reserved blocks not used are given back."""
        if self.fd >= 0:
            try:
                if self._reserved > self.offset:
                    os.ftruncate(self.fd, self.offset)
                if sync:
                    _fsutil.fsync(self.fd)
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

    def __init__(self, path: Path, frame_at: int = 0, window: int = _WINDOW) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._window = window  # bytes reserved and mapped at a time (a multiple of the page size)
        self._end = os.fstat(self.fd).st_size  # the opener has cut any padding
        self.frame_at = frame_at  # where the checksum range of the next framed line starts
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

    def range_crc(self) -> int:
        """The CRC-32 of the bytes since the last framed line, read through the map when it
        holds them (a memoryview: no copy)."""
        start, end = self.frame_at, self.offset
        if self._map is None or start < self._base:
            return _pread_crc(self.fd, start, end)
        with memoryview(self._map) as view:
            return zlib.crc32(view[start - self._base:end - self._base])

    def _remap(self, need: int) -> None:
        """Reserve and map a window from the current offset's page through at least ``need``."""
        start = self.offset
        base = start - start % _PAGE
        limit = max(base + self._window, -(-need // _PAGE) * _PAGE)
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
            _fsutil.fsync(self.fd)

    def abandon(self) -> None:
        """Drop the map and the descriptor whatever state an interrupted call left them in
        (the file is left as it is: the caller reopens it)."""
        with contextlib.suppress(ValueError, BufferError):
            if self._map is not None:
                self._map.close()
        self._map = None
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

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
                _fsutil.fsync(self.fd)
        finally:
            os.close(self.fd)
            self.fd = -1


def _pread_crc(fd: int, start: int, end: int) -> int:
    return zlib.crc32(os.pread(fd, end - start, start)) if end > start else 0


def put_framed(log: MappedLog | Appender, body: bytes) -> None:
    """Append ``body`` (a JSON object without its final ``}``) framed, its checksum covering
    the plain lines since the last framed one; ValueError, with nothing written, as ``put``."""
    log.put(framed_line(body, log.range_crc()))
    log.frame_at = log.offset


def append_framed(log: MappedLog | Appender, body: bytes) -> None:
    """As put_framed, growing the file (MappedLog) or going past its limit (Appender)."""
    log.append(framed_line(body, log.range_crc()))
    log.frame_at = log.offset


def close_frame(log: MappedLog | Appender) -> None:
    """End a log file being closed with the closing line, which frames the plain lines before
    it (if any): a closed log is checksummed to its last byte, and one that does not end with
    this line lost its end (see _frames.ends_closed)."""
    append_framed(log, END_BODY)


def _full(line: bytes) -> None:
    raise ValueError("no window is mapped")


def mappable(directory: Path) -> bool:
    """Whether logs in ``directory`` may be appended through a shared map (see MAPPABLE_FS)."""
    return _fsutil.mount_type(directory) in MAPPABLE_FS


def open_log(path: Path, limit: int, mapped: bool, frame_at: int = 0) -> MappedLog | Appender:
    """The appender for a history log: mapped where ``mappable`` says so, write() elsewhere.

    Its ``put`` raises ValueError when a window is full (MappedLog) or the file has
    ``limit`` bytes (Appender); ``append`` always writes.
    """
    return MappedLog(path, frame_at, window(limit)) if mapped else Appender(path, limit, frame_at)


def window(limit: int) -> int:
    """The mapped window of a log file that is to rotate at ``limit`` bytes: 1 MiB, or a
    quarter of ``limit`` in whole pages when that is less. The writer considers rotating when
    a window fills, so a file ends at most a window past ``limit``."""
    return min(_WINDOW, max(_PAGE, -(-(limit // 4) // _PAGE) * _PAGE))
