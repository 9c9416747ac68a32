"""Run: the lifecycle of one run being written (opened by ``_start.start()``).

A Run is RUNNING until finish() (FINISHED); every public method checks the state. A
preemption signal is recorded on the side: the run ends "preempted". The history and
log() are _history's, the log files and their durability _stream's; a Run adds the
lifecycle events, config and summary, finish() and what a signal or a fork asks of it.
Closed log files are sealed into Parquet by a child process (see _sealer), never in this one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import _fsutil, _naming, _store, _wal
from ._codec import dumps, encode_tree
from ._config import Config, Summary
from ._frames import frame
from ._guard import Guarded, critical
from ._history import History, State
from ._locks import RunLock
from ._logfile import Appender
from ._naming import Ctx
from ._settings import Settings
from ._stream import LogStream

if TYPE_CHECKING:
    from ._artifacts import Artifact

log = logging.getLogger("localtrack")


class Run(History):
    """A run being written by this process. Create it with ``localtrack.init()``."""

    def __init__(self, *, settings: Settings, rid: _naming.RunId, rdir: Path, meta: dict[str, Any],
                 lock: RunLock, pointer: Path, resumed: bool, rewind_to: int | None = None,
                 on_close: Callable[[Run], None] = lambda run: None) -> None:
        self.id: str = rid
        self._rid = rid
        self.project: str = settings.project
        self.name: str = meta.get("name") or rid
        self.resumed = resumed
        self._on_close = on_close  # the session forgets the run (no import of _session here)
        self._rdir = rdir
        self._meta = meta
        self._lock = lock
        self._pointer = pointer
        ctx: Ctx = {"project": settings.project, "run_id": rid}
        where = f"run {rid!r} in project {settings.project!r}"
        self._preempted_by: str | None = None
        self._signalled: str | None = None  # a signal came (perhaps still deferred): not finished
        Guarded.__init__(self)
        History.__init__(self, LogStream(rdir, settings, self._mutex, where=where, ctx=ctx),
                         where=where, ctx=ctx, rewind_to=rewind_to)
        events = rdir / _store.EVENTS
        _wal.refuse_link(events, **ctx)
        if events.exists():  # a writer killed mid-event leaves a torn tail: cut it before appending
            _wal.cut_torn_tail(events, _wal.last_record(events, **ctx).end, **ctx)
        self._events = Appender(events)
        self.config = Config(_store.read_tree(rdir / _store.CONFIG_JSON, "config", **ctx),
                             self._write_config, self._mutex)
        self.summary = Summary(self._summary_last,
                               _store.read_tree(rdir / _store.SUMMARY_JSON, "summary", **ctx),
                               self._write_summary, self._mutex)

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

    @critical
    def finish(self, exit_code: int = 0) -> None:
        """Close the log, record the exit code, release the run; a child process seals the tail."""
        if self._state is State.FINISHED or os.getpid() != self._owner_pid:
            return
        self._state = State.FINISHED
        self._open = False
        sealing = False
        try:
            closed = self._log.close()
            sealing = closed.sealing
            # A signal never makes a run finished (wandb#9568), also one that came during
            # finish() and waits for it to end (critical): then this records the preemption.
            if self._preempted_by is None and self._signalled is not None:
                self._preempted_by = self._signalled
                self._event("preempted", sync=True, signal=self._signalled)
            elif self._preempted_by is None:
                # The sealer fsyncs the event file after the logs, as it does the logs.
                self._event("finished", sync=closed.synced, exit_code=int(exit_code))
                if exit_code == 0:
                    _store.clear_pointer(self._pointer, self._rid)
        finally:
            self._events.close(sync=False)  # every event was synced, or the sealer will
            self._lock.release()
            self._on_close(self)
        if sealing:
            self._log.request_seal()  # after the release: the tail is closed now

    @critical
    def rewind(self, step: int) -> None:
        """Go back to ``step``: the rows after it are archived (see ``init(resume_from=)``) and
        the run continues at ``step + 1``. For a script that learns its checkpoint's step only
        after ``init(resume="auto")``."""
        self._require_running("rewind")
        step = self._check_step(step)
        last = self.step if self._partial_step == self.step else self.step - 1
        self._log.rewind(last, step)
        self.step = self.starting_step = step + 1
        self._partial_step = -1
        self._stamp_due = 0.0  # the next row is framed: it starts a log file
        self._put = self._log.put
        self._event("rewound", from_step=last, to=step)

    @critical
    def mark_preempting(self) -> None:
        """Declare that this run may be preempted: a sweep requeues it if it dies."""
        self._require_running("mark_preempting")
        self._event("preempting")

    def log_artifact(self, artifact_or_path: Artifact | str | os.PathLike[str],
                     name: str | None = None, type: str | None = None,
                     aliases: list[str] | None = None) -> Artifact:
        """Store an Artifact (or a file or folder) as the next version of its name, v0, v1, …
        in the project's artifact store (see _artifacts); ``latest`` follows the newest."""
        from . import _artifacts

        self._require_running("log an artifact in")
        return _artifacts.log_for_run(artifact_or_path, name, type, aliases,
                                      self._rdir.parent.parent.parent, self.project, self.id)

    def use_artifact(self, artifact_or_name: Artifact | str) -> Artifact:
        """A stored version (``"name:latest"``, ``"name:v3"``, ``"project/name:best"``), recorded
        as used by this run; from the local store, so it works offline."""
        from . import _artifacts

        self._require_running("use an artifact in")
        root = self._rdir.parent.parent.parent
        if isinstance(artifact_or_name, _artifacts.Artifact) and artifact_or_name.version is None:
            self.log_artifact(artifact_or_name)
        return _artifacts.use(artifact_or_name, root, self.project, (self.project, self.id))

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)

    def __repr__(self) -> str:
        return f"<localtrack.Run {self.path} step={self.step} {self._state.value}>"

    # -- lifecycle hooks (called by _session) ----------------------------------------------

    @critical
    def _on_signal(self, signame: str) -> None:
        """Make everything durable and record the preemption; the run stays resumable.

        Logging stays allowed (a user's handler may checkpoint and log before exiting), but
        the run will end as preempted whatever exit code follows.
        """
        if self._state is not State.RUNNING or self._preempted_by is not None:
            return
        self._preempted_by = signame
        self._log.sync_now()
        self._event("preempted", signal=signame)

    def _disown(self) -> None:
        """In a forked child: log() takes the slow path, which refuses (see _log_general)."""
        self._renew_mutex()
        object.__setattr__(self.config, "_lock", self._mutex)  # (Config's setattr writes keys)
        self.summary._lock = self._mutex
        self._open = False

    def _drop(self) -> None:
        """Let go of the run as a killed writer would: nothing more is written or synced, the
        files stay as they are, the lock is released (for tests that simulate a crash in-process)."""
        self._state = State.FINISHED
        self._open = False
        self._log.drop()
        self._events.abandon()
        self._lock.release()
        self._on_close(self)

    # -- internals -------------------------------------------------------------------------

    def _event(self, name: str, sync: bool = True, **fields: Any) -> None:
        record = {"event": name, "time": time.time(), "step": self.step, "pid": os.getpid(),
                  **fields}
        try:
            self._events.append(frame(record))
            if sync:
                self._events.sync()
        except OSError as exc:
            raise self._storage_error(f"record the {name!r} event in", exc) from exc

    @critical
    def _write_config(self, data: dict[str, Any]) -> None:
        self._require_running("change the config of")
        payload = dumps(encode_tree(data, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.CONFIG_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.CONFIG_JSON, payload)

    @critical
    def _write_summary(self, explicit: dict[str, Any]) -> None:
        self._require_running("change the summary of")
        payload = dumps(encode_tree(explicit, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.SUMMARY_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.SUMMARY_JSON, payload)

    def _summary_last(self) -> dict[str, Any]:
        """The last logged value of each key, read back from the run's files when asked:
        log() keeps no copy (a dict update per step was a tenth of its cost)."""
        with self._mutex:
            return self._log.last_values()
