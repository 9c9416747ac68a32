"""The process side: init(), the active run behind localtrack.log/config/summary, and exit hooks.

Exit paths and what they record:
  finish() / normal exit         "finished" with the exit code (sys.exit(n) is seen)
  uncaught exception             "finished" with exit code 1 (state "failed")
  SIGTERM, SIGINT, SIGUSR1,       log fsynced, "preempted" recorded, then the handler that was
  SIGHUP                         installed before runs (default: the process dies by the signal)
  SIGKILL, power loss            nothing runs; the lock dies with the process: state "crashed"
A signal never makes a run "finished".

The signal handler never does the writer's work in the middle of the writer: a Python handler
runs between any two bytecodes of the main thread, perhaps inside log() or finish() holding the
run's mutex. It only records the signal there, and the interrupted call acts on it as it ends
(Run._interrupted, Run._defer); the same holds while init() is under way (_starting). A user
handler installed later that calls log() or finish() is deferred the same way by the run.

A child made by fork() inherits the Run objects, this module's hooks and the shared memory
map of the log, but not the run: in the child the runs are disowned (logging to them is an
error, finish() does nothing), so a child that exits normally cannot finish the parent's run,
release its lock or cut its log file under it.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, NoReturn

from . import _run, _settings, _start
from ._config import Config, Summary
from ._naming import new_run_id

log = logging.getLogger("localtrack")

_active: list[Any] = []
_installed = False
_exit_code: int | None = None
_previous: dict[int, Any] = {}
_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")
_starting = 0  # init() calls under way in the main thread: a signal waits for them
_pending: list[tuple[int, FrameType | None]] = []  # signals that came meanwhile


class DisabledRun:
    """mode="disabled": the same API, nothing written anywhere."""

    resumed = False
    starting_step = 0
    state = "disabled"

    def __init__(self, project: str, rid: str, name: str | None, config: dict[str, Any]) -> None:
        self.project, self.id, self.name, self.step = project, rid, name or rid, 0
        self.dir = ""
        self.path = f"{project}/{rid}"
        self.config = Config(config, lambda data: None)
        self.summary = Summary(dict, {}, lambda data: None)

    def log(self, data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None:
        if step is not None:
            self.step = max(self.step, step)
        if commit or (commit is None and step is None):
            self.step += 1

    def finish(self, exit_code: int = 0) -> None:
        forget(self)

    def mark_preempting(self) -> None:
        pass

    def __enter__(self) -> DisabledRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish(0 if exc[0] is None else 1)


def init(project: str | None = None, *, id: str | None = None, resume: _settings.Resume = None,
         name: str | None = None, config: dict[str, Any] | None = None,
         tags: list[str] | None = None, group: str | None = None, job_type: str | None = None,
         notes: str | None = None, dir: str | os.PathLike[str] | None = None,
         mode: _settings.Mode | None = None, fsync: _settings.FsyncPolicy | None = None,
         resume_from: str | None = None, fork_from: str | None = None) -> Any:
    """Start a new run or resume one, W&B style; see the README for the resume modes.

    ``resume_from="RUN_ID?_step=N"`` resumes that run rewound to step N: the rows after N are
    archived (``ApiRun.history(include_rewound=True)`` reads them) and it continues at N + 1.
    ``fork_from="RUN_ID?_step=N"`` starts a new run whose history begins with that run's rows
    through step N (referenced, not copied) and whose config starts as that run's.

    Only ``project`` is positional: W&B's ``init("team", "proj")`` (entity, project) would
    otherwise mean project="team", id="proj" here.
    """
    sweep = _settings.sweep_context()
    if sweep is not None:  # under an agent the job's id, project, store and resume mode win
        given = {"project": project, "id": id, "resume": resume, "dir": dir}
        ignored = [k for k, v in given.items() if v is not None]
        if ignored:
            log.warning("init() runs as a job of sweep %s: ignoring %s", sweep.sweep_id,
                        ", ".join(ignored))
        project = id = resume = dir = None
        config = {**(config or {}), **sweep.params}
    settings = _settings.resolve(project=project, run_id=id, resume=resume, dir=dir, mode=mode,
                                 fsync=fsync)
    if _active:
        log.warning("init() finishes the active run %s first", _active[-1].path)
        _active[-1].finish()
    if settings.mode == "disabled":
        run: Any = DisabledRun(settings.project, settings.run_id or new_run_id(), name,
                               dict(config or {}))
        _active.append(run)
        return run
    fields = {"name": name, "tags": list(tags) if tags else None, "group": group,
              "job_type": job_type, "notes": notes,
              "sweep": sweep.sweep_id if sweep is not None else None}
    global _starting
    _install_hooks()  # before the run exists: a signal during init() waits for it (_starting)
    main = threading.current_thread() is threading.main_thread()  # where handlers run
    _starting += main
    try:
        run = _start.start(settings, fields, config, forget, resume_from, fork_from)
        _active.append(run)
    finally:
        _starting -= main
        if _pending and not _starting:
            _deliver_pending()
    return run


def forget(run: Any) -> None:
    if run in _active:
        _active.remove(run)


def current() -> Any:
    return _active[-1] if _active else None


# -- exit and signal hooks ----------------------------------------------------------------


def _after_fork_in_child() -> None:
    for run in _active:
        run._disown()
    _active.clear()


def _install_hooks() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    real_exit = sys.exit

    def exit_hook(code: str | int | None = None) -> NoReturn:
        global _exit_code
        _exit_code = 0 if code is None else code if isinstance(code, int) else 1
        real_exit(code)

    sys.exit = exit_hook  # as wandb does: atexit cannot see the code sys.exit() was given
    previous_hook = sys.excepthook

    def excepthook(tp: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        global _exit_code
        _exit_code = 1
        previous_hook(tp, value, tb)

    sys.excepthook = excepthook
    if threading.current_thread() is threading.main_thread():
        for name in _SIGNALS:
            signum = getattr(signal, name, None)
            # A signal the process ignores (SIGHUP under nohup, SIGINT in a background job)
            # stays ignored: it is no preemption.
            if signum is not None and signal.getsignal(signum) != signal.SIG_IGN:
                _previous[signum] = signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Record the signal; act on it now unless it interrupted init() or a run's writer."""
    name = signal.Signals(signum).name
    runs = [run for run in _active if isinstance(run, _run.Run)]
    for run in runs:
        run._signalled = name  # finish() under way ends the run as preempted
    if _starting:
        _pending.append((signum, frame))
        return
    for run in runs:
        if run._interrupted():
            run._defer(lambda: _act(signum, frame))
            return
    _act(signum, frame)


def _deliver_pending() -> None:
    while _pending:
        _act(*_pending.pop(0))


def _act(signum: int, frame: FrameType | None) -> None:
    """Make every active run durable and preempted, then run the handler installed before."""
    name = signal.Signals(signum).name
    for run in list(_active):
        try:
            run._on_signal(name)
        except Exception:
            log.error("could not record %s for %s", name, run.path, exc_info=True)
    previous = _previous.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL:
        # Die by the signal as if we were never here: the parent sees the real cause.
        _at_exit()
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


def _at_exit() -> None:
    code = _exit_code if _exit_code is not None else 0
    for run in list(reversed(_active)):
        try:
            run.finish(exit_code=code)
        except Exception:
            log.error("could not finish %s at exit", run.path, exc_info=True)


def module_attr(name: str) -> Any:
    run = current()
    if name == "run":
        return run
    return None if run is None else getattr(run, name)

