"""The line format of localtrack's logs (history, lifecycle events): pure functions, no I/O.

A *framed* line is a JSON object whose last member is ``"_crc"``: the CRC-32
of every byte from the end of the previous framed line (or the start of the
file) up to the ``,"_crc":`` that precedes it. A *plain* line is a history
record without ``_step``, ``_timestamp`` or ``_crc``: the step after the line
before it, at the same time. The history writer frames one record per
millisecond at most (and the first of a file, and every record that is not a
plain next step), so a record costs one orjson call and a copy; a frame's
checksum covers the plain lines before it. Lifecycle events are all framed.
A log file being closed ends with a closing line (``END_BODY``, framed), so a
closed log is checksummed to its last byte.

A log appended through a memory map (see _logfile) ends in NUL padding while
written; readers ignore trailing NULs. After a crash the tail may be cut off
or hold junk: a bad *tail* is torn; a bad record or frame followed by a good
one is corruption. ``validate`` tells which; _wal reads and repairs files.
"""

from __future__ import annotations

import zlib
from typing import Any, NamedTuple

from ._codec import dumps, loads

CRC_MARK = b',"_crc":'
END_BODY = b'{"_end":true'  # the body of the framed line that closes a log file's last frame
_STEP_MARK = b'"_step":'  # never in a plain line: reserved key, and quotes in strings are escaped
_TAIL_CHUNK = 64 * 1024
_ZEROS = bytes(_TAIL_CHUNK)


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
        mark = data.find(CRC_MARK, pos, size)
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
        cut = line.rfind(CRC_MARK)
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
        crc = int(view[mark + len(CRC_MARK):nl - 1])
    except ValueError:
        return False
    return zlib.crc32(view[pos:mark]) == crc


def _plain_ok(line: bytes) -> bool:
    try:
        return type(loads(line)) is dict
    except ValueError:
        return False


def framed_line(body: bytes, crc_before: int) -> bytes:
    """The framed line ending ``body`` (a JSON object without its final ``}``), whose checksum
    continues ``crc_before``: the CRC-32 of the plain lines since the last framed one."""
    return b'%s,"_crc":%d}\n' % (body, zlib.crc32(body, crc_before))


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


def first_frame_end(chunk: bytes) -> int | None:
    """Just past the first whole framed line of a chunk that may begin mid-line."""
    mark = chunk.find(CRC_MARK, chunk.find(b"\n") + 1)
    nl = chunk.find(b"\n", mark) if mark >= 0 else -1
    return nl + 1 if nl >= 0 else None


def last_of(bodies: list[bytes], framed: bool) -> tuple[dict[str, Any] | None, bool]:
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


def last_framed_row(tail: bytes, whole: bool) -> dict[str, Any] | None:
    """The last framed history row among the lines of ``tail`` (bytes that end at a line end;
    its first line is cut off unless ``whole``), parsed but not checked: its checksum covers
    bytes before it. A time to list, not data to read (see _labels.copy_times). None when
    those lines hold none (plain rows, events, a closing line)."""
    first = 0 if whole else tail.find(b"\n") + 1
    end = len(tail)
    while end > first:
        start = max(first, tail.rfind(b"\n", first, end - 1) + 1)
        if _STEP_MARK in tail[start:end]:
            try:
                row = loads(tail[start:end])
            except ValueError:
                return None
            return row if isinstance(row, dict) else None
        end = start
    return None


def data_end(data: bytes) -> int:
    """The length of a log's bytes without their NUL padding (see end_of_data)."""
    end = len(data)
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        if n := data_in(data[start:end]):
            return start + n
        end = start
    return 0


def data_in(block: bytes) -> int:
    """How much of ``block`` comes before its NUL padding. A memcmp first: ``rstrip`` takes
    ~100x longer on padding (~6 ms per MiB here)."""
    return 0 if block == _ZEROS[:len(block)] else len(block.rstrip(b"\0"))


def ends_closed(data: bytes, end: int) -> bool:
    """Whether the good bytes ``data[:end]`` end with the line that closes a log file.

    Every log but the newest was closed at rotation, so one that does not end so lost its end:
    a power cut can drop a closed log's last unsynced pages whole, and if they ended at a line
    boundary nothing else shows it."""
    return data.startswith(END_BODY + CRC_MARK, data.rfind(b"\n", 0, end - 1) + 1)
