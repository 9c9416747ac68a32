"""Log files on disk: checking them, reading their last record, cutting a torn tail.

A record whose append returned is in the page cache and survives SIGKILL;
fsync follows the run's policy (see _stream). After a crash the tail may be
cut off or hold junk: a bad *tail* is torn (it is cut off on the next writer
open, a ``.broken`` copy is kept); a bad record or frame followed by a good
one is corruption and is reported with its offset, never skipped. Plain lines
after the last frame are checked by parsing them. The line format is _frames'.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _fsutil
from ._frames import CRC_MARK, END_BODY, Checked, data_in, first_frame_end, last_of, records, validate
from ._naming import Ctx, run_label
from .errors import CorruptRunError

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger("localtrack")

_TAIL_CHUNK = 64 * 1024


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
            origin = 0 if start == 0 else first_frame_end(chunk)
            if origin is not None:
                rest = chunk[origin:]
                checked = check(rest, path, anchored=origin > 0, base=start + origin,
                                durable=durable, **ctx)
                line = rest.rfind(b"\n", 0, checked.end - 1) + 1  # the last good line
                framed = (checked.frame_end == checked.end
                          and not rest.startswith(END_BODY + CRC_MARK, line))
                last, known = last_of(checked.bodies, framed)
                if start == 0 or (checked.frame_end and known):
                    base = start + origin
                    return Tail(last, base + checked.end, base + checked.frame_end)
            window *= 4


def step_of(record: dict[str, Any], path: Path | str, **ctx: Unpack[Ctx]) -> int:
    """The _step of a log's last record, read back to resume or report it: the one rule the
    writer and the read side share. Anything but an integer is damage, named with the file."""
    step = record.get("_step")
    if isinstance(step, bool) or not isinstance(step, int):
        raise CorruptRunError(f"{path} of {run_label(ctx)} ends with a record whose _step is "
                              f"{step!r}, not an integer; restore it from a sync remote or a "
                              "backup, or run `localtrack doctor`.", path=str(path), **ctx)
    return step


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
        if n := data_in(fh.read(end - start)):
            return start + n
        end = start
    return 0


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
