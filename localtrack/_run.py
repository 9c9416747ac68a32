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
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _alerts, _files, _fsutil, _labels, _metrics, _naming, _store, _wal, _watch
from ._codec import dumps, encode_tree
from ._config import Config, Summary, config_errors
from ._frames import frame
from ._guard import Guarded, critical, entry
from ._history import History, State
from ._locks import RunLock
from ._logfile import Appender
from ._naming import Ctx
from ._runinfo import RunInfo
from ._settings import Settings
from ._stream import LogStream
from .errors import LocaltrackError, UsageError

if TYPE_CHECKING:
    from ._artifacts import Artifact
    from ._commits import Commit

log = logging.getLogger("localtrack")


class Shared(NamedTuple):
    """This process's part of a shared run (``init(mode="shared")``, see _labels)."""

    label: str
    dir: Path  # labels/<label>: this writer's history, laid out as a run's
    lock: RunLock  # its writer lock (<run>/locks/<label>.lock)
    primary: bool  # owns run.json, config, summary and the run's events


class Run(RunInfo, History):
    """A run being written by this process. Create it with ``localtrack.init()``."""

    def __init__(self, *, settings: Settings, rid: _naming.RunId, rdir: Path, meta: dict[str, Any],
                 lock: RunLock, pointer: Path, resumed: bool, rewind_to: int | None = None,
                 on_close: Callable[[Run], None] = lambda run: None,
                 shared: Shared | None = None) -> None:
        self.id: str = rid
        self._rid = rid
        self.project: str = settings.project
        self.resumed = resumed
        self._on_close = on_close  # the session forgets the run (no import of _session here)
        self._rdir = rdir
        self._meta = meta
        self._lock = lock
        self._pointer = pointer
        ctx: Ctx = {"project": settings.project, "run_id": rid}
        where = f"run {rid!r} in project {settings.project!r}"
        self._shared = shared
        # A primary holds the run's lock and its label's; another writer its label's only.
        self._label_lock = shared.lock if shared is not None and shared.lock is not lock else None
        self._warned_owner = False
        if shared is not None:
            where += f" (writer {shared.label!r})"
        self._preempted_by: str | None = None
        self._metrics: dict[str, dict[str, Any]] | None = None  # definitions, read when needed
        self._step_sync: _metrics.StepSync | None = None
        self._alerted: dict[str, float] = {}
        self._saves: list[tuple[str, str]] = []  # save(policy="live"/"end"): copied at finish
        self._saver = _files.Saver(rdir, self._save_failed)
        self._watches: list[_watch.Watch] = []
        self._commits: list[Commit] = []  # its log_artifact()s: finish() waits for them
        self._signalled: str | None = None  # a signal came (perhaps still deferred): not finished
        Guarded.__init__(self)
        history = rdir if shared is None else shared.dir
        History.__init__(self, LogStream(history, settings, self._mutex, where=where, ctx=ctx,
                                         run_dir=rdir),
                         where=where, ctx=ctx, rewind_to=rewind_to)
        events = (shared.dir if shared is not None and not shared.primary else rdir) / _store.EVENTS
        _wal.refuse_link(events, **ctx)
        if events.exists():  # a writer killed mid-event leaves a torn tail: cut it before appending
            _wal.cut_torn_tail(events, _wal.last_record(events, **ctx).end, **ctx)
        self._events = Appender(events)
        self.config = Config(_store.read_tree(rdir / _store.CONFIG_JSON, "config", **ctx),
                             self._write_config, self._mutex)
        self.summary = Summary(self._summary_last,
                               _store.read_tree(rdir / _store.SUMMARY_JSON, "summary", **ctx),
                               self._write_summary, self._mutex)
        if resumed:
            self._sync_steps()

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

    @entry
    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """Wait for the run's artifacts to be stored, close the log, record the exit code
        (None: 0, success), release the run; a child process seals the tail. An artifact that
        could not be stored is raised once the run is finished. ``quiet`` is W&B's and changes
        nothing here."""
        if self._state is State.FINISHED or os.getpid() != self._owner_pid:
            return
        exit_code = 0 if exit_code is None else exit_code
        if isinstance(exit_code, bool) or not isinstance(exit_code, int):
            raise UsageError(f"finish(exit_code={exit_code!r}): give an int (0 is success) or "
                             f"None ({self._where}).", **self._ctx)
        failed = None
        if self._commits:
            from . import _commits

            failed = _commits.wait_all(self._commits)
        try:
            self.unwatch()
        except Exception:  # a model's own hook handles: the run must still finish
            log.error("finish() could not remove watch()'s hooks of %s", self._where, exc_info=True)
        self._saver.stop()
        for pattern, base in self._saves:  # policy "live" and "end": their files as they end
            try:
                self._copy_saved(pattern, base)
            except LocaltrackError as exc:
                log.warning("finish() could not copy the files saved as %r: %s", pattern, exc)
        self._finish(exit_code)
        if failed is not None:
            raise failed

    @critical
    def _finish(self, exit_code: int) -> None:
        if self._state is State.FINISHED:
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
                # The sealer fsyncs the event file after the logs, as it does the logs (a
                # shared run's primary: its sealer seals its label, so it fsyncs its own).
                primary = self._shared is not None and self._shared.primary
                self._event("finished", sync=closed.synced or primary, exit_code=int(exit_code))
                if exit_code == 0:
                    _store.clear_pointer(self._pointer, self._rid)
        finally:
            self._events.close(sync=False)  # every event was synced, or the sealer will
            self._lock.release()
            if self._label_lock is not None:
                self._label_lock.release()
            self._on_close(self)
        if sealing:
            self._log.request_seal()  # after the release: the tail is closed now

    @critical
    def rewind(self, step: int) -> None:
        """Go back to ``step``: the rows after it are archived (see ``init(resume_from=)``) and
        the run continues at ``step + 1``. For a script that learns its checkpoint's step only
        after ``init(resume="auto")``."""
        self._require_running("rewind")
        if self._shared is not None:
            raise UsageError(f"rewind() of {self._where}: a shared run's writers cannot be "
                             "rewound (each has its own history); start a new run.", **self._ctx)
        step = self._check_step(step)
        last = self.step if self._partial_step == self.step else self.step - 1
        self._log.rewind(last, step)
        self.step = self.starting_step = step + 1
        self._partial_step = -1
        self._stamp_due = 0.0  # the next row is framed: it starts a log file
        self._put = self._log.put
        self._event("rewound", from_step=last, to=step)

    def define_metric(self, name: str, step_metric: str | None = None, *,
                      step_sync: bool | None = None, summary: str | None = None,
                      goal: str | None = None, hidden: bool | None = None,
                      overwrite: bool | None = None) -> _metrics.Metric:
        """W&B's define_metric (see _metrics): stored as a ``metric`` event, so a resumed run
        and readers (``ApiRun.metrics``, the summary) know it. Returns W&B's Metric."""
        self._require_running("define a metric of")
        fields = _metrics.definition(name, step_metric=step_metric, step_sync=step_sync,
                                     summary=summary, goal=goal, hidden=hidden)
        self._define_metric(dict(fields, overwrite=True) if overwrite else fields)
        return _metrics.Metric(fields)

    @critical
    def _define_metric(self, fields: dict[str, Any]) -> None:
        self._require_running("define a metric of")
        defs = self._definitions()
        self._event("metric", **fields)
        _metrics.merge(defs, fields)
        self._sync_steps()

    def _sync_steps(self) -> None:
        """From the first step_sync definition on, log() fills in step metrics (a resumed run
        whose earlier process defined one too)."""
        defs = self._definitions()
        if any(d.get("step_sync") for d in defs.values()):
            if self._step_sync is None:
                self._step_sync = _metrics.StepSync(defs, self._summary_raw())
                self.log = self._log_synced  # type: ignore[method-assign]
            self._step_sync.reset()

    def _log_synced(self, data: dict[str, Any] | None = None, step: int | None = None,
                    commit: bool | None = None) -> None:
        """log() once a step_sync metric is defined: the row gets its step metric's value."""
        if type(data) is dict and self._step_sync is not None:
            data = self._step_sync.fill(data)
        History.log(self, data, step, commit)

    @critical
    def alert(self, title: str, text: str, level: str | _alerts.AlertLevel = "INFO",
              wait_duration: Any = None) -> None:
        """W&B's alert, recorded as an ``alert`` event (`localtrack show` prints it)."""
        self._require_running("record an alert in")
        fields = _alerts.fields(title, text, level, wait_duration)
        if _alerts.due(self._alerted, title, fields.get("wait_duration"), time.monotonic()):
            self._event("alert", **fields)

    @entry
    def save(self, glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None,
             policy: str = "live") -> list[str]:
        """Copy the files matching ``glob_str`` into the run's ``files/`` (see _files):
        "now" copies them now, "end" at finish(), "live" now, whenever they change while the
        run lives, and at finish(). Returns the stored paths (none for "end")."""
        self._require_running("save files into")
        pattern, base = _files.plan(glob_str, base_path, policy)
        if policy != "now":
            self._saves.append((pattern, base))
        if policy == "end":
            return []
        stored = self._copy_saved(pattern, base)
        if policy == "live":
            self._saver.follow(pattern, base)
        return stored

    def _save_code(self) -> None:
        """init(save_code=True): the main script into the run's ``code/``."""
        with _fsutil.storage_errors("save the code into", self._rdir / _files.CODE, **self._ctx):
            _files.save_code(self._rdir)

    def _copy_saved(self, pattern: str, base: str) -> list[str]:
        with _fsutil.storage_errors("save files into", self._rdir / _files.FILES, **self._ctx):
            return self._saver.copy(pattern, base)

    def _save_failed(self, pattern: str, exc: Exception) -> None:
        log.warning("save(%r, policy='live') could not copy a changed file of %s: %s; "
                    "finish() copies it again", pattern, self._where, exc)

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        """W&B's watch on torch modules (see _watch); ``criterion`` and ``log_graph`` are
        accepted and ignored (no graph is drawn)."""
        self._require_running("watch a model for")
        many = models if isinstance(models, (list, tuple)) else [models]
        for model in many:
            _watch.check(model, log, log_freq)
        for i, model in enumerate(many):
            n = (idx or 0) + i
            prefix = f"graph_{n}/" if len(many) > 1 or idx else ""
            self._watches.append(_watch.Watch(model, self._log_watched, log, log_freq, prefix))

    def _log_watched(self, row: dict[str, Any]) -> None:
        if self._open:
            self.log(row, commit=False)

    def unwatch(self, models: Any = None) -> None:
        """Take watch()'s hooks off ``models`` (all watched models when None)."""
        many = None if models is None else models if isinstance(models, (list, tuple)) else [models]
        for w in list(self._watches):
            if many is None or any(w.model is m for m in many):
                w.remove()
                self._watches.remove(w)

    @critical
    def mark_preempting(self) -> None:
        """Declare that this run may be preempted: a sweep requeues it if it dies."""
        self._require_running("mark_preempting")
        self._event("preempting")

    @entry
    def log_artifact(self, artifact_or_path: Artifact | str | os.PathLike[str],
                     name: str | None = None, type: str | None = None,
                     aliases: list[str] | None = None) -> Artifact:
        """Store an Artifact (or a file or folder) as the next version of its name, v0, v1, …
        in the project's artifact store (see _artifacts); ``latest`` follows the newest. Returns
        once the files are copied; the version is committed in the background (see _commits:
        ``wait()`` on the result, finish() and exit wait for it)."""
        from . import _artifacts

        self._require_running("log an artifact in")
        art = _artifacts.log_for_run(artifact_or_path, name, type, aliases,
                                     self._rdir.parent.parent.parent, self.project, self.id)
        if art._commit is not None:
            self._commits.append(art._commit)
        return art

    @entry
    def use_artifact(self, artifact_or_name: Artifact | str) -> Artifact:
        """A stored version (``"name:latest"``, ``"name:v3"``, ``"project/name:best"``), recorded
        as used by this run; from the local store, so it works offline (else from the synced
        copy LOCALTRACK_ARTIFACT_REMOTE names)."""
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
        self._saver = _files.Saver(self._rdir, self._save_failed)  # the parent's thread stays there
        self._open = False

    def _drop(self) -> None:
        """Let go of the run as a killed writer would: nothing more is written or synced, the
        files stay as they are, the lock is released (for tests that simulate a crash in-process)."""
        self._state = State.FINISHED
        self._open = False
        self._saver.stop()
        self._log.drop()
        self._events.abandon()
        self._lock.release()
        if self._label_lock is not None:
            self._label_lock.release()
        self._on_close(self)

    # -- internals -------------------------------------------------------------------------

    def _event(self, name: str, /, sync: bool = True, **fields: Any) -> None:
        record = {"event": name, "time": time.time(), "step": self.step, "pid": os.getpid(),
                  **fields}
        try:
            self._events.append(frame(record))
            if sync:
                self._events.sync()
        except OSError as exc:
            raise self._storage_error(f"record the {name!r} event in", exc) from exc

    def _not_owner(self, what: str) -> bool:
        """Whether this process is a shared run's writer other than the primary, which owns
        run.json, config and summary: its changes of ``what`` stay in this process (one
        warning), so a script that sets them on every rank runs unchanged."""
        if self._shared is None or self._shared.primary:
            return False
        if not self._warned_owner:
            self._warned_owner = True
            log.warning("%s is not the primary writer of this shared run: its changes of the "
                        "%s are not stored, nor later ones of the config, summary and run "
                        "attributes; the primary writer (x_primary=True, else rank 0) owns them.",
                        self._where, what)
        return True

    @critical
    def _write_config(self, data: dict[str, Any]) -> None:
        self._require_running("change the config of")
        if self._not_owner("config"):
            return
        with config_errors():
            payload = dumps(encode_tree(data, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.CONFIG_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.CONFIG_JSON, payload)

    @critical
    def _write_summary(self, explicit: dict[str, Any]) -> None:
        self._require_running("change the summary of")
        if self._not_owner("summary"):
            return
        payload = dumps(encode_tree(explicit, self._where))
        with _fsutil.storage_errors("write", self._rdir / _store.SUMMARY_JSON, **self._ctx):
            _fsutil.atomic_write(self._rdir / _store.SUMMARY_JSON, payload)

    def _summary_raw(self) -> dict[str, Any]:
        with self._mutex:
            return self._log.last_values()

    def _summary_last(self) -> dict[str, Any]:
        """The last logged value of each key, read back from the run's files when asked:
        log() keeps no copy (a dict update per step was a tenth of its cost); under
        define_metric's summaries, the aggregates of the history (see _metrics)."""
        return _metrics.summarize(self._definitions(), self._summary_raw(), self._columns)

    def _columns(self, keys: list[str]) -> dict[str, list[Any]]:
        with self._mutex:  # (a shared run's writer: its own label's, as its last values)
            history = self._rdir if self._shared is None else self._shared.dir
            return _store.columns(history, keys, self._ctx)

    def _definitions(self) -> dict[str, dict[str, Any]]:
        """define_metric's definitions, this run's earlier processes' included."""
        if self._metrics is None:  # (a shared run's: every writer's, see _labels.events)
            events = _labels.events(self._rdir, self._meta,
                                    _store.events(self._rdir, **self._ctx), **self._ctx)
            self._metrics = _metrics.fold(events)
        return self._metrics

    @critical
    def _persist_meta(self, meta: dict[str, Any]) -> None:
        """Write run.json, keeping the format the stream raised it to since init() read it (a
        rewind, the first media item): lowering it would let older readers misread the run."""
        self._require_running("change run.json of")
        if self._not_owner("run attributes"):
            return
        with _fsutil.storage_errors("write", self._rdir / _store.RUN_JSON, **self._ctx):
            on_disk = _store.read_meta(self._rdir, **self._ctx).get("format", 1)
            meta = {**meta, "format": max(meta.get("format", 1), on_disk)}
            _fsutil.atomic_write(self._rdir / _store.RUN_JSON, dumps(meta))
