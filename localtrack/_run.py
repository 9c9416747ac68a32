"""Run: the writer of one run, and ``start()``, which opens or creates it.

A Run is RUNNING until finish() (FINISHED); every public method checks the
state. A preemption signal is recorded on the side: the run ends "preempted". log() encodes once with
orjson and appends one framed line with one write(): once it returns, the
step survives SIGKILL. Closed log files are sealed into Parquet by a
background thread and at finish().
"""

from __future__ import annotations

import enum
import logging
import operator
import os
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from . import _fsutil, _layout, _naming, _resume, _segments, _store, _wal
from ._codec import dumps, encode_fast, encode_row, encode_tree
from ._config import Config, Summary
from ._locks import RunLock
from ._naming import Ctx
from ._settings import Settings
from .errors import RunStateError, StorageError, UsageError

log = logging.getLogger("localtrack")

ROTATE_BYTES = 16 << 20
SEAL_MIN_BYTES = 1 << 20


class State(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"


class Run:
    """A run being written by this process. Create it with ``localtrack.init()``."""

    def __init__(self, *, settings: Settings, rid: _naming.RunId, rdir: Path, meta: dict[str, Any],
                 lock: RunLock, pointer: Path, resumed: bool) -> None:
        self.id: str = rid
        self._rid = rid
        self.project: str = settings.project
        self.name: str = meta.get("name") or rid
        self.resumed = resumed
        self._settings = settings
        self._rdir = rdir
        self._meta = meta
        self._lock = lock
        self._pointer = pointer
        self._ctx: Ctx = {"project": settings.project, "run_id": rid}
        self._where = f"run {rid!r} in project {settings.project!r}"
        self._state = State.RUNNING
        self._warned_step = False
        self._last: dict[str, Any] = {}
        self._stored_last: dict[str, Any] | None = None if resumed else {}
        self._seal_lock = threading.Lock()
        self._sealer: threading.Thread | None = None
        self._preempted_by: str | None = None

        self._manifest = _segments.load_manifest(rdir, **self._ctx)
        _segments.cleanup(rdir, self._manifest)
        self._seq, last_step = self._open_log()
        self._first_seq = self._seq + 1  # log files this process writes and closes whole
        self.starting_step: int = last_step + 1
        self.step: int = self.starting_step
        self._wal_last_step = last_step
        self._wal = _wal.Appender(_layout.wal_path(rdir, self._seq), settings.fsync,
                                  settings.fsync_interval)
        _fsutil.fsync_dir(rdir / "wal")
        events = rdir / _store.EVENTS
        if events.exists():  # a writer killed mid-event leaves a torn tail: cut it before appending
            _wal.cut_torn_tail(events, _wal.last_record(events)[1], **self._ctx)
        self._events = _wal.Appender(events, "always")
        self.config = Config(_store.read_tree(rdir / _store.CONFIG_JSON, "config", **self._ctx),
                             self._write_config)
        self.summary = Summary(self._summary_last,
                               _store.read_tree(rdir / _store.SUMMARY_JSON, "summary", **self._ctx),
                               self._write_summary)

    # -- opening ---------------------------------------------------------------------------

    def _open_log(self) -> tuple[int, int]:
        """(active log seq, last step on disk): reads only the tail of the newest log files."""
        rdir = self._rdir
        sealed = self._manifest["sealed_through"]
        seqs = [s for s in _segments.wal_seqs(rdir) if s > sealed]
        if not seqs:
            return sealed + 1, self._manifest["last_step"]
        newest = _layout.wal_path(rdir, seqs[-1])
        if newest.is_dir():  # a log kept as a folder of chunks: this is a copy made by sync
            raise UsageError(f"{self._where} is in a store written by `localtrack sync` "
                             f"({rdir}); synced stores are read-only. Resume the original run, "
                             "or read this one with localtrack.Api.", **self._ctx)
        record, good_end = _wal.last_record(newest)
        _wal.cut_torn_tail(newest, good_end, **self._ctx)
        for seq in reversed(seqs[:-1]):
            if record is not None:
                break
            record, _ = _wal.last_record(_layout.wal_path(rdir, seq))
        last_step = record["_step"] if record is not None else self._manifest["last_step"]
        return seqs[-1], int(last_step)

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
        """Append one history record. Steps below ``run.step`` are dropped with a warning."""
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
            body, data = self._encode_slow(data, s)
        else:
            body = b'{"_step":%d,"_timestamp":%.6f,%s' % (s, time.time(), out[1:-1])
        if self._wal.offset >= ROTATE_BYTES and s > self._wal_last_step:
            self._rotate()
        try:
            self._wal.append(_wal.frame_body(body))
        except OSError as exc:
            raise self._storage_error("append to the history log", exc) from exc
        self._wal_last_step = s
        self._last.update(data)
        if commit or (commit is None and step is None):
            self.step = s + 1

    def _encode_slow(self, data: Any, s: int) -> tuple[bytes, dict[str, Any]]:
        """Validate and convert a row the fast path refused; raises naming the key."""
        if not isinstance(data, dict):
            raise UsageError(f"run.log() takes a dict of values, got {type(data).__name__} "
                             f"({self._where}).", **self._ctx)
        enc, raw = encode_row(data, self._where)
        raw = {k: v for k, v in raw.items() if v is not None}  # None never replaces a summary value
        return dumps({"_step": s, "_timestamp": round(time.time(), 6), **enc})[:-1], raw

    def finish(self, exit_code: int = 0) -> None:
        """Flush and seal everything, record the exit code, release the run."""
        if self._state is State.FINISHED:
            return
        self._state = State.FINISHED
        try:
            self._close_log_and_seal()
            if self._preempted_by is None:  # a signal never makes a run finished (wandb#9568)
                self._event("finished", exit_code=int(exit_code))
                if exit_code == 0:
                    _store.clear_pointer(self._pointer, self._rid)
        finally:
            self._events.close()
            self._lock.release()
            from . import _session

            _session.forget(self)

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

    def _on_signal(self, signame: str) -> None:
        """Make everything durable and record the preemption; the run stays resumable.

        Logging stays allowed (a user's handler may checkpoint and log before exiting), but
        the run will end as preempted whatever exit code follows.
        """
        if self._state is not State.RUNNING or self._preempted_by is not None:
            return
        self._preempted_by = signame
        self._wal.sync()
        self._event("preempted", signal=signame)

    # -- internals -------------------------------------------------------------------------

    def _require_running(self, what: str) -> None:
        if self._state is not State.RUNNING:
            raise RunStateError(f"Cannot {what} {self._where}: it is {self._state.value}.",
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

    def _event(self, name: str, **fields: Any) -> None:
        record = {"event": name, "time": time.time(), "step": self.step, "pid": os.getpid(),
                  **fields}
        try:
            self._events.append(_wal.frame(record))
        except OSError as exc:
            raise self._storage_error(f"record the {name!r} event in", exc) from exc

    def _write_config(self, data: dict[str, Any]) -> None:
        self._require_running("change the config of")
        payload = dumps(encode_tree(data, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.CONFIG_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.CONFIG_JSON, payload,
                                 sync=self._settings.fsync == "always")

    def _write_summary(self, explicit: dict[str, Any]) -> None:
        self._require_running("change the summary of")
        payload = dumps(encode_tree(explicit, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.SUMMARY_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.SUMMARY_JSON, payload,
                                 sync=self._settings.fsync == "always")

    def _summary_last(self) -> dict[str, Any]:
        if self._stored_last is None:  # a resumed run: what earlier processes logged
            self._stored_last = _segments.summary_last(self._rdir, **self._ctx)
        return {**self._stored_last, **self._last}

    def _rotate(self) -> None:
        """Close the full log file, open the next, and seal the closed ones in the background."""
        self._wal.close()
        self._seq += 1
        self._wal = _wal.Appender(_layout.wal_path(self._rdir, self._seq), self._settings.fsync,
                                  self._settings.fsync_interval)
        _fsutil.fsync_dir(self._rdir / "wal")
        if self._sealer is None or not self._sealer.is_alive():
            self._sealer = threading.Thread(target=self._seal_quietly, args=(self._seq,),
                                            name=f"localtrack-seal-{self.id}", daemon=True)
            self._sealer.start()

    def _seal_quietly(self, active_seq: int) -> None:
        try:
            self._seal_below(active_seq)
        except Exception:  # the log stays authoritative; finish() retries
            log.warning("sealing %s failed; its history stays in the log", self._where,
                        exc_info=True)

    def _seal_below(self, active_seq: int) -> None:
        with self._seal_lock:
            seqs = [s for s in _segments.wal_seqs(self._rdir) if s < active_seq]
            self._manifest = _segments.seal(self._rdir, seqs, self._manifest,
                                            trusted_from=self._first_seq, **self._ctx)

    def _close_log_and_seal(self) -> None:
        """Close the log; seal what is closed, and the active file if it is worth a segment.

        A small tail stays JSONL (readers handle it, the next writer appends to it): a short
        script then never pays for importing pyarrow.
        """
        if self._sealer is not None:
            self._sealer.join()
        self._wal.close()
        below = self._seq + 1 if self._wal.offset >= SEAL_MIN_BYTES else self._seq
        if not any(s < below for s in _segments.wal_seqs(self._rdir)
                   if s > self._manifest["sealed_through"]):
            return
        try:
            self._seal_below(below)
        except Exception:
            log.warning("sealing %s at finish failed; its history stays in the log", self._where,
                        exc_info=True)


def start(settings: Settings, fields: dict[str, Any], config: dict[str, Any] | None) -> Run:
    """Open or create the run the settings ask for, holding its lock."""
    root, project = settings.root, settings.project
    mode, rid = settings.resume, settings.run_id
    pointer = _layout.auto_pointer_path(root, project, os.getcwd())
    if mode == "auto" and rid is None:
        rid = _store.read_pointer(pointer)
    _resume.check_mode(mode, rid is not None)
    rid = rid or _naming.new_run_id()
    ctx = {"project": project, "run_id": rid}
    lock = RunLock(_layout.lock_path(root, project, rid), **ctx)
    lock.acquire()
    try:
        rdir = _layout.run_dir(root, project, rid)
        outcome = _resume.decide(mode, rdir.exists(), project=project, run_id=rid)
        where = f"run {rid!r} in project {project!r}"
        if outcome is _resume.Outcome.CREATE:
            encode_tree(config or {}, where)  # validate before anything is written
            _store.sweep_dead_creations(root, project)
            meta = _store.new_meta(project, rid, {k: v for k, v in fields.items() if v is not None})
            rdir = _store.create_run_dir(root, project, rid, meta, config or {})
        else:
            meta = _store.read_meta(rdir, **ctx)
            changed = {k: v for k, v in fields.items() if v is not None and meta.get(k) != v}
            if changed:
                meta = {**meta, **changed}
                _fsutil.atomic_write(rdir / _store.RUN_JSON, dumps(meta))
        run = Run(settings=settings, rid=rid, rdir=rdir, meta=meta, lock=lock, pointer=pointer,
                  resumed=outcome is _resume.Outcome.RESUME)
        if config and run.resumed:
            run.config.update(config)
        run._event("resumed" if run.resumed else "started", host=socket.gethostname())
        with _fsutil.storage_errors("write the auto-resume pointer", pointer, **ctx):
            _store.write_pointer(pointer, rid)
    except BaseException:
        lock.release()
        raise
    return run
