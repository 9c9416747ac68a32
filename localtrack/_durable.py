"""The durable watermark: how far a run's history logs are known to be on disk after a power cut.

After a power cut a file keeps what was fsynced; pages written since may reach the disk in any
order (any 4 KiB page or 512 B sector old or new, one in the middle lost while a later one
stayed). Checksums find such damage, but only a record of what was synced tells a torn tail
(damage after the last fsync: expected, cut on the next open) from corruption (damage in data
that was synced: reported, never cut). ``wal/durable`` is that record: (seq, offset) says that
the log files before ``seq`` are durable in full and log ``seq`` through ``offset``, the end of
a framed line; later logs, not at all. A file with no valid slot (a new run, fsync="never"):
nothing is known to be durable. No file at all (a run older than the watermark): every byte
counts as durable, so damage anywhere is corruption, as it was for those runs.

Who writes it, and why it is never ahead of the truth: the writer's flusher, after the fsync of
the logs it describes returned (LogStream._flush_periodically, LogStream.close). A torn or lost update of
this file leaves an older value, which only makes more damage count as torn. The file holds two
64-byte slots written alternately, each ``{"seq":S,"offset":O,"n":N,"crc":C}`` padded with
spaces; the valid slot with the larger ``n`` wins.

repair() is what the next writer (and ``doctor --fix``) does with a crashed run's logs: check
them from the watermark on, cut the first damage (a ``.broken`` copy is kept) and set the logs
after it aside, so the history stays contiguous.
"""

from __future__ import annotations

import os
import sys
import threading
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from . import _blobs, _frames, _fsutil, _layout, _wal
from ._codec import loads
from ._naming import Ctx

if TYPE_CHECKING:
    from typing_extensions import Unpack

NAME = "durable"
_SLOT = 64
ALL = sys.maxsize  # durable_offset() of a log the watermark covers in full
_CLOSING_WINDOW = 256  # bytes before a log's end that hold its closing line, if it has one


class Mark(NamedTuple):
    seq: int  # logs before this one are durable in full
    offset: int  # log ``seq`` is durable through this byte: the end of a framed line


NOTHING = Mark(0, 0)
LEGACY = Mark(ALL, 0)  # no watermark file: everything counts as synced


def path_of(rdir: Path) -> Path:
    return rdir / "wal" / NAME


def _slot_body(mark: Mark, n: int) -> bytes:
    return b'{"seq":%d,"offset":%d,"n":%d' % (mark.seq, mark.offset, n)


def _parse(slot: bytes) -> tuple[int, Mark] | None:
    """(n, mark) of a valid slot, None for a torn, zeroed or foreign one."""
    cut = slot.rfind(b',"crc":')
    if cut < 0:
        return None
    try:
        record = loads(slot.rstrip(b" \n\0"))
    except ValueError:
        return None
    if (type(record) is not dict or record.get("crc") != zlib.crc32(slot[:cut])
            or not all(type(record.get(k)) is int and record[k] >= 0 for k in ("seq", "offset", "n"))):
        return None
    return record["n"], Mark(record["seq"], record["offset"])


def _read_slots(data: bytes) -> tuple[int, Mark]:
    found = [p for i in range(0, len(data), _SLOT) if (p := _parse(data[i:i + _SLOT]))]
    return max(found) if found else (0, NOTHING)


def read(rdir: Path) -> Mark:
    """The run's watermark: NOTHING when its file holds none, LEGACY when there is no file."""
    try:
        fd = os.open(path_of(rdir), os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return LEGACY
    except OSError:
        return NOTHING
    try:
        return parse(os.pread(fd, 2 * _SLOT, 0))
    except OSError:
        return NOTHING
    finally:
        os.close(fd)


def parse(data: bytes) -> Mark:
    """The watermark a ``wal/durable`` file's bytes hold (NOTHING when none)."""
    return _read_slots(data[:2 * _SLOT])[1]


def durable_offset(mark: Mark, seq: int) -> int:
    """How many bytes of log ``seq`` are known to be durable."""
    return ALL if seq < mark.seq else mark.offset if seq == mark.seq else 0


class Writer:
    """The writer's handle on its run's watermark (one per writer; the flusher thread uses it)."""

    def __init__(self, rdir: Path) -> None:
        self.path = path_of(rdir)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._n, self.mark = _read_slots(os.pread(self._fd, 2 * _SLOT, 0))
        self._lock = threading.Lock()  # the flusher thread and finish()

    def record(self, mark: Mark) -> None:
        """Record ``mark``, which the caller's fsyncs made true, and make it durable."""
        with self._lock:
            if mark == self.mark or self._fd < 0:
                return
            n = self._n + 1
            body = _slot_body(mark, n)
            line = b'%s,"crc":%d}' % (body, zlib.crc32(body))
            # If we die here: this slot is torn or old, the other one holds the previous mark.
            os.pwrite(self._fd, line.ljust(_SLOT - 1) + b"\n", (n % 2) * _SLOT)
            _fsutil.fsync(self._fd)
            self._n, self.mark = n, mark

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def lost_end(data: bytes, end: int, durable: int, last: bool) -> bool:
    """Whether a log whose good bytes are ``data[:end]`` lost its end to a power cut: it is
    not the last log, the watermark does not cover it in full, and it does not end with the
    closing line every rotation writes (see _frames.ends_closed)."""
    return not last and durable != ALL and not _frames.ends_closed(data, end)


def repair(rdir: Path, seqs: list[int], *, warn: bool = True, **ctx: Unpack[Ctx]) -> list[int]:
    """Cut a crash's damage off the unsealed logs ``seqs`` (ascending); the logs that remain.

    Every byte past the watermark is checked, log by log: the first damage is a torn tail
    (whatever it is, it was never synced). That log is cut there and the logs after it are
    set aside whole (``<log>.broken``): their steps would follow a hole. Bytes the watermark
    covers are not read here; damage there is corruption, which readers report.
    """
    mark = read(rdir)
    for i, seq in enumerate(seqs):
        path = _layout.wal_path(rdir, seq)
        last = i == len(seqs) - 1
        durable = durable_offset(mark, seq)
        end = _wal.data_size(path)
        if durable >= end:  # all synced: damage would be corruption, for readers to report
            if not last and (durable == ALL or _ends_closed(path, end)):
                continue
            # But a SIGKILL may have torn the last record; and a closed log that the watermark
            # covers only through ``durable`` may have lost every byte after it, closing line
            # and all (the check below finds no closing line: lost_end).
            start = _tail_start(path, end)
        else:
            start = durable
        with open(path, "rb") as fh:
            fh.seek(start)
            data = fh.read(end - start)
        checked = _frames.validate(data, anchored=start > 0)
        torn_media = _blobs.first_bad_ref(rdir, data, checked.end)  # its row outlived its media
        if torn_media is None and checked.bad_at is None \
                and not lost_end(data, checked.end, durable, last):
            continue
        _wal.cut_torn_tail(path, start + (checked.end if torn_media is None else torn_media),
                           warn=warn, **ctx)
        for later in seqs[i + 1:]:
            _set_aside(_layout.wal_path(rdir, later), warn=warn, **ctx)
        return seqs[:i + 1]
    return seqs


def _tail_start(path: Path, end: int) -> int:
    """Where to check a log the watermark covers in full (its writer may have been SIGKILLed
    mid-append after that): the start of a checksum range near its end."""
    return _wal.last_record(path).frame_end if end else 0


def _ends_closed(path: Path, end: int) -> bool:
    """Whether the log's good bytes (``end`` of them) end with its closing line."""
    with open(path, "rb") as fh:
        start = max(0, end - _CLOSING_WINDOW)
        fh.seek(start)
        tail = fh.read(end - start)
    if start and tail.rfind(b"\n", 0, len(tail) - 1) < 0:
        return False  # the last line is longer than any closing line
    return _frames.ends_closed(tail, len(tail))


def _set_aside(path: Path, *, warn: bool, **ctx: Unpack[Ctx]) -> None:
    """Move a whole log that follows a torn one into ``<log>.broken`` (appended, fsynced)."""
    data = path.read_bytes().rstrip(b"\0")
    _wal.keep_broken(path, data)
    _fsutil.unlink(path)
    _fsutil.fsync_dir(path.parent)
    _wal.report_repair(f"Set aside {path} ({len(data)} bytes) of run {ctx.get('run_id')!r}: it "
                       "follows a log file that a crash cut short, so its steps would follow a "
                       f"hole; they were never synced. A copy is in {path.name}.broken.", warn)

