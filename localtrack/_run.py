"""Run: the writer of one run (opened by ``_start.start()``).

A Run is RUNNING until finish() (FINISHED); every public method checks the
state. A preemption signal is recorded on the side: the run ends "preempted".
log() encodes once with orjson and copies one framed line into the mapped log
(see _wal): once it returns, the step survives SIGKILL. Closed log files are
sealed into Parquet by a child process (see _sealer), never in this one.
"""

from __future__ import annotations

import enum
import functools
import logging
import operator
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import _durable, _frames, _fsutil, _layout, _logfile, _naming, _sealer, _segments, _store, _wal
from ._codec import LINE_OPTS, dumps, encode_fast, encode_row, encode_tree, plain_json, untag
from ._config import Config, Summary
from ._locks import RunLock
from ._naming import Ctx
from ._settings import Settings
from .errors import LocaltrackError, LockUnavailableError, RunStateError, StorageError, UsageError

log = logging.getLogger("localtrack")

ROTATE_BYTES = 16 << 20
SEAL_MIN_BYTES = _sealer.SEAL_MIN_BYTES  # a finished tail this big is sealed; smaller stays JSONL
STAMP_SECONDS = 0.001  # a plain row's time is that of the last framed row: at most this old
_time = time.time
_monotonic = time.monotonic  # when to frame: a clock stepped back must not stop the frames
_sum = sum


_F = TypeVar("_F", bound=Callable[..., None])


def _critical(method: _F) -> _F:
    """Run a writer method under the run's mutex; one re-entered by a signal handler is queued.

    Any thread may call the writer: the mutex (re-entrant) keeps one call at a time. A signal
    handler runs in the main thread between any two bytecodes, possibly in the middle of a
    call that holds the mutex; ``_busy`` then says so, and the handler's call is queued and
    made when the interrupted call ends, never in the middle of it.
    """
    @functools.wraps(method)
    def critical(self: Run, *args: Any, **kwargs: Any) -> None:
        mutex = self._mutex
        mutex.acquire()
        if self._busy:
            mutex.release()
            self._deferred.append(functools.partial(method, self, *args, **kwargs))
            return
        self._busy = True
        try:
            method(self, *args, **kwargs)
        finally:
            self._busy = False
            mutex.release()
            if self._deferred:
                self._run_deferred()
    return critical  # type: ignore[return-value]


class State(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"


class Run:
    """A run being written by this process. Create it with ``localtrack.init()``."""

    def __init__(self, *, settings: Settings, rid: _naming.RunId, rdir: Path, meta: dict[str, Any],
                 lock: RunLock, pointer: Path, resumed: bool,
                 on_close: Callable[[Run], None] = lambda run: None) -> None:
        self.id: str = rid
        self._rid = rid
        self.project: str = settings.project
        self.name: str = meta.get("name") or rid
        self.resumed = resumed
        self._on_close = on_close  # the session forgets the run (no import of _session here)
        self._settings = settings
        self._rdir = rdir
        self._meta = meta
        self._lock = lock
        self._pointer = pointer
        self._ctx: Ctx = {"project": settings.project, "run_id": rid}
        self._where = f"run {rid!r} in project {settings.project!r}"
        self._state = State.RUNNING
        self._open = True  # log()'s one-attribute check of the state
        self._warned_step = False
        self._partial_step = -1  # the step of a commit=False record not yet committed
        self._numeric = True  # log() checks rows with sum() while they hold only numbers
        self._summary_cache: tuple[int, int, dict[str, Any]] = (-1, 0, {})
        self._preempted_by: str | None = None
        self._owner_pid = os.getpid()  # another pid: a forked child, which must not write
        self._mutex = threading.RLock()  # one writer call at a time, from any thread (_critical)
        self._busy = False  # a writer call holds the mutex and is under way
        self._deferred: list[Callable[[], Any]] = []  # calls a signal handler made meanwhile
        self._signalled: str | None = None  # a signal came (perhaps still deferred): not finished

        self._mapped = _logfile.mappable(rdir / "wal")  # decided once: /proc/mounts is long
        try:
            with _sealer.hold(rdir):  # no sealer removes a log while we read and repair it
                manifest = _segments.load_manifest(rdir, **self._ctx)
                _segments.cleanup(rdir, manifest)
                last_step = self._attach_log(manifest)
        except TimeoutError as exc:
            raise LockUnavailableError(f"Cannot open {self._where}: {exc}; is a process stuck "
                                       "on this file system?", **self._ctx) from exc
        # The durable watermark (see _durable): the flusher records what its fsyncs made durable.
        legacy = not _durable.path_of(rdir).exists()
        self._marks = _durable.Writer(rdir)
        if legacy:  # a run from before the watermark: its logs were read as synced, and are now
            for seq in _segments.wal_seqs(rdir):
                _fsutil.fsync_file(_layout.wal_path(rdir, seq), missing_ok=True)
            self._marks.record(_durable.Mark(self._seq, self._wal.frame_at))
        if settings.fsync != "never":
            _fsutil.fsync_dir(rdir / "wal")
        self.starting_step: int = last_step + 1
        self.step: int = self.starting_step
        events = rdir / _store.EVENTS
        _wal.refuse_link(events, **self._ctx)
        if events.exists():  # a writer killed mid-event leaves a torn tail: cut it before appending
            _wal.cut_torn_tail(events, _wal.last_record(events, **self._ctx).end, **self._ctx)
        self._events = _logfile.Appender(events)
        self._put: Callable[[bytes], Any] = self._wal.put
        self._stamp_due = 0.0  # the monotonic time after which log() frames its row
        self._flusher: threading.Thread | None = None
        self._closed_unsynced: list[Path] = []  # rotated logs the flusher fsyncs
        self._stop_flusher = threading.Event()
        if settings.fsync == "always":
            self._put = self._put_and_sync
        if settings.fsync != "never":
            self._flusher = threading.Thread(target=self._flush_periodically, daemon=True,
                                             name=f"localtrack-fsync-{rid}")
            self._flusher.start()
        self.config = Config(_store.read_tree(rdir / _store.CONFIG_JSON, "config", **self._ctx),
                             self._write_config, self._mutex)
        self.summary = Summary(self._summary_last,
                               _store.read_tree(rdir / _store.SUMMARY_JSON, "summary", **self._ctx),
                               self._write_summary, self._mutex)

    # -- opening ---------------------------------------------------------------------------

    def _attach_log(self, manifest: dict[str, Any]) -> int:
        """Open the newest log file for appending, its torn tail cut; the last step on disk."""
        self._seq, last_step, frame_at = self._open_log(manifest)
        self._wal = _logfile.open_log(_layout.wal_path(self._rdir, self._seq), ROTATE_BYTES,
                                  self._mapped, frame_at)
        return last_step

    def _recover(self) -> None:
        """After an exception that a signal handler raised in the middle of log(): what is on
        disk is whole (a record is stored by one C call), but the writer's offsets and step may
        lag behind it. Take them from the files again, as a resume does."""
        try:
            self._wal.abandon()
            for seq in _segments.wal_seqs(self._rdir)[:-1]:  # a rotation may have been cut short
                _fsutil.fsync_file(_layout.wal_path(self._rdir, seq), missing_ok=True)
            self._closed_unsynced = []
            for attempt in range(3):  # a sealer may remove a closed log file as we read it
                try:
                    last_step = self._attach_log(_segments.load_manifest(self._rdir, **self._ctx))
                    break
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        except Exception:
            log.error("could not reopen the log of %s after an interrupted log(); logging to it "
                      "now fails, and its files are repaired when it is resumed", self._where,
                      exc_info=True)
            self._state = State.FINISHED
            self._open = False
            return
        self.step = max(self.step, last_step + 1)
        self._partial_step = -1
        self._stamp_due = 0.0  # the next row is framed
        self._put = self._put_and_sync if self._settings.fsync == "always" else self._wal.put

    def _open_log(self, manifest: dict[str, Any]) -> tuple[int, int, int]:
        """(active log seq, last step on disk, where its checksum range starts): reads only
        the tail of the newest log files."""
        rdir = self._rdir
        sealed = manifest["sealed_through"]
        seqs = [s for s in _segments.wal_seqs(rdir) if s > sealed]
        if not seqs:
            return sealed + 1, manifest["last_step"], 0
        newest = _layout.wal_path(rdir, seqs[-1])
        if newest.is_dir():  # a log kept as a folder of chunks: this is a copy made by sync
            raise UsageError(f"{self._where} is in a store written by `localtrack sync` "
                             f"({rdir}); synced stores are read-only. Resume the original run, "
                             "or read this one with localtrack.Api.", **self._ctx)
        for seq in seqs:
            _wal.refuse_link(_layout.wal_path(rdir, seq), **self._ctx)
        seqs = _durable.repair(rdir, seqs, **self._ctx)  # a crash's damage past the watermark
        newest = _layout.wal_path(rdir, seqs[-1])
        tail = _wal.last_record(newest, **self._ctx)
        _wal.cut_torn_tail(newest, tail.end, **self._ctx)
        record = tail.record
        for seq in reversed(seqs[:-1]):
            if record is not None:
                break
            record = _wal.last_record(_layout.wal_path(rdir, seq), **self._ctx).record
        last_step = record["_step"] if record is not None else manifest["last_step"]
        return seqs[-1], int(last_step), tail.frame_end

    # -- public API ------------------------------------------------------------------------

    @property
    def dir(self) -> str:
        return str(self._rdir)

    @property
    def state(self) -> str:
        return self._state.value

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        """Append one history record. Steps below ``run.step`` are dropped with a warning.

        Safe from any thread: _critical's protocol, written out here (a call less per row).
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
            # is written as orjson's bytes alone, the next step at the same time (see _wal); one
            # a millisecond at most carries its step and time and a checksum of the lines before.
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

    def _append_stamped(self, row: bytes) -> None:
        """Append a row (JSON without its closing brace) framed, with its step and time."""
        due = _monotonic() + STAMP_SECONDS
        self._append_framed(b'%s,"_step":%d,"_timestamp":%s' % (row, self.step, dumps(_time())))
        self._stamp_due = due  # only once written: a failed append must not leave a file unanchored

    def _append_framed(self, body: bytes) -> None:
        """Append a framed line; rotate first if the log file is big enough (never inside a step)."""
        try:
            try:
                _logfile.put_framed(self._wal, body)
            except ValueError:  # the mapped window or the file is full
                if self._rotation_due():
                    self._rotate()
                _logfile.append_framed(self._wal, body)
                self._put = self._put_and_sync if self._settings.fsync == "always" else self._wal.put
            if self._settings.fsync == "always":
                self._wal.sync()
        except OSError as exc:
            raise self._storage_error("append to the history log", exc) from exc

    def _append_slow(self, line: bytes) -> None:
        """Append a plain line that did not fit: frame it if the log file is to rotate."""
        if self._rotation_due():
            self._append_stamped(line[:-2])  # rotates: a log file starts with a framed line
            return
        try:
            self._wal.append(line)
            if self._settings.fsync == "always":
                self._wal.sync()
                self._put = self._put_and_sync
            else:
                self._put = self._wal.put
        except OSError as exc:
            raise self._storage_error("append to the history log", exc) from exc

    def _rotation_due(self) -> bool:
        """Whether the full window or file is the log file's end: big enough, between steps."""
        return self._wal.offset >= ROTATE_BYTES and self.step != self._partial_step

    def _put_and_sync(self, line: bytes) -> None:
        self._wal.put(line)
        self._wal.sync()

    def _flush_periodically(self) -> None:
        """fsync the log every fsync_interval seconds (the GIL is released while it runs), then
        record in the durable watermark how far that made it durable (fsync="always": records
        are synced as written; only the watermark is left to do).

        It fsyncs a duplicate of the descriptor outside the lock, so that rotation and
        finish() never wait for an fsync in progress. The mark is taken before the fsync: the
        fsync covers at least the bytes before it, so the mark is never ahead of the disk.
        """
        periodic = self._settings.fsync == "periodic"
        while not self._stop_flusher.wait(self._settings.fsync_interval):
            fd = -1
            try:
                with self._mutex:
                    if not self._open:
                        return
                    paths, self._closed_unsynced = self._closed_unsynced, []
                    if self._wal.fd >= 0 and periodic:
                        fd = os.dup(self._wal.fd)
                    mark = _durable.Mark(self._seq, self._wal.frame_at)
                for path in paths:
                    _fsutil.fsync_file(path, missing_ok=True)
                if fd >= 0:
                    _fsutil.fsync(fd)
                self._marks.record(mark)
            except OSError:
                log.warning("fsync of %s failed", self._wal.path, exc_info=True)
            finally:
                if fd >= 0:
                    os.close(fd)

    def _log_general(self, data: Any, step: int | None, commit: bool | None) -> None:
        self._require_owner()
        if self._state is not State.RUNNING:
            raise RunStateError(f"Cannot log to {self._where}: it is {self._state.value}. "
                                "Start or resume it with localtrack.init().", **self._ctx)
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
        self._append_framed(b'%s,"_step":%d,"_timestamp":%s' % (out[:-1], s, ts) if len(out) > 2
                            else b'{"_step":%d,"_timestamp":%s' % (s, ts))
        self._stamp_due = 0.0  # the next row may not be the next step: it carries its own
        if commit or (commit is None and step is None):
            self.step = s + 1
            self._partial_step = -1
        else:
            self._partial_step = s

    def _encode_slow(self, data: Any) -> bytes:
        """Validate and convert a row the fast path refused; raises naming the key."""
        if not isinstance(data, dict):
            raise UsageError(f"run.log() takes a dict of values, got {type(data).__name__} "
                             f"({self._where}).", **self._ctx)
        return dumps(encode_row(data, self._where)[0])

    @_critical
    def finish(self, exit_code: int = 0) -> None:
        """Close the log, record the exit code, release the run; a child process seals the tail.

        The log is fsynced here unless a sealer is started for it: that process fsyncs the
        logs first, off this one's exit path (within the periodic policy's promise).
        """
        if self._state is State.FINISHED or os.getpid() != self._owner_pid:
            return
        self._state = State.FINISHED
        self._stop_flusher.set()
        self._open = False
        sealing = self._worth_sealing()
        tail_sealed = self._wal.offset >= SEAL_MIN_BYTES  # the sealer will remove this file
        sync = self._settings.fsync == "periodic" and not sealing
        try:
            for path in self._closed_unsynced if sync else ():
                _fsutil.fsync_file(path, missing_ok=True)
            self._close_frame()
            self._wal.close(sync=sync, cut=not tail_sealed)
            if sync or self._settings.fsync == "always":
                self._record_mark()
            # A signal never makes a run finished (wandb#9568), also one that came during
            # finish() and waits for it to end (_critical): then this records the preemption.
            if self._preempted_by is None and self._signalled is not None:
                self._preempted_by = self._signalled
                self._event("preempted", sync=True, signal=self._signalled)
            elif self._preempted_by is None:
                # The sealer fsyncs the event file after the logs, as it does the logs.
                self._event("finished", sync=sync or self._settings.fsync == "always",
                            exit_code=int(exit_code))
                if exit_code == 0:
                    _store.clear_pointer(self._pointer, self._rid)
        finally:
            self._events.close(sync=False)  # every event was synced, or the sealer will
            self._marks.close()
            self._lock.release()
            self._on_close(self)
        if sealing:
            _sealer.request(self._rdir, SEAL_MIN_BYTES)  # after the release: the tail is closed now

    def _record_mark(self) -> None:
        """Record the end of the last framed line as durable: the caller has fsynced every log."""
        if self._settings.fsync != "never":
            self._marks.record(_durable.Mark(self._seq, self._wal.frame_at))

    def _close_frame(self, rotating: bool = False) -> None:
        """Frame the plain rows at the end of a log file being closed: a closed log is checksummed
        to its last byte. Failing to (a full disk) costs only that: the rows are written."""
        try:
            if self._wal.offset > 0 or rotating:  # (an empty newest log stays empty)
                _logfile.close_frame(self._wal)
                if self._settings.fsync == "always":
                    self._wal.sync()
        except OSError:
            log.warning("could not write the closing checksum of %s", self._wal.path, exc_info=True)

    def _worth_sealing(self) -> bool:
        """Whether finish() leaves a log file the sealer would seal (it decides for itself)."""
        return self._wal.offset >= SEAL_MIN_BYTES or len(_segments.wal_seqs(self._rdir)) > 1

    def _disown(self) -> None:
        """In a forked child: log() takes the slow path, which refuses (see _log_general).
        The mutex may have been held by a thread that does not exist here: a new one."""
        self._mutex = threading.RLock()
        object.__setattr__(self.config, "_lock", self._mutex)  # (Config's setattr writes keys)
        self.summary._lock = self._mutex
        self._busy = False
        self._deferred = []
        self._open = False

    @_critical
    def mark_preempting(self) -> None:
        """Declare that this run may be preempted: a sweep requeues it if it dies."""
        self._require_running("mark_preempting")
        self._event("preempting")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def __repr__(self) -> str:
        return f"<localtrack.Run {self.path} step={self.step} {self._state.value}>"

    # -- lifecycle hooks (called by _session) ----------------------------------------------

    @_critical
    def _on_signal(self, signame: str) -> None:
        """Make everything durable and record the preemption; the run stays resumable.

        Logging stays allowed (a user's handler may checkpoint and log before exiting), but
        the run will end as preempted whatever exit code follows.
        """
        if self._state is not State.RUNNING or self._preempted_by is not None:
            return
        self._preempted_by = signame
        for path in self._closed_unsynced:
            _fsutil.fsync_file(path, missing_ok=True)
        self._closed_unsynced = []
        self._wal.sync()
        self._record_mark()
        self._event("preempted", signal=signame)

    def _interrupted(self) -> bool:
        """In a signal handler (main thread): whether it interrupted a writer call of this run.

        Taking the mutex waits for another thread's call to end; it is taken at once when
        the interrupted main thread holds it, and then ``_busy`` tells whether a call is
        under way (not just entering or leaving)."""
        with self._mutex:
            return self._busy

    def _defer(self, call: Callable[[], Any]) -> None:
        """Queue ``call`` for the end of the interrupted writer call (see _interrupted)."""
        self._deferred.append(call)

    def _run_deferred(self) -> None:
        """Make the calls queued while a writer call was interrupted, in order, in the main
        thread (the one signal handlers run in), after that call released the mutex."""
        if threading.current_thread() is not threading.main_thread():
            return
        while self._deferred:
            self._deferred.pop(0)()

    # -- internals -------------------------------------------------------------------------

    def _require_running(self, what: str) -> None:
        self._require_owner()
        if self._state is not State.RUNNING:
            raise RunStateError(f"Cannot {what} {self._where}: it is {self._state.value}.",
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
        return _fsutil.storage_error(what, self._wal.path, exc, **self._ctx)

    def _event(self, name: str, sync: bool = True, **fields: Any) -> None:
        record = {"event": name, "time": time.time(), "step": self.step, "pid": os.getpid(),
                  **fields}
        try:
            self._events.append(_frames.frame(record))
            if sync:
                self._events.sync()
        except OSError as exc:
            raise self._storage_error(f"record the {name!r} event in", exc) from exc

    @_critical
    def _write_config(self, data: dict[str, Any]) -> None:
        self._require_running("change the config of")
        payload = dumps(encode_tree(data, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.CONFIG_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.CONFIG_JSON, payload)

    @_critical
    def _write_summary(self, explicit: dict[str, Any]) -> None:
        self._require_running("change the summary of")
        payload = dumps(encode_tree(explicit, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.SUMMARY_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.SUMMARY_JSON, payload)

    def _summary_last(self) -> dict[str, Any]:
        """The last logged value of each key, read back from the run's files when asked.

        log() keeps no copy (a dict update per step was a tenth of its cost); this reads
        the manifest and the unsealed logs once, then only what was appended since.
        """
        with self._mutex:
            return self._read_summary_last()

    def _read_summary_last(self) -> dict[str, Any]:
        for _ in range(50):
            seq, offset, last = self._summary_cache
            manifest = _segments.load_manifest(self._rdir, **self._ctx)
            if seq <= manifest["sealed_through"]:  # what we read may be sealed: start over
                seq, offset, last = manifest["sealed_through"] + 1, 0, dict(manifest["last"])
            last = dict(last)
            try:
                for s in range(seq, self._seq + 1):
                    path = _layout.wal_path(self._rdir, s)
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        checked = _wal.check(fh.read(), path, anchored=offset > 0,
                                             **self._ctx)
                    last.update(_segments.last_values(_frames.records(checked.bodies)))
                    # Next time from the last frame: a checksum range starts there (the plain
                    # rows after it are read again; last values do not change for that).
                    seq, offset = s, offset + checked.frame_end
                    if s < self._seq:
                        offset = 0
            except FileNotFoundError:  # sealed while we read
                self._summary_cache = (-1, 0, {})
                continue
            self._summary_cache = (seq, offset, last)
            return {k: untag(v) for k, v in last.items()}
        raise StorageError(f"Could not read the summary of {self._where}: its log files keep "
                           "changing.", path=str(self._rdir), **self._ctx)

    def _rotate(self) -> None:
        """Close the full log file, open the next, and have the closed one sealed."""
        # No fsync here: "always" has synced every record (and syncs the closing frame),
        # the flusher fsyncs the closed file within a period, "never" leaves it to the OS.
        self._close_frame(rotating=True)
        self._wal.close(sync=False)
        if self._settings.fsync == "periodic":
            self._closed_unsynced.append(self._wal.path)
        self._seq += 1
        self._wal = _logfile.open_log(_layout.wal_path(self._rdir, self._seq), ROTATE_BYTES,
                                  self._mapped)
        if self._settings.fsync != "never":
            _fsutil.fsync_dir(self._rdir / "wal")
        _sealer.request(self._rdir, SEAL_MIN_BYTES)
