"""The append-only, framed JSONL log used for history and lifecycle events.

A *framed* line is a JSON object whose last member is ``"_crc"``: the CRC-32
of every byte from the end of the previous framed line (or the start of the
file) up to the ``,"_crc":`` that precedes it. A *plain* line is a history
record without ``_step``, ``_timestamp`` or ``_crc``: the step after the line
before it, at the same time. The history writer frames one record per
millisecond at most (and the first of a file, and every record that is not a
plain next step), so a record costs one orjson call and a copy; a frame's
checksum covers the plain lines before it. Lifecycle events are all framed.
A record whose append returned is in the page cache and survives SIGKILL;
fsync follows the run's policy.

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
or frame followed by a good one is corruption and is reported with its
offset, never skipped. Plain lines after the last frame are checked by
parsing them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import stat
import sys
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _fsutil
from ._codec import dumps, loads
from ._naming import Ctx
from .errors import CorruptRunError

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("localtrack")

_CRC_MARK = b',"_crc":'
END_BODY = b'{"_end":true'  # the body of the framed line that closes a log file's last frame
_STEP_MARK = b'"_step":'  # never in a plain line: reserved key, and quotes in strings are escaped
_TAIL_CHUNK = 64 * 1024
_ZEROS = bytes(_TAIL_CHUNK)
_WINDOW = 1 << 20  # bytes reserved and mapped at a time (a multiple of the page size)
_PAGE = mmap.ALLOCATIONGRANULARITY
# Local file systems where a store into a fallocated, shared writable map cannot fail later:
# the blocks are reserved and page faults allocate nothing. Not copy-on-write ones (btrfs, f2fs,
# zfs reserve space at fault time and answer a full disk with SIGBUS), not network or FUSE ones.
MAPPABLE_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs", "overlay"})


def frame(record: dict[str, Any]) -> bytes:
    """One framed line for ``record`` (which must not hold ``_crc``) that covers only itself."""
    body = dumps(record)[:-1]
    return body + b',"_crc":%d}\n' % zlib.crc32(body)


class Checked(NamedTuple):
    """What ``validate`` found in a log's bytes (offsets relative to them)."""

    bodies: list[bytes]  # each good record's JSON without its closing brace (and without _crc)
    end: int  # just past the last good record
    frame_end: int  # just past the last good framed line: where the next checksum range starts
    bad_at: int | None  # the first damaged record or checksum range, if any
    corrupt: bool  # a good record follows it: damage, not a torn tail


def validate(data: bytes, anchored: bool = False) -> Checked:
    """Check a log's bytes, which must start where a checksum range starts: a file's start, or
    a ``frame_end`` (then ``anchored``: plain rows there follow a framed one). A plain row
    with no framed row before it in its file has no step: corruption.

    Whole frames are found by their checksum mark, fast. After the last good one, lines are
    checked one by one: a plain line by parsing it, a framed one by its checksum, so that a
    framed line torn by SIGKILL costs only itself, not the acknowledged rows before it. A
    line torn by SIGKILL or a power cut is cut short or holds NULs (the copy into the
    zeroed window was not finished); a framed line that is whole but fails its checksum
    is damage, reported from the start of its range.
    """
    bodies: list[bytes] = []
    view = memoryview(data)
    size = data_end(data)  # a mapped log's unused, preallocated end
    pos = end = frame_end = 0  # pos: where the current checksum range starts
    while True:
        mark = data.find(_CRC_MARK, pos, size)
        nl = data.find(b"\n", mark, size) if mark >= 0 else -1
        if nl < 0:
            break
        start = data.rfind(b"\n", pos, mark) + 1 or pos  # the framed line's first byte
        if not _frame_ok(view, pos, mark, nl):
            break
        if start > pos:
            if not anchored:
                return Checked(bodies, end, frame_end, pos, True)
            bodies.extend(line[:-1] for line in data[pos:start - 1].split(b"\n"))
        anchored = True
        if data[start:mark] != END_BODY:
            bodies.append(data[start:mark])
        pos = end = frame_end = nl + 1
    bad_at: int | None = None
    pos_range = pos
    lines = data[pos:size].split(b"\n")
    for line in lines[:-1]:
        after = pos + len(line) + 1
        cut = line.rfind(_CRC_MARK)
        if cut >= 0:  # a framed line, good or bad, ends a checksum range
            ok = _frame_ok(view, pos_range, pos + cut, after - 1)
            if not ok and b"\0" not in line:  # whole yet wrong: damage, not a torn copy
                return Checked(bodies, end, frame_end, pos_range if bad_at is None else bad_at, True)
            pos_range = after
        else:
            ok = _plain_ok(line)
            if ok and not anchored:
                return Checked(bodies, end, frame_end, pos if bad_at is None else bad_at, True)
        if ok:
            if bad_at is not None:
                return Checked(bodies, end, frame_end, bad_at, True)
            if cut < 0:
                bodies.append(line[:-1])
            elif line[:cut] != END_BODY:
                bodies.append(line[:cut])
            end = after
            if cut >= 0:
                frame_end = after
                anchored = True
        elif bad_at is None:
            bad_at = pos
        pos = after
    if lines[-1] and bad_at is None:  # cut off mid-line
        bad_at = pos
    return Checked(bodies, end, frame_end, bad_at, False)


def _frame_ok(view: memoryview, pos: int, mark: int, nl: int) -> bool:
    """Whether the framed line whose checksum mark is at ``mark`` (its newline at ``nl``)
    matches the bytes from ``pos``."""
    if view[nl - 1] != 0x7D:  # "}"
        return False
    try:
        crc = int(view[mark + len(_CRC_MARK):nl - 1])
    except ValueError:
        return False
    return zlib.crc32(view[pos:mark]) == crc


def _plain_ok(line: bytes) -> bool:
    try:
        return type(loads(line)) is dict
    except ValueError:
        return False


def check(data: bytes, path: Path | str, *, allow_torn_tail: bool = True, anchored: bool = False,
          base: int = 0, durable: int = sys.maxsize, **ctx: Unpack[Ctx]) -> Checked:
    """``validate``, raising CorruptRunError when a bad record is followed by a good one, and
    for a bad tail too unless ``allow_torn_tail`` (a live writer may be mid-append).

    ``data`` starts at byte ``base`` of the file (errors give file offsets). Damage at or after
    byte ``durable`` (the durable watermark, see _durable) is a power cut's torn tail, not
    corruption, wherever good records follow it: only what comes before it is returned.
    """
    checked = validate(data, anchored)
    if checked.corrupt and checked.bad_at is not None and base + checked.bad_at >= durable:
        checked = checked._replace(corrupt=False)
    if checked.corrupt:
        raise CorruptRunError(
            f"{path} is corrupt from byte {base + (checked.bad_at or 0)}: a record there fails "
            "its checksum and it is no torn write (later records are intact, or the framed line "
            "is whole, in data that was fsynced), or rows there have no framed row before them. "
            "Nothing was changed: restore the file from a sync remote or a backup, or move the "
            "run out of the store; `localtrack doctor` lists what else is damaged.",
            path=str(path), offset=base + (checked.bad_at or 0), **ctx)
    if checked.bad_at is not None and not allow_torn_tail:
        raise CorruptRunError(
            f"{path} ends in a damaged record at byte {base + checked.bad_at}; a closed log file "
            "should be complete. Nothing was changed.", path=str(path),
            offset=base + checked.bad_at, **ctx)
    return checked


def records(bodies: list[bytes]) -> list[dict[str, Any]]:
    """The records of checked bodies; a plain history record gets its ``_step`` and
    ``_timestamp`` from the record before it (none when no framed record came before)."""
    out = [loads(body + b"}") for body in bodies]
    step: int | None = None
    ts: Any = None
    for record in out:
        if "_step" in record:
            step, ts = record["_step"], record.get("_timestamp")
        elif step is not None:
            step += 1
            record["_step"] = step
            record["_timestamp"] = ts
    return out


def scan(path: Path, *, allow_torn_tail: bool = True,
         **ctx: Unpack[Ctx]) -> tuple[list[dict[str, Any]], int]:
    """All records of a log file (see check) and the offset just past the last good one."""
    checked = check(path.read_bytes(), path, allow_torn_tail=allow_torn_tail, **ctx)
    try:
        return records(checked.bodies), checked.end
    except ValueError as exc:
        raise CorruptRunError(f"{path} holds a record with a valid checksum that is not JSON "
                              f"({exc}); it was not written by localtrack.", path=str(path),
                              **ctx) from exc


class Tail(NamedTuple):
    record: dict[str, Any] | None  # the last good record, its _step and _timestamp filled in
    end: int  # just past it
    frame_end: int  # just past the last good framed line


def last_record(path: Path, durable: int = sys.maxsize, **ctx: Unpack[Ctx]) -> Tail:
    """The last good record of a log, reading only its tail.

    Constant time in the length of the file: it reads windows backwards, 4 KiB then four
    times larger each time, until one holds a verified frame after a frame boundary. A bad
    record followed by a good one in that tail raises CorruptRunError.
    """
    with open(path, "rb") as fh:
        size = end_of_data(fh)
        window = 4096  # an event or a framed row is usually in the last few lines
        while True:
            start = max(0, size - window)
            fh.seek(start)
            chunk = fh.read(size - start)
            origin = 0 if start == 0 else _first_frame_end(chunk)
            if origin is not None:
                rest = chunk[origin:]
                checked = check(rest, path, anchored=origin > 0, base=start + origin,
                                durable=durable, **ctx)
                line = rest.rfind(b"\n", 0, checked.end - 1) + 1  # the last good line
                framed = (checked.frame_end == checked.end
                          and not rest.startswith(END_BODY + _CRC_MARK, line))
                last, known = _last(checked.bodies, framed)
                if start == 0 or (checked.frame_end and known):
                    base = start + origin
                    return Tail(last, base + checked.end, base + checked.frame_end)
            window *= 4


def _first_frame_end(chunk: bytes) -> int | None:
    """Just past the first whole framed line of a chunk that may begin mid-line."""
    mark = chunk.find(_CRC_MARK, chunk.find(b"\n") + 1)
    nl = chunk.find(b"\n", mark) if mark >= 0 else -1
    return nl + 1 if nl >= 0 else None


def _last(bodies: list[bytes], framed: bool) -> tuple[dict[str, Any] | None, bool]:
    """The last of ``bodies`` as a record, and whether it is complete: a framed record is
    (an event has no step), a plain record's step is counted from the last framed one."""
    if not bodies:
        return None, True
    last: dict[str, Any] = loads(bodies[-1] + b"}")
    if framed or "_step" in last:  # (a framed row before a log's closing line)
        return last, True
    for i in range(len(bodies) - 2, -1, -1):
        if _STEP_MARK in bodies[i]:
            anchor = loads(bodies[i] + b"}")
            last["_step"] = anchor["_step"] + len(bodies) - 1 - i
            last["_timestamp"] = anchor.get("_timestamp")
            return last, True
    return last, False


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
        if n := _data_in(fh.read(end - start)):
            return start + n
        end = start
    return 0


def data_end(data: bytes) -> int:
    """The length of a log's bytes without their NUL padding (see end_of_data)."""
    end = len(data)
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        if n := _data_in(data[start:end]):
            return start + n
        end = start
    return 0


def _data_in(block: bytes) -> int:
    """How much of ``block`` comes before its NUL padding. A memcmp first: ``rstrip`` takes
    ~100x longer on padding (~6 ms per MiB here)."""
    return 0 if block == _ZEROS[:len(block)] else len(block.rstrip(b"\0"))


def refuse_link(path: Path, **ctx: Unpack[Ctx]) -> None:
    """CorruptRunError if ``path`` is a symbolic link or not a regular file: a writer cuts and
    appends to its logs, and must never do that to a file outside the store."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise CorruptRunError(f"{path} of run {ctx.get('run_id')!r} in project {ctx.get('project')!r} "
                              "is a symbolic link or not a regular file; localtrack writes only "
                              "files it created. Replace it with the file itself, or move the "
                              "run out of the store.", path=str(path), **ctx)


def cut_torn_tail(path: Path, good_end: int, *, warn: bool = True, **ctx: Unpack[Ctx]) -> None:
    """Truncate ``path`` to ``good_end``, keeping cut bytes other than padding in ``<path>.broken``."""
    size = path.stat().st_size
    if size <= good_end:
        return
    with os.fdopen(os.open(path, os.O_RDWR | os.O_NOFOLLOW), "r+b") as fh:
        end = end_of_data(fh)
        fh.seek(good_end)
        junk = fh.read(end - good_end) if end > good_end else b""
        if not junk:  # only the padding of a mapped log whose writer died: nothing was lost,
            fh.truncate(good_end)  # and no fsync: padding that a power cut brings back is padding
            return
        keep_broken(path, junk)
        fh.truncate(good_end)
        fh.flush()
        _fsutil.fsync(fh.fileno())
    where = f"run {ctx.get('run_id')!r} in project {ctx.get('project')!r}" if ctx else str(path)
    message = (f"Dropped a torn tail of {len(junk)} bytes from {path} ({where}): the writer "
               "died mid-append (those bytes were never acknowledged) or the power went before "
               f"an fsync (they were never synced). A copy is in {path.name}.broken.")
    report_repair(message, warn)


def keep_broken(path: Path, data: bytes) -> None:
    """Append ``data`` to ``<path>.broken``, fsynced: what a repair cuts off is kept for people."""
    _fsutil.append_durable(path.with_name(path.name + ".broken"), data)


def report_repair(message: str, warn: bool) -> None:
    """Log a repair, and warn the caller of the public call that made it (if ``warn``)."""
    log.warning(message)
    if warn:
        warnings.warn(message, RuntimeWarning, stacklevel=4)


class Appender:
    """An open log file that appends framed lines with one write() each; the caller fsyncs.

    ``put`` is append() until the file reaches ``limit`` bytes, then raises ValueError,
    like a full MappedLog window: that is when the writer considers rotating.
    """

    def __init__(self, path: Path, limit: int = 1 << 62, frame_at: int = 0) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.offset = os.fstat(self.fd).st_size
        self.frame_at = frame_at  # where the checksum range of the next framed line starts
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

    def range_crc(self) -> int:
        """The CRC-32 of the bytes since the last framed line."""
        return _pread_crc(self.fd, self.frame_at, self.offset)

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
            _fsutil.fsync(self.fd)

    def abandon(self) -> None:
        """Close without anything else (see MappedLog.abandon)."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self, sync: bool = True, cut: bool = True) -> None:
        """Close, fsyncing first if ``sync`` (``cut``: as MappedLog's; this file has no padding)."""
        if self.fd >= 0:
            try:
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

    def __init__(self, path: Path, frame_at: int = 0) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
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
    log.put(b'%s,"_crc":%d}\n' % (body, zlib.crc32(body, log.range_crc())))
    log.frame_at = log.offset


def append_framed(log: MappedLog | Appender, body: bytes) -> None:
    """As put_framed, growing the file (MappedLog) or going past its limit (Appender)."""
    log.append(b'%s,"_crc":%d}\n' % (body, zlib.crc32(body, log.range_crc())))
    log.frame_at = log.offset


def ends_closed(data: bytes, end: int) -> bool:
    """Whether the good bytes ``data[:end]`` end with the line that closes a log file.

    Every log but the newest was closed at rotation, so one that does not end so lost its end:
    a power cut can drop a closed log's last unsynced pages whole, and if they ended at a line
    boundary nothing else shows it."""
    return data.startswith(END_BODY + _CRC_MARK, data.rfind(b"\n", 0, end - 1) + 1)


def close_frame(log: MappedLog | Appender) -> None:
    """End a log file being closed with the closing line, which frames the plain lines before
    it (if any): a closed log is checksummed to its last byte, and one that does not end with
    this line lost its end (see ends_closed)."""
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
    return MappedLog(path, frame_at) if mapped else Appender(path, limit, frame_at)
