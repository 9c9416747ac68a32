"""History: the step rules of a run's history and ``log()``, its hot path, on a LogStream.

A row is logged at ``step`` (the next one unless given); steps never go back (an older one
is dropped with a warning); ``commit=False`` keeps the step open for more keys. log()
encodes once with orjson and copies one line into the mapped log (see _stream, _logfile):
once it returns, the step survives SIGKILL. A history is RUNNING until it is finished.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from . import _fsutil
from ._blobs import TAG, digest
from ._codec import LINE_OPTS, dumps, encode_fast, encode_row, plain_json
from ._guard import Guarded
from ._naming import Ctx
from ._richmedia import Item, splice
from ._stream import LogStream
from .errors import LocaltrackError, RunStateError, RunStoppedError, StorageError, UsageError

log = logging.getLogger("localtrack")

STAMP_SECONDS = 0.001  # a plain row's time is that of the last framed row: at most this old
_time = time.time
_monotonic = time.monotonic  # when to frame: a clock stepped back must not stop the frames
_sum = sum


class State(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"


class History(Guarded):
    """The history of a run being written by this process (``Run`` adds the lifecycle)."""

    def __init__(self, stream: LogStream, *, where: str, ctx: Ctx,
                 rewind_to: int | None = None) -> None:
        # The caller made the Guarded part first: ``stream`` shares its mutex.
        self._log = stream
        self._where = where
        self._ctx = ctx
        self._state = State.RUNNING
        self._open = True  # log()'s one-attribute check of the state
        self._stop_due = False  # a sweep agent stopped the run: the next log() raises (_request_stop)
        self._owner_pid = os.getpid()  # another pid: a forked child, which must not write
        self._warned_step = False
        self._partial_step = -1  # the step of a commit=False record not yet committed
        self._numeric = True  # log() checks rows with sum() while they hold only numbers
        self._stamp_due = 0.0  # the monotonic time after which log() frames its row
        self.starting_step: int = stream.open(rewind_to) + 1
        self._put: Callable[[bytes], Any] = stream.put
        self.step: int = self.starting_step

    def log(self, data: dict[str, Any] | None = None, step: int | None = None,
            commit: bool | None = None) -> None:
        """Append one history record. Steps below ``run.step`` are dropped with a warning.
        ``log()`` with no row commits the step a ``commit=False`` call left open, as in W&B.

        Safe from any thread: _guard's protocol, written out here (a call less per row).
        """
        mutex = self._mutex
        mutex.acquire()
        if self._busy:  # a signal handler's call, in the middle of this run's writer
            mutex.release()
            self._deferred.append(functools.partial(
                self.log, dict(data) if isinstance(data, dict) else data, step, commit))
            return
        self._busy = True
        try:
            # The common call, in as few Python operations as possible. orjson rejects numpy,
            # subclasses, big ints and non-string keys. A row is plain unless its JSON holds null
            # (None, or NaN/Inf written as null), a nested object or a list; for a row of numbers
            # sum() says the same more cheaply (it is finite only if every value is). A plain row
            # is written as orjson's bytes alone, the next step at the same time (see _frames);
            # one a millisecond at most carries its step and time and a checksum of the lines
            # before.
            if step is None and commit is None and self._open and type(data) is dict and data:
                try:
                    out = dumps(data, option=LINE_OPTS)
                except TypeError:
                    pass
                else:
                    if self._numeric:  # the last row was all numbers: sum() is the cheaper check
                        try:
                            total = _sum(data.values())
                            plain = total - total == 0
                        except TypeError:  # an exception costs: look at the bytes from now on
                            self._numeric = False
                            plain = plain_json(out)
                    else:
                        plain = plain_json(out)
                    if (plain and "_step" not in data and "_timestamp" not in data
                            and "_crc" not in data and "" not in data and "$f" not in data):
                        if _monotonic() < self._stamp_due:
                            try:
                                self._put(out)  # ValueError: the mapped window or the file is full
                            except ValueError:
                                self._append_slow(out)
                            except OSError as exc:
                                raise self._storage_error("append to the history log", exc) from exc
                        else:
                            self._append_stamped(out[:-2])
                        self.step += 1
                        return
            self._log_general(data, step, commit)
        except LocaltrackError:  # raised where the writer is consistent (nothing or all written)
            raise
        except BaseException:  # a signal handler's exception, at any bytecode: see _recover
            self._recover()
            raise
        finally:
            self._busy = False
            mutex.release()
            if self._deferred:
                self._run_deferred()

    def _request_stop(self) -> None:
        """A sweep agent's early termination, from its thread: the next log() raises
        RunStoppedError before writing anything, at a point where the writer is consistent
        (rather than an exception landing at any instruction, inside the writer too). It takes
        log()'s slow path, so the hot path pays nothing."""
        self._stop_due = True
        self._open = False

    def _log_general(self, data: Any, step: int | None, commit: bool | None) -> None:
        if self._stop_due:
            self._stop_due = False
            self._open = self._state is State.RUNNING and os.getpid() == self._owner_pid
            raise RunStoppedError(**self._ctx)
        self._require_running("log to", " Start or resume it with localtrack.init().")
        if data is None:
            if step is None:  # log() or log(commit=True): commit the open step; no row to write
                if commit is not False and self._partial_step == self.step:
                    self.step += 1
                    self._partial_step = -1
                return
            data = {}  # log(step=n): an empty row at n, as log({}, step=n)
        if step is not None:
            step = self._check_step(step)
            if step < self.step:
                self._warn_old_step(step)
                return
            self.step = step
        s = self.step
        out = encode_fast(data)
        if out is None:
            out = self._encode_slow(data)
        ts = dumps(_time())
        self._put = self._log.append_framed(
            b'%s,"_step":%d,"_timestamp":%s' % (out[:-1], s, ts) if len(out) > 2
            else b'{"_step":%d,"_timestamp":%s' % (s, ts), s != self._partial_step)
        self._stamp_due = 0.0  # the next row may not be the next step: it carries its own
        if commit or (commit is None and step is None):
            self.step = s + 1
            self._partial_step = -1
        else:
            self._partial_step = s

    def _append_stamped(self, row: bytes) -> None:
        """Append a row (JSON without its closing brace) framed, with its step and time."""
        due = _monotonic() + STAMP_SECONDS
        # The stream rotates first if the file is full and this is not inside a step.
        self._put = self._log.append_framed(
            b'%s,"_step":%d,"_timestamp":%s' % (row, self.step, dumps(_time())),
            self.step != self._partial_step)
        self._stamp_due = due  # only once written: a failed append must not leave a file unanchored

    def _append_slow(self, line: bytes) -> None:
        """Append a plain line that did not fit: frame it if the log file is to rotate."""
        if self.step != self._partial_step and self._log.rotation_due():
            self._append_stamped(line[:-2])  # rotates: a log file starts with a framed line
            return
        try:
            self._log.append(line)
        except OSError as exc:
            raise self._storage_error("append to the history log", exc) from exc
        self._put = self._log.put

    def _encode_slow(self, data: Any) -> bytes:
        """Validate and convert a row the fast path refused; raises naming the key."""
        if not isinstance(data, dict):
            raise UsageError(f"run.log() takes a dict of values, got {type(data).__name__} "
                             f"({self._where}).", **self._ctx)
        media: list[str] = []
        enc = encode_row(data, self._where, media)[0]
        if media:
            self._store_media(enc, media)
        return dumps(enc)

    def _store_media(self, enc: dict[str, Any], keys: list[str]) -> None:
        """Store the media values of a row in the blob log and put their references in
        ``enc``: every value is checked and encoded before the first byte is written, and the
        bytes go before the row (see _blobs)."""
        items: dict[str, list[Item]] = {
            key: [m._item(key, self._where) for m in (enc[key] if type(enc[key]) is list
                                                       else [enc[key]])] for key in keys}
        try:
            self._log.before_media(may_rotate=self.step != self._partial_step)
            for key, stored in items.items():
                tags = [self._put_item(item) for item in stored]
                enc[key] = tags if type(enc[key]) is list else tags[0]
        except OSError as exc:
            raise self._storage_error("append to the media log", exc) from exc

    def _put_item(self, item: Item) -> dict[str, Any]:
        """Write one media item (a table's images, an image's masks first); its reference tag."""
        data, meta = item.data, item.meta
        if item.children:  # their references go into a table's JSON or an image's masks
            refs = [dumps(self._put_item(child)) for child in item.children]
            if item.refs_in == "data":
                data = splice(bytes(data), refs)
            else:
                meta = {**meta, item.refs_in: splice(meta[item.refs_in].encode(), refs).decode()}
        seq, offset = self._log.put_blob(data)
        return {TAG: {**meta, "log": seq, "off": offset, "len": len(data), **digest(data)}}

    def _recover(self) -> None:
        """After an exception that a signal handler raised in the middle of log(): what is on
        disk is whole, but the step may lag behind it. Take it from the files again."""
        try:
            last_step = self._log.reopen()
        except Exception:
            log.error("could not reopen the log of %s after an interrupted log(); logging to it "
                      "now fails, and its files are repaired when it is resumed", self._where,
                      exc_info=True)
            self._log.drop()
            self._state = State.FINISHED
            self._open = False
            return
        self.step = max(self.step, last_step + 1)
        self._partial_step = -1
        self._stamp_due = 0.0  # the next row is framed
        self._put = self._log.put

    # -- rules -----------------------------------------------------------------------------

    def _require_running(self, what: str, hint: str = "") -> None:
        self._require_owner()
        if self._state is not State.RUNNING:
            raise RunStateError(f"Cannot {what} {self._where}: it is {self._state.value}.{hint}",
                                **self._ctx)

    def _require_owner(self) -> None:
        if os.getpid() != self._owner_pid:
            raise UsageError(f"Cannot write {self._where} from process {os.getpid()}: it was "
                             f"forked from the run's writer (pid {self._owner_pid}), which alone "
                             "writes it. Log from that process, or init() a run of its own here.",
                             **self._ctx)

    def _check_step(self, step: Any) -> int:
        if isinstance(step, bool):
            raise UsageError(f"step must be an int, got {step!r} ({self._where}).", **self._ctx)
        try:
            value = operator.index(step)
        except TypeError:
            raise UsageError(f"step must be an int, got {type(step).__name__} {step!r} "
                             f"({self._where}).", **self._ctx) from None
        if value < 0:
            raise UsageError(f"step must be >= 0, got {value} ({self._where}).", **self._ctx)
        return value

    def _warn_old_step(self, step: int) -> None:
        if not self._warned_step:
            self._warned_step = True
            warnings.warn(f"Dropped a log() at step {step} in {self._where}: steps must not go "
                          f"back (current step is {self.step}). Further drops are not reported.",
                          UserWarning, stacklevel=3)

    def _storage_error(self, what: str, exc: OSError) -> StorageError:
        return _fsutil.storage_error(what, self._log.path, exc, **self._ctx)
