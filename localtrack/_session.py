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
from collections.abc import Collection, Mapping
from types import FrameType, TracebackType
from typing import Any, NoReturn

from . import _alerts, _files, _guard, _metrics, _run, _settings, _start
from ._codec import encode_tree
from ._config import Config, Summary, config_defaults, config_dict, config_errors, read_config_file, storable
from ._naming import new_run_id
from .errors import UnknownArgumentError, UsageError

log = logging.getLogger("localtrack")

_active: list[_run.Run] = []  # every run of this process not finished yet, oldest first
_current: _run.Run | None = None  # the run localtrack.run / log() / config follow
_installed = False
_exit_code: int | None = None
_previous: dict[int, Any] = {}
_SIGNALS = ("SIGTERM", "SIGINT", "SIGUSR1", "SIGHUP")
_starting = 0  # init() calls under way in the main thread: a signal waits for them
_pending: list[tuple[int, FrameType | None]] = []  # signals that came meanwhile

# W&B's setting names (wandb.Settings) -> the init() argument each one stands for.
_SETTING_ARGS = {"mode": "mode", "project": "project", "entity": "entity", "run_id": "id",
                 "run_name": "name", "run_notes": "notes", "run_tags": "tags",
                 "run_group": "group", "run_job_type": "job_type", "resume": "resume",
                 "resume_from": "resume_from", "fork_from": "fork_from", "reinit": "reinit",
                 "root_dir": "dir", "fsync": "fsync", "save_code": "save_code"}


class Settings:
    """W&B's ``wandb.Settings``, for ``init(settings=...)``: W&B's setting names as keywords.

    Those that name an init() argument (``mode``, ``project``, ``entity``, ``run_id``,
    ``run_name``, ``run_notes``, ``run_tags``, ``run_group``, ``run_job_type``, ``resume``,
    ``reinit``, ``root_dir`` (= ``dir``), and localtrack's ``fsync``) apply when that argument
    is not given; ``silent`` quiets init()'s warnings; with ``mode="shared"``, ``x_label`` and
    ``x_primary`` name this writer of the run and say whether it owns it. Every other W&B setting
    (``_disable_stats``, ``start_method``, ``console``, ...) is accepted and ignored.
    """

    def __init__(self, **values: Any) -> None:
        object.__setattr__(self, "_values", dict(values))

    def update(self, values: Settings | Mapping[str, Any] | None = None, /, **kw: Any) -> None:
        self._values.update(values.to_dict() if isinstance(values, Settings) else values or {}, **kw)

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __getattr__(self, name: str) -> Any:
        values = self.__dict__.get("_values", {})  # (empty while copy or pickle rebuilds it)
        if name in values or name in _SETTING_ARGS or name == "silent":
            return values.get(name)
        raise AttributeError(f"Settings has no {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self._values[name] = value

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"


class DisabledRun(_run.Run):
    """mode="disabled": a Run with the same API that writes nothing anywhere (W&B's no-op run).

    Run.__init__ (which opens the store) is not called: every public member of Run is
    redefined here (a test checks that none is missed)."""

    resumed = False
    starting_step = 0
    # run.json's fields, kept in memory (_persist_meta writes nothing)
    name, tags, group, notes = _run.Run.name, _run.Run.tags, _run.Run.group, _run.Run.notes
    job_type, entity, sweep_id = _run.Run.job_type, _run.Run.entity, _run.Run.sweep_id
    url, project_name = _run.Run.url, _run.Run.project_name

    def __init__(self, project: str, rid: str, fields: dict[str, Any],
                 config: dict[str, Any]) -> None:
        _guard.Guarded.__init__(self)  # a signal handler asks any run whether it interrupted it
        self.project, self.id, self.step = project, rid, 0
        self._meta = {k: v for k, v in fields.items() if v is not None}
        self._signalled = None
        self._ended = False
        self.config = Config(config, lambda data: None)
        self.summary = Summary(dict, {}, lambda data: None)

    @property
    def dir(self) -> str:
        return ""

    @property
    def state(self) -> str:
        return "finished" if self._ended else "disabled"

    @property
    def path(self) -> str:
        return f"{self.project}/{self.id}"

    def log(self, data: dict[str, Any] | None = None, step: int | None = None,
            commit: bool | None = None) -> None:
        if step is not None:
            self.step = max(self.step, step)
        if data is None and step is None:
            commit = commit is not False  # log(): commit the step (nothing is kept to tell)
        if commit or (commit is None and step is None):
            self.step += 1

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        self._ended = True
        forget(self)

    def define_metric(self, name: str, step_metric: str | None = None, *,
                      step_sync: bool | None = None, summary: str | None = None,
                      goal: str | None = None, hidden: bool | None = None,
                      overwrite: bool | None = None) -> _metrics.Metric:
        return _metrics.Metric(_metrics.definition(name, step_metric=step_metric,
                                                   step_sync=step_sync, summary=summary,
                                                   goal=goal, hidden=hidden))

    def alert(self, title: str, text: str, level: str | _alerts.AlertLevel = "INFO",
              wait_duration: Any = None) -> None:
        _alerts.fields(title, text, level, wait_duration)

    def save(self, glob_str: str | os.PathLike[str], base_path: str | os.PathLike[str] | None = None,
             policy: str = "live") -> list[str]:
        _files.plan(glob_str, base_path, policy)
        return []

    def watch(self, models: Any, criterion: Any = None, log: str | None = "gradients",
              log_freq: int = 1000, idx: int | None = None, log_graph: bool = False) -> None:
        pass

    def unwatch(self, models: Any = None) -> None:
        pass

    def _persist_meta(self, meta: dict[str, Any]) -> None:
        pass

    def rewind(self, step: int) -> None:
        self.step = self.starting_step = step + 1

    def mark_preempting(self) -> None:
        pass

    def log_artifact(self, artifact_or_path: Any, name: str | None = None,
                     type: str | None = None, aliases: list[str] | None = None) -> Any:
        return artifact_or_path  # nothing is stored

    def use_artifact(self, artifact_or_name: Any) -> Any:
        if isinstance(artifact_or_name, str):
            raise UsageError(f"use_artifact({artifact_or_name!r}) in a disabled run: a run with "
                             'mode="disabled" has no store to read it from; fetch it with '
                             "localtrack.Api(dir=...).artifact('project/name:alias').")
        return artifact_or_name

    def __repr__(self) -> str:
        return f"<localtrack.Run {self.path} disabled>"

    def _on_signal(self, signame: str) -> None:
        pass

    def _disown(self) -> None:
        pass

    def _drop(self) -> None:
        forget(self)


def init(project: str | None = None, *, entity: str | None = None,
         dir: str | os.PathLike[str] | None = None, id: str | None = None, name: str | None = None,
         notes: str | None = None, tags: Collection[str] | None = None, config: object = None,
         config_exclude_keys: Collection[str] | None = None,
         config_include_keys: Collection[str] | None = None, allow_val_change: bool | None = None,
         group: str | None = None, job_type: str | None = None, mode: _settings.Mode | None = None,
         force: bool | None = None, reinit: _settings.Reinit = None,
         resume: _settings.Resume = None, resume_from: str | None = None,
         fork_from: str | None = None, save_code: bool | None = None,
         tensorboard: bool | None = None, sync_tensorboard: bool | None = None,
         monitor_gym: bool | None = None, magic: object = None, anonymous: str | None = None,
         settings: Settings | Mapping[str, Any] | None = None,
         fsync: _settings.FsyncPolicy | None = None,
         **unknown: NoReturn) -> _run.Run:
    """Start a new run or resume one, with W&B's arguments; see the README for the resume modes.

    ``resume_from="RUN_ID?_step=N"`` resumes that run rewound to step N: the rows after N are
    archived (``ApiRun.history_table(include_rewound=True)`` reads them) and it continues at N + 1.
    ``fork_from="RUN_ID?_step=N"`` starts a new run whose history begins with that run's rows
    through step N (referenced, not copied) and whose config starts as that run's.

    Only ``project`` is positional: W&B's ``init("team", "proj")`` (entity, project) would
    otherwise mean project="team", id="proj" here. An argument W&B takes that has no local
    meaning (``sync_tensorboard``, ``monitor_gym``, ``anonymous``,
    ``force``, ``tensorboard``, ``allow_val_change``) is accepted and ignored (README, "Coming
    from W&B"); an argument W&B does not take is an ``UnknownArgumentError``. ``save_code``
    copies the main script into the run's ``code/``; ``magic`` puts the script's argparse
    arguments in the config (_magic); a ``config-defaults.yaml`` in the working
    directory is the base of the config (W&B's).
    """
    if unknown:
        raise _unknown_argument(next(iter(unknown)))
    given = settings.to_dict() if isinstance(settings, Settings) else dict(settings or {})
    args = _with_settings(given, {
        "project": project, "entity": entity, "dir": dir, "id": id, "name": name, "notes": notes,
        "tags": tags, "group": group, "job_type": job_type, "mode": mode, "reinit": reinit,
        "resume": resume, "resume_from": resume_from, "fork_from": fork_from, "fsync": fsync,
        "save_code": save_code})
    _ignore(given, {"sync_tensorboard": sync_tensorboard,
                       "monitor_gym": monitor_gym, "anonymous": anonymous, "force": force,
                       "tensorboard": tensorboard, "allow_val_change": allow_val_change})
    if _settings.silent(args["silent"]):
        log.setLevel(logging.ERROR)  # W&B's silent: nothing below an error from init() on
    sweep = _settings.sweep_context()
    if sweep is not None:  # under an agent the job's id, project, store and resume mode win
        ignored = [k for k in ("project", "id", "resume", "dir") if args[k] is not None]
        if ignored:
            log.warning("init() runs as a job of sweep %s: ignoring %s", sweep.sweep_id,
                        ", ".join(ignored))
        args.update(project=None, id=None, resume=None, dir=None)
    resolved = _settings.resolve(project=args["project"], run_id=args["id"], resume=args["resume"],
                                 dir=args["dir"], mode=args["mode"], fsync=args["fsync"],
                                 label=given.get("x_label"), primary=given.get("x_primary"))
    fields = _settings.run_fields(entity=args["entity"], name=args["name"], notes=args["notes"],
                                  tags=args["tags"], group=args["group"], job_type=args["job_type"])
    fields["sweep"] = sweep.sweep_id if sweep is not None else None
    run_config = _run_config(config, config_include_keys, config_exclude_keys,
                             sweep.params if sweep is not None else {})
    label = f"run {resolved.run_id!r}" if resolved.run_id else "a new run"
    with config_errors():
        encode_tree(run_config, f"{label} in project {resolved.project!r}")  # even if not used
    how = _settings.reinit_mode(args["reinit"])
    previous = _while_active(how, resolved, job=sweep is not None)
    if previous is not None:
        return _with_magic(previous, magic, config_include_keys, config_exclude_keys)
    if resolved.mode == "disabled":
        run: _run.Run = DisabledRun(resolved.project, resolved.run_id or new_run_id(),
                                    fields, run_config)
        _register(run, how)
        return _with_magic(run, magic, config_include_keys, config_exclude_keys)
    run = _start_run(resolved, fields, run_config, how,
                     *_settings.branch_points(args["resume_from"], args["fork_from"]))
    if sweep is not None:  # as W&B: the sweep's values stay whatever the script updates
        run.config._lock_keys(sweep.params, "sweep")
    if _settings.save_code(args["save_code"]):
        run._save_code()
    return _with_magic(run, magic, config_include_keys, config_exclude_keys)


def _with_magic(run: _run.Run, magic: object, include: Collection[str] | None,
                exclude: Collection[str] | None) -> _run.Run:
    """W&B's ``magic`` (anything but None/False turns it on, as W&B's): the script's argparse
    arguments go into the config (see _magic)."""
    if magic is not None and magic is not False:
        from . import _magic  # argparse only for a script that asks

        _magic.install(run, include, exclude)
    return run


def _register(run: _run.Run, how: str) -> None:
    """Make ``run`` active (exit hooks finish it) and, but for create_new, the module's run."""
    global _current
    _active.append(run)
    if how != "create_new":  # as W&B: a run made with create_new is not the module's run
        _current = run


def _unknown_argument(name: str) -> UnknownArgumentError:
    import difflib  # an error's path only: both cost more than the rest of `import localtrack`
    import inspect

    known = [p for p in inspect.signature(init).parameters if p != "unknown"]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return UnknownArgumentError(
        f"init() got an unknown argument {name!r}: {hint}localtrack.init() takes W&B's "
        f"arguments ({', '.join(known)}); see the README, 'Coming from W&B'.")


def _with_settings(given: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """init()'s arguments, each one not given taken from the settings ``given`` (W&B's names)."""
    out = dict(args, silent=given.get("silent"))
    for setting, arg in _SETTING_ARGS.items():
        if out[arg] is None and given.get(setting) is not None:
            out[arg] = given[setting]
    return out


def _ignore(given: dict[str, Any], args: dict[str, Any]) -> None:
    """One debug log for what W&B takes and localtrack has no use for (see init()): those of
    ``args`` that are set, and the settings ``given`` that name no init() argument."""
    names = [k for k, v in args.items() if v is not None and v is not False]
    names += [f"settings[{k!r}]" for k in given
              if k not in _SETTING_ARGS and k not in ("silent", "x_label", "x_primary")]
    if names:
        log.debug("init() ignores %s: W&B features with no local counterpart yet",
                  ", ".join(names))


def _run_config(config: object, include: Collection[str] | None, exclude: Collection[str] | None,
                sweep_params: dict[str, Any]) -> dict[str, Any]:
    """The config a new run starts with: init()'s (only the included, or not excluded, keys),
    then the keys of WANDB_CONFIG_PATHS files (which win over the script's, as in W&B: a
    launcher overrides a script's defaults through them), then a sweep's parameters."""
    data = {**config_defaults(), **config_dict(config, include=include, exclude=exclude)}
    for path in _settings.config_paths():
        data.update(read_config_file(path))
    out: dict[str, Any] = storable({**data, **sweep_params})
    return out


def _while_active(how: str, resolved: _settings.Settings, job: bool) -> _run.Run | None:
    """What W&B's reinit asks while a run is active: the run to return instead of a new one,
    or None to go on (the active runs finished first for "finish_previous"). A sweep's job
    (``job``) gets its own run: the active run is returned only if it is that one."""
    if not _active or how == "create_new":
        return None
    if job and how == "return_previous" and _active[-1].id != resolved.run_id:
        how = "finish_previous"
    if how == "finish_previous":
        for run in list(reversed(_active)):
            log.info("init() finishes the active run %s first (reinit='finish_previous')", run.path)
            run.finish()
        return None
    previous = _active[-1]
    if resolved.resume == "must":
        raise UsageError(f"Cannot resume a run while run {previous.path} is active: finish it "
                         "first, or pass reinit='finish_previous' or reinit='create_new'.",
                         project=previous.project, run_id=previous.id)
    log.warning("init() returns the active run %s (reinit='return_previous', W&B's default "
                "outside notebooks); finish it first, or pass reinit='finish_previous' or "
                "'create_new' to start another run", previous.path)
    return previous


def _start_run(resolved: _settings.Settings, fields: dict[str, Any], config: dict[str, Any],
               how: str, resume_from: str | None, fork_from: str | None) -> _run.Run:
    global _starting
    _install_hooks()  # before the run exists: a signal during init() waits for it (_starting)
    main = threading.current_thread() is threading.main_thread()  # where handlers run
    _starting += main
    try:
        run = _start.start(resolved, fields, config, forget, resume_from, fork_from)
        _register(run, how)  # before a signal that came meanwhile is acted on: it ends this run
        return run
    finally:
        _starting -= main
        if _pending and not _starting:
            _deliver_pending()


def forget(run: _run.Run) -> None:
    global _current
    _release_magic(run)
    if run in _active:
        _active.remove(run)
    if _current is run:
        _current = None


def _release_magic(run: _run.Run) -> None:
    """init(magic=)'s capture ends with the run (its argparse patch with the last one)."""
    if "localtrack._magic" in sys.modules:
        sys.modules["localtrack._magic"].release(run)


def current() -> _run.Run | None:
    return _current


# -- exit and signal hooks ----------------------------------------------------------------


def _after_fork_in_child() -> None:
    global _current
    for run in _active:
        run._disown()
        _release_magic(run)  # the parent's runs take no arguments parsed here
    _active.clear()
    _current = None


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
    """Record the signal; act on it now unless it interrupted init(), a run's writer or an
    entry call (see _guard)."""
    name = signal.Signals(signum).name
    runs = list(_active)
    for run in runs:
        run._signalled = name  # finish() under way ends the run as preempted
    if _starting:
        _pending.append((signum, frame))
        return
    if _guard.in_entry():
        _guard.queue_for_entry(lambda: _act(signum, frame))
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

