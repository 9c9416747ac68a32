"""The append-only, framed JSONL log used for history and lifecycle events.

Every line is one JSON object whose last member is ``"_crc"``: the CRC-32 of
the line's bytes before ``,"_crc":``. One ``write()`` per record, so a record
whose append returned is in the page cache and survives SIGKILL; fsync follows
the run's policy. After a crash the tail may be cut off or hold junk: a bad
*tail* is torn (it is cut off on the next writer open, a ``.broken`` copy is
kept); a bad record followed by a good one is corruption and is reported with
its offset, never skipped.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._codec import dumps, loads
from ._naming import Ctx
from .errors import CorruptRunError

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("localtrack")

_CRC_MARK = b',"_crc":'
_TAIL_CHUNK = 64 * 1024

FSYNC_POLICIES = ("periodic", "always", "never")


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
    size = len(data)
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
        size = os.fstat(fh.fileno()).st_size
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


def cut_torn_tail(path: Path, good_end: int, *, warn: bool = True, **ctx: Unpack[Ctx]) -> None:
    """Truncate ``path`` to ``good_end``, keeping the cut bytes in ``<path>.broken``."""
    size = path.stat().st_size
    if size <= good_end:
        return
    with open(path, "r+b") as fh:
        fh.seek(good_end)
        junk = fh.read()
        with open(path.with_name(path.name + ".broken"), "ab") as keep:
            keep.write(junk)
            keep.flush()
            os.fsync(keep.fileno())
        fh.truncate(good_end)
        fh.flush()
        os.fsync(fh.fileno())
    where = f"run {ctx.get('run_id')!r} in project {ctx.get('project')!r}" if ctx else str(path)
    message = (f"Dropped a torn tail of {size - good_end} bytes from {path} ({where}): the writer "
               "died mid-append; those bytes were never acknowledged. A copy is in "
               f"{path.name}.broken.")
    log.warning(message)
    if warn:
        warnings.warn(message, RuntimeWarning, stacklevel=3)


class Appender:
    """An open log file that appends framed lines with the run's fsync policy."""

    def __init__(self, path: Path, policy: str = "periodic", interval: float = 1.0) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.offset = os.fstat(self.fd).st_size
        self._always = policy == "always"
        self._periodic = policy == "periodic"
        self._interval = interval
        self._synced = time.monotonic()

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
        if self._always:
            os.fsync(self.fd)
        elif self._periodic:
            now = time.monotonic()
            if now - self._synced >= self._interval:
                os.fsync(self.fd)
                self._synced = now

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
        os.fsync(self.fd)
        self._synced = time.monotonic()

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.fsync(self.fd)
            finally:
                os.close(self.fd)
                self.fd = -1
